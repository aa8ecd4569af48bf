"""API tokens in the console (*API tokens*: list, create, revoke) and the REST API (list,
revoke), through the functions ``mdm api-tokens`` uses (``access``).

A token is created by a person: an admin signed in to the console (or ``mdm api-tokens
create`` on the host), never by a token, on the API or a page: a leaked admin token that could
mint tokens would outlive its own revocation. A token may revoke another or itself (it can
only lose access by it). ``revoked_by`` is ``console:ADMIN`` or ``api:TOKEN`` (``web_actor``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from .access import TOKEN_ORDER, UnknownToken, active_token, create_token, last_revocation, revoke_token, token_fields, token_id, web_actor
from .helpers import WebError, host_of, principal_of, redirect, render, require_change, rest_router
from .models import ROLES, ApiToken
from .once import check_form_id, new_form_id, run_form
from .paging import Cursor, Limit, keyset, numbered
from .registry import WebRegistry
from .schemas import ApiToken as ApiTokenRow
from .schemas import page_of

PAGE = "/api-tokens"
#: the session key of the create forms (their ``form_id``) already used
SPENT_KEY, SPENT_KEPT = "token_forms", 10

#: "(see `mdm api-tokens list`)" of an unknown name, in the console's and the API's words
WORDING = [(r"\(see `mdm api-tokens list`\)", "(the API tokens page lists them)", "(GET /api/v1/api-tokens lists them)")]


def register(web: WebRegistry) -> None:
    """The page, its navigation entry, the API routes and their wording."""
    web.add_pages(page_router(), plugin="core")
    web.add_api(api_router(), plugin="core")
    web.add_nav("API tokens", PAGE, order=90, plugin="core")
    web.add_wordings(WORDING)


def _form_spent(request: Request, form_id: str, name: str) -> str | None:
    """The name of the token a create form (``form_id``) already created in this session (the
    form's ``name`` if that row is gone), or ``None``: a reload of the page that answered the
    form sends it again."""
    spent = dict(request.session.get(SPENT_KEY, [])).get(form_id) if form_id else None
    if spent is None:
        return None
    with host_of(request).db.session() as session:
        row = session.get(ApiToken, spent)
    return row.name if row is not None else name


def _spend_form(request: Request, form_id: str, row_id: int | None) -> None:
    """Record that ``form_id`` created the token ``row_id`` (its id, never its name nor its
    secret, in the signed session cookie; the last ``SPENT_KEPT`` forms)."""
    if row_id is not None:
        kept = [pair for pair in request.session.get(SPENT_KEY, []) if pair[0] != form_id]
        request.session[SPENT_KEY] = [*kept, [form_id, row_id]][-SPENT_KEPT:]


def _already_created(request: Request, spent: str, name: str) -> Response:
    """The answer to a create form used before (it created ``spent``), sent again with ``name``."""
    other = f". {name} was not created: create it with the form below" if name and name != spent else ""
    return redirect(request, PAGE, f"API token {spent} was already created by this form; its secret was shown once{other}")


def _revoke(request: Request, name: str) -> dict[str, Any]:
    """Revoke ``name`` as the request's principal; an unknown name is a 404."""
    try:
        return revoke_token(host_of(request), name, web_actor(principal_of(request)))
    except UnknownToken as exc:
        raise WebError(404, str(exc)) from None


def _already_revoked(name: str, revoked_by: str | None) -> str:
    """What the console says of a token revoked before the admin asked."""
    by = f" by {revoked_by}" if revoked_by else ""
    return f"API token {name} was already revoked{by}: nothing to do"


def page_router() -> APIRouter:
    """``/api-tokens``: every admin and viewer reads the list; admins create and revoke."""
    router = APIRouter()

    @router.get(PAGE)
    def tokens(request: Request, page: int = Query(1, ge=1)) -> Response:
        with host_of(request).db.session() as session:
            found = numbered(session, select(ApiToken), TOKEN_ORDER, page=page)
        rows = [token_fields(t) for (t,) in found.items]
        return render(request, "api_tokens.html", {"tokens": rows, "found": found, "roles": ROLES, "form_id": new_form_id()})

    @router.post(PAGE)
    def create(request: Request, name: str = Form(""), role: str = Form("viewer"), form_id: str = Form("")) -> Response:
        if principal_of(request).kind != "session":
            raise WebError(403, "an API token cannot create tokens: an admin signed in to the console creates them")
        check_form_id(form_id, "the API tokens page")
        spent = _form_spent(request, form_id, name.strip())
        if spent is not None:
            return _already_created(request, spent, name.strip())
        host = host_of(request)
        # sent twice before the first answer's cookie came back (a double-click): the first's token, shown again
        row, first = run_form(request, form_id, lambda: create_token(host, name.strip(), role))
        if form_id:
            _spend_form(request, form_id, token_id(host, row["token"]))  # in each answer: the browser keeps the last one's cookie
        if not first and row["name"] != name.strip():
            return _already_created(request, row["name"], name.strip())
        return render(request, "api_token_created.html", {"token": row}, status_code=201)  # shown here once: never stored, flashed nor logged

    @router.get(PAGE + "/{name}/revoke")
    def revoke_form(request: Request, name: str) -> Response:
        require_change(request)
        host = host_of(request)
        active = active_token(host, name)
        if active is None:
            with host.db.session() as session:
                last = last_revocation(session, name)
            if last is not None and last[0] is not None:  # revoked meanwhile (another tab, another admin): as the form's answer says
                return redirect(request, PAGE, _already_revoked(name, last[1]))
            raise WebError(404, f"no API token named '{name}': the API tokens page lists them")
        return render(request, "api_token_revoke.html", {"token": active})

    @router.post(PAGE + "/{name}/revoke")
    def revoke(request: Request, name: str, confirm: str = Form("")) -> Response:
        if confirm != "yes":
            raise WebError(422, f"tick 'Revoke {name}' to confirm: requests sending the token are refused from then on")
        row = _revoke(request, name)
        if row["already"]:
            return redirect(request, PAGE, _already_revoked(name, row["revoked_by"]))
        return redirect(request, PAGE, f"revoked API token {name}: a request sending it is told it was revoked")

    return router


def api_router() -> APIRouter:
    """``/api/v1/api-tokens``: list (never hashes nor tokens) and revoke; no create (see the module)."""
    router = rest_router(tags=["core"])

    @router.get("/api-tokens", response_model=page_of(ApiTokenRow))
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
