"""The console and REST API as one FastAPI application, built from the host's plugins.

Every route of a plugin is mounted behind one access check (``_access``): a console page
without a session goes to the sign-in page, an API call without a valid bearer token (or
session) gets 401, and a request that changes something needs the ``admin`` role (403).
Starlette's signed-cookie sessions (itsdangerous) hold the signed-in admin; ``asgi-csrf``
protects every state-changing form (double-submit cookie); the headers middleware adds the
Content-Security-Policy (no inline scripts), refuses framing and marks data pages no-store;
``HeadAsGet`` answers HEAD wherever GET is answered, as GET without the body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, FileSystemLoader, pass_context
from markupsafe import Markup, escape
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mdm_core.errors import Conflict, MdmError, NotFound, TemporaryError, UsageError, one_line
from mdm_core.locks import describe_holder
from mdm_core.output import format_time
from mdm_core.plugins import PerPluginSet, call_hook

from .access import TOKEN_PREFIX, Principal, revoked_token, session_principal, token_principal, web_settings
from .helpers import BackgroundWork, WebError, flash, require_change, url_with
from .limits import BodyLimit
from .once import FormsOnce
from .registry import WebRegistry

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
API_PREFIX = "/api/v1"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
#: Forms any signed-in admin sends whatever their role: they change nothing but the sender's own sessions.
OWN_SESSION_FORMS = {"/logout"}
SESSION_COOKIE = "mdm_session"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class RouteInfo:
    """One route of the application as mounted: its full path, methods and access kind
    (``api`` and ``page`` go through the access check; ``public`` and ``static`` do not)."""

    path: str
    methods: frozenset[str]
    kind: str
    plugin: str


#: How to send a token, ending each refusal that is not about the token itself.
SEND_BEARER = "send Authorization: Bearer TOKEN (see `mdm api-tokens create`)"


class SignInRequired(Exception):
    """No valid session or token: 401 on the API, the sign-in page for the console.

    ``challenge`` is the ``WWW-Authenticate`` value (RFC 6750 section 3: a bare ``Bearer``
    when no credentials were sent, with ``error="invalid_token"`` for a token refused)."""

    def __init__(self, message: str = f"sign in first: {SEND_BEARER}", challenge: str = "Bearer"):
        super().__init__(message)
        self.message = message
        self.challenge = challenge


def _refusal(request: Request) -> SignInRequired:
    """Why a request has no principal, in one line: no credentials, or which kind of bad
    ones. A revoked token is named with when it was revoked (whoever sends it holds it); says
    nothing about other tokens and never repeats the value sent. A token revoked before its
    row was kept (the web history's 0002) is unknown."""
    header = request.headers.get("authorization")
    if header is None:
        return SignInRequired()
    scheme, _, value = header.partition(" ")
    create = "create one with `mdm api-tokens create NAME` (see `mdm api-tokens list`)"
    if scheme.lower() != "bearer":
        return SignInRequired(f"the Authorization header is not a bearer token: {SEND_BEARER}")
    if not value.strip():
        return SignInRequired(f"the Authorization header has no token after Bearer: {SEND_BEARER}")
    if not value.strip().startswith(TOKEN_PREFIX):
        return SignInRequired(f"the API token sent is not one of this host's (they begin with {TOKEN_PREFIX}): {create}", 'Bearer error="invalid_token"')
    revoked = revoked_token(request.app.state.host, value.strip())
    if revoked is not None:
        name, when = revoked
        again = f"create a new one with `mdm api-tokens create {name}` (see `mdm api-tokens list`)"
        return SignInRequired(f"the API token sent ({name}) was revoked at {format_time(when)}: {again}", 'Bearer error="invalid_token"')
    return SignInRequired(f"the API token sent is not valid (unknown or revoked): {create}", 'Bearer error="invalid_token"')


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX + "/") or request.url.path == API_PREFIX


def current_principal(request: Request) -> Principal | None:
    """The bearer token's principal when an Authorization header is sent (never falling back
    to the cookie), else the session's admin while the session is still valid."""
    host: Host = request.app.state.host
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return token_principal(host, value.strip()) if scheme.lower() == "bearer" else None
    session = request.session
    if not session.get("admin"):
        return None
    if time.time() - float(session.get("iat", 0)) > web_settings(host).session_lifetime:
        session.clear()
        return None
    principal = session_principal(host, session.get("admin"), session.get("epoch"))
    if principal is None:
        session.clear()
    return principal


def _access(request: Request) -> Principal:
    """The one check every non-public route goes through."""
    principal = current_principal(request)
    if principal is None:
        raise _refusal(request)
    request.state.principal = principal  # before a refusal too: its page shows who is signed in, with the navigation
    if request.method not in SAFE_METHODS and request.url.path not in OWN_SESSION_FORMS:
        require_change(request)
    return principal


class SecurityHeaders:
    """Headers of every response; ``Secure`` on cookies and HSTS when served over https
    (``X-Forwarded-Proto`` from a trusted proxy counts, see ``[web] trusted_proxies``)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        static = scope["path"].startswith("/static/") or scope["path"] == "/favicon.ico"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control" or static]
                if https:
                    headers = [(k, v + b"; Secure" if k.lower() == b"set-cookie" and b"secure" not in v.lower() else v) for k, v in headers]
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: the scope key ``HeadAsGet`` sets on a HEAD request it passes on as GET
HEAD_SCOPE_KEY = "mdm.head"


class HeadAsGet:
    """HEAD on any path is answered as GET without the body (RFC 9110: same status and
    headers): browsers, uptime and link checkers send HEAD, which FastAPI routes answered
    405. One place for every page and API route, whichever plugin added it, so that the
    access check, the sign-in redirect and the 405 of a path without GET are GET's; a 405
    names HEAD as the method refused."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET", HEAD_SCOPE_KEY: True}, receive, headers_only)


def _method(request: Request) -> str:
    """The method the client sent (HEAD, where ``HeadAsGet`` passed it on as GET)."""
    return "HEAD" if request.scope.get(HEAD_SCOPE_KEY) else request.method


async def _csrf_failed(scope: Scope, send: Send, message_id: Any) -> None:
    """asgi-csrf's refusal, as one line: JSON on the API, a short page elsewhere."""
    text = "the form's security token is missing or stale (CSRF check failed): reload the page and submit again"
    if scope["path"].startswith(API_PREFIX):
        import json

        # no page to reload: a call carrying the console's session cookie (a browser's script, a copied cookie)
        text = (
            "the security token is missing or stale (CSRF check failed) on a call with the console's session cookie: "
            "API clients send Authorization: Bearer TOKEN; a page's script sends the csrftoken cookie's value as X-CSRFToken"
        )

        body, kind = json.dumps({"error": text}).encode(), b"application/json"
    else:
        body = (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Refused</title>'
            f'<link rel="stylesheet" href="/static/style.css"></head><body><main class="narrow">'
            f'<p class="flash error" id="error">{escape(text)}</p><p><a href="/">Back to the console</a></p></main></body></html>'
        ).encode()
        kind = b"text/html; charset=utf-8"
    await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", kind)]})
    await send({"type": "http.response.body", "body": body})


#: where a parameter FastAPI checks came from, as the admin or the script wrote it
WHERE = {"query": "query parameter {}", "path": "the address's {}", "form": "form field {}", "body": "field {}"}


def validation_message(error: Any) -> str:
    """One of FastAPI's validation errors as one line naming the parameter as it was sent, the
    value and what it should be (pydantic said "app_id: Input should be a valid integer", or
    "account: Field required", naming neither where nor the value)."""
    loc = [str(p) for p in error.get("loc", ())]
    name = ".".join(loc[1:]) if loc and loc[0] in WHERE else ".".join(loc)
    where = WHERE.get(loc[0] if loc else "", "{}").format(name.replace("_", " ") if loc and loc[0] == "path" else name) if name else "the request"
    msg = str(error.get("msg") or "is not valid")
    if error.get("type") == "missing":
        return f"{where} is required here: give it"
    value = error.get("input")
    shown = f" {str(value)[:100]!r}" if isinstance(value, str | int | float) else ""
    return f"{where}{shown} is not valid: {msg[:1].lower()}{msg[1:]}"


def build_registry(host: Host) -> WebRegistry:
    """The core's routers, then every plugin's (``mdm_register_web``)."""
    from . import core_routes

    registry = WebRegistry()
    core_routes.register(registry)
    call_hook(host.pm, "mdm_register_web", web=registry, host=host)
    return registry


#: the routers of a host's plugins, built once per process for the same plugins: defining
#: FastAPI routes costs ~50 ms per application otherwise; an application includes a router
#: without changing it, so applications share them
registry_for = PerPluginSet(build_registry)


def create_app(host: Host) -> FastAPI:
    """The application for ``host``: the core's pages and API, then every plugin's."""
    registry = registry_for(host)
    settings = web_settings(host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.background.shutdown()

    from .storable import storable_input

    app = FastAPI(title="mdm-host", version="1", openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan, dependencies=[Depends(storable_input)])
    app.state.host = host
    app.state.registry = registry
    app.state.background = BackgroundWork(settings.background_workers)
    app.state.forms_once = FormsOnce()
    loader = ChoiceLoader([FileSystemLoader(str(HERE / "templates")), *(FileSystemLoader(str(d)) for d in registry.template_dirs)])
    templates = Jinja2Templates(env=_environment(loader))
    app.state.templates = templates

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    access = [Depends(_access)]
    table: list[RouteInfo] = [RouteInfo("/static", frozenset({"GET"}), "static", "core")]
    for kind, prefix, routers in (("public", "", registry.public), ("page", "", registry.pages), ("api", API_PREFIX, registry.api)):
        for router, plugin in routers:
            if kind == "public":  # its own authentication: not the REST API the OpenAPI document describes
                app.include_router(router, include_in_schema=False)
            elif kind == "page":
                app.include_router(router, dependencies=access, include_in_schema=False)
            else:
                app.include_router(router, prefix=prefix, dependencies=access)
            # every route class (Route, WebSocketRoute, Mount) has a path; their base class does not declare it
            table += [
                RouteInfo(prefix + route.path, frozenset(getattr(route, "methods", None) or {"GET"}), kind, plugin)  # type: ignore[attr-defined]
                for route in router.routes
            ]

    app.add_api_route(API_PREFIX + "/openapi.json", _openapi, include_in_schema=False, dependencies=access)

    table.append(RouteInfo(API_PREFIX + "/openapi.json", frozenset({"GET"}), "api", "core"))
    app.state.route_table = table
    app.state.top_level_routes = 2 + len(registry.public) + len(registry.pages) + len(registry.api)  # static, openapi, routers

    _error_handlers(app)
    app.add_middleware(CatchUnexpected)
    app.add_middleware(
        SessionMiddleware,
        secret_key=host.secrets.derive("web-session"),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_idle,
        same_site="lax",
        https_only=False,
    )
    from asgi_csrf import asgi_csrf

    app.add_middleware(
        asgi_csrf, signing_secret=host.secrets.derive("web-csrf"), always_protect={"/login"}, cookie_samesite="Strict", send_csrf_failed=_csrf_failed
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadAsGet)
    app.add_middleware(BodyLimit, max_bytes=settings.request_max_bytes)  # outermost: before anything reads a body
    return app


def _openapi(request: Request) -> dict[str, Any]:
    """The OpenAPI document of the REST API (a module function: FastAPI keeps the callables of
    routes in a module-level cache, where a closure over the application would keep it alive)."""
    from .openapi import api_document

    return api_document(request.app)


def _environment(loader: Any) -> Any:
    from jinja2 import Environment, select_autoescape

    env = Environment(loader=loader, autoescape=select_autoescape(["html", "xml", "svg"], default=True))

    def csrf_field(request: Request) -> Markup:
        return Markup('<input type="hidden" name="csrftoken" value="{}">').format(request.scope["csrftoken"]())

    env.globals["csrf_field"] = csrf_field
    env.globals["url_with"] = url_with
    env.filters["time"] = format_time
    env.filters["holder"] = lambda holder: describe_holder(holder) if holder else "—"  # the host a sync or job ran on

    @pass_context
    def reworded(context: Any, text: object) -> str:
        """An error recorded in the command line's words, in the console's (``wording``)."""
        from .wording import for_request

        return for_request(context["request"], str(text)) if text else ""

    env.filters["reworded"] = reworded
    return env


def _respond(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error: ``{"error": "one line"}`` on the API, the error page in the console; the
    command line's advice in the surface's own words (``wording``)."""
    from .wording import for_request

    message = for_request(request, message)
    if _is_api(request):
        return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)
    from .helpers import render

    back = _form_page(request) if request.method not in SAFE_METHODS else "/"  # a refused form: back to its page, not the home page
    response = render(request, "error.html", {"message": one_line(message), "status": status, "back": back}, status_code=status)
    response.headers.update(headers or {})
    return response


def _allowed_methods(request: Request) -> list[str]:
    """The methods the application answers at the request's path, over every route there (a
    path with GET and PATCH routes has both; Starlette's 405 names the first route's only);
    HEAD wherever GET (see ``HeadAsGet``)."""
    from starlette.routing import compile_path

    table: list[RouteInfo] = request.app.state.route_table
    path = request.url.path
    methods = {m for r in table if r.kind != "static" and compile_path(r.path)[0].match(path) for m in r.methods}
    return sorted(methods | ({"HEAD"} if "GET" in methods else set()))


class CatchUnexpected:
    """A route that fails unexpectedly (a bug, in a plugin say) answers 500 in the one-line
    error shape, inside the session, CSRF and headers middleware; the exception, whose text a
    client must not see, goes to the host's log."""

    MESSAGE = "internal error: the host's log has the details"

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            log.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=exc)
            if started:
                raise
            request = Request(scope, receive)
            try:
                response = _respond(request, 500, self.MESSAGE)
            except Exception:  # the error page itself failed: plain text
                response = Response(self.MESSAGE, status_code=500, media_type="text/plain")
            await response(scope, receive, send)


def _form_page(request: Request) -> str:
    """The page a form was sent from (the path of its ``Referer``, a page of this site that
    answers GET), else the console's home page."""
    from urllib.parse import urlsplit

    from starlette.routing import Match

    referer = urlsplit(request.headers.get("referer", ""))
    path = referer.path
    if not path.startswith("/") or path.startswith("//") or path == "/login":
        return "/"
    scope = {"type": "http", "path": path, "method": "GET"}
    if not any(route.matches(scope)[0] == Match.FULL for route in request.app.routes):
        return "/"
    return path + (f"?{referer.query}" if referer.query else "")


#: the longest page address kept for after sign-in (``/login?next=``); a longer one (a search
#: pasted whole into the URL) is dropped, the admin lands on the home page instead
MAX_NEXT = 2048


def safe_next(target: str | None) -> str:
    """``target`` when it is a path of this site of at most :data:`MAX_NEXT` characters, else
    ``/`` (never ``//other.host``, a full URL, or one a browser reads as such: a backslash or a
    control character, which browsers drop from a URL)."""
    if not target or len(target) > MAX_NEXT or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 or c == "\x7f" for c in target):
        return "/"
    return target


def _error_handlers(app: FastAPI) -> None:
    respond = _respond

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> Response:
        if _is_api(request):
            return JSONResponse({"error": exc.message}, status_code=401, headers={"WWW-Authenticate": exc.challenge})
        from urllib.parse import quote

        if request.method in SAFE_METHODS:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        else:  # a form sent after the session ended: back to its page, never to a GET of a POST-only route (405)
            if request.cookies:  # a browser that used the console (its expired session cookie may be gone)
                flash(request, "your session had ended, so nothing was done: sign in, then send the form again", "error")
            target = _form_page(request)
        kept = safe_next(target) == target  # else dropped: too long to carry (the browser's next request as large)
        return RedirectResponse(f"/login?next={quote(target, safe='')}" if kept else "/login", status_code=303)

    @app.exception_handler(WebError)
    async def web_error(request: Request, exc: WebError) -> Response:
        return respond(request, exc.status, exc.message)

    @app.exception_handler(UsageError)
    async def usage_error(request: Request, exc: UsageError) -> Response:
        return respond(request, 422, str(exc))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return respond(request, 404, str(exc))

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> Response:
        return respond(request, 409, str(exc))

    @app.exception_handler(TemporaryError)
    async def temporary_error(request: Request, exc: TemporaryError) -> Response:
        return respond(request, 503, str(exc))

    @app.exception_handler(MdmError)
    async def mdm_error(request: Request, exc: MdmError) -> Response:
        return respond(request, 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return respond(request, 422, validation_message(exc.errors()[0] if exc.errors() else {}))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:  # which methods are allowed, in the message and the Allow header (RFC 9110)
            allowed = _allowed_methods(request) or ["GET", "HEAD"]
            use = " or ".join(m for m in allowed if m != "HEAD")  # HEAD goes with GET
            return respond(request, 405, f"{_method(request)} is not allowed here: use {use}", {"Allow": ", ".join(allowed)})
        message = {404: "no such page: check the address"}.get(exc.status_code, str(exc.detail))
        return respond(request, exc.status_code, message)
