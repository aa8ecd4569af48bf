"""The one insert-or-update of inventory rows (devices and users), with their events.

``None`` in a row means "not given": the stored value is kept (an empty import cell, an
option left out). Counts are of real changes: a row equal to what is stored is ``unchanged``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from sqlmodel import Session

from mdm_core.errors import MdmError

if TYPE_CHECKING:
    from mdm_core.host import Host


class Counts(NamedTuple):
    """What an import or an add did."""

    added: int
    updated: int
    unchanged: int


def changes(existing: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The given values (not ``None``) that differ from the stored row."""
    return {name: value for name, value in values.items() if value is not None and getattr(existing, name) != value}


def upsert(host: "Host", model: type, rows: list[Any], key: Any, event: str, payload: Any, check: Any = None,
           exists: Callable[[Any], str] | None = None) -> Counts:
    """Insert new rows (recording ``event`` for each) and change the given fields of existing
    ones, in one transaction. With ``exists``, an existing row is refused instead: the
    transaction fails with ``MdmError(exists(row))``."""

    def work(session: Session) -> Counts:
        if check is not None:
            check(session)
        added = updated = unchanged = 0
        for row in rows:
            values = dataclasses.asdict(row)
            existing = session.get(model, key(row))
            if existing is None:
                session.add(model(**values))
                host.events.record(session, event, payload(row))
                added += 1
                continue
            if exists is not None:
                raise MdmError(exists(row))
            diff = changes(existing, values)
            if not diff:
                unchanged += 1
                continue
            for name, value in diff.items():
                setattr(existing, name, value)
            session.add(existing)
            updated += 1
        return Counts(added, updated, unchanged)

    result = host.db.run_write(work)
    host.deliver_events()
    return result


def update_one(host: "Host", model: type, ident: str, given: dict[str, Any], missing: str, check: Any = None) -> tuple[Any, list[str]]:
    """Change only the ``given`` fields of one row (``""`` clears an optional field); returns
    the row and the names of the fields that really changed."""

    def work(session: Session) -> tuple[Any, list[str]]:
        row = session.get(model, ident)
        if row is None:
            raise MdmError(missing)
        if check is not None:
            check(session)
        diff = {name: value for name, value in given.items() if getattr(row, name) != value}
        for name, value in diff.items():
            setattr(row, name, value)
        session.add(row)
        return row, sorted(diff)

    result = host.db.run_write(work)
    return result
