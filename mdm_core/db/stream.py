"""Reading long query results in constant memory.

:func:`stream_rows` yields the rows of a query as the database returns them, at most ``batch``
at a time in memory (a server-side cursor on PostgreSQL; SQLite steps its cursor), all from one
read transaction so that a listing is one consistent picture. It is what the list commands and
the ``mdm_vpp_iter_*`` hooks read through: close the iterator (or read it to the end) to end
the transaction. A listing made of several statements (one per account, say) reads them all
in one :func:`snapshot` with :func:`stream_in`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

if TYPE_CHECKING:
    from sqlalchemy import Select

    from mdm_core.db.engine import Database

STREAM_BATCH = 500


@contextmanager
def snapshot(db: Database) -> Iterator[Session]:
    """A session whose statements all see the database as of its first one, whatever commits
    meanwhile: on PostgreSQL a ``REPEATABLE READ`` transaction (``READ COMMITTED``,
    the default, takes a new snapshot at each statement); on SQLite its one read transaction
    (``BEGIN``), which holds its WAL snapshot from its first read to its end.

    Not ``postgresql_readonly`` too: psycopg's ``read_only`` set on a pooled connection and
    reset on its return changed how a later write on it failed on a read-only database (an
    install lost its "cannot record the install" error); the isolation level alone is what
    gives the snapshot."""
    engine = db.engine if db.is_sqlite else db.engine.execution_options(isolation_level="REPEATABLE READ")
    with Session(engine, expire_on_commit=False) as session:
        yield session


def stream_in(session: Session, query: Select[Any], *, offset: int = 0, limit: int | None = None, batch: int = STREAM_BATCH) -> Iterator[Any]:
    """The rows of ``query`` read in ``session`` (``OFFSET``/``LIMIT`` applied in SQL), ``batch`` at a time."""
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    result = session.execute(query, execution_options={"yield_per": batch})
    try:
        yield from result
    finally:
        result.close()


def stream_rows(db: Database, query: Select[Any], *, offset: int = 0, limit: int | None = None, batch: int = STREAM_BATCH) -> Iterator[Any]:
    """The rows of ``query`` (``OFFSET``/``LIMIT`` applied in SQL), read ``batch`` at a time in one :func:`snapshot`."""
    with snapshot(db) as session:
        yield from stream_in(session, query, offset=offset, limit=limit, batch=batch)
