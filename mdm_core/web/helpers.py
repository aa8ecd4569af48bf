"""What a plugin's pages and API routes use: rendering, errors, background work (paging: ``paging``).

Imported by plugins' web modules only (it imports FastAPI), never at plugin load time.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from types import UnionType
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_args, get_origin
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from fastapi.datastructures import DefaultPlaceholder
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.datastructures import QueryParams

from mdm_core.db.engine import MAX_ROW_ID
from mdm_core.errors import one_line
from mdm_core.output import to_jsonable

from .access import Principal
from .openapi import REFUSES_EMPTY

if TYPE_CHECKING:
    from mdm_core.host import Host

T = TypeVar("T")


def row_id() -> Any:
    """A row id in a path (``run_id: int = row_id()`` for ``/runs/{run_id}``); one per parameter
    (FastAPI names the field after the first parameter it is given to). One beyond
    :data:`~mdm_core.db.engine.MAX_ROW_ID` is a 422 naming the bound, where the database's
    overflow was a 500."""
    return Path(ge=1, le=MAX_ROW_ID)


class WebError(Exception):
    """A one-line refusal with its HTTP status: JSON ``{"error": ...}`` on the API, a page
    with the message in the console. Raise it before changing anything."""

    def __init__(self, status: int, message: str):
        super().__init__(one_line(message))
        self.status = status
        self.message = one_line(message)


class CliJsonRoute(APIRoute):
    """A REST route whose JSON is the CLI's ``--json``: what the endpoint returns is encoded
    by ``mdm_core.output.to_jsonable`` (datetimes as ``isoformat()``, ``+00:00``), as ``mdm
    ... --json`` does, never re-serialized through a response model inferred from the return
    annotation (pydantic writes ``Z``) nor FastAPI's generic encoder (ten times slower on a
    page of 1,000 rows). A ``response_model`` given (``schemas``) only documents the body. A
    ``Response`` the endpoint returns goes out as it is."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any):
        status = kwargs.get("status_code") or 200
        model = kwargs.get("response_model")
        if model is not None and not isinstance(model, DefaultPlaceholder):  # documented only: the body stays the CLI's JSON
            responses = dict(kwargs.get("responses") or {})
            responses[status] = {"model": model, **responses.get(status, {})}
            kwargs["responses"] = responses
        kwargs["response_model"] = None
        kwargs["openapi_extra"] = (kwargs.get("openapi_extra") or {}) | {REFUSES_EMPTY: True}  # what get_route_handler checks
        super().__init__(path, _answering_cli_json(endpoint, status), **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler, refusing a query parameter the endpoint does not take, or one given empty
        (422, one line): a misspelt filter (``?acount=``), ``offset`` or an empty filter
        (``?device=``) was ignored, answering every row or the first page as if it were what
        was asked."""
        handler = super().get_route_handler()
        known = sorted(_query_names(self.dependant))
        many = _query_names(self.dependant, many=True)

        async def checked(request: Request) -> Response:
            unknown = sorted(set(request.query_params) - set(known))
            if unknown:
                raise WebError(422, _unknown_parameters(unknown, known))
            empty = sorted({k for k, v in request.query_params.multi_items() if not v.strip()})
            if empty:  # ?device=$SERIAL with the variable unset filtered nothing: every row
                raise WebError(422, f"{_parameters(empty)} {'are' if len(empty) > 1 else 'is'} empty: give a value or leave it out")
            keys = [k for k, _ in request.query_params.multi_items()]
            repeated = sorted({k for k in keys if keys.count(k) > 1} - many)
            if repeated:  # ?account=a&account=b answered account b's rows alone, as if that were what was asked
                are, each = ("are", "each") if len(repeated) > 1 else ("is", "it")
                raise WebError(422, f"{_parameters(repeated)} {are} given more than once: {each} takes one value")
            _trim_query(request)
            return await handler(request)

        return checked


def _trim_query(request: Request) -> None:
    """Take the query's values without the spaces around them, as the API takes a body's serial
    numbers and names: ``?device=%20SERIAL`` (a pasted serial) matched nothing, an empty page."""
    items = request.query_params.multi_items()
    if any(v != v.strip() for _, v in items):
        request.scope["query_string"] = urlencode([(k, v.strip()) for k, v in items]).encode()
        request._query_params = QueryParams(request.scope["query_string"])


def _query_names(dependant: Any, *, many: bool = False) -> set[str]:
    """The query parameters an endpoint and its dependencies take (``many``: those that take a
    list, given once per value)."""
    own = {p.alias for p in dependant.query_params if not many or _takes_many(p.field_info.annotation)}
    return own.union(*(_query_names(d, many=many) for d in dependant.dependencies))


def _takes_many(annotation: Any) -> bool:
    """Whether a parameter's type is a list (``list[str]``, ``list[str] | None``)."""
    if get_origin(annotation) in (Union, UnionType):
        return any(_takes_many(a) for a in get_args(annotation))
    return get_origin(annotation) in (list, set, tuple, frozenset) or annotation in (list, set, tuple, frozenset)


def _parameters(names: list[str]) -> str:
    """``query parameter a`` or ``query parameters a, b``; each name cut at 50 characters, as
    every echo of what a request sent (a 4 KB name made a 4 KB line)."""
    return f"query parameter{'s' if len(names) > 1 else ''} {', '.join(name[:50] for name in names)}"


def _unknown_parameters(unknown: list[str], known: list[str]) -> str:
    takes = f"it takes {', '.join(known)}" if known else "it takes none"
    paging = "; page with cursor (the next_cursor of the previous page), not offset" if "offset" in unknown and "cursor" in known else ""
    return f"unknown {_parameters(unknown)}: {takes}{paging}"


def _answering_cli_json(endpoint: Callable[..., Any], status: int) -> Callable[..., Any]:
    def answer(value: Any) -> Any:
        return value if isinstance(value, Response) else JSONResponse(to_jsonable(value), status_code=status)

    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            return answer(await endpoint(*args, **kwargs))

        return wrapped_async

    @functools.wraps(endpoint)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return answer(endpoint(*args, **kwargs))

    return wrapped


def rest_router(**kwargs: Any) -> APIRouter:
    """An ``APIRouter`` for ``web.add_api`` whose routes answer what ``mdm ... --json`` prints
    and refuse a query parameter they do not declare, or one given empty (422)."""
    return APIRouter(route_class=CliJsonRoute, **kwargs)


def host_of(request: Request) -> Host:
    """The running host."""
    return request.app.state.host


def principal_of(request: Request) -> Principal:
    """Who made the request (set by the access check every route goes through)."""
    return request.state.principal


def read_only(role: str) -> WebError:
    """The 403 of a role that can only read."""
    return WebError(403, f"the role '{role}' can only read: ask an admin to do this")


async def json_object(request: Request, *, send: str, shape: str, empty: bool = False) -> dict[str, Any]:
    """The request's JSON body, an object: a 400 ``the body is not JSON: {send}`` when it does
    not parse, a 422 ``shape`` when it is not an object; with ``empty``, no body is ``{}``."""
    if empty and not (await request.body()).strip():
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise WebError(400, f"the body is not JSON: {send}") from None
    if not isinstance(body, dict):
        raise WebError(422, shape)
    from .storable import refuse_unstorable_json  # a body labelled as a form was checked as one

    refuse_unstorable_json(body)
    return body


def require_change(request: Request) -> None:
    """A 403 for a principal that can only read: for the page of a form that changes something,
    so that a viewer is told before filling it in, not after submitting it."""
    principal = principal_of(request)
    if not principal.can_change:
        raise read_only(principal.role)


def flash(request: Request, message: str, kind: str = "ok") -> None:
    """A one-line message shown on the next page (kinds: ``ok``, ``error``), with the command
    line's advice in the console's words (``wording``)."""
    from .wording import for_request

    # assigned, not appended in place: the session saves only what it sees set (a second message
    # before the next page, a double click or another tab, was lost)
    request.session["flash"] = [*request.session.get("flash", []), [kind, one_line(for_request(request, message))]]


def redirect(request: Request, path: str, message: str | None = None, kind: str = "ok") -> RedirectResponse:
    """303 to ``path`` after a form, with an optional message for the next page."""
    if message:
        flash(request, message, kind)
    return RedirectResponse(path, status_code=303)


def render(request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """A console page: ``template`` extends ``base.html``; the navigation, the signed-in
    admin, the flash messages and ``csrf_field(request)`` are provided; ``notices`` (one line
    each, the page's own: an unknown sort) and those of the query parameters the page does not
    take are shown above it."""
    templates = request.app.state.templates
    ctx: dict[str, Any] = {
        "nav": request.app.state.registry.sorted_nav(),
        "principal": getattr(request.state, "principal", None),
        "messages": request.session.pop("flash", []) if "session" in request.scope else [],
    }
    ctx.update(context or {})
    ctx["notices"] = [*ctx.get("notices", []), *_unknown_parameter_notices(request)] if status_code == 200 else []
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)


def _unknown_parameter_notices(request: Request) -> list[str]:
    """A console page's line naming the query parameters it does not take (a misspelt
    ``?sotr=``, a link from an older release), which it ignores: the page showed as if they
    were not there, and nothing said so."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return []
    known = sorted(_query_names(dependant))
    unknown = sorted(set(request.query_params) - set(known))
    if not unknown:
        return []
    takes = f"this page takes {', '.join(known)}" if known else "this page takes none"
    return [f"{_parameters(unknown)} ignored: {takes}"]


def chosen(name: str, value: str, valid: list[str], notices: list[str]) -> str:
    """``value`` of a console page's query parameter ``name`` if it is one of ``valid``, else
    the first of them, with a line in ``notices`` saying so (an unknown sort fell back on the
    default without a word)."""
    if value in valid:
        return value
    notices.append(f"{name} '{value[:50]}' is not one this page takes ({', '.join(valid)}): shown by {valid[0]}")
    return valid[0]


def url_with(request: Request, **changes: Any) -> str:
    """The current URL with some query parameters changed (``None`` drops one)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return request.url.path + ("?" + urlencode(params) if params else "")


# ---------------------------------------------------------------------- background work


class BackgroundWork:
    """A bounded pool for work started from the console (a sync, say).

    At most ``workers`` tasks run at once in this process; one more is refused with a 503
    rather than queued without limit. The server waits for the running ones when it stops.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="web-work")
        self._slots = threading.BoundedSemaphore(workers)
        self._running = 0
        self._changed = threading.Condition()

    def submit(self, work: Callable[[], T]) -> Future[T]:
        """Start ``work`` on a free worker, or raise ``WebError(503)`` when all are busy."""
        if not self._slots.acquire(blocking=False):
            raise WebError(503, f"the console is already running {self.workers} background task(s): try again when one has finished")
        self._count(+1)

        def run() -> T:
            try:
                return work()
            finally:
                self._count(-1)  # before the future is done: whoever sees it done finds the slot free

        try:
            return self._pool.submit(run)
        except BaseException:
            self._count(-1)
            raise

    def _count(self, step: int) -> None:
        with self._changed:
            self._running += step
            if step < 0:
                self._slots.release()
                self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no task runs: True, or False after ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._running == 0, timeout)

    def shutdown(self) -> None:
        """Wait for the running tasks (the server is stopping)."""
        self._pool.shutdown(wait=True)


def run_in_background(request: Request, work: Callable[[], T]) -> Future[T]:
    """Run ``work`` on the web server's bounded worker pool (see ``BackgroundWork``)."""
    background: BackgroundWork = request.app.state.background
    return background.submit(work)
