"""The VPP plugin's console pages and REST routes (Configuration > Apple Volume Purchase
Program, an account's Assets, an asset's User and Device licenses, VPP users, Sync runs).

Mounted by the host through ``mdm_register_web``: every route here is already behind the
console's access check (signed in, ``admin`` role for anything but GET). Each form checks its
input before changing anything and answers a bad one with a one-line message and its status.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import wait
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from mdm_core.errors import MdmError
from mdm_core.output import format_time
from mdm_core.scheduler import MAX_INTERVAL
from mdm_core.secrets_cli import WrongKey
from mdm_core.web.access import web_settings
from mdm_core.web.helpers import WebError, chosen, host_of, json_object, redirect, render, require_change, rest_router, row_id, run_in_background
from mdm_core.web.once import check_form_id, form_once, new_form_id, run_form
from mdm_core.web.openapi import json_body
from mdm_core.web.paging import PAGE_SIZE, Cursor, Limit, keyset, numbered, search
from mdm_core.web.schemas import page_of
from mdm_core.web.wording import for_request, with_error_reworded

from . import api_models, token_state, views
from .accounts import (
    ClaimedByOtherMdm,
    SyncRunning,
    account_contents,
    add_account,
    check_interval,
    check_name_free,
    describe_account,
    describe_accounts,
    get_account,
    remove_account,
    set_account,
    settings,
)
from .apple.client import DEFAULT_SERVICE_URL
from .changes import format_changes
from .cli import KEY_LOST_HELP
from .models import VppAccount, VppAsset, VppAssetCount, VppSyncRun, VppUser
from .notifications import configure
from .notifications.configure import public_url
from .rename import rename_account

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.web.registry import WebRegistry

    from .payloads import Account

#: What ``PATCH /api/v1/vpp/accounts/{name}`` changes (``take_over`` and ``key_lost`` go with ``token``, ``name`` alone).
PATCHABLE = {"interval_seconds", "notifications", "token", "take_over", "key_lost", "name"}
#: What ``POST /api/v1/vpp/accounts`` takes (``name`` and ``token`` required).
ADDABLE = {"name", "token", "interval_seconds", "notifications", "take_over", "key_lost", "service_url"}
_FLAG = {"type": "boolean"}
#: The fields of ``ADDABLE`` and ``PATCHABLE``, for the OpenAPI document.
ACCOUNT_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1},
    "token": {"type": "string", "description": "the text of the .vpptoken file"},
    "interval_seconds": {"type": "integer", "description": "Account Synchronization Interval (sec)"},
    "notifications": {"enum": ["on", "off"]},
    "service_url": {"type": "string", "description": "Apple's by default"},
    "take_over": _FLAG | {"description": "claim a location another MDM manages"},
    "key_lost": _FLAG | {"description": "as mdm vpp account add --key-lost"},
}
#: How messages name a token sent in a JSON body (never its value).
API_TOKEN = "the token sent"
TEMPLATES = Path(__file__).resolve().parent / "templates"
INTERVAL = "Account Synchronization Interval (sec)"
PAGE = "the Apple Volume Purchase Program page"  # what a form with an invalid one-time id says to open again
START_WAIT = 30  # seconds a Synchronize click waits for the sync's run to be recorded
#: The Assets table's sort keys (``name`` needs the label source, see ``asset_sort``).
SORTS = {
    "adamId": VppAsset.adam_id,
    "productType": VppAsset.product_type,
    "pricingParam": VppAsset.pricing_param,
    "assigned": VppAsset.assigned_count,
    "available": VppAsset.available_count,
    "retired": VppAsset.retired_count,
    "total": VppAsset.total_count,
}


def register(web: WebRegistry) -> None:
    """Add the VPP pages, navigation entry and API routes."""
    web.add_pages(page_router(), plugin="vpp", templates=TEMPLATES)
    web.add_api(api_router(), plugin="vpp")
    web.add_nav("Apple Volume Purchase Program", "/vpp", order=10, plugin="vpp")
    web.add_wordings(WORDING)


#: The command line's advice in this plugin's errors (Apple's client, the accounts) and in its
#: accounts' What to do (``token_state.WORDING``, first) and notifications
#: (``configure.WORDING``), as the console and the API say it (``mdm_core.web.wording``); the
#: take-over's before the plain renewal.
RENEW = "Renew token on the Apple Volume Purchase Program page"
#: The API's Renew token (``\1``: the account's name, when the advice names it).
API_RENEW = r'PATCH /api/v1/vpp/accounts/\1 with the text of the new .vpptoken file as "token"'
WORDING = [
    *token_state.WORDING,
    *configure.WORDING,
    (
        r"renew it with `mdm vpp account set (\S+) --token-file [^`]+`",
        r"renew it with Renew token of account '\1'",
        rf"renew it with {API_RENEW}",
    ),
    (
        r"`?mdm vpp account set (\S+) --token-file \S+ --take-over`?",
        f"{RENEW}, confirming the take-over",
        API_RENEW + ' and "take_over": true',
    ),
    (r"--token-file and --take-over", f"{RENEW}, confirming the take-over", 'PATCH with "token" and "take_over": true'),
    (r"(?:add|run this again with) --take-over", "confirm the take-over", 'send this again with "take_over": true'),
    (  # the key lost: --key-lost for the first token (the console's confirmation, the API's "key_lost"), then the others
        r"`mdm vpp account set (\S+) --token-file FILE --key-lost`",
        f"{RENEW}, {token_state.CONFIRMED} for the first token (the others without)",
        f"{API_RENEW} {token_state.API_KEY_LOST} for the first token (the others without)",
    ),
    (r"`?mdm vpp account set (\S+) --token-file [^\s`]+`?", RENEW, API_RENEW),  # the colon after its backtick stays
    (
        r"`mdm vpp account set (\S+) --interval SECONDS`",
        f"the account's {INTERVAL} (Apple Volume Purchase Program page)",
        r'PATCH /api/v1/vpp/accounts/\1 {"interval_seconds": SECONDS}',
    ),
    (r"--service-url", "the account's Service URL", "the account's service_url"),
    (r"\(see `mdm vpp assets`", "(see the account's Assets", "(see GET /api/v1/vpp/assets"),
    (r"\(see `mdm vpp users`\)", "(see the account's VPP users)", "(see GET /api/v1/vpp/users)"),
    (r"\(`mdm devices list` lists the enrolled ones\)", "(Devices lists the enrolled ones)", "(GET /api/v1/devices lists the enrolled ones)"),
    (r"; `mdm vpp sync` brings in a purchase\)", "; Synchronize brings in a purchase)", "; POST /api/v1/vpp/accounts/NAME/sync brings in a purchase)"),
    (r"add one with `mdm vpp account add`", "add one with Add an account on the Apple Volume Purchase Program page", "add one with POST /api/v1/vpp/accounts"),
    (
        r"choose another name or `mdm vpp account set ([^\s`]+)`",
        "choose another name, or change that account on the Apple Volume Purchase Program page",
        r"choose another name, or PATCH /api/v1/vpp/accounts/\1 to change it",
    ),
]


# ---------------------------------------------------------------------- shared


def _account(host: Host, name: str) -> VppAccount:
    with host.db.session() as session:
        try:
            return get_account(session, name)
        except MdmError as exc:
            raise WebError(404, str(exc)) from None


def _asset(host: Host, account: VppAccount, adam_id: str, pricing: str) -> VppAsset:
    """The asset, its ``pricing`` in any case (an unknown one: 422; a missing asset: 404)."""
    pricing = views.pricing_param(pricing)
    with host.db.session() as session:
        asset = session.get(VppAsset, (account.id, adam_id, pricing))
    if asset is None:
        raise WebError(404, f"asset {adam_id} ({pricing}) is not in account '{account.name}': synchronize the account if it was just bought")
    return asset


def get_run(host: Host, run_id: int, where: str = "GET /api/v1/vpp/runs") -> dict[str, Any]:
    """One sync run (as ``mdm vpp runs --json``), or a 404 pointing to ``where`` the runs are."""
    from .sync.run import get_run as find_run

    run = find_run(host, run_id)
    if run is None:
        raise WebError(404, f"no sync run {run_id}: see {where}")
    return run


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
        raise WebError(409, f"a sync of {name} is already running (run {running['id']}, started {format_time(running['started_at'])}): wait for it to finish")
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


def _latest_run_id(host: Host, account_id: int | None) -> int:
    with host.db.session() as session:
        return int(session.execute(select(func.max(col(VppSyncRun.id))).where(col(VppSyncRun.account_id) == account_id)).scalar() or 0)


def _our_new_run(host: Host, account_id: int | None, after: int, trigger: str) -> int | None:
    """The run this process started for the account since ``after`` (its lock holder names this process)."""
    mine = f"{socket.gethostname()}:{os.getpid()}:"
    with host.db.session() as session:
        return session.execute(
            select(func.min(col(VppSyncRun.id))).where(
                col(VppSyncRun.account_id) == account_id,
                col(VppSyncRun.id) > after,
                col(VppSyncRun.trigger) == trigger,
                col(VppSyncRun.holder).startswith(mine),
            )
        ).scalar()


def assets_table(host: Host, account: VppAccount, q: str, sort: str, descending: bool, page: int) -> Any:
    """One numbered page of an account's assets with names and icons, searched and sorted in
    the database (name, adamId, product type or pricing; any column)."""

    def read(labels: Any) -> Any:
        query = views.assets_query(account.id, labels)
        columns = [VppAsset.adam_id, VppAsset.product_type, VppAsset.pricing_param] + ([labels.c.name] if labels is not None else [])
        query = search(query, q, columns)
        first: Any
        if sort == "name" and labels is not None:
            first = func.lower(func.coalesce(labels.c.name, "~"))  # unnamed assets last
        else:
            first = SORTS.get(sort, VppAsset.adam_id)
        order: list[Any] = [first, VppAsset.adam_id, VppAsset.pricing_param]
        with host.db.session() as session:
            return numbered(session, query, [c.desc() if descending else c.asc() for c in order], page=page)

    found = views.with_labels(host, read)
    return found, [views.labelled_asset_row(*row) for row in found.items]


def asset_label(host: Host, adam_id: str) -> tuple[str | None, str | None]:
    """The name and icon URL of one adamId, from the label source."""

    def read(labels: Any) -> tuple[str | None, str | None]:
        if labels is None:
            return None, None
        with host.db.session() as session:
            row = session.execute(select(labels.c.name, labels.c.icon_url).where(labels.c.adam_id == adam_id)).first()
        return (row[0], row[1]) if row else (None, None)

    return views.with_labels(host, read)


def chart(history: list[dict[str, Any]], current: VppAsset, width: int = 640, height: int = 200) -> dict[str, Any]:
    """Points of the assigned/available chart, drawn as SVG by the template (no script)."""
    points = list(history)
    now = datetime.now(UTC)
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
        "width": width,
        "height": height,
        "assigned": line("assignedCount"),
        "available": line("availableCount"),
        "dots": [{"x": x(p), "assigned": y(p["assignedCount"]), "available": y(p["availableCount"])} for p in points[:-1]],
        "ticks": [{"y": y(v), "label": v} for v in sorted({0, high // 2, high})],
        "start": points[0]["at"],
        "end": now,
        "left": left,
        "bottom": height - bottom,
        "right": width - right,
        "records": len(history),
    }


def _store_upload(host: Host, data: bytes) -> str:
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


def upload_label(upload: UploadFile | None) -> str:
    """How messages name the uploaded token: its file name on the admin's computer, never the
    server's temporary file (a path of the server, and gone once the request ends)."""
    filename = Path(upload.filename).name[:100] if upload is not None and upload.filename else ""
    return f"the uploaded file '{filename}'" if filename else "the uploaded token file"


def confirmation_page(request: Request, template: str, action: str, data: bytes, fields: dict[str, Any], **context: Any) -> Response:
    """A confirmation the uploaded token needs before it is stored (409): the form posts to
    ``action`` again with ``fields`` (the form's, and the confirmations given before), the token
    waiting in it encrypted with the host's key."""
    pending = host_of(request).secrets.encrypt(data.decode("utf-8", "replace"))
    return render(request, template, {"action": action, "pending": pending, "fields": fields, **context}, status_code=409)


def confirmation_for(request: Request, exc: ClaimedByOtherMdm | WrongKey, action: str, data: bytes, fields: dict[str, Any]) -> Response:
    """The confirmation the refusal ``exc`` asks for: a take-over, naming the other MDM; or what
    ``--key-lost`` says on the command line, in its words, after the refusal (the host's key
    reads none of the stored tokens): the admin says the right key is lost for good."""
    if isinstance(exc, ClaimedByOtherMdm):
        return confirmation_page(request, "vpp/take_over.html", action, data, fields, other=exc.other, location=exc.location)
    error, label = for_request(request, str(exc)), for_request(request, KEY_LOST_HELP)
    return confirmation_page(request, "vpp/key_lost.html", action, data, fields, error=error, key_lost_label=label)


def confirmed(take_over: str, key_lost: str) -> dict[str, str]:
    """The confirmations a form carries (``yes``), kept in the next confirmation's form."""
    return {name: "yes" for name, value in (("take_over", take_over), ("key_lost", key_lost)) if value == "yes"}


def with_token_file(host: Host, data: bytes, work: Any) -> Any:
    """Run ``work(path)`` with the token in a private temporary file."""
    path = _store_upload(host, data)
    try:
        return work(path)
    finally:
        Path(path).unlink(missing_ok=True)


async def once(request: Request, form_id: str, work: Callable[[], Any]) -> Any:
    """``work()`` in a worker thread (it asks Apple: the console answers other requests
    meanwhile), once for the form ``form_id`` (:func:`mdm_core.web.once.form_once`)."""
    return await run_in_threadpool(form_once, request, form_id, PAGE, work)


def renewed_message(name: str, account: Account) -> str:
    """What the console says after a renewal: the last sync it shows (a failure for the old
    token, often) is from before, and how to sync now."""
    until = account["tokenExpirationDate"][:10]
    return (
        f"token of {name} renewed: {account['token_status']} until {until}; the Last sync shown is from before it: "
        "click Synchronize to sync now, or wait for the interval"
    )


# ---------------------------------------------------------------------- pages


def page_router() -> APIRouter:
    """The console pages."""
    router = APIRouter()

    @router.get("/vpp")
    def accounts(request: Request, page: int = Query(1, ge=1)) -> Response:
        from .sync.run import latest_runs

        host = host_of(request)
        with host.db.session() as session:
            found = numbered(session, select(VppAccount), [VppAccount.name], page=page)
        rows: list[dict[str, Any]] = [dict(row) for row in describe_accounts(host, [a for (a,) in found.items])]
        runs = latest_runs(host)
        for row, (account,) in zip(rows, found.items, strict=True):
            row["days_left"] = token_state.days_left(account.token_expires_at)
            # Apple refuses a token before its date (renewed elsewhere, revoked, expired early)
            row["refused_early"] = row["token_state"] in ("expired", "revoked", "invalid") and row["days_left"] >= 0
            row["console_action"] = for_request(request, row["action"])  # Renew token, Turn on/off for the commands (WORDING)
            row["last_sync_result"] = _reworded(request, row["last_sync_result"])  # a failed sync's advice, as on its run's page
            row["run"] = runs.get(row["name"])
        running = any(r["run"] and r["run"]["status"] == "running" for r in rows)
        return render(
            request,
            "vpp/accounts.html",
            {
                "accounts": rows,
                "found": found,
                "running": running,
                "min_interval": settings(host).min_interval,
                "max_interval": MAX_INTERVAL,
                "changes": format_changes,
                "public_url": public_url(host),  # Turn on needs it: without it, shown disabled and why
                "apple_service_url": DEFAULT_SERVICE_URL,  # a sync that cannot connect says to check the Service URL
                "form_id": new_form_id(),  # the forms' one-time id: Renew, Rename, Turn on/off, Synchronize (each posts to its own path)
            },
        )

    @router.get("/vpp/add")
    def add_form(request: Request) -> Response:
        require_change(request)
        host = host_of(request)
        url = public_url(host)  # the command line's default: on when it is set
        context: dict[str, Any] = {"default_interval": settings(host).default_interval, "public_url": url, "values": {}, "form_id": new_form_id()}
        return render(request, "vpp/add.html", context)

    @router.post("/vpp/add")
    async def add(
        request: Request,
        name: str = Form(""),
        interval: str = Form(""),
        service_url: str = Form(""),
        token_file: UploadFile | None = File(None),
        pending: str = Form(""),
        take_over: str = Form(""),
        notifications: str = Form(""),
        key_lost: str = Form(""),
        form_id: str = Form(""),
    ) -> Response:
        """Add an account as ``mdm vpp account add NAME --token-file F [--notifications on|off]
        [--take-over] [--key-lost]`` does (``notifications`` empty: its default, on when ``[web]
        public_url`` is set); a take-over and a lost key are confirmed on their own page. The
        form sent twice at once (a double-click) adds the account once and answers both alike."""
        host = host_of(request)
        seconds = check_interval(host, interval or settings(host).default_interval, INTERVAL)
        wanted = _on_off(notifications, "notifications") if notifications else None
        data = await read_upload(request, token_file, pending)
        label = upload_label(token_file)
        try:
            await once(
                request,
                form_id,
                lambda: with_token_file(
                    host,
                    data,
                    lambda path: add_account(
                        host,
                        name.strip(),
                        path,
                        interval=seconds,
                        service_url=service_url.strip() or None,
                        take_over=take_over == "yes",
                        notifications=wanted,
                        token_label=label,
                        key_lost=key_lost == "yes",
                    ),
                ),
            )
        except (ClaimedByOtherMdm, WrongKey) as exc:
            form = {
                "name": name,
                "interval": seconds,
                "service_url": service_url,
                "notifications": notifications,
                "form_id": form_id,
                **confirmed(take_over, key_lost),
            }
            return confirmation_for(request, exc, "/vpp/add", data, form)
        return redirect(request, "/vpp", f"account {name.strip()} added: click Synchronize to read its assets now, or wait for the interval")

    @router.post("/vpp/accounts/{name}/renew")
    async def renew(
        request: Request,
        name: str,
        token_file: UploadFile | None = File(None),
        pending: str = Form(""),
        take_over: str = Form(""),
        key_lost: str = Form(""),
        form_id: str = Form(""),
    ) -> Response:
        host = host_of(request)
        _account(host, name)
        data = await read_upload(request, token_file, pending)
        label = upload_label(token_file)

        def renew_with(path: str) -> Account:
            return set_account(host, name, token_file=path, take_over=take_over == "yes", token_label=label, key_lost=key_lost == "yes")

        try:  # sent twice at once (a double-click): Apple is asked once, both answers alike
            row = await once(request, form_id, lambda: with_token_file(host, data, renew_with))
        except (ClaimedByOtherMdm, WrongKey) as exc:
            return confirmation_for(request, exc, f"/vpp/accounts/{name}/renew", data, {"form_id": form_id, **confirmed(take_over, key_lost)})
        if "notice" in row:  # notifications turned off: their secret was stored with a lost key
            return redirect(request, "/vpp", f"{renewed_message(name, row)}; but {for_request(request, row['notice'])}", "error")
        return redirect(request, "/vpp", renewed_message(name, row))

    @router.post("/vpp/accounts/{name}/interval")
    def interval(request: Request, name: str, interval_seconds: str = Form("")) -> Response:
        """Set the Account Synchronization Interval (stored here, Apple not asked): sent twice,
        the same value is set twice and both answers say so, so it carries no one-time id."""
        host = host_of(request)
        _account(host, name)
        seconds = check_interval(host, interval_seconds, INTERVAL)
        set_account(host, name, interval=seconds)
        return redirect(request, "/vpp", f"{name}: Account Synchronization Interval set to {seconds} seconds")

    @router.post("/vpp/accounts/{name}/rename")
    def rename(request: Request, name: str, new_name: str = Form(""), form_id: str = Form("")) -> Response:
        """Rename the account as ``mdm vpp account rename OLD NEW`` does (a sync of it running:
        back to the page, saying so). Sent twice (a double-click): renamed once, both answers
        say so (the second is not a 404 for the old name)."""
        host = host_of(request)

        def work() -> str:
            _account(host, name)
            return f"account {name} renamed to {rename_account(host, name, new_name.strip())['name']}"

        try:
            done = form_once(request, form_id, PAGE, work)
        except SyncRunning as exc:
            return redirect(request, "/vpp", str(exc), "error")
        return redirect(request, "/vpp", done)

    @router.post("/vpp/accounts/{name}/notifications")
    def notifications(request: Request, name: str, notifications: str = Form(""), form_id: str = Form("")) -> Response:
        """Turn Apple's notifications on (giving Apple ``[web] public_url``) or off, as
        ``mdm vpp account set NAME --notifications on|off`` does. Sent twice at once (a
        double-click): Apple is asked once, where each request gave it a new secret and the one
        stored could be the other's (every notification refused then)."""
        host = host_of(request)
        _account(host, name)
        wanted = _on_off(notifications, "notifications")
        check_form_id(form_id, PAGE)  # Turn on and Turn off are buttons of one form: each its own outcome
        done = run_form(request, f"{form_id}-{wanted}" if form_id else "", lambda: set_account(host, name, notifications=wanted))
        account = done[0]
        return redirect(request, "/vpp", f"{name}: Apple's notifications {account['notifications']}")

    @router.post("/vpp/accounts/{name}/sync")
    def synchronize(request: Request, name: str, full: str = Form(""), form_id: str = Form("")) -> Response:
        """Start a sync and show its run. Sent twice at once (a double-click): both answers show
        the run started, where the second said a sync was already running."""
        try:
            run_id = form_once(request, form_id, PAGE, lambda: start_sync(request, name, full == "yes", "console"))
        except WebError as exc:
            if exc.status == 409:
                return redirect(request, "/vpp", exc.message, "error")
            raise
        return redirect(request, f"/vpp/runs/{run_id}", f"synchronization of {name} started")

    @router.get("/vpp/runs/{run_id}")
    def run_page(request: Request, run_id: int = row_id()) -> Response:
        run = get_run(host_of(request), run_id, "an account's Sync runs")
        return render(request, "vpp/run.html", {"run": run, "progress": run["progress"]})  # from any process (sync.stored_progress)

    @router.get("/vpp/accounts/{name}/remove")
    def remove_form(request: Request, name: str) -> Response:
        require_change(request)
        account = describe_account(_account(host_of(request), name))
        return render(request, "vpp/remove.html", {"account": account, "form_id": new_form_id()})

    @router.post("/vpp/accounts/{name}/remove")
    def remove(request: Request, name: str, confirm: str = Form(""), form_id: str = Form("")) -> Response:
        """Remove the account as ``mdm vpp account remove`` does, its name typed to confirm. Sent
        twice (a double-click): removed once, both answers say so (the second is not a 404)."""
        host = host_of(request)

        def work() -> str | None:
            _account(host, name)
            if confirm != name:
                raise WebError(422, f"type the account name '{name}' to confirm its removal")
            return remove_account(host, name)

        try:
            notice = form_once(request, form_id, PAGE, work)
        except SyncRunning as exc:  # nothing removed: back to the page that shows the sync
            return redirect(request, "/vpp", str(exc), "error")
        if notice:  # removed, but Apple keeps posting its notifications
            return redirect(request, "/vpp", f"account {name} removed with its assets, users and licenses; but {notice}", "error")
        return redirect(request, "/vpp", f"account {name} removed with its assets, users and licenses")

    @router.get("/vpp/accounts/{name}/assets")
    def assets(request: Request, name: str, q: str = "", sort: str = "name", dir: str = "asc", page: int = Query(1, ge=1)) -> Response:
        host = host_of(request)
        account = _account(host, name)
        notices: list[str] = []  # an unknown sort or direction: said, where it fell back on the default silently
        sort, direction = chosen("sort", sort, ["name", *SORTS], notices), chosen("dir", dir, ["asc", "desc"], notices)
        found, rows = assets_table(host, account, q, sort, direction == "desc", page)
        context = {"account": describe_account(account), "rows": rows, "found": found, "q": q, "sort": sort, "direction": direction, "notices": notices}
        return render(request, "vpp/assets.html", context)

    @router.get("/vpp/accounts/{name}/assets/{adam_id}/{pricing}")
    def asset(request: Request, name: str, adam_id: str, pricing: str, tab: str = "user", after: str | None = None) -> Response:
        host = host_of(request)
        account = _account(host, name)
        row = _asset(host, account, adam_id, pricing)
        pricing = row.pricing_param  # as stored: "stdq" in the address shows the STDQ asset
        notices: list[str] = []
        kind = chosen("tab", tab, ["user", "device"], notices)
        with host.db.session() as session:
            licenses = keyset(session, views.licenses_query(account.id, adam_id, pricing, kind=kind), views.LICENSE_KEY, limit=PAGE_SIZE, cursor=after)
        label, icon = asset_label(host, adam_id)
        return render(
            request,
            "vpp/asset.html",
            {
                "account": describe_account(account),
                "asset": views.asset_row(row, name),
                "name": label,
                "icon": icon,
                "tab": kind,
                "licenses": [views.license_row(*r, detail=True) for r in licenses.items],
                "first": not after,
                "next": licenses.next_cursor,
                "user_count": views.count_licenses(host, account.id or 0, adam_id, pricing, "user"),
                "device_count": views.count_licenses(host, account.id or 0, adam_id, pricing, "device"),
                "chart": chart(views.asset_history(host, account.id or 0, adam_id, pricing), row),
                "notices": notices,
            },
        )

    @router.get("/vpp/accounts/{name}/users")
    def users(request: Request, name: str, q: str = "", page: int = Query(1, ge=1)) -> Response:
        host = host_of(request)
        account = _account(host, name)
        columns = [VppUser.client_user_id, VppUser.email, VppUser.status]
        query = search(views.users_query(account.id), q, columns)
        count = search(select(col(VppUser.client_user_id)).where(col(VppUser.account_id) == account.id), q, columns)
        with host.db.session() as session:
            found = numbered(session, query, [VppUser.client_user_id], page=page, count=count)
        return render(
            request, "vpp/users.html", {"account": describe_account(account), "rows": [views.user_row(*r) for r in found.items], "found": found, "q": q}
        )

    @router.get("/vpp/accounts/{name}/runs")
    def runs(request: Request, name: str, page: int = Query(1, ge=1)) -> Response:
        from .sync.run import run_rows, runs_query

        host = host_of(request)
        account = _account(host, name)
        with host.db.session() as session:
            found = numbered(session, runs_query().where(col(VppSyncRun.account_id) == account.id), [col(VppSyncRun.id).desc()], page=page)
            rows = run_rows(host, found.items)
        return render(request, "vpp/runs.html", {"account": describe_account(account), "runs": rows, "found": found, "changes": format_changes})

    return router


# ---------------------------------------------------------------------- API


def api_router() -> APIRouter:
    """``/api/v1/vpp``: the same field names as ``mdm vpp ... --json`` (Apple's); every list is
    keyset-paged (``limit``, ``cursor``)."""
    router = rest_router(prefix="/vpp", tags=["vpp"])

    def account_filter(host: Host, account: str | None) -> int | None:
        return None if account is None else _account(host, account).id

    @router.get("/accounts", response_model=page_of(api_models.Account))
    def api_accounts(request: Request, limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """The accounts (never their tokens), as ``mdm vpp account list --json``, by name."""
        host = host_of(request)
        with host.db.session() as session:
            page = keyset(session, select(VppAccount), [VppAccount.name], limit=limit, cursor=cursor)
        return {"items": [_api_account(request, a) for a in describe_accounts(host, [a for (a,) in page.items])], "next_cursor": page.next_cursor}

    @router.get("/accounts/{name}", response_model=api_models.Account)
    def api_account(request: Request, name: str) -> dict[str, Any]:
        """One account."""
        host = host_of(request)
        [row] = describe_accounts(host, [_account(host, name)])
        return _api_account(request, row)

    @router.post("/accounts", status_code=201, openapi_extra=json_body(ACCOUNT_FIELDS, required=["name", "token"]))
    async def api_add_account(request: Request) -> dict[str, Any]:
        """Add an account as the console's Add and ``mdm vpp account add`` do: ``name`` and
        ``token`` (the .vpptoken file's text) required; ``interval_seconds``, ``notifications``
        (``"on"``/``"off"``), ``service_url``, ``take_over`` (true: claim a location another MDM
        manages), ``key_lost`` (true: as ``--key-lost``, store it although the host's key reads
        none of the stored tokens) optional. 201 with the account; 409 for a name taken, a location already an
        account here or another MDM's location."""
        host = host_of(request)
        body = await json_object(request, send=ADD_SHAPE, shape=ADD_SHAPE)
        _known_fields(body, ADDABLE, ADD_SHAPE)
        missing = [f for f in ("name", "token") if f not in body]
        if missing:
            raise WebError(422, f"{' and '.join(missing)} missing: {ADD_SHAPE}")
        if not isinstance(body["name"], str):
            raise WebError(422, f"name {json.dumps(body['name'], default=str)[:50]} is not valid: give the account's name as text")
        name = body["name"].strip()
        service_url = body.get("service_url")
        if service_url is not None and not isinstance(service_url, str):
            raise WebError(422, "service_url must be text: an http(s) URL, or leave it out for Apple's")
        seconds = check_interval(host, body["interval_seconds"], "interval_seconds") if "interval_seconds" in body else None
        wanted = _on_off(body["notifications"], "notifications") if "notifications" in body else None
        take_over, key_lost = _flag(body, "take_over"), _flag(body, "key_lost")
        data = _api_token(host, body["token"])
        with host.db.session() as session:
            check_name_free(session, name)  # before the token is read (409, in the API's words: WORDING)
        account = _claiming(
            lambda: with_token_file(
                host,
                data,
                lambda path: add_account(
                    host,
                    name,
                    path,
                    interval=seconds,
                    service_url=service_url,
                    take_over=take_over,
                    notifications=wanted,
                    token_label=API_TOKEN,
                    key_lost=key_lost,
                ),
            )
        )
        [row] = describe_accounts(host, [_account(host, account["name"])])
        return _api_account(request, row)

    @router.patch("/accounts/{name}", openapi_extra=json_body({k: v for k, v in ACCOUNT_FIELDS.items() if k in PATCHABLE}))
    async def api_change_account(request: Request, name: str) -> dict[str, Any]:
        """Change ``interval_seconds`` (the Account Synchronization Interval), ``notifications``
        (``"on"``: give Apple ``[web] public_url``; ``"off"``) and/or renew the ``token`` (the
        new .vpptoken file's text; ``take_over`` true to claim the location back from another
        MDM, ``key_lost`` true as ``--key-lost``), as ``mdm vpp account set NAME --interval SECONDS
        --notifications on|off --token-file FILE [--take-over] [--key-lost]`` does; or rename it, ``{"name": NEW}`` alone, as ``mdm
        vpp account rename NAME NEW`` does (409 while a sync of it runs, or for a name taken)."""
        host = host_of(request)
        _account(host, name)
        body = await json_object(request, send="send a JSON object", shape="the body must be a JSON object")
        _known_fields(body, PATCHABLE, PATCH_SHAPE)
        if not set(body) & PATCHABLE:
            raise WebError(422, PATCH_SHAPE)
        seconds = check_interval(host, body["interval_seconds"], "interval_seconds") if "interval_seconds" in body else None
        wanted = _on_off(body["notifications"], "notifications") if "notifications" in body else None
        if "name" in body:
            return _api_account(request, _api_rename(host, name, body))
        take_over, key_lost = _flag(body, "take_over"), _flag(body, "key_lost")
        if "token" not in body:
            if "take_over" in body:
                raise WebError(422, '"take_over" goes with "token": renewing the token claims the location back')
            if "key_lost" in body:
                raise WebError(422, '"key_lost" goes with "token": it stores the token sent with a key that reads none of the stored ones')
            return _api_account(request, set_account(host, name, interval=seconds, notifications=wanted))
        data = _api_token(host, body["token"])
        row = _claiming(
            lambda: with_token_file(
                host,
                data,
                lambda path: set_account(
                    host, name, interval=seconds, notifications=wanted, token_file=path, take_over=take_over, token_label=API_TOKEN, key_lost=key_lost
                ),
            )
        )
        return _api_account(request, row)

    @router.delete("/accounts/{name}")
    def api_remove_account(request: Request, name: str) -> dict[str, Any]:
        """Remove an account as the console's Remove and ``mdm vpp account remove`` do: its
        mirror (assets, licenses, VPP users, runs) is forgotten here, the licenses stay assigned
        at Apple; Apple is told to stop its notifications (``notice`` says when it could not be);
        409 while a sync of it runs (:class:`SyncRunning`)."""
        host = host_of(request)
        _account(host, name)
        forgotten = account_contents(host, name)
        notice = remove_account(host, name)
        return {
            "name": name,
            "removed": True,
            "forgotten": {k: forgotten[k] for k in ("assets", "licenses", "users")},
            "notice": for_request(request, notice) if notice else None,
        }

    @router.post("/accounts/{name}/sync", status_code=202)
    def api_sync(request: Request, name: str, full: bool = False) -> JSONResponse:
        """Start a sync in the background: 202 with the run id (409 if one is running)."""
        run_id = start_sync(request, name, full, "api")
        return JSONResponse({"id": run_id, "account": name, "status": "running", "run": f"/api/v1/vpp/runs/{run_id}"}, status_code=202)

    @router.get("/runs", response_model=page_of(api_models.Run))
    def api_runs(request: Request, account: str | None = None, limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """Sync runs, newest first, as ``mdm vpp runs --json``."""
        from .sync.run import run_rows, runs_query

        host = host_of(request)
        query = runs_query()
        if account is not None:
            query = query.where(VppSyncRun.account_id == account_filter(host, account))
        with host.db.session() as session:
            page = keyset(session, query, [VppSyncRun.id], limit=limit, cursor=cursor, descending=True)
            return {"items": [with_error_reworded(request, r) for r in run_rows(host, page.items)], "next_cursor": page.next_cursor}

    @router.get("/runs/{run_id}", response_model=api_models.Run)
    def api_run(request: Request, run_id: int = row_id()) -> dict[str, Any]:
        """One sync run: ``status`` is ``running`` until it ends (``ok``, ``error``)."""
        return with_error_reworded(request, get_run(host_of(request), run_id))  # its error's advice in the API's words

    @router.get("/assets", response_model=page_of(api_models.Asset))
    def api_assets(request: Request, account: str | None = None, limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """Assets with their counts, as ``mdm vpp assets --json``."""
        host = host_of(request)
        query = views.assets_query(account_filter(host, account))
        with host.db.session() as session:
            page = keyset(session, query, views.ASSET_KEY, limit=limit, cursor=cursor)
        return {"items": [views.asset_row(*r) for r in page.items], "next_cursor": page.next_cursor}

    @router.get("/assets/{adam_id}/history", response_model=page_of(api_models.AssetCount))
    def api_history(
        request: Request,
        adam_id: str,
        account: str,
        pricing: str = Query("STDQ", description="STDQ or PLUS, in any case"),
        limit: int = Limit,
        cursor: str | None = Cursor,
    ) -> dict[str, Any]:
        """The asset's counts at every sync that changed them, oldest first; ``pricing``: STDQ
        or PLUS, any case."""
        host = host_of(request)
        acc = _account(host, account)
        asset = _asset(host, acc, adam_id, pricing)
        with host.db.session() as session:
            page = keyset(session, views.asset_history_query(acc.id, adam_id, asset.pricing_param), [VppAssetCount.id], limit=limit, cursor=cursor)
        return {"items": [views.history_row(r) for (r,) in page.items], "next_cursor": page.next_cursor}

    @router.get("/licenses", response_model=page_of(api_models.License))
    def api_licenses(
        request: Request,
        account: str | None = None,
        asset: str | None = None,
        device: str | None = None,
        user: str | None = None,
        limit: int = Limit,
        cursor: str | None = Cursor,
    ) -> dict[str, Any]:
        """Licenses, as ``mdm vpp licenses --json``."""
        host = host_of(request)
        account_id = account_filter(host, account)
        query = views.licenses_query(account_id, asset, None, device, user)
        with host.db.session() as session:
            views.check_license_filters(session, account_id, asset, device, user)  # naming nothing: 404 (malformed: 422)
            page = keyset(session, query, views.LICENSE_KEY, limit=limit, cursor=cursor)
        return {"items": [views.license_row(*r) for r in page.items], "next_cursor": page.next_cursor}

    @router.get("/users", response_model=page_of(api_models.VppUser))
    def api_users(request: Request, account: str | None = None, limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """VPP users, as ``mdm vpp users --json``."""
        host = host_of(request)
        with host.db.session() as session:
            page = keyset(session, views.users_query(account_filter(host, account)), views.USER_KEY, limit=limit, cursor=cursor)
        return {"items": [views.user_row(*r) for r in page.items], "next_cursor": page.next_cursor}

    return router


def _api_rename(host: Host, name: str, body: dict[str, Any]) -> Account:
    """``PATCH {"name": NEW}``: the rename alone (the other changes go in a PATCH of the new
    name), as ``mdm vpp account rename`` does it."""
    if set(body) != {"name"}:
        raise WebError(422, f'"name" goes alone: rename the account, then PATCH /api/v1/vpp/accounts/{body["name"]} with the other changes')
    if not isinstance(body["name"], str):
        raise WebError(422, f"name {json.dumps(body['name'], default=str)[:50]} is not valid: give the account's new name as text")
    return rename_account(host, name, body["name"].strip())


def _on_off(value: Any, field: str) -> bool:
    """True for ``"on"``, False for ``"off"``; a 422 naming ``field`` otherwise (checked before
    anything changes)."""
    if value in ("on", "off"):
        return bool(value == "on")
    raise WebError(422, f'{field} {json.dumps(value, default=str)} is not valid: give "on" or "off"')


ADD_SHAPE = (
    'send {"name": NAME, "token": "<the text of the .vpptoken file>"}, '
    'optionally with interval_seconds, notifications ("on"|"off"), service_url, take_over and key_lost (true|false)'
)
PATCH_SHAPE = (
    'send {"interval_seconds": SECONDS}, {"notifications": "on"|"off"} and/or '
    '{"token": "<the text of the new .vpptoken file>"} (with "take_over": true to claim the location back, "key_lost": true to store it '
    'with a key that reads none of the stored tokens), or {"name": NEW} alone'
)


def _known_fields(body: dict[str, Any], known: set[str], shape: str) -> None:
    """A 422 naming the fields of ``body`` the route does not take (never their values)."""
    unknown = sorted(set(body) - known)
    if unknown:
        raise WebError(422, f"unknown field(s): {', '.join(unknown)[:200]}; {shape}")


def _flag(body: dict[str, Any], field: str) -> bool:
    """The body's ``take_over`` or ``key_lost``: a JSON boolean (false when left out)."""
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise WebError(422, f"{field} {json.dumps(value, default=str)[:50]} is not valid: give true or false")
    return value


def _api_token(host: Host, token: Any) -> bytes:
    """The ``token`` of a JSON body (the .vpptoken file's text) as the file's bytes; a 422 or
    413 that never shows it."""
    if not isinstance(token, str) or not token.strip():
        raise WebError(422, "token must be the text of the .vpptoken file downloaded from Apple School Manager or Apple Business Manager")
    data = token.strip().encode()
    limit = web_settings(host).upload_max_bytes
    if len(data) > limit:
        raise WebError(413, f"the token sent is larger than {limit} bytes: a .vpptoken is a few hundred bytes; send the text of the file downloaded from Apple")
    return data


def _claiming(work: Callable[[], Account]) -> Account:
    """``work`` (an add or a renewal); another MDM's location is a 409 asking to send the
    request again with ``"take_over": true``."""
    try:
        return work()
    except ClaimedByOtherMdm as exc:
        raise WebError(409, str(exc)) from None  # its --take-over: "send this again with "take_over": true" (WORDING)


def _api_account(request: Request, account: Account) -> dict[str, Any]:
    """An account as ``mdm vpp account list --json`` has it, its ``action`` in the API's words."""
    shown = {**account, "action": for_request(request, account["action"]), "last_sync_result": _reworded(request, account["last_sync_result"])}
    return {**shown, "notice": for_request(request, account["notice"])} if "notice" in account else shown


def _reworded(request: Request, text: str | None) -> str | None:
    """``text`` (an account's last sync result: ``error: ...`` holds the run's error) in the
    words of ``request``'s surface; ``None`` stays ``None``."""
    return for_request(request, text) if text else text
