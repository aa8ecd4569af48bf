"""Recording the VPP plugin's events with the account's database id beside its name.

Every VPP event names its account (``account``); the name changes with a rename, its id never
(and is never given to another account). An event delivered again long after (a retry) finds
its account by ``accountId`` once the rename's event is gone from the outbox (``[core]
event_retention_days``): see :func:`plugins.vpp.payloads.payload_now`. The key is additive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session

from mdm_core.db.typed import table_of

from .models import VppAccount

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.host import Host


def with_account_ids(session: Session, events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, Mapping[str, Any]]]:
    """These (name, payload) events with ``accountId`` after ``account`` where the account is
    found in ``session`` (one read per account named), the others as they are."""
    accounts = table_of(VppAccount)
    ids: dict[str, int | None] = {}
    stamped: list[tuple[str, Mapping[str, Any]]] = []
    for name, payload in events:
        account = payload.get("account")
        if isinstance(account, str) and "accountId" not in payload:
            if account not in ids:
                ids[account] = session.execute(select(accounts.c.id).where(accounts.c.name == account)).scalar_one_or_none()
            if ids[account] is not None:
                payload = {**payload, "accountId": ids[account]}
        stamped.append((name, payload))
    return stamped


def record_event(host: Host, session: Session, name: str, payload: Mapping[str, Any]) -> Event:
    """``host.events.record`` of a VPP event, with its ``accountId``."""
    [(_, stamped)] = with_account_ids(session, [(name, payload)])
    return host.events.record(session, name, stamped)


def record_events(host: Host, session: Session, events: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
    """``host.events.record_many`` of VPP events, with their ``accountId``."""
    return host.events.record_many(session, with_account_ids(session, events))


def account_name(host: Host, account_id: int) -> str | None:
    """The name of the account ``account_id`` now, or None once it was removed."""
    accounts = table_of(VppAccount)
    with host.db.reading() as conn:
        name = conn.execute(select(accounts.c.name).where(accounts.c.id == account_id)).scalar_one_or_none()
    return None if name is None else str(name)
