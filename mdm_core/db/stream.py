"""Reading long query results in constant memory.

:func:`stream_rows` yields the rows of a query as the database returns them, at most ``batch``
at a time in memory (a server-side cursor on PostgreSQL; SQLite steps its cursor), all from one
read transaction so that a listing is one consistent picture. It is what the list commands and
the ``mdm_vpp_iter_*`` hooks read through: close the iterator (or read it to the end) to end
the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Select

    from mdm_core.db.engine import Database

STREAM_BATCH = 500


def stream_rows(db: Database, query: Select[Any], *, offset: int = 0, limit: int | None = None, batch: int = STREAM_BATCH) -> Iterator[Any]:
    """The rows of ``query`` (``OFFSET``/``LIMIT`` applied in SQL), read ``batch`` at a time."""
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    with db.session() as session:
        result = session.execute(query, execution_options={"yield_per": batch})
        try:
            yield from result
        finally:
            result.close()
