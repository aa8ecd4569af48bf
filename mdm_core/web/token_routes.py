"""API tokens in the console (*API tokens*: list, create, revoke) and the REST API (list,
revoke), through the functions ``mdm api-tokens`` uses (``access``).

A token is created by a person: an admin signed in to the console (or ``mdm api-tokens
create`` on the host), never by a token, on the API or a page: a leaked admin token that could
mint tokens would outlive its own revocation. A token may revoke another or itself (it can
only lose access by it). ``revoked_by`` is ``console:ADMIN`` or ``api:TOKEN`` (``web_actor``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from .access import TOKEN_ORDER, UnknownToken, create_token, list_tokens, revoke_token, token_fields, web_actor
from .helpers import WebError, host_of, principal_of, redirect, render, require_change, rest_router
from .models import ROLES, ApiToken
from .paging import Cursor, Limit, keyset
from .registry import WebRegistry

PAGE = "/api-tokens"

#: "(see `mdm api-tokens list`)" of an unknown name, in the console's and the API's words
WORDING = [(r"\(see `mdm api-tokens list`\)", "(the API tokens page lists them)", "(GET /api/v1/api-tokens lists them)")]


def register(web: WebRegistry) -> None:
    """The page, its navigation entry, the API routes and their wording."""
    web.add_pages(page_router(), plugin="core")
    web.add_api(api_router(), plugin="core")
    web.add_nav("API tokens", PAGE, order=90, plugin="core")
    web.add_wordings(WORDING)


def _revoke(request: Request, name: str) -> dict[str, Any]:
    """Revoke ``name`` as the request's principal; an unknown name is a 404."""
    try:
        return revoke_token(host_of(request), name, web_actor(principal_of(request)))
    except UnknownToken as exc:
        raise WebError(404, str(exc)) from None


def page_router() -> APIRouter:
    """``/api-tokens``: every admin and viewer reads the list; admins create and revoke."""
    router = APIRouter()

    @router.get(PAGE)
    def tokens(request: Request) -> Response:
        return render(request, "api_tokens.html", {"tokens": list_tokens(host_of(request)), "roles": ROLES})

    @router.post(PAGE)
    def create(request: Request, name: str = Form(""), role: str = Form("viewer")) -> Response:
        if principal_of(request).kind != "session":
            raise WebError(403, "an API token cannot create tokens: an admin signed in to the console creates them")
        row = create_token(host_of(request), name.strip(), role)
        return render(request, "api_token_created.html", {"token": row}, status_code=201)  # shown here once: never stored, flashed nor logged

    @router.get(PAGE + "/{name}/revoke")
    def revoke_form(request: Request, name: str) -> Response:
        require_change(request)
        active = [t for t in list_tokens(host_of(request)) if t["name"] == name and t["revoked_at"] is None]
        if not active:
            raise WebError(404, f"no API token named '{name}' that is not revoked: the API tokens page lists them")
        return render(request, "api_token_revoke.html", {"token": active[0]})

    @router.post(PAGE + "/{name}/revoke")
    def revoke(request: Request, name: str, confirm: str = Form("")) -> Response:
        if confirm != "yes":
            raise WebError(422, f"tick 'Revoke {name}' to confirm: requests sending the token are refused from then on")
        row = _revoke(request, name)
        if row["already"]:
            by = f" by {row['revoked_by']}" if row["revoked_by"] else ""
            return redirect(request, PAGE, f"API token {name} was already revoked{by}: nothing to do")
        return redirect(request, PAGE, f"revoked API token {name}: a request sending it is told it was revoked")

    return router


def api_router() -> APIRouter:
    """``/api/v1/api-tokens``: list (never hashes nor tokens) and revoke; no create (see the module)."""
    router = rest_router(tags=["core"])

    @router.get("/api-tokens")
    def api_tokens(request: Request, limit: int = Limit, cursor: str | None = Cursor) -> dict[str, Any]:
        """API tokens, the revoked ones too, by name then age, as ``mdm api-tokens list --json``."""
        with host_of(request).db.session() as session:
            page = keyset(session, select(ApiToken), TOKEN_ORDER, limit=limit, cursor=cursor)
        return {"items": [token_fields(t) for (t,) in page.items], "next_cursor": page.next_cursor}

    @router.delete("/api-tokens/{name}")
    def api_revoke(request: Request, name: str) -> dict[str, Any]:
        """Revoke a token as ``mdm api-tokens revoke`` does (``revoked_by``: ``api:TOKEN``, or
        ``console:ADMIN`` with a console session); ``already``: it was revoked before, nothing
        changed, and ``revoked_at``/``revoked_by`` are of that revocation."""
        return _revoke(request, name)

    return router
