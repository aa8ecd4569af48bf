"""What happened after an event that is delivered again on its own.

Events reach subscribers in the order they were recorded, so a subscriber that keys what it
keeps by a name in a payload (a VPP account's) files it under that name and moves it when a
later event (a rename) says so. A delivery that failed is delivered again later, on its own
(``mdm run``'s retries, ``mdm events redeliver``), after the events recorded since: its payload
names things as they were. :func:`recorded_since` gives the subscriber those later events, so
that it can read the payload as of now (:func:`event_now` with ``plugins.vpp.payloads.payload_now``);
the events past ``[core] event_retention_days`` are gone from the outbox, so the reader is given
the host too, to read what is current (an account found by its id).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mdm_core.db.typed import table_of
from mdm_core.models import OutboxEvent

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.host import Host


def recorded_since(host: Host, event: Event, names: Collection[str]) -> list[tuple[str, dict[str, Any]]]:
    """The events named ``names`` recorded after ``event``, oldest first, as (name, payload),
    when ``event`` is delivered on its own (a retry, a redelivery). Delivered in order with its
    batch, or no longer in the outbox, it is ``[]``: the events after it come after it (no read,
    so the subscriber of a sync's 1,400 events pays nothing)."""
    if host.events.delivering():
        return []
    outbox = table_of(OutboxEvent)
    with host.db.reading() as conn:
        seq = conn.execute(select(outbox.c.seq).where(outbox.c.id == event.id)).scalar_one_or_none()
        if seq is None:
            return []
        rows = conn.execute(select(outbox.c.name, outbox.c.payload).where(outbox.c.seq > seq, outbox.c.name.in_(list(names))).order_by(outbox.c.seq)).all()
    return [(str(name), dict(payload)) for name, payload in rows]


def _read_when_asked(host: Host, event: Event, names: Collection[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """:func:`recorded_since`, read when first iterated: a reader that finds the payload as of
    now in the host's tables (an account by its id) reads no outbox."""
    yield from recorded_since(host, event, names)


#: reads a payload as of now from the events recorded after it (those still in the outbox) and
#: the host's tables (what pruned events no longer tell): the payload, a new one, or None (nothing to apply)
PayloadNow = Callable[[Mapping[str, Any], Iterable[tuple[str, Mapping[str, Any]]], "Host"], Mapping[str, Any] | None]


def event_now(host: Host, event: Event, names: Collection[str], payload_now: PayloadNow) -> Event | None:
    """``event`` with its payload as of now: ``payload_now(payload, recorded_since(...), host)``
    (the later events read only if it iterates them) when delivered on its own (a retry, a redelivery), even with no event kept after it (they may
    have been pruned). The same ``event`` when nothing changed it (always, delivered in order:
    nothing read), None when there is nothing left to apply (what it names was removed since)."""
    if host.events.delivering():
        return event
    payload = payload_now(event.payload, _read_when_asked(host, event, names), host)
    if payload is None:
        return None
    return event if payload is event.payload else dataclasses.replace(event, payload=dict(payload))


Subscriber = Callable[["Host", "Event"], None]


def as_of_now(names: Collection[str], payload_now: PayloadNow) -> Callable[[Subscriber], Subscriber]:
    """A decorator for an event hook implementation ``(host, event)``: it is called with
    :func:`event_now`'s event, or not at all when that is None. Put it under ``@hookimpl``."""

    def decorate(hook: Subscriber) -> Subscriber:
        @functools.wraps(hook)
        def subscriber(host: Host, event: Event) -> None:
            now = event_now(host, event, names, payload_now)
            if now is not None:
                hook(host, now)

        return subscriber

    return decorate
