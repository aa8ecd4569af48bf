"""Text no database can hold, checked where a value enters (an argument, an import cell, a field
Apple sent), so that SQLite (which stores it) and PostgreSQL (which refuses it with a database
error naming no field) answer alike: with one line naming the value."""

from __future__ import annotations

import re
from collections.abc import Iterator

#: NUL (PostgreSQL refuses it in text), lone UTF-16 surrogates (not Unicode: no UTF-8 encodes them;
#: Python makes them of the bytes of an argument that is not UTF-8)
BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def bad_character(value: str) -> str | None:
    """What in ``value`` no database column can hold (``a NUL character``, ``a lone UTF-16
    surrogate (not valid Unicode)``), or None when it has none."""
    bad = BAD_TEXT.search(value)
    if bad is None:
        return None
    return "a NUL character" if bad.group() == "\x00" else "a lone UTF-16 surrogate (not valid Unicode)"


def json_strings(value: object) -> Iterator[str]:
    """Every string (keys included) of a parsed JSON document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


def shown(value: object, limit: int = 40) -> str:
    """A value quoted for a one-line message: ASCII only (a control character or a surrogate is
    escaped), at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    return ascii(text[:limit] + ("…" if len(text) > limit else ""))
