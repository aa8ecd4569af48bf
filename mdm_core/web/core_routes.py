"""The core's own routes: sign-in and sign-out, the overview, the inventory's Devices and
Users, and Events (recent events and failed deliveries, with a way to deliver again)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, or_, select

from mdm_core.models import Device, MdmUser, OutboxEvent, SubscriberFailure

from .access import SignInRefused, admin_epoch, sign_in
from .app import current_principal
from .helpers import DEFAULT_LIMIT, MAX_LIMIT, WebError, host_of, list_page, redirect, render
from .registry import WebRegistry

PAGE_SIZE = 50


def register(web: WebRegistry) -> None:
    """Add the core's routes and navigation to the registry."""
    web.add_public(sign_in_router(), plugin="core")
    web.add_pages(page_router(), plugin="core")
    web.add_api(api_router(), plugin="core")
    web.add_nav("Devices", "/devices", order=60, plugin="core")
    web.add_nav("Users", "/users", order=70, plugin="core")
    web.add_nav("Events", "/events", order=80, plugin="core")


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never ``//other.host`` or a full URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def sign_in_router() -> APIRouter:
    """``/login``: the one page anybody may see (it checks the credentials itself)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        if current_principal(request) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return render(request, "login.html", {"next": _safe_next(next)})

    @router.post("/login")
    def login(request: Request, name: str = Form(""), password: str = Form(""), next: str = Form("/")) -> Response:
        host = host_of(request)
        address = request.client.host if request.client else "unknown"
        try:
            principal = sign_in(host, name, password, address)
        except SignInRefused as exc:
            return render(request, "login.html", {"next": _safe_next(next), "error": str(exc), "name": name},
                          status_code=429 if exc.throttled else 401)
        request.session.clear()
        request.session.update({"admin": principal.name, "epoch": admin_epoch(host, principal.name), "iat": time.time()})
        return RedirectResponse(_safe_next(next), status_code=303)

    return router


def page_router() -> APIRouter:
    """Console pages of the core (behind the access check)."""
    router = APIRouter()

    @router.post("/logout")
    def logout(request: Request) -> Response:
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
                "pending": session.execute(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.delivered_at.is_(None))).scalar_one(),
                "failures": session.execute(select(func.count()).select_from(SubscriberFailure)).scalar_one(),
            }
        return render(request, "home.html", {"counts": counts})

    @router.get("/devices")
    def devices(request: Request, q: str = "", page: int = Query(1, ge=1)) -> Response:
        rows, total = _search(host_of(request), Device, [Device.serial_number, Device.model, Device.owner, Device.platform], Device.serial_number, q, page)
        return render(request, "devices.html", {"rows": rows, "total": total, "q": q, "page": page, "pages": _pages(total)})

    @router.get("/users")
    def users(request: Request, q: str = "", page: int = Query(1, ge=1)) -> Response:
        rows, total = _search(host_of(request), MdmUser, [MdmUser.id, MdmUser.email, MdmUser.name, MdmUser.managed_apple_id], MdmUser.id, q, page)
        return render(request, "users.html", {"rows": rows, "total": total, "q": q, "page": page, "pages": _pages(total)})

    @router.get("/events")
    def events(request: Request, name: str = "") -> Response:
        return render(request, "events.html", {"events": recent_events(host_of(request), name, 100), "failures": failures(host_of(request)), "name": name})

    @router.post("/events/failures/{failure_id}/redeliver")
    def redeliver(request: Request, failure_id: int) -> Response:
        error = host_of(request).events.redeliver(failure_id)
        if error:
            return redirect(request, "/events", f"delivered again, and it failed again: {error}", "error")
        return redirect(request, "/events", "delivered again: the subscriber accepted the event")

    return router


def api_router() -> APIRouter:
    """``/api/v1`` routes of the core."""
    router = APIRouter(tags=["core"])

    @router.get("/me")
    def me(request: Request) -> dict[str, Any]:
        """Who the token or session belongs to, and its role."""
        p = request.state.principal
        return {"name": p.name, "role": p.role, "kind": p.kind}

    @router.get("/devices")
    def api_devices(request: Request, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT), cursor: str | None = None) -> dict[str, Any]:
        """Enrolled devices (as ``mdm devices list --json``), by serial number."""
        from mdm_core.inventory import list_devices

        return list_page(list_devices(host_of(request)), limit, cursor)

    @router.get("/users")
    def api_users(request: Request, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT), cursor: str | None = None) -> dict[str, Any]:
        """MDM users (as ``mdm users list --json``), by id."""
        from mdm_core.inventory import list_users

        return list_page(list_users(host_of(request)), limit, cursor)

    @router.get("/events")
    def api_events(request: Request, name: str = "", limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
        """The most recent events (newest first) and the failed deliveries."""
        return {"items": recent_events(host_of(request), name, limit), "failures": failures(host_of(request)), "next_cursor": None}

    @router.post("/events/failures/{failure_id}/redeliver")
    def api_redeliver(request: Request, failure_id: int) -> dict[str, Any]:
        """Deliver a failed event again to the subscriber that failed."""
        from mdm_core.errors import MdmError

        try:
            error = host_of(request).events.redeliver(failure_id)
        except MdmError as exc:
            raise WebError(404, str(exc)) from None
        return {"id": failure_id, "delivered": error is None, "error": error}

    return router


def _pages(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


def _search(host: Any, model: Any, columns: list[Any], order: Any, q: str, page: int) -> tuple[list[dict[str, Any]], int]:
    query = select(model)
    if q.strip():
        like = f"%{q.strip().lower()}%"
        query = query.where(or_(*(func.lower(c).like(like) for c in columns)))
    with host.db.session() as session:
        total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = [r.model_dump() for r in session.execute(query.order_by(order).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).scalars()]
    return rows, total


def recent_events(host: Any, name: str, limit: int) -> list[dict[str, Any]]:
    """The latest events of the outbox, newest first."""
    query = select(OutboxEvent).order_by(OutboxEvent.seq.desc()).limit(limit)  # type: ignore[union-attr]
    if name:
        query = query.where(OutboxEvent.name == name)
    with host.db.session() as session:
        return [{"id": e.id, "name": e.name, "created_at": e.created_at, "delivered_at": e.delivered_at, "account": (e.payload or {}).get("account"),
                 "payload": e.payload} for e in session.execute(query).scalars()]


def failures(host: Any) -> list[dict[str, Any]]:
    """Deliveries a subscriber refused, newest first."""
    with host.db.session() as session:
        return [f.model_dump() for f in session.execute(select(SubscriberFailure).order_by(SubscriberFailure.id.desc()).limit(200)).scalars()]  # type: ignore[union-attr]
