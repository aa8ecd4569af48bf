"""The mobile_apps plugin's console pages and REST routes: Mobile Applications (published
apps per platform), installing an app on devices or for users from a form, install status,
reclaiming the licenses a device or a user holds, and the reclaims recorded.

Uses the VPP plugin only through the mobile_apps modules (which use its hooks): nothing here
imports a VPP module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlmodel import col

from mdm_core.db.typed import values_of
from mdm_core.errors import MdmError, UsageError
from mdm_core.models import Device, MdmUser
from mdm_core.web.helpers import WebError, host_of, json_object, render, rest_router, row_id
from mdm_core.web.once import form_once, new_form_id
from mdm_core.web.openapi import json_body, one_of
from mdm_core.web.paging import Cursor, Limit, keyset, numbered, search
from mdm_core.web.schemas import page_of, row_model
from mdm_core.web.wording import for_request, with_error_reworded

from . import api_models
from .accounts import unknown_account
from .catalog import APP_KINDS, APP_ORDER, APP_PLATFORMS, APP_STATES, app_dict, apps_query
from .installs.commands import INSTALL_STATUSES, installs_query
from .installs.request import Outcome, install_batch
from .installs.wording import WORDING, Refused
from .models import AppMetadata, Install, MobileApp, Reclaim
from .vpp_port import VppPort, VppUnavailable

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.web.registry import WebRegistry

#: an app filed under an account the VPP plugin does not know (``accounts.unknown_account``)
ACCOUNT_WORDING = [
    (
        r"\(`mdm events failures` shows a delivery that failed\)",
        "(the Events page lists a delivery that failed)",
        "(GET /api/v1/events/failures lists a delivery that failed)",
    )
]
TEMPLATES = Path(__file__).resolve().parent / "templates"
SERIALS_RE = re.compile(r"[\s,;]+")
MAX_TARGETS = 1000
PICK_LIMIT = 500  # devices and users offered in the install form's lists (more: type serial numbers)
APP_PAGE = "the application's page"  # what a form with an invalid one-time id says to open again
_TEXTS = {"type": "array", "items": {"type": "string", "minLength": 1}}
#: the body of an install or a reclaim, for the OpenAPI document
TARGETS: dict[str, Any] = {"devices": _TEXTS | {"description": "serial numbers"}, "users": _TEXTS | {"description": "MDM user ids"}}
UNUSED: dict[str, Any] = {name: {"type": "boolean"} for name in ("unused", "dry_run", "yes")}
_REFUSED_RESULTS = {
    "type": "object",
    "required": ["ok", "results"],
    "properties": {"ok": {"const": False}, "results": {"type": "array", "items": {"type": "object"}}},
}
REFUSED_TARGET: dict[str, Any] = {
    "description": "a target was refused (or its license is irrevocable): the answer of a 200 with ok false; "
    "or the request was refused as a whole, nothing done (the VPP plugin not loaded, a reclaim to confirm with yes): an error",
    "content": {"application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Error"}, _REFUSED_RESULTS]}}},
}


def register(web: WebRegistry) -> None:
    """Add the pages, the navigation entry and the API routes."""
    web.add_pages(page_router(), plugin="mobile_apps", templates=TEMPLATES)
    web.add_api(api_router(), plugin="mobile_apps")
    web.add_nav("Mobile Applications", "/apps", order=20, plugin="mobile_apps")
    web.add_wordings([*WORDING, *ACCOUNT_WORDING])


def _require_vpp(host: Host) -> None:
    try:
        VppPort(host).require("apps cannot be installed with a VPP license")
    except VppUnavailable as exc:
        raise WebError(409, str(exc)) from None


def _app(host: Host, app_id: int) -> tuple[MobileApp, AppMetadata | None]:
    with host.db.session() as session:
        row = session.execute(apps_query().where(MobileApp.id == app_id)).first()
    if row is None:
        raise WebError(404, f"no application {app_id}: see Mobile Applications (synchronize the VPP account after a purchase)")
    return row[0], row[1]


def account_gone(host: Host, app: MobileApp) -> str | None:
    """Why ``app``'s licenses cannot be reclaimed here when its VPP account is not on this host
    any more (removed; or renamed, and mobile_apps not told yet), else ``None``: the line the
    command line and the API say (:func:`.accounts.unknown_account`), reworded where shown."""
    port = VppPort(host)
    names = sorted(a["name"] for a in port.accounts()) if port.available else []
    if not port.available or app.account in names:
        return None
    return unknown_account(app.account, names, f"app {app.id}", "reclaim")


def run_install(host: Host, selector: str, devices: list[str], users: list[str]) -> Outcome:
    """Install on devices and/or for users; one outcome with a line per target."""
    _require_vpp(host)
    if not devices and not users:
        raise WebError(422, "no target: give device serial numbers and/or MDM users")
    if len(devices) + len(users) > MAX_TARGETS:
        raise WebError(422, f"too many targets at once: at most {MAX_TARGETS}")
    with _unknown_app_is_404():  # one plan: the devices and users together are all or nothing
        return install_batch(host, selector, devices, users)


@contextmanager
def _unknown_app_is_404() -> Iterator[None]:
    """An application the selector does not find ("no application ...") is a 404; a usage
    error or any other error passes unchanged."""
    try:
        yield
    except UsageError:
        raise
    except MdmError as exc:
        if str(exc).startswith("no application"):
            raise WebError(404, str(exc)) from None
        raise


def run_reclaim(host: Host, selector: str, devices: list[str], users: list[str]) -> tuple[bool, list[dict[str, Any]]]:
    """Reclaim the app's licenses held by devices and/or users (``mdm apps reclaim APP
    --device``/``--user``) in one batch (the licenses and assets read once, one request to
    Apple per asset): whether all went back (or are pending), and a line per license or per
    target that holds none, in the order the targets were given."""
    from .reclaims import plan_holders_reclaim, reclaim, reclaim_ok, reclaim_result, unknown_holders

    _require_vpp(host)
    given: dict[tuple[str, str], str] = {}  # each holder once, as the caller spelt it first
    for kind, raw in [("device", s) for s in devices] + [("user", u) for u in users]:
        given.setdefault((kind, raw.strip().upper() if kind == "device" else raw.strip()), raw)
    targets = list(given)
    if not targets:
        raise WebError(422, "no target: give device serial numbers and/or MDM users whose license to reclaim")
    if len(targets) > MAX_TARGETS:
        raise WebError(422, f"too many targets at once: at most {MAX_TARGETS}")
    with _unknown_app_is_404():  # a blank holder is refused before the first is reclaimed
        plan = plan_holders_reclaim(host, selector, [t for k, t in targets if k == "device"], [t for k, t in targets if k == "user"])
        rows = reclaim(host, selector, plan=plan) if plan.licenses else []
    by_holder: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_holder.setdefault((row["kind"], row["target"]), []).append(row)
    unknown = unknown_holders(host, [t for t in targets if t not in by_holder])
    lines: list[dict[str, Any]] = []
    for kind, target in targets:
        found = by_holder.get((kind, target), [])
        lines += [
            {"target": given[kind, target], "adamId": r["adam_id"], "pricingParam": r["pricing_param"], "status": r["status"], "message": reclaim_result(r)}
            for r in found
        ] or [{"target": given[kind, target], "adamId": None, "pricingParam": None, **_holds_none(kind, (kind, target) in unknown)}]
    return reclaim_ok(rows) and len(unknown) < len(targets), lines  # not ok when none of the targets exists


def _holds_none(kind: str, unknown: bool) -> dict[str, str]:
    """The status and message of a reclaim's target holding no license of the app: ``unknown``
    when this MDM does not know it either (the command line's words, reworded where shown)."""
    if unknown:
        from .reclaims import UNKNOWN_HOLDER

        return {"status": "unknown", "message": UNKNOWN_HOLDER[kind]}
    return {"status": "none", "message": "holds no license of this app"}


def page_router() -> APIRouter:
    """The console pages."""
    router = APIRouter()

    @router.get("/apps")
    def apps(request: Request, platform: str = "", q: str = "", state: str = "published", page: int = Query(1, ge=1)) -> Response:
        query = search(
            apps_query(platform or None, state=None if state in ("", "all") else state),  # a misspelt one: 422, as the API
            q,
            [AppMetadata.name, MobileApp.adam_id, AppMetadata.bundle_id],
        )
        with host_of(request).db.session() as session:
            found = numbered(session, query, APP_ORDER, page=page)
        return render(
            request, "mobile_apps/apps.html", {"rows": [app_dict(a, m) for a, m in found.items], "found": found, "platform": platform, "q": q, "state": state}
        )

    @router.get("/apps/installs")
    def installs(request: Request, status: str = "", page: int = Query(1, ge=1)) -> Response:
        with host_of(request).db.session() as session:
            found = numbered(session, installs_query(status or None), [col(Install.id).desc()], page=page)
        return render(request, "mobile_apps/installs.html", {"rows": [i.model_dump() for (i,) in found.items], "found": found, "status": status})

    @router.get("/apps/reclaims")
    def reclaims(request: Request, everything: bool = Query(False, alias="all"), page: int = Query(1, ge=1)) -> Response:
        from .reclaims import count_closed, reclaim_dict, reclaims_query

        host = host_of(request)
        with host.db.session() as session:
            found = numbered(session, reclaims_query(everything), [col(Reclaim.id)], page=page)
        hidden = 0 if everything else count_closed(host)
        rows = [reclaim_dict(r) for (r,) in found.items]
        return render(request, "mobile_apps/reclaims.html", {"rows": rows, "found": found, "all": everything, "hidden": hidden})

    @router.get("/apps/{app_id}")
    def app_page(request: Request, app_id: int = row_id(), page: int = Query(1, ge=1)) -> Response:
        host = host_of(request)
        app, meta = _app(host, app_id)
        platforms = {"iOS": ("iOS", "iPadOS")}.get(app.platform, (app.platform,))
        with host.db.session() as session:
            devices = [
                d.model_dump()
                for d in session.execute(
                    select(Device).where(col(Device.platform).in_(platforms)).order_by(col(Device.serial_number)).limit(PICK_LIMIT)
                ).scalars()
            ]
            users = [u.model_dump() for u in session.execute(select(MdmUser).order_by(MdmUser.id).limit(PICK_LIMIT)).scalars()]
            found = numbered(
                session,
                installs_query().where(Install.adam_id == app.adam_id, Install.pricing_param == app.pricing_param, col(Install.account) == app.account),
                [col(Install.id).desc()],
                page=page,
            )
        return render(
            request,
            "mobile_apps/app.html",
            {
                "app": app_dict(app, meta),
                "devices": devices,
                "users": users,
                "installs": [i.model_dump() for (i,) in found.items],
                "found": found,
                "pick_limit": PICK_LIMIT,
                "account_gone": account_gone(host, app) if app.kind == "app" else None,  # no reclaim form then
                "form_id": new_form_id(),  # the install and reclaim forms' (each its own path)
            },
        )

    @router.post("/apps/{app_id}/install")
    def install_form(
        request: Request, app_id: int = row_id(), serials: str = Form(""), devices: list[str] = Form([]), user: str = Form(""), form_id: str = Form("")
    ) -> Response:
        host = host_of(request)
        app, meta = _app(host, app_id)
        targets = sorted({s for s in SERIALS_RE.split(serials) if s} | set(devices))
        try:  # sent twice at once: the first's outcome twice, where Apple was asked twice and the second said "already queued"
            outcome = form_once(request, form_id, APP_PAGE, lambda: run_install(host, str(app.id), targets, [user] if user.strip() else []))
        except Refused as exc:  # the error page says it in the console's words (WORDING)
            raise WebError(400, str(exc)) from None
        return render(
            request,
            "mobile_apps/result.html",
            {"app": app_dict(app, meta), "outcome": outcome.for_console(), "ok": outcome.ok, "action": "install"},
            status_code=200 if outcome.ok else 409,
        )

    @router.post("/apps/{app_id}/reclaim")
    def reclaim_form(
        request: Request, app_id: int = row_id(), serials: str = Form(""), user: str = Form(""), confirm: str = Form(""), form_id: str = Form("")
    ) -> Response:
        host = host_of(request)
        app, meta = _app(host, app_id)
        devices, users = sorted({s for s in SERIALS_RE.split(serials) if s}), [user.strip()] if user.strip() else []
        if (devices or users) and confirm != "yes":  # it removes the app from the devices: asked, as removing an account is
            raise WebError(422, "tick 'Take these licenses back' to confirm: the app is removed from the devices that hold them")
        gone = account_gone(host, app)  # a form left open in another tab before the account was removed
        if gone is not None and (devices or users):
            raise WebError(409, gone)
        ok, lines = form_once(request, form_id, APP_PAGE, lambda: run_reclaim(host, str(app.id), devices, users))  # not "holds no license" the second time
        return render(
            request, "mobile_apps/result.html", {"app": app_dict(app, meta), "outcome": lines, "ok": ok, "action": "reclaim"}, status_code=200 if ok else 409
        )

    return router


def api_router() -> APIRouter:
    """``/api/v1/apps``: as ``mdm apps list --json`` and ``mdm apps install --json``."""
    router = rest_router(prefix="/apps", tags=["mobile_apps"])

    @router.get("", response_model=page_of(api_models.App))
    def api_apps(
        request: Request,
        platform: str | None = Query(None, description=f"{', '.join(sorted(set(APP_PLATFORMS.values())))} (in any case; iPadOS is iOS)"),
        kind: str | None = one_of(APP_KINDS),
        state: str | None = one_of(APP_STATES),
        limit: int = Limit,
        cursor: str | None = Cursor,
    ) -> dict[str, Any]:
        """Published (and retired) applications and books with their metadata and counts, in the
        order of ``mdm apps list --json`` (by name: ``APP_ORDER``), with its ``--platform``,
        ``--kind`` and ``--state``."""
        with host_of(request).db.session() as session:
            page = keyset(session, apps_query(platform, kind, state), APP_ORDER, limit=limit, cursor=cursor)
        return {"items": [app_dict(a, m) for a, m in page.items], "next_cursor": page.next_cursor}

    @router.get("/installs", response_model=page_of(row_model(Install, "Install")))
    def api_installs(request: Request, status: str | None = one_of(INSTALL_STATUSES), limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """Recorded installs, newest first: queued, pending (Apple has not confirmed) or failed."""
        with host_of(request).db.session() as session:
            page = keyset(session, installs_query(status), [Install.id], limit=limit, cursor=cursor, descending=True)
        return {"items": [with_error_reworded(request, values_of(i)) for (i,) in page.items], "next_cursor": page.next_cursor}

    @router.get("/reclaims", response_model=page_of(row_model(Reclaim, "Reclaim")))
    def api_reclaims(
        request: Request,
        everything: bool = Query(False, alias="all", description="every reclaim recorded, not only the open ones (`mdm apps reclaims --all`)"),
        limit: int = Limit,
        cursor: str | None = Cursor,
    ) -> dict[str, Any]:
        """Reclaims of VPP licenses, oldest first, as ``mdm apps reclaims --json``: the open ones
        (pending, failed and not superseded, irrevocable), every one with ``all=true``."""
        from .reclaims import reclaims_query

        with host_of(request).db.session() as session:
            page = keyset(session, reclaims_query(everything), [Reclaim.id], limit=limit, cursor=cursor)
        return {"items": [with_error_reworded(request, values_of(r), "last_error") for (r,) in page.items], "next_cursor": page.next_cursor}

    @router.post("/{app}/install", openapi_extra=json_body(TARGETS), responses={409: REFUSED_TARGET})
    async def api_install(request: Request, app: str) -> JSONResponse:
        """Install with a VPP license: ``{"devices": [serials], "users": [MDM user ids]}``.
        200 when every target is queued, licensed or pending; 409 when one was refused."""
        devices, users = await _targets(request)
        outcome = run_install(host_of(request), app, devices, users)
        results = [{**line, "message": for_request(request, line["message"])} for line in outcome.as_dicts()]  # the API's words
        return JSONResponse(
            {"app": outcome.asset.label if outcome.asset else None, "ok": outcome.ok, "results": results}, status_code=200 if outcome.ok else 409
        )

    @router.post("/reclaim", openapi_extra=json_body(UNUSED, required=["unused"]), responses={409: REFUSED_TARGET})
    async def api_reclaim_all(request: Request) -> JSONResponse:
        """``{"unused": true}``: the licenses of every app held by devices and users removed from
        this MDM, as ``mdm apps reclaim --all --unused``, with ``"dry_run": true`` (list them)
        or ``"yes": true`` (confirmed); see :func:`run_reclaim_unused`."""
        body = await _reclaim_body(request, UNUSED_KEYS)
        if body.get("unused") is not True:
            raise WebError(
                422, 'give "unused": true (the licenses of devices and users removed from this MDM); one holder\'s: POST /api/v1/apps/ADAM_ID/reclaim'
            )
        return run_reclaim_unused(host_of(request), None, dry_run=body.get("dry_run") is True, yes=body.get("yes") is True)

    @router.post("/{app}/reclaim", openapi_extra=json_body(TARGETS | UNUSED), responses={409: REFUSED_TARGET})
    async def api_reclaim(request: Request, app: str) -> JSONResponse:
        """Reclaim the app's licenses held by ``{"devices": [serials], "users": [MDM user ids]}``
        (as ``mdm apps reclaim APP --device/--user``): a line per license (``done``, ``pending``
        when Apple cannot be reached, ``failed``, ``irrevocable``) or per target holding none
        (``none``; ``unknown``: not enrolled, not an MDM user). 200 when every license went back
        or is pending; 409 otherwise, and when every target is unknown.
        ``{"unused": true}`` instead: those held by devices and users removed from this MDM
        (``mdm apps reclaim APP --unused``, :func:`run_reclaim_unused`)."""
        body = await _reclaim_body(request, {"devices", "users", *UNUSED_KEYS})
        if "unused" in body:
            if set(body) & {"devices", "users"} or body["unused"] is not True:
                raise WebError(422, 'give "devices" and/or "users", or "unused": true, not both')
            return run_reclaim_unused(host_of(request), app, dry_run=body.get("dry_run") is True, yes=body.get("yes") is True)
        if set(body) & {"dry_run", "yes"}:
            raise WebError(422, '"dry_run" and "yes" go with "unused": true (one holder\'s licenses are reclaimed at once)')
        devices, users = _lists(body)
        ok, lines = run_reclaim(host_of(request), app, devices, users)
        results = [{**line, "message": for_request(request, line["message"])} for line in lines]  # the API's words
        return JSONResponse({"ok": ok, "results": results}, status_code=200 if ok else 409)

    return router


#: the fields of a reclaim of unused licenses (``mdm apps reclaim --unused [--dry-run] [--yes]``)
UNUSED_KEYS = frozenset({"unused", "dry_run", "yes"})


def run_reclaim_unused(host: Host, selector: str | None, *, dry_run: bool, yes: bool) -> JSONResponse:
    """Reclaim the licenses of an app (``selector``; None: every app) held by devices and users
    removed from this MDM, by the rules of ``mdm apps reclaim --unused``
    (:func:`.reclaims.plan_reclaim`): ``dry_run`` lists each with its ``status``
    (``reclaimable``, ``irrevocable``) and changes nothing; otherwise, unless ``yes``, a 409
    says what it would reclaim (what the command asks on a terminal), nothing changed. Done:
    a line per license as ``run_reclaim``'s, 200, or 409 if one was refused or irrevocable."""
    from .reclaims import plan_reclaim, reclaim, reclaim_ok, reclaim_result

    _require_vpp(host)
    with _unknown_app_is_404():
        plan = plan_reclaim(host, selector, unused=True)
    counts = {"reclaimable": len(plan.licenses) - plan.kept, "irrevocable": plan.kept}
    if dry_run:
        lines = [
            {**_line(lic), "status": lic["status"], "message": reclaim_result(lic) if lic["status"] == "irrevocable" else "would be reclaimed"}
            for lic in plan.rows
        ]
        return JSONResponse({"ok": True, "dry_run": True, "counts": counts, "results": lines})
    if plan.question and not yes:
        raise WebError(409, f'this would {plan.question}: add "yes": true to do it, or "dry_run": true to list what it would do; nothing was reclaimed')
    rows = reclaim(host, selector, plan=plan)
    lines = [{**_line(r), "status": r["status"], "message": reclaim_result(r)} for r in rows]
    ok = reclaim_ok(rows)
    return JSONResponse({"ok": ok, "dry_run": False, "counts": counts, "results": lines}, status_code=200 if ok else 409)


def _line(lic: dict[str, Any]) -> dict[str, Any]:
    """A license (or its reclaim) as a result line's ``target``, ``account``, ``adamId``, ``pricingParam``."""
    return {
        "target": lic.get("serialNumber") or lic.get("clientUserId"),
        "account": lic["account"],
        "adamId": lic.get("adamId", lic.get("adam_id")),
        "pricingParam": lic.get("pricingParam", lic.get("pricing_param")),
    }


async def _reclaim_body(request: Request, allowed: set[str] | frozenset[str]) -> dict[str, Any]:
    """The JSON object of a reclaim request, with ``allowed`` fields only; ``unused``,
    ``dry_run`` and ``yes`` are booleans."""
    body = await json_object(request, send='send {"devices": [...], "users": [...]} or {"unused": true}', shape=RECLAIM_SHAPE, empty=True)
    if not set(body) <= allowed:
        raise WebError(422, f"unknown field(s) {', '.join(sorted(set(body) - allowed))}: {RECLAIM_SHAPE}")
    if not all(isinstance(body[k], bool) for k in UNUSED_KEYS & set(body)):
        raise WebError(422, '"unused", "dry_run" and "yes" are true or false')
    return body


RECLAIM_SHAPE = 'send {"devices": [serial numbers], "users": [MDM user ids]}, or {"unused": true} with "dry_run": true or "yes": true'


async def _targets(request: Request) -> tuple[list[str], list[str]]:
    """``{"devices": [...], "users": [...]}`` of an install request, checked."""
    shape = 'send {"devices": [serial numbers], "users": [MDM user ids]} and nothing else'
    body = await json_object(request, send='send {"devices": [...], "users": [...]}', shape=shape)
    if not set(body) <= {"devices", "users"}:
        raise WebError(422, shape)
    return _lists(body)


def _lists(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The ``devices`` and ``users`` of a request's body, lists of strings (422 otherwise)."""
    devices, users = body.get("devices") or [], body.get("users") or []
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (devices, users)):
        raise WebError(422, '"devices" and "users" must be lists of strings')
    return devices, users
