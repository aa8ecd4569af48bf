"""Server-side paging for the console and the REST API, done by the database.

- REST lists use keyset cursors (``limit`` plus ``cursor``): the next page starts just after
  the sort key of the last row sent, so every page costs the same, the 3,000th as the first,
  and rows added meanwhile never shift a page. The key is a tuple of columns, all in one
  direction, ending with a unique one (the primary key); its columns must be NOT NULL.
- Console tables use numbered pages (an admin jumps to page N, sees how many there are):
  ``LIMIT``/``OFFSET`` on an indexed order, with the total from ``COUNT(*)``. Lists that can
  hold hundreds of thousands of rows (licenses, events) use the keyset instead ("Next").

Nothing here loads a whole list: at most ``limit`` + 1 rows are read. A list whose rows can be
large (events and their payloads) is bounded by bytes too (``weigh``): a page stops before the
row that would take it past :data:`PAGE_BYTES` (never before its first row), the rows streamed
from the database, and its cursor goes on from the last row sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Query
from sqlalchemy import func, or_, select, tuple_

from mdm_core.output import to_jsonable
from mdm_core.text import bad_character

from .helpers import WebError

T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PAGE_SIZE = 50  # rows of a console table
#: The most bytes of rows (their JSON) a page of a weighed list holds; a row larger alone is a page alone.
PAGE_BYTES = 1024 * 1024
STREAM_ROWS = 50  # rows of a weighed list fetched from the database at a time

#: The ``limit`` parameter of every REST list.
Limit: Any = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"rows per page, 1 to {MAX_LIMIT}")
#: The ``cursor`` parameter of every REST list: the ``next_cursor`` of the previous page.
Cursor: Any = Query(None, description="the next_cursor of the previous page; none for the first page")

_BAD_CURSOR = "cursor is not valid: pass the next_cursor of the previous page unchanged"


def encode_cursor(values: dict[str, Any]) -> str:
    """An opaque cursor."""
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any]:
    """The values of a cursor from ``encode_cursor``; a bad one is a 400."""
    if not cursor:
        return {}
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise WebError(400, _BAD_CURSOR) from None
    if not isinstance(value, dict):
        raise WebError(400, _BAD_CURSOR)
    return value


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page: its rows and the cursor of the next one (None on the last page)."""

    items: list[T]
    next_cursor: str | None

    def as_json(self) -> dict[str, Any]:
        """What a REST list answers: ``{"items": [...], "next_cursor": ...}``."""
        return {"items": self.items, "next_cursor": self.next_cursor}


def keyset(
    session: Any,
    query: Any,
    key: Sequence[Any],
    *,
    limit: int,
    cursor: str | None,
    descending: bool = False,
    weigh: Callable[[tuple[Any, ...]], int] | None = None,
    max_bytes: int = PAGE_BYTES,
) -> Page[Any]:
    """One page of ``query`` in the order of the ``key`` columns, starting after ``cursor``.

    Returns the result rows (without the key columns) and the next cursor. The key columns
    must be NOT NULL and end with a unique one. ``weigh``: a row's size in bytes; the page then
    ends before the row that would take it past ``max_bytes`` (its first row is always sent).
    """
    after = decode_cursor(cursor).get("after") if cursor else None
    if cursor is not None and (not isinstance(after, list) or len(after) != len(key) or not all(map(_fits, key, after))):
        raise WebError(400, _BAD_CURSOR)
    if after is not None:
        bound = tuple_(*key) < tuple_(*after) if descending else tuple_(*key) > tuple_(*after)
        query = query.where(bound)
    width = len(key)
    query = query.add_columns(*(column.label(f"page_key_{i}") for i, column in enumerate(key)))
    query = query.order_by(None).order_by(*(column.desc() if descending else column.asc() for column in key)).limit(limit + 1)
    if weigh is None:
        rows = session.execute(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
    else:
        rows, more = _weighed(session.execute(query.execution_options(yield_per=STREAM_ROWS)), width, limit, weigh, max_bytes)
    next_cursor = encode_cursor({"after": list(rows[-1][-width:])}) if more and rows else None
    return Page([tuple(row[:-width]) for row in rows], next_cursor)


def _weighed(result: Any, width: int, limit: int, weigh: Callable[[tuple[Any, ...]], int], max_bytes: int) -> tuple[list[Any], bool]:
    """The rows of ``result`` up to ``limit`` and ``max_bytes`` (at least one), and whether a row
    was left for the next page; the rows after it are never fetched."""
    rows: list[Any] = []
    used = 0
    try:
        for row in result:
            if len(rows) == limit:
                return rows, True
            used += weigh(tuple(row[:-width]))
            if rows and used > max_bytes:
                return rows, True
            rows.append(row)
        return rows, False
    finally:
        result.close()


def _fits(column: Any, value: Any) -> bool:
    """A cursor's value is one the key column holds: a 64-bit integer for an integer column (a
    larger one overflowed SQLite's, a 500), text for a text one (PostgreSQL refuses text for
    an integer), text a column can hold (a NUL or a lone surrogate was a 500)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and bad_character(value)):
        return False
    try:
        wanted = column.type.python_type
    except (AttributeError, NotImplementedError):
        return True
    if wanted is int:
        return isinstance(value, int) and -(2**63) <= value < 2**63
    return isinstance(value, str) if wanted is str else True


@dataclass(frozen=True)
class Numbered(Generic[T]):
    """One numbered page of a console table: its rows, its number, how many pages and rows."""

    items: list[T]
    page: int
    pages: int
    total: int


def numbered(session: Any, query: Any, order: Sequence[Any], *, page: int, size: int = PAGE_SIZE, count: Any = None) -> Numbered[Any]:
    """Page ``page`` (from 1; past the last, the last) of ``query`` in ``order`` (which must end
    with a unique column, so that no row shows on two pages). ``count``: a query with the same
    rows but without the joins that only add columns, counted instead (cheaper)."""
    counted = (query if count is None else count).order_by(None).subquery()
    total = int(session.execute(select(func.count()).select_from(counted)).scalar_one())
    pages = max(1, -(-total // size))
    page = min(max(page, 1), pages)
    rows = session.execute(query.order_by(None).order_by(*order).offset((page - 1) * size).limit(size)).all()
    return Numbered([tuple(row) for row in rows], page, pages, total)


def search(query: Any, text: str, columns: Sequence[Any]) -> Any:
    """``query`` narrowed to rows where one of ``columns`` contains ``text`` (any case; ``%``
    and ``_`` are taken literally). An empty ``text`` changes nothing."""
    needle = text.strip().lower()
    if not needle:
        return query
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return query.where(or_(*(func.lower(column).like(pattern, escape="\\") for column in columns)))


def json_bytes(row: Any) -> int:
    """The bytes ``row`` takes in an API answer (JSON as the API writes it, and its comma)."""
    return len(json.dumps(to_jsonable(row), ensure_ascii=False, separators=(",", ":")).encode()) + 1
