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


def with_account_id(account_id: int, events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, Mapping[str, Any]]]:
    """These (name, payload) events of account ``account_id`` with ``accountId`` after ``account``
    (one that names no account, or has its id already, as it is): the caller has the account, so
    nothing is read."""
    return [
        (name, {**payload, "accountId": account_id} if isinstance(payload.get("account"), str) and "accountId" not in payload else payload)
        for name, payload in events
    ]


def record_event(host: Host, session: Session, account_id: int, name: str, payload: Mapping[str, Any]) -> Event:
    """``host.events.record`` of a VPP event of account ``account_id``, with its ``accountId``."""
    [(_, stamped)] = with_account_id(account_id, [(name, payload)])
    return host.events.record(session, name, stamped)


def record_events(host: Host, session: Session, account_id: int, events: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
    """``host.events.record_many`` of VPP events of account ``account_id``, with their ``accountId``."""
    return host.events.record_many(session, with_account_id(account_id, events))


def account_name(host: Host, account_id: int) -> str | None:
    """The name of the account ``account_id`` now, or None once it was removed."""
    accounts = table_of(VppAccount)
    with host.db.reading() as conn:
        name = conn.execute(select(accounts.c.name).where(accounts.c.id == account_id)).scalar_one_or_none()
    return None if name is None else str(name)
