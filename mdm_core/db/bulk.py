"""Writing many rows fast, in the caller's transaction.

:func:`insert_rows` takes plain tuples: on PostgreSQL it streams them with ``COPY ... FROM
STDIN`` (psycopg), elsewhere it hands them to the driver's ``executemany`` (SQLite steps one
prepared statement). Both skip SQLAlchemy's per-row parameter processing, which costs more
than the database's own work for hundreds of thousands of rows.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import any_, bindparam, column, delete, func, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")


class BinaryList(list[Any]):
    """A list psycopg sends as a binary array (its list dumper's binary format). Its text
    format quotes each element by a regular expression: 450 serial numbers 0.41 -> 0.13 ms of
    CPU, as many integers 0.61 -> 0.28 ms; the server receives the same array."""


@functools.cache
def register_binary_lists() -> None:
    """Tell psycopg to send :class:`BinaryList` in binary, once per process, before a PostgreSQL
    engine is created (its dialect, and each connection, copy psycopg's adapters when made).
    Called by :class:`~mdm_core.db.engine.Database` rather than at import: on SQLite every
    command would load psycopg for nothing (9 MB, 50 ms)."""
    import psycopg
    from psycopg.types.array import ListBinaryDumper

    psycopg.adapters.register_dumper(BinaryList, ListBinaryDumper)


class BinaryArray(TypeDecorator[Any]):
    """PostgreSQL ``ARRAY`` of ``item`` whose parameters psycopg sends in binary
    (:class:`BinaryList`), each element processed as ``ARRAY`` processes it, without the text
    format's per-element quoting: an array parameter of :func:`one_of` or :func:`unnest_rows`
    holds hundreds of keys or values."""

    impl = ARRAY
    cache_ok = True

    def __init__(self, item_type: Any):
        super().__init__(item_type)
        # a constructor argument of its own: SQLAlchemy's statement cache keys a type by the
        # arguments its constructor names, so that an array of integers and one of strings
        # are not served each other's compiled statement (and bind processing)
        self.item_type = item_type

    def bind_processor(self, dialect: Any) -> Callable[[Any], Any] | None:
        items = self.impl_instance.dialect_impl(dialect).bind_processor(dialect)
        if dialect.driver != "psycopg" or items is None:
            return items
        return lambda value: None if value is None else BinaryList(items(value))


#: keys per ``IN (...)`` list: well under SQLite's and PostgreSQL's limits on bound parameters
IN_CHUNK = 500


def one_of(column: Any, name: str, postgres: bool) -> Any:
    """``column`` is one of the list given as parameter ``name``: on PostgreSQL one array
    parameter (``= ANY``), so that the statement's text, and psycopg's parsing of it at each
    execution, do not grow with the list (hundreds of keys an event); elsewhere an expanding
    ``IN`` (at most ``IN_CHUNK`` values a statement: :func:`in_chunks`)."""
    if postgres:
        return column == any_(bindparam(name, type_=BinaryArray(column.type)))
    return column.in_(bindparam(name, expanding=True))


def in_chunks(keys: list[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """``keys`` in consecutive slices of at most ``size``, one ``IN (...)`` list each."""
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def insert_rows(session: Session, table: Any, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert ``rows`` (tuples in the order of ``columns``) into ``table`` in ``session``'s
    transaction: ``COPY`` on PostgreSQL (psycopg, the one driver the host takes for it), the
    driver's ``executemany`` on SQLite."""
    conn = session.connection()
    names = ", ".join(f'"{c}"' for c in columns)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:  # type: ignore[union-attr]  # a checked-out connection has its driver connection
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" for _ in columns)
        conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', list(rows))


def delete_rows(session: Session, table: Any, fixed: dict[str, Any], columns: dict[str, Any], rows: Sequence[Sequence[Any]]) -> int:
    """Delete the rows of ``table`` whose ``fixed`` columns hold these values and whose
    ``columns`` (name: type) are one of ``rows`` (tuples in their order), in the caller's
    transaction; returns how many it deleted. PostgreSQL: one ``DELETE ... USING unnest(...)``
    (an executemany runs the statement once a row on the server, each row sent on its own);
    elsewhere the driver's ``executemany`` of one prepared statement (no per-row parameter
    processing by SQLAlchemy)."""
    if not rows:
        return 0
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        keys = unnest_rows("keys", "k_", columns)
        statement = delete(table).where(*(table.c[c] == bindparam(f"f_{c}") for c in fixed), *(table.c[c] == keys.c[c] for c in columns))
        arrays = {f"k_{c}": list(values) for c, values in zip(columns, zip(*rows, strict=True), strict=True)}
        return int(conn.execute(statement, {**{f"f_{c}": v for c, v in fixed.items()}, **arrays}).rowcount)
    where = " AND ".join(f'"{c}" = ?' for c in (*fixed, *columns))
    constant = tuple(fixed.values())
    return int(conn.exec_driver_sql(f'DELETE FROM "{table.name}" WHERE {where}', [(*constant, *row) for row in rows]).rowcount)


def update_rows(session: Session, table: Any, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], fixed: Mapping[str, Any] | None = None) -> None:
    """Set ``columns`` of the rows whose ``key`` is each tuple's last value (``rows``: tuples of
    the ``columns``' plain values, ints and strings, then the key), and the ``fixed`` columns to
    one value each, in ``session``'s transaction. PostgreSQL: one ``UPDATE ... FROM unnest(...)``
    (an executemany runs the statement once a row, each sent on its own); elsewhere the driver's
    ``executemany`` of one prepared statement. Neither processes each row's parameters in
    SQLAlchemy (~10 us a row: an event's hundreds of applications)."""
    if not rows:
        return
    fixed = dict(fixed or {})
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        names = [*columns, key]
        values = unnest_rows("v", "u_", {c: table.c[c].type for c in names})
        sets = {c: values.c[c] for c in columns} | {c: bindparam(f"f_{c}", type_=table.c[c].type) for c in fixed}
        arrays = {f"u_{c}": list(column_values) for c, column_values in zip(names, zip(*rows, strict=True), strict=True)}
        conn.execute(update(table).where(table.c[key] == values.c[key]).values(sets), {**arrays, **{f"f_{c}": v for c, v in fixed.items()}})
        return
    constants = tuple(bound_value(conn.dialect, table.c[c], v) for c, v in fixed.items())
    sets_sql = ", ".join(f'"{c}" = ?' for c in (*columns, *fixed))
    conn.exec_driver_sql(f'UPDATE "{table.name}" SET {sets_sql} WHERE "{key}" = ?', [(*r[:-1], *constants, r[-1]) for r in rows])


def bind_processor(dialect: Any, column: Any) -> Callable[[Any], Any] | None:
    """``column``'s bind processing of a value as SQLAlchemy's own statements do it on this
    dialect (the dialect's implementation of its type: psycopg's JSON wrapper on PostgreSQL,
    the JSON text on SQLite), for rows sent by the driver's ``executemany`` or ``COPY``; None
    when the driver takes the value as it is (no call per row for those columns)."""
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def bound_value(dialect: Any, column: Any, value: Any) -> Any:
    """``value`` as SQLAlchemy hands it to the driver for ``column`` (:func:`bind_processor`),
    for a statement sent by the driver's ``executemany`` (a value bound once for every row)."""
    process = bind_processor(dialect, column)
    return value if process is None else process(value)


def unnest_rows(name: str, prefix: str, columns: dict[str, Any]) -> Any:
    """PostgreSQL: a derived table ``name`` of rows passed as one array parameter per column
    (``{prefix}{column}``, of ``columns``' types), for a statement that writes many rows in one
    execution (``UPDATE ... FROM unnest(...)``: an executemany runs the statement once a row)."""
    arrays = (bindparam(f"{prefix}{key}", type_=BinaryArray(kind)) for key, kind in columns.items())
    return func.unnest(*arrays).table_valued(*(column(key, kind) for key, kind in columns.items())).render_derived(name=name)


@contextlib.contextmanager
def page_cache(session: Session, mib: int) -> Iterator[None]:
    """SQLite: the connection of ``session``'s transaction keeps up to ``mib`` MiB of database
    pages in its cache inside the block (SQLite's default: 2 MiB), its own size again after it
    (also when the block fails: the connection goes back to the pool as it came). A write of
    thousands of rows spread over large tables changes and reads again more pages than the
    default holds: each one dropped is read again (or spilled to the WAL and read back).
    Elsewhere: nothing."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    raw = session.connection().connection.driver_connection
    assert raw is not None  # a checked-out connection has its driver connection
    size = raw.execute("PRAGMA cache_size").fetchone()[0]
    raw.execute(f"PRAGMA cache_size = -{int(mib) * 1024}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA cache_size = {int(size)}")
