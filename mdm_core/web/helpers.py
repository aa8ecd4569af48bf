"""What a plugin's pages and API routes use: rendering, errors, paging, background work.

Imported by plugins' web modules only (it imports FastAPI), never at plugin load time.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from mdm_core.errors import one_line

from .access import Principal

if TYPE_CHECKING:
    from mdm_core.host import Host

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class WebError(Exception):
    """A one-line refusal with its HTTP status: JSON ``{"error": ...}`` on the API, a page
    with the message in the console. Raise it before changing anything."""

    def __init__(self, status: int, message: str):
        super().__init__(one_line(message))
        self.status = status
        self.message = one_line(message)


def host_of(request: Request) -> "Host":
    """The running host."""
    return request.app.state.host  # type: ignore[no-any-return]


def principal_of(request: Request) -> Principal:
    """Who made the request (set by the access check every route goes through)."""
    return request.state.principal  # type: ignore[no-any-return]


def flash(request: Request, message: str, kind: str = "ok") -> None:
    """A one-line message shown on the next page (kinds: ``ok``, ``error``)."""
    request.session.setdefault("flash", []).append([kind, one_line(message)])


def redirect(request: Request, path: str, message: str | None = None, kind: str = "ok") -> RedirectResponse:
    """303 to ``path`` after a form, with an optional message for the next page."""
    if message:
        flash(request, message, kind)
    return RedirectResponse(path, status_code=303)


def render(request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """A console page: ``template`` extends ``base.html``; the navigation, the signed-in
    admin, the flash messages and ``csrf_field()`` are provided."""
    templates = request.app.state.templates
    ctx: dict[str, Any] = {
        "nav": request.app.state.registry.sorted_nav(),
        "principal": getattr(request.state, "principal", None),
        "messages": request.session.pop("flash", []) if "session" in request.scope else [],
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)  # type: ignore[no-any-return]


def url_with(request: Request, **changes: Any) -> str:
    """The current URL with some query parameters changed (``None`` drops one)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return request.url.path + ("?" + urlencode(params) if params else "")


def format_time(value: Any) -> str:
    """A time with its time zone, for people: ``2026-11-28 04:37:29 UTC``."""
    if value in (None, ""):
        return "never"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return str(value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))


# ---------------------------------------------------------------------- paging


def encode_cursor(values: dict[str, Any]) -> str:
    """An opaque cursor for the next page."""
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any]:
    """The values of a cursor from ``encode_cursor``; a bad one is a 400."""
    if not cursor:
        return {}
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(value, dict):
            return value
    except (binascii.Error, ValueError):
        pass
    raise WebError(400, "cursor is not valid: pass the next_cursor of the previous page unchanged")


def list_page(rows: list[Any], limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of an in-memory list: ``{"items": [...], "next_cursor": ...}``."""
    offset = decode_cursor(cursor).get("offset", 0)
    if not isinstance(offset, int) or offset < 0:
        raise WebError(400, "cursor is not valid: pass the next_cursor of the previous page unchanged")
    items = rows[offset:offset + limit]
    more = offset + limit < len(rows)
    return {"items": items, "next_cursor": encode_cursor({"offset": offset + limit}) if more else None}


# ---------------------------------------------------------------------- background work


def run_in_background(request: Request, work: Callable[[], Any]) -> None:
    """Run ``work`` on the web server's worker pool (a sync started from a button, say);
    the server waits for it before it stops."""
    request.app.state.background.submit(work)
