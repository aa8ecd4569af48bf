"""The VPP plugin's console pages and REST routes (Configuration > Apple Volume Purchase
Program, an account's Assets, an asset's User and Device licenses, VPP users, Sync runs).

Mounted by the host through ``mdm_register_web``: every route here is already behind the
console's access check (signed in, ``admin`` role for anything but GET). Each form checks its
input before changing anything and answers a bad one with a one-line message and its status.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from concurrent.futures import wait
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, or_, select

from mdm_core.errors import MdmError
from mdm_core.scheduler import MAX_INTERVAL
from mdm_core.output import format_time
from mdm_core.web.access import web_settings
from mdm_core.web.helpers import (DEFAULT_LIMIT, MAX_LIMIT, WebError, decode_cursor, encode_cursor, host_of, list_page,
                                  redirect, render, run_in_background)

from .accounts import ClaimedByOtherMdm, add_account, check_interval, describe_account, get_account, list_accounts, remove_account, set_account, settings
from .models import VppAccount, VppAsset, VppSyncRun, VppUser
from .apple.protocol import apple_asset
from .views import asset_history, count_licenses, licenses_page, list_assets, list_users

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.web.registry import WebRegistry

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE_SIZE = 50
INTERVAL = "Account Synchronization Interval (sec)"
START_WAIT = 30  # seconds a Synchronize click waits for the sync's run to be recorded
SORTS = {"name": None, "adamId": "adam_id", "productType": "product_type", "pricingParam": "pricing_param", "assigned": "assigned_count",
         "available": "available_count", "retired": "retired_count", "total": "total_count"}


def register(web: "WebRegistry") -> None:
    """Add the VPP pages, navigation entry and API routes."""
    web.add_pages(page_router(), plugin="vpp", templates=TEMPLATES)
    web.add_api(api_router(), plugin="vpp")
    web.add_nav("Apple Volume Purchase Program", "/vpp", order=10, plugin="vpp")


# ---------------------------------------------------------------------- shared


def _account(host: "Host", name: str) -> VppAccount:
    with host.db.session() as session:
        try:
            return get_account(session, name)
        except MdmError as exc:
            raise WebError(404, str(exc)) from None


def _asset(host: "Host", account: VppAccount, adam_id: str, pricing: str) -> VppAsset:
    with host.db.session() as session:
        asset = session.get(VppAsset, (account.id, adam_id, pricing))
    if asset is None:
        raise WebError(404, f"asset {adam_id} ({pricing}) is not in account '{account.name}': synchronize the account if it was just bought")
    return asset


def _labels(host: "Host", adam_ids: list[str]) -> dict[str, dict[str, Any]]:
    hook = host.hook("mdm_vpp_asset_labels")
    merged: dict[str, dict[str, Any]] = {}
    if hook is None or not adam_ids:
        return merged
    try:
        for result in hook(host=host, adam_ids=adam_ids):
            merged.update(result or {})
    except Exception:  # names are a nicety: the page works without them
        return {}
    return merged


def days_left(expires: str | None) -> int | None:
    """Whole days until the token expires (negative once expired)."""
    if not expires:
        return None
    delta = datetime.fromisoformat(expires) - datetime.now(timezone.utc)
    return int(delta.total_seconds() // 86400)


def get_run(host: "Host", run_id: int) -> dict[str, Any]:
    """One sync run (as ``mdm vpp runs --json``), or a 404."""
    from .sync.run import get_run as find_run

    run = find_run(host, run_id)
    if run is None:
        raise WebError(404, f"no sync run {run_id}: see GET /api/v1/vpp/runs")
    return run


def run_progress(run: dict[str, Any]) -> dict[str, Any] | None:
    """Pages and rows read so far by a running sync of this process (``sync.progress``), or None."""
    from .sync import progress

    if run["status"] != "running":
        return None
    return next((p for p in progress.current() if p["account"] == run["account"]), None)


def start_sync(request: Request, name: str, full: bool, trigger: str) -> int:
    """Start a sync through ``mdm_vpp_sync`` (as ``mdm vpp sync`` and the scheduler do) on the
    console's bounded worker pool; returns the id of its run as soon as it is recorded.

    409 when a sync of the account is already running in any process (the account's lock),
    503 when the console's workers are all busy, 404 for an account removed meanwhile.
    """
    from .sync.run import recent_runs

    host = host_of(request)
    account = _account(host, name)
    running = next((r for r in recent_runs(host, name, 1) if r["status"] == "running"), None)
    if running is not None:  # seen in the database, whichever process runs it
        raise WebError(409, f"a sync of {name} is already running (run {running['id']}, started {format_time(running['started_at'])}): "
                            "wait for it to finish")
    before = _latest_run_id(host, account.id)
    future = run_in_background(request, lambda: host.pm.hook.mdm_vpp_sync(host=host, account=name, full=full, trigger=trigger, wait=0))
    deadline = time.monotonic() + START_WAIT
    while not future.done() and time.monotonic() < deadline:
        run_id = _our_new_run(host, account.id, before, trigger)
        if run_id is not None:
            return run_id
        wait([future], timeout=0.05)
    run_id = _our_new_run(host, account.id, before, trigger)  # a sync quicker than one look
    if run_id is not None:
        return run_id
    if not future.done():
        raise WebError(503, f"the sync of {name} has not started within {START_WAIT} seconds: see Sync runs")
    try:
        reports = future.result()
    except MdmError as exc:  # removed meanwhile
        raise WebError(404, str(exc)) from None
    report = (reports or [None])[0]
    if report is not None and report["status"] == "already running":
        raise WebError(409, report["error"] or f"a sync of {name} is already running")
    raise WebError(400, (report or {}).get("error") or f"the sync of {name} did not start")


def _latest_run_id(host: "Host", account_id: int | None) -> int:
    with host.db.session() as session:
        return int(session.execute(select(func.max(VppSyncRun.id)).where(VppSyncRun.account_id == account_id)).scalar() or 0)


def _our_new_run(host: "Host", account_id: int | None, after: int, trigger: str) -> int | None:
    """The run this process started for the account since ``after`` (its lock holder names this process)."""
    mine = f"{socket.gethostname()}:{os.getpid()}:"
    with host.db.session() as session:
        return session.execute(select(func.min(VppSyncRun.id)).where(
            VppSyncRun.account_id == account_id, VppSyncRun.id > after, VppSyncRun.trigger == trigger,
            VppSyncRun.holder.startswith(mine))).scalar()  # type: ignore[union-attr]


def asset_rows(host: "Host", account: VppAccount, q: str, sort: str, direction: str) -> list[dict[str, Any]]:
    """An account's assets with names and icons, filtered and sorted (a few thousand at most)."""
    rows = list_assets(host, account.name)
    labels = _labels(host, [r["adamId"] for r in rows])
    for row in rows:
        label = labels.get(row["adamId"]) or {}
        row["name"], row["iconUrl"] = label.get("name"), label.get("iconUrl")
    needle = q.strip().lower()
    if needle:
        rows = [r for r in rows if needle in (r["name"] or "").lower() or needle in r["adamId"] or needle == r["pricingParam"].lower()
                or needle in r["productType"].lower()]
    key = {"name": lambda r: ((r["name"] or "~").lower(), r["adamId"]), "adamId": lambda r: (r["adamId"], r["pricingParam"]),
           "productType": lambda r: (r["productType"], r["adamId"]), "pricingParam": lambda r: (r["pricingParam"], r["adamId"]),
           "assigned": lambda r: (r["assignedCount"], r["adamId"]), "available": lambda r: (r["availableCount"], r["adamId"]),
           "retired": lambda r: (r["retiredCount"], r["adamId"]), "total": lambda r: (r["totalCount"], r["adamId"])}[sort]
    return sorted(rows, key=key, reverse=direction == "desc")


def chart(history: list[dict[str, Any]], current: VppAsset, width: int = 640, height: int = 200) -> dict[str, Any]:
    """Points of the assigned/available chart, drawn as SVG by the template (no script)."""
    points = list(history)
    now = datetime.now(timezone.utc)
    points.append({"at": now, "assignedCount": current.assigned_count, "availableCount": current.available_count})
    left, right, top, bottom = 48, 12, 12, 28
    t0, t1 = points[0]["at"].timestamp(), points[-1]["at"].timestamp()
    span = max(t1 - t0, 1.0)
    high = max([1] + [max(p["assignedCount"], p["availableCount"]) for p in points])

    def x(p: dict[str, Any]) -> float:
        return round(left + (p["at"].timestamp() - t0) / span * (width - left - right), 1)

    def y(v: int) -> float:
        return round(top + (1 - v / high) * (height - top - bottom), 1)

    def line(key: str) -> str:  # a step line: counts hold until the next sync that changed them
        out: list[str] = []
        for i, p in enumerate(points):
            if i:
                out.append(f"{x(p)},{y(points[i - 1][key])}")
            out.append(f"{x(p)},{y(p[key])}")
        return " ".join(out)

    return {
        "width": width, "height": height, "assigned": line("assignedCount"), "available": line("availableCount"),
        "dots": [{"x": x(p), "assigned": y(p["assignedCount"]), "available": y(p["availableCount"])} for p in points[:-1]],
        "ticks": [{"y": y(v), "label": v} for v in sorted({0, high // 2, high})],
        "start": points[0]["at"], "end": now, "left": left, "bottom": height - bottom, "right": width - right, "records": len(history),
    }


def _store_upload(host: "Host", data: bytes) -> str:
    """The uploaded token in a private temporary file (removed by the caller)."""
    folder = host.config.var_dir
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=".upload-", suffix=".vpptoken", dir=folder)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


async def read_upload(request: Request, upload: UploadFile | None, pending: str) -> bytes:
    """The token file's bytes, from the upload or from a take-over confirmation (encrypted)."""
    host = host_of(request)
    if pending:
        try:
            return host.secrets.decrypt(pending).encode()
        except MdmError:
            raise WebError(400, "the confirmation expired: upload the token file again") from None
    if upload is None or not upload.filename:
        raise WebError(422, "no token file: choose the .vpptoken file downloaded from Apple School Manager or Apple Business Manager")
    limit = web_settings(host).upload_max_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise WebError(413, f"the token file is larger than {limit} bytes: a .vpptoken is a few hundred bytes; upload the file downloaded from Apple")
    return data


def with_token_file(host: "Host", data: bytes, work: Any) -> Any:
    """Run ``work(path)`` with the token in a private temporary file."""
    path = _store_upload(host, data)
    try:
        return work(path)
    finally:
        Path(path).unlink(missing_ok=True)


# ---------------------------------------------------------------------- pages


def page_router() -> APIRouter:
    """The console pages."""
    router = APIRouter()

    @router.get("/vpp")
    def accounts(request: Request) -> Response:
        host = host_of(request)
        rows = list_accounts(host)
        from .sync.run import latest_runs

        runs = latest_runs(host)
        for row in rows:
            row["days_left"] = days_left(row["tokenExpirationDate"])
            row["run"] = runs.get(row["name"])
        running = any(r["run"] and r["run"]["status"] == "running" for r in rows)
        return render(request, "vpp/accounts.html", {"accounts": rows, "running": running, "min_interval": settings(host).min_interval,
                                                    "max_interval": MAX_INTERVAL})

    @router.get("/vpp/add")
    def add_form(request: Request) -> Response:
        return render(request, "vpp/add.html", {"default_interval": settings(host_of(request)).default_interval, "values": {}})

    @router.post("/vpp/add")
    async def add(request: Request, name: str = Form(""), interval: str = Form(""), service_url: str = Form(""),
                  token_file: UploadFile | None = File(None), pending: str = Form(""), take_over: str = Form("")) -> Response:
        host = host_of(request)
        seconds = check_interval(host, interval or settings(host).default_interval, INTERVAL)
        data = await read_upload(request, token_file, pending)
        try:
            with_token_file(host, data, lambda path: add_account(host, name.strip(), path, interval=seconds, service_url=service_url.strip() or None,
                                                                 take_over=take_over == "yes"))
        except ClaimedByOtherMdm as exc:
            return render(request, "vpp/take_over.html", {
                "action": "/vpp/add", "other": exc.other, "message": str(exc), "pending": host.secrets.encrypt(data.decode("utf-8", "replace")),
                "fields": {"name": name, "interval": seconds, "service_url": service_url}}, status_code=409)
        return redirect(request, "/vpp", f"account {name.strip()} added: click Synchronize to read its assets now, or wait for the interval")

    @router.post("/vpp/accounts/{name}/renew")
    async def renew(request: Request, name: str, token_file: UploadFile | None = File(None), pending: str = Form(""), take_over: str = Form("")) -> Response:
        host = host_of(request)
        _account(host, name)
        data = await read_upload(request, token_file, pending)
        try:
            with_token_file(host, data, lambda path: set_account(host, name, token_file=path, take_over=take_over == "yes"))
        except ClaimedByOtherMdm as exc:
            return render(request, "vpp/take_over.html", {
                "action": f"/vpp/accounts/{name}/renew", "other": exc.other, "message": str(exc),
                "pending": host.secrets.encrypt(data.decode("utf-8", "replace")), "fields": {}}, status_code=409)
        return redirect(request, "/vpp", f"token of {name} renewed")

    @router.post("/vpp/accounts/{name}/interval")
    def interval(request: Request, name: str, interval_seconds: str = Form("")) -> Response:
        host = host_of(request)
        _account(host, name)
        seconds = check_interval(host, interval_seconds, INTERVAL)
        set_account(host, name, interval=seconds)
        return redirect(request, "/vpp", f"{name}: Account Synchronization Interval set to {seconds} seconds")

    @router.post("/vpp/accounts/{name}/sync")
    def synchronize(request: Request, name: str, full: str = Form("")) -> Response:
        try:
            run_id = start_sync(request, name, full == "yes", "console")
        except WebError as exc:
            if exc.status == 409:
                return redirect(request, "/vpp", exc.message, "error")
            raise
        return redirect(request, f"/vpp/runs/{run_id}", f"synchronization of {name} started")

    @router.get("/vpp/runs/{run_id}")
    def run_page(request: Request, run_id: int) -> Response:
        run = get_run(host_of(request), run_id)
        return render(request, "vpp/run.html", {"run": run, "progress": run_progress(run)})

    @router.get("/vpp/accounts/{name}/remove")
    def remove_form(request: Request, name: str) -> Response:
        account = describe_account(_account(host_of(request), name))
        return render(request, "vpp/remove.html", {"account": account})

    @router.post("/vpp/accounts/{name}/remove")
    def remove(request: Request, name: str, confirm: str = Form("")) -> Response:
        host = host_of(request)
        _account(host, name)
        if confirm != name:
            raise WebError(422, f"type the account name '{name}' to confirm its removal")
        remove_account(host, name)
        return redirect(request, "/vpp", f"account {name} removed with its assets, users and licenses")

    @router.get("/vpp/accounts/{name}/assets")
    def assets(request: Request, name: str, q: str = "", sort: str = "name", dir: str = "asc", page: int = Query(1, ge=1)) -> Response:
        host = host_of(request)
        account = _account(host, name)
        sort = sort if sort in SORTS else "name"
        direction = "desc" if dir == "desc" else "asc"
        rows = asset_rows(host, account, q, sort, direction)
        pages = max(1, -(-len(rows) // PAGE_SIZE))
        page = min(page, pages)
        return render(request, "vpp/assets.html", {
            "account": describe_account(account), "rows": rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE], "total": len(rows),
            "q": q, "sort": sort, "direction": direction, "page": page, "pages": pages})

    @router.get("/vpp/accounts/{name}/assets/{adam_id}/{pricing}")
    def asset(request: Request, name: str, adam_id: str, pricing: str, tab: str = "user", after: str = "") -> Response:
        host = host_of(request)
        account = _account(host, name)
        row = _asset(host, account, adam_id, pricing)
        kind = "device" if tab == "device" else "user"
        key = decode_cursor(after).get("key") if after else None
        licenses, next_key = licenses_page(host, account=name, adam_id=adam_id, pricing_param=pricing, kind=kind, limit=PAGE_SIZE, after=key)
        label = _labels(host, [adam_id]).get(adam_id) or {}
        return render(request, "vpp/asset.html", {
            "account": describe_account(account), "asset": apple_asset(row.model_dump(), name), "name": label.get("name"),
            "icon": label.get("iconUrl"), "tab": kind, "licenses": licenses, "first": not after,
            "next": encode_cursor({"key": next_key}) if next_key else None,
            "user_count": count_licenses(host, account.id, adam_id, pricing, "user") if account.id else 0,
            "device_count": count_licenses(host, account.id, adam_id, pricing, "device") if account.id else 0,
            "chart": chart(asset_history(host, account.id or 0, adam_id, pricing), row)})

    @router.get("/vpp/accounts/{name}/users")
    def users(request: Request, name: str, q: str = "", page: int = Query(1, ge=1)) -> Response:
        host = host_of(request)
        account = _account(host, name)
        rows, total = users_page(host, account, q, page)
        return render(request, "vpp/users.html", {"account": describe_account(account), "rows": rows, "total": total, "q": q, "page": page,
                                                 "pages": max(1, -(-total // PAGE_SIZE))})

    @router.get("/vpp/accounts/{name}/runs")
    def runs(request: Request, name: str) -> Response:
        from .sync.run import recent_runs

        host = host_of(request)
        account = _account(host, name)
        return render(request, "vpp/runs.html", {"account": describe_account(account), "runs": recent_runs(host, name, 50)})

    return router


def users_page(host: "Host", account: VppAccount, q: str, page: int) -> tuple[list[dict[str, Any]], int]:
    """One page of an account's VPP users (indexed offset paging), with invitation URLs."""
    from mdm_core.models import MdmUser

    from .views import user_invitation_url

    query = select(VppUser, MdmUser.id).outerjoin(MdmUser, MdmUser.id == VppUser.client_user_id).where(VppUser.account_id == account.id)
    if q.strip():
        like = f"%{q.strip().lower()}%"
        query = query.where(or_(func.lower(VppUser.client_user_id).like(like), func.lower(VppUser.email).like(like), func.lower(VppUser.status).like(like)))
    with host.db.session() as session:
        total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = session.execute(query.order_by(VppUser.client_user_id).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
    return [{"clientUserId": u.client_user_id, "email": u.email, "status": u.status, "idHash": u.id_hash, "mdmUser": m,
             "invitationUrl": user_invitation_url(account.invitation_template, u.invite_code) if u.status == "Registered" else None}
            for u, m in rows], total


# ---------------------------------------------------------------------- API


def api_router() -> APIRouter:
    """``/api/v1/vpp``: the same field names as ``mdm vpp ... --json`` (Apple's)."""
    router = APIRouter(prefix="/vpp", tags=["vpp"])
    Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)

    @router.get("/accounts")
    def api_accounts(request: Request, limit: int = Limit, cursor: str | None = None) -> dict[str, Any]:
        """The accounts (never their tokens), as ``mdm vpp account list --json``."""
        return list_page(list_accounts(host_of(request)), limit, cursor)

    @router.get("/accounts/{name}")
    def api_account(request: Request, name: str) -> dict[str, Any]:
        """One account."""
        return describe_account(_account(host_of(request), name))

    @router.patch("/accounts/{name}")
    async def api_change_account(request: Request, name: str) -> dict[str, Any]:
        """Change ``interval_seconds`` (the Account Synchronization Interval)."""
        host = host_of(request)
        _account(host, name)
        body = await _json_object(request)
        unknown = sorted(set(body) - {"interval_seconds"})
        if unknown or "interval_seconds" not in body:
            raise WebError(422, f"send {{\"interval_seconds\": SECONDS}}{'; unknown field(s): ' + ', '.join(unknown) if unknown else ''}")
        return set_account(host, name, interval=check_interval(host, body["interval_seconds"], "interval_seconds"))

    @router.post("/accounts/{name}/sync", status_code=202)
    def api_sync(request: Request, name: str, full: bool = False) -> JSONResponse:
        """Start a sync in the background: 202 with the run id (409 if one is running)."""
        run_id = start_sync(request, name, full, "api")
        return JSONResponse({"id": run_id, "account": name, "status": "running", "run": f"/api/v1/vpp/runs/{run_id}"}, status_code=202)

    @router.get("/runs")
    def api_runs(request: Request, account: str | None = None, limit: int = Limit) -> dict[str, Any]:
        """Recent sync runs, newest first."""
        from .sync.run import recent_runs

        if account:
            _account(host_of(request), account)
        return {"items": recent_runs(host_of(request), account, limit), "next_cursor": None}

    @router.get("/runs/{run_id}")
    def api_run(request: Request, run_id: int) -> dict[str, Any]:
        """One sync run: ``status`` is ``running`` until it ends (``ok``, ``error``)."""
        return get_run(host_of(request), run_id)

    @router.get("/assets")
    def api_assets(request: Request, account: str | None = None, limit: int = Limit, cursor: str | None = None) -> dict[str, Any]:
        """Assets with their counts, as ``mdm vpp assets --json``."""
        if account:
            _account(host_of(request), account)
        return list_page(list_assets(host_of(request), account), limit, cursor)

    @router.get("/assets/{adam_id}/history")
    def api_history(request: Request, adam_id: str, account: str, pricing: str = "STDQ") -> dict[str, Any]:
        """The asset's counts at every sync that changed them, oldest first."""
        host = host_of(request)
        acc = _account(host, account)
        _asset(host, acc, adam_id, pricing)
        return {"items": asset_history(host, acc.id or 0, adam_id, pricing), "next_cursor": None}

    @router.get("/licenses")
    def api_licenses(request: Request, account: str | None = None, asset: str | None = None, device: str | None = None, user: str | None = None,
                     limit: int = Limit, cursor: str | None = None) -> dict[str, Any]:
        """Licenses (keyset-paged), as ``mdm vpp licenses --json``."""
        host = host_of(request)
        if account:
            _account(host, account)
        key = decode_cursor(cursor).get("key") if cursor else None
        if cursor and not isinstance(key, list):
            raise WebError(400, "cursor is not valid: pass the next_cursor of the previous page unchanged")
        rows, next_key = licenses_page(host, account=account, adam_id=asset, serial_number=device, client_user_id=user, limit=limit, after=key)
        for row in rows:
            row.pop("owner", None)
            row.pop("email", None)
        return {"items": rows, "next_cursor": encode_cursor({"key": next_key}) if next_key else None}

    @router.get("/users")
    def api_users(request: Request, account: str | None = None, limit: int = Limit, cursor: str | None = None) -> dict[str, Any]:
        """VPP users, as ``mdm vpp users --json``."""
        if account:
            _account(host_of(request), account)
        return list_page(list_users(host_of(request), account), limit, cursor)

    return router


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise WebError(400, "the body is not JSON: send a JSON object") from None
    if not isinstance(body, dict):
        raise WebError(422, "the body must be a JSON object")
    return body
