"""The one insert-or-update of inventory rows (devices and users), with their events.

``None`` in a row means "not given": the stored value is kept (an empty import cell, an
option left out). Counts are of real changes: a row equal to what is stored is ``unchanged``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from mdm_core.db.bulk import in_chunks
from mdm_core.db.typed import table_of
from mdm_core.errors import MdmError, NotFound, UsageError
from mdm_core.text import bad_character, shown

if TYPE_CHECKING:
    from mdm_core.host import Host


STAGED_INSERT = 5000  # on SQLite, at least this many new rows go through TEMP tables (see _staged_write)


def check_lengths(model: type[SQLModel], values: dict[str, Any], labels: dict[str, str]) -> None:
    """Refuse a value longer than its column (``model``'s ``max_length``), naming the field and
    the limit, or holding a character no database holds (NUL, :mod:`mdm_core.text`): the same
    on SQLite (which would store it) and PostgreSQL (which would refuse it with a database error
    naming no field). ``labels``: how the user calls each field."""
    for name, value in values.items():
        what = bad_character(value) if isinstance(value, str) else None
        if what is not None:
            raise UsageError(f"{labels.get(name, name)} {shown(value)} holds {what}: remove it")
        limit = getattr(table_of(model).c[name].type, "length", None) if isinstance(value, str) else None
        if limit is not None and len(value) > limit:
            raise UsageError(f"{labels.get(name, name)} {shown(value)} is too long ({len(value)} characters): at most {limit}")


class Counts(NamedTuple):
    """What an import or an add did."""

    added: int
    updated: int
    unchanged: int


class Watch(NamedTuple):
    """An event for changes of some fields of existing rows: ``event`` is recorded with
    ``payload(row)`` (the row's new values, as a mapping) and ``previous`` (the ``fields``
    before) when one of them changed."""

    event: str
    fields: tuple[str, ...]
    payload: Callable[[Any], dict[str, Any]]


def _change_event(watch: Watch | None, before: Any, diff: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    if watch is None or not any(name in diff for name in watch.fields):
        return None
    after = {**dict(before), **diff}
    return watch.event, {**watch.payload(after), "previous": {name: before[name] for name in watch.fields}}


def changes(existing: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The given values (not ``None``) that differ from the stored row."""
    return {name: value for name, value in values.items() if value is not None and getattr(existing, name) != value}


def upsert(
    host: Host,
    model: type[SQLModel],
    rows: list[Any],
    key: Any,
    event: str,
    payload: Any,
    check: Any = None,
    exists: Callable[[Any], str] | None = None,
    watch: Watch | None = None,
) -> Counts:
    """Insert new rows (recording ``event`` for each) and change the given fields of existing
    ones, in one transaction. With ``exists``, an existing row is refused instead: the
    transaction fails with ``MdmError(exists(row))``. With ``watch``, a change of its fields is
    recorded as its event.

    All or nothing, and short: the stored rows are read and the differences worked out before
    (reads take no lock), then written in one transaction of bulk statements (one ``INSERT`` of
    the new rows, one ``UPDATE`` per set of changed columns, one insert of the events), so that
    a 300,000-row import holds the database's write lock for seconds, not minutes. A row that
    another writer added meanwhile makes the insert fail: the differences are worked out again."""
    table = table_of(model)
    (pk,) = table.primary_key.columns
    keys = [key(row) for row in rows]
    defaults = {name: info.get_default(call_default_factory=True) for name, info in model.model_fields.items()}

    def plan() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[tuple[str, ...], list[dict[str, Any]]], int]:
        stored: dict[Any, Any] = {}
        with host.db.session() as session:
            for chunk in in_chunks(keys):
                for found in session.execute(select(table).where(pk.in_(chunk))):
                    stored[found._mapping[pk.name]] = found._mapping
        new: list[dict[str, Any]] = []
        events: list[tuple[str, Any]] = []
        changed: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        unchanged = 0
        for row, row_key in zip(rows, keys, strict=True):
            values = dataclasses.asdict(row)
            old = stored.get(row_key)
            if old is None:  # what is not given gets the column's default
                new.append({**defaults, **{name: value for name, value in values.items() if value is not None}})
                events.append((event, payload(row)))
                continue
            if exists is not None:
                raise MdmError(exists(row))
            diff = {name: value for name, value in values.items() if value is not None and old[name] != value}
            if not diff:
                unchanged += 1
                continue
            changed.setdefault(tuple(sorted(diff)), []).append({**diff, "b_key": row_key})
            change = _change_event(watch, old, diff)
            if change is not None:
                events.append(change)
        return new, host.events.outbox_rows(events), changed, unchanged

    for attempt in (1, 2):
        new, event_rows, changed, unchanged = plan()

        def work(
            session: Session,
            new: list[dict[str, Any]] = new,
            event_rows: list[dict[str, Any]] = event_rows,
            changed: dict[tuple[str, ...], list[dict[str, Any]]] = changed,
        ) -> None:
            if check is not None:
                check(session)
            if new:
                session.execute(insert(table), new)
            if event_rows:
                host.events.record_rows(session, event_rows)
            for names, batch in changed.items():
                session.execute(update(table).where(pk == bindparam("b_key")).values({n: bindparam(n) for n in names}), batch)

        try:
            if host.db.is_sqlite and len(new) >= STAGED_INSERT:
                _staged_write(host, table, new, event_rows, partial(work, new=[], event_rows=[]))
            else:
                host.db.run_write(work)
            break
        except IntegrityError:
            if attempt == 2 or exists is not None:
                raise
    host.deliver_events()
    return Counts(len(new), sum(len(b) for b in changed.values()), unchanged)


def _staged_write(host: Host, table: Any, new: list[dict[str, Any]], event_rows: list[dict[str, Any]], rest: Callable[[Session], None]) -> None:
    """SQLite: the new rows and their events go first to TEMP tables of one connection (which
    take no lock on the database), then into the real tables with ``INSERT ... SELECT`` in one
    short write transaction that also runs ``rest``: all or nothing, the write lock held only
    for the copy."""
    from sqlalchemy import Column, MetaData, Table

    from mdm_core.interrupts import deferred
    from mdm_core.models import OutboxEvent

    outbox = table_of(OutboxEvent)
    meta = MetaData()
    stage = Table("mdm_stage_rows", meta, *[Column(c.name, c.type) for c in table.columns], prefixes=["TEMPORARY"])
    stage_events = Table("mdm_stage_events", meta, *[Column(c.name, c.type) for c in outbox.columns if c.name in event_rows[0]], prefixes=["TEMPORARY"])
    with host.db.engine.connect() as conn:
        try:
            meta.create_all(conn)
            conn.execute(insert(stage), new)
            conn.execute(insert(stage_events), event_rows)
            conn.commit()
            conn.execution_options(mdm_write=True)  # the next transaction begins IMMEDIATE: the write lock
            with deferred(), Session(bind=conn) as session:
                rest(session)
                session.execute(insert(table).from_select([c.name for c in stage.columns], select(stage)))
                session.execute(insert(outbox).from_select([c.name for c in stage_events.columns], select(stage_events)))
                session.commit()
        finally:
            if conn.in_transaction():
                conn.rollback()
            meta.drop_all(conn)
            conn.commit()


def update_one(
    host: Host, model: type, ident: str, given: dict[str, Any], missing: str, check: Any = None, watch: Watch | None = None
) -> tuple[Any, list[str]]:
    """Change only the ``given`` fields of one row (``""`` clears an optional field); returns
    the row and the names of the fields that really changed (``watch``: as :func:`upsert`)."""

    def work(session: Session) -> tuple[Any, list[str]]:
        row = session.get(model, ident)
        if row is None:
            raise NotFound(missing)
        if check is not None:
            check(session)
        diff = {name: value for name, value in given.items() if getattr(row, name) != value}
        change = _change_event(watch, row.model_dump(), diff)
        for name, value in diff.items():
            setattr(row, name, value)
        session.add(row)
        if change is not None:
            host.events.record(session, *change)
        return row, sorted(diff)

    result = host.db.run_write(work)
    return result
