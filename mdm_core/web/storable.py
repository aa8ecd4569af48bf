"""Text no database column holds (NUL, a lone surrogate: :mod:`mdm_core.text`), refused where
it enters the console and the API, as the command line refuses it in an argument.

PostgreSQL refuses a NUL in any text it is given, so ``/devices?q=%00``, a sign-in name or a
serial number holding one reached the database and answered 500 there, while SQLite answered
as if it were any other text. Every route's requests are checked once, here: the path, the
query parameters, the fields of a form and the strings of a JSON body; a route marked
:data:`OWN_BODY` (a public route that authenticates its caller itself) checks its body itself,
after the caller proved who it is: its body is not read here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request

from mdm_core.text import bad_character, json_strings

from .helpers import WebError

FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
#: ``openapi_extra`` of a route that reads and checks its body itself once it has authenticated
#: the caller (Apple's notification endpoint): an anonymous request's body is never read or
#: parsed before that (and answered 401, not 422, whatever it holds).
OWN_BODY: dict[str, Any] = {"x-mdm-own-body": True}


async def storable_input(request: Request) -> None:
    """The application's dependency: 422, one line naming where, for a request holding text no
    database column holds; nothing was read from or written to the database."""
    found = [("the address", request.url.path)]
    found += [(f"query parameter {key}", key + value) for key, value in request.query_params.multi_items()]
    content_type = request.headers.get("content-type", "").lower()
    route = request.scope.get("route")
    if (getattr(route, "openapi_extra", None) or {}).get("x-mdm-own-body"):
        refuse_unstorable(found)  # the path and the query: the route checks its body itself
        return
    if content_type.startswith(FORMS):
        if getattr(route, "body_field", None) is None:
            # a route without form fields reads the body itself (the API's JSON, which `curl -d`
            # labels as a form): keep it for that route, or parsing the form consumes it (a 500)
            await request.body()
        form = await request.form()  # parsed once: FastAPI's Form parameters read the same
        found += [(f"form field {key}", key + value) for key, value in form.multi_items() if isinstance(value, str)]
    elif "json" in content_type:
        try:
            body = await request.json()
        except ValueError:
            return  # the route says that the body is not JSON
        found += [("the JSON body", text) for text in json_strings(body)]
    refuse_unstorable(found)


def refuse_unstorable(found: Iterable[tuple[str, str]]) -> None:
    """A 422 naming where, for the first text of ``found`` (``(where, text)`` pairs) that no
    database column holds."""
    for where, value in found:
        bad = bad_character(value)
        if bad is not None:
            raise WebError(422, f"{where} holds {bad}, which cannot be stored: remove it")


def refuse_unstorable_json(body: Any) -> None:
    """:func:`refuse_unstorable` of every string of a parsed JSON body (one sent with another
    content type than JSON, which :func:`storable_input` read as a form)."""
    refuse_unstorable(("the JSON body", text) for text in json_strings(body))
