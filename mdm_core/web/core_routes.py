"""The core's own routes: sign-in and sign-out, the health check, the overview, the
inventory's Devices and Users, Events (recent events and failed deliveries, with a way to
deliver again) and API tokens (``token_routes``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlmodel import col

from mdm_core.db.typed import values_of
from mdm_core.errors import describe
from mdm_core.models import Device, MdmUser, OutboxEvent, SubscriberFailure

from . import schemas
from .access import SignInRefused, admin_epoch, end_sessions, sign_in
from .app import HERE, current_principal, safe_next
from .helpers import WebError, host_of, principal_of, redirect, render, rest_router, row_id
from .once import form_once, new_form_id
from .paging import PAGE_SIZE, Cursor, Limit, Page, json_bytes, keyset, numbered, search
from .registry import WebRegistry
from .schemas import page_of, row_model
from .wording import with_error_reworded

log = logging.getLogger(__name__)

#: The command line's advice in the core's errors as the console and the API say it (cli, console, api)
WORDING = [
    (
        r"\(see `mdm events failures`\)",
        "(Failed deliveries on the Events page lists those left)",
        "(GET /api/v1/events/failures lists those left)",
    )
]


def register(web: WebRegistry) -> None:
    """Add the core's routes and navigation to the registry."""
    web.add_public(sign_in_router(), plugin="core")
    web.add_public(health_router(), plugin="core")
    web.add_public(favicon_router(), plugin="core")
    web.add_pages(page_router(), plugin="core")
    web.add_api(api_router(), plugin="core")
    web.add_nav("Devices", "/devices", order=60, plugin="core")
    web.add_nav("Users", "/users", order=70, plugin="core")
    web.add_nav("Events", "/events", order=80, plugin="core")
    from . import token_routes
    from .wording import CORE

    token_routes.register(web)
    web.add_wordings(WORDING)

    for cli, console in CORE:
        web.add_wording(cli, console)


def health_router() -> APIRouter:
    """``/healthz`` (GET or HEAD) for a load balancer, a container's health check or a service
    manager: 200 ``{"status": "ok"}`` while this process serves and its database answers, 503
    ``{"status": "unavailable"}`` otherwise (the reason is logged, never shown: anybody may ask)."""
    router = APIRouter(include_in_schema=False)

    @router.api_route("/healthz", methods=["GET", "HEAD"])
    def healthz(request: Request) -> Response:
        try:
            with host_of(request).db.reading() as conn:
                conn.exec_driver_sql("SELECT 1").scalar_one()
        except Exception as exc:
            log.warning("health check: the database does not answer: %s", describe(exc))
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return router


def favicon_router() -> APIRouter:
    """``/favicon.ico``, which every browser asks for (a page's ``<link rel="icon">`` aside):
    the console's icon (``static/favicon.svg``), public as the style sheet is, instead of a 404
    in the log for every new visitor."""
    router = APIRouter(include_in_schema=False)

    @router.get("/favicon.ico")
    def favicon() -> Response:
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    return router


def sign_in_router() -> APIRouter:
    """``/login``: the one page anybody may see (it checks the credentials itself)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        if current_principal(request) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return render(request, "login.html", {"next": safe_next(next)})

    @router.post("/login")
    def login(request: Request, name: str = Form(""), password: str = Form(""), next: str = Form("/")) -> Response:
        host = host_of(request)
        address = request.client.host if request.client else "unknown"
        try:
            principal = sign_in(host, name, password, address)
        except SignInRefused as exc:
            return render(request, "login.html", {"next": safe_next(next), "error": str(exc), "name": name}, status_code=429 if exc.throttled else 401)
        request.session.clear()
        request.session.update({"admin": principal.name, "epoch": admin_epoch(host, principal.name), "iat": time.time()})
        return RedirectResponse(safe_next(next), status_code=303)

    return router


def page_router() -> APIRouter:
    """Console pages of the core (behind the access check)."""
    router = APIRouter()

    @router.post("/logout")
    def logout(request: Request) -> Response:
        principal = principal_of(request)
        if principal.kind == "session":
            end_sessions(host_of(request), principal.name)
        request.session.clear()
        request.session["flash"] = [["ok", "signed out"]]
        return RedirectResponse("/login", status_code=303)

    @router.get("/")
    def home(request: Request) -> Response:
        host = host_of(request)
        with host.db.session() as session:
            counts = {
                "devices": session.execute(select(func.count()).select_from(Device)).scalar_one(),
                "users": session.execute(select(func.count()).select_from(MdmUser)).scalar_one(),
                "pending": session.execute(select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.delivered_at).is_(None))).scalar_one(),
                "failures": session.execute(select(func.count()).select_from(SubscriberFailure)).scalar_one(),
            }
        return render(request, "home.html", {"counts": counts})

    @router.get("/devices")
    def devices(request: Request, q: str = "", page: int = Query(1, ge=1)) -> Response:
        query = search(select(Device), q, [Device.serial_number, Device.model, Device.owner, Device.platform])
        with host_of(request).db.session() as session:
            found = numbered(session, query, [Device.serial_number], page=page)
        return render(request, "devices.html", {"rows": [r[0].model_dump() for r in found.items], "found": found, "q": q})

    @router.get("/users")
    def users(request: Request, q: str = "", page: int = Query(1, ge=1)) -> Response:
        query = search(select(MdmUser), q, [MdmUser.id, MdmUser.email, MdmUser.name, MdmUser.managed_apple_id])
        with host_of(request).db.session() as session:
            found = numbered(session, query, [MdmUser.id], page=page)
        return render(request, "users.html", {"rows": [r[0].model_dump() for r in found.items], "found": found, "q": q})

    @router.get("/events")
    def events(request: Request, name: str = "", after: str | None = None, failures_after: str | None = None) -> Response:
        host = host_of(request)
        return render(
            request,
            "events.html",
            {
                "events": events_page(host, name, PAGE_SIZE, after),
                "failures": failures_page(host, PAGE_SIZE, failures_after),
                "name": name,
                "first": not after,
                "failures_first": not failures_after,
                "form_id": new_form_id(),  # the Deliver again forms' one-time id (each posts to its failure's path)
            },
        )

    @router.post("/events/failures/{failure_id}/redeliver")
    def redeliver(request: Request, failure_id: int = row_id(), form_id: str = Form("")) -> Response:
        """Deliver a failed event again. Sent twice at once (a double-click): delivered once and
        both answers say how it went, where the subscriber got it twice, or the second answer
        was a 404 for the failure the first had just cleared."""
        host = host_of(request)
        error = form_once(request, form_id, "the Events page", lambda: redeliver_failure(host, failure_id))
        if error:
            return redirect(request, "/events", f"delivered again, and it failed again: {error}", "error")
        return redirect(request, "/events", "delivered again: the subscriber accepted the event")

    return router


def api_router() -> APIRouter:
    """``/api/v1`` routes of the core."""
    router = rest_router(tags=["core"])

    @router.get("/me", response_model=schemas.Me)
    def me(request: Request) -> dict[str, Any]:
        """Who the token or session belongs to, and its role."""
        p = request.state.principal
        return {"name": p.name, "role": p.role, "kind": p.kind}

    @router.get("/devices", response_model=page_of(row_model(Device, "Device")))
    def api_devices(request: Request, limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """Enrolled devices (as ``mdm devices list --json``), by serial number."""
        with host_of(request).db.session() as session:
            page = keyset(session, select(Device), [Device.serial_number], limit=limit, cursor=cursor)
        return {"items": [values_of(r[0]) for r in page.items], "next_cursor": page.next_cursor}

    @router.get("/users", response_model=page_of(row_model(MdmUser, "MdmUser")))
    def api_users(request: Request, limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """MDM users (as ``mdm users list --json``), by id."""
        with host_of(request).db.session() as session:
            page = keyset(session, select(MdmUser), [MdmUser.id], limit=limit, cursor=cursor)
        return {"items": [values_of(r[0]) for r in page.items], "next_cursor": page.next_cursor}

    @router.get("/events", response_model=page_of(schemas.Event))
    def api_events(request: Request, name: str = "", limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """Events of the outbox, newest first (``name``: one kind only)."""
        return events_page(host_of(request), name, limit, cursor).as_json()

    @router.get("/events/failures", response_model=page_of(row_model(SubscriberFailure, "SubscriberFailure")))
    def api_failures(request: Request, limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """Deliveries a subscriber refused, newest first (deliver one again with POST .../redeliver)."""
        page = failures_page(host_of(request), limit, cursor)
        return {"items": [with_error_reworded(request, f) for f in page.items], "next_cursor": page.next_cursor}

    @router.post("/events/failures/{failure_id}/redeliver")
    def api_redeliver(request: Request, failure_id: int = row_id()) -> dict[str, Any]:
        """Deliver a failed event again to the subscriber that failed."""
        error = redeliver_failure(host_of(request), failure_id)
        return with_error_reworded(request, {"id": failure_id, "delivered": error is None, "error": error})

    return router


def redeliver_failure(host: Any, failure_id: int) -> str | None:
    """Deliver a failed event again (``None``: accepted, else the new error); a failure that
    is gone (delivered again meanwhile) is a 404, in the words of the surface (:data:`WORDING`)."""
    from mdm_core.errors import MdmError

    try:
        return host.events.redeliver(failure_id)
    except MdmError as exc:
        raise WebError(404, str(exc)) from None


def events_page(host: Any, name: str, limit: int, cursor: str | None) -> Page[dict[str, Any]]:
    """Events of the outbox, newest first, ``name`` only when given (one naming no event: 404);
    at most ``limit`` events and :data:`~.paging.PAGE_BYTES` of them (a payload can be large)."""
    query = select(OutboxEvent)
    if name:
        query = query.where(col(OutboxEvent.name) == name)
    with host.db.session() as session:
        if name:  # a misspelt name is a 404 naming the events, not an empty list
            host.events.check_name(session, name)
        page = keyset(session, query, [OutboxEvent.seq], limit=limit, cursor=cursor, descending=True, weigh=lambda row: json_bytes(_event(row[0])))
    return Page([_event(e) for (e,) in page.items], page.next_cursor)


def _event(e: OutboxEvent) -> dict[str, Any]:
    """An event as the API and the console show it."""
    account = (e.payload or {}).get("account")
    return {"id": e.id, "name": e.name, "created_at": e.created_at, "delivered_at": e.delivered_at, "account": account, "payload": e.payload}


def failures_page(host: Any, limit: int, cursor: str | None) -> Page[dict[str, Any]]:
    """Deliveries a subscriber refused, newest first."""
    with host.db.session() as session:
        page = keyset(session, select(SubscriberFailure), [SubscriberFailure.id], limit=limit, cursor=cursor, descending=True)
    return Page([values_of(f) for (f,) in page.items], page.next_cursor)
