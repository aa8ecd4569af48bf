"""The one insert-or-update of inventory rows (devices and users), with their events."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

if TYPE_CHECKING:
    from mdm_core.host import Host


def upsert(host: "Host", model: type, rows: list[Any], key: Any, event: str, payload: Any, check: Any = None) -> tuple[int, int]:
    """Insert new rows (recording ``event`` for each) and update existing ones, in one transaction."""

    def work(session: Session) -> tuple[int, int]:
        if check is not None:
            check(session)
        added = updated = 0
        for row in rows:
            values = dataclasses.asdict(row)
            existing = session.get(model, key(row))
            if existing is None:
                session.add(model(**values))
                host.events.record(session, event, payload(row))
                added += 1
            else:
                for name, value in values.items():
                    setattr(existing, name, value)
                session.add(existing)
                updated += 1
        return added, updated

    result = host.db.run_write(work)
    host.deliver_events()
    return result
