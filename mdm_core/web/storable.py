"""Text no database column holds (NUL, a lone surrogate: :mod:`mdm_core.text`), refused where
it enters the console and the API, as the command line refuses it in an argument.

PostgreSQL refuses a NUL in any text it is given, so ``/devices?q=%00``, a sign-in name or a
serial number holding one reached the database and answered 500 there, while SQLite answered
as if it were any other text. Every route's requests are checked once, here: the path, the
query parameters, the fields of a form and the strings of a JSON body.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import Request

from mdm_core.text import bad_character

from .helpers import WebError

FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


async def storable_input(request: Request) -> None:
    """The application's dependency: 422, one line naming where, for a request holding text no
    database column holds; nothing was read from or written to the database."""
    found = [("the address", request.url.path)]
    found += [(f"query parameter {key}", key + value) for key, value in request.query_params.multi_items()]
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith(FORMS):
        if getattr(request.scope.get("route"), "body_field", None) is None:
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
        found += [("the JSON body", text) for text in _strings(body)]
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
    refuse_unstorable(("the JSON body", text) for text in _strings(body))


def _strings(value: Any) -> Iterator[str]:
    """Every string (keys included) of a JSON document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
