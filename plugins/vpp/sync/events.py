"""Event payloads of the VPP mirror, cut so that no event grows with the account.

Asset and user events carry at most ``EVENT_RECORDS`` records; license events at most
``EVENT_TARGETS`` targets of one asset and one kind, with the subset the MDM inventory knows.
The payload shapes are the public contract documented in :mod:`plugins.vpp.hookspecs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import groupby, zip_longest
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, literal, select
from sqlmodel import Session

from mdm_core.db.bulk import in_chunks, one_of
from mdm_core.db.typed import stored_id, table_of
from mdm_core.models import Device, MdmUser

from ..models import VppAccount
from ..payloads import LicensesPayload
from ..recording import record_events

if TYPE_CHECKING:
    from mdm_core.host import Host

EVENT_TARGETS = 1000
EVENT_RECORDS = 500
#: The events of a transaction (:class:`EventBatch`) are written (one bulk insert: a ``COPY``
#: on PostgreSQL) once this many are waiting, or once they weigh this much (a license target 1,
#: an asset or user record :data:`RECORD_WEIGHT`): memory stays bounded whatever the account,
#: and a sync's many small events (an incremental sync: 1,374 of one or two targets) go in one
#: or two writes instead of one per 100 events (14 round trips and statements)
WRITE_EVENTS = 2000
WRITE_TARGETS = 100 * EVENT_TARGETS
#: An asset or user record weighs as many license targets (a dict of eight values, a target one
#: string): a full sync's 100,000 users are written ten events (5,000 users) at a time
RECORD_WEIGHT = 20
#: :func:`record_license_events` hands its events to the batch this many at a time (or once
#: they hold :data:`EVENT_TARGETS` targets), not one by one
ADD_EVENTS = 100
_ASSET_KIND = itemgetter(0, 1, 2)  # a license row's (adamId, pricingParam, kind)


class EventBatch:
    """The events of account ``account_id`` that one transaction records, kept in their order and
    written together by :meth:`write` (one bulk insert: a ``COPY`` on PostgreSQL), or before once
    :data:`WRITE_EVENTS` events or :data:`WRITE_TARGETS` of weight wait. A sync's apply recorded
    its events by about seven writes (assets, users added, changed, retired, licenses associated,
    taken back...), each a ``COPY`` with its own round trips; the caller writes the batch before
    anything else records an event of the transaction (the outbox's order is the delivery's)."""

    def __init__(self, host: Host, session: Session, account_id: int):
        self.host, self.session, self.account_id = host, session, account_id
        self.events: list[tuple[str, Mapping[str, Any]]] = []
        self.weight = 0

    def add(self, events: Sequence[tuple[str, Mapping[str, Any]]], weight: int) -> None:
        """Record ``events`` (name, payload) weighing ``weight`` (license targets, or records x :data:`RECORD_WEIGHT`)."""
        self.events.extend(events)
        self.weight += weight
        if len(self.events) >= WRITE_EVENTS or self.weight >= WRITE_TARGETS:  # written as they come: memory does not grow with the account
            self.write()

    def write(self) -> None:
        """Write the events waiting, in their order."""
        if self.events:
            record_events(self.host, self.session, self.account_id, self.events)
            self.events = []
            self.weight = 0


def record_chunks(host: Host, session: Session, account: VppAccount, event: str, records: Sequence[Mapping[str, Any]], batch: EventBatch | None = None) -> None:
    """Record ``event`` of ``account`` for these asset or user records, at most ``EVENT_RECORDS`` per event.

    The events are inserted at once (one bulk insert, not ORM objects left in the session until
    its next flush): a sync that records its events while it streams rows holds none of them.
    ``batch``: the transaction's events, written by its owner (with the events it records after)."""
    key = "assets" if event.startswith("vpp_assets") else "users"
    chunks = [records[start : start + EVENT_RECORDS] for start in range(0, len(records), EVENT_RECORDS)]
    if not chunks:
        return
    events = [(event, {"account": account.name, key: chunk}) for chunk in chunks]
    if batch is None:
        record_events(host, session, stored_id(account), events)
    else:
        batch.add(events, RECORD_WEIGHT * len(records))


def with_known(query: Any, table: Any) -> Any:
    """``query`` (over ``table``'s ``kind`` and ``target``) with a last column: whether the
    MDM inventory knows the holder (an enrolled serial number, an MDM user id)."""
    D, MU = table_of(Device), table_of(MdmUser)
    known = case((table.c.kind == "device", D.c.serial_number.is_not(None)), else_=MU.c.id.is_not(None))
    return (
        query.add_columns(known.label("known"))
        .outerjoin(D, and_(table.c.kind == "device", D.c.serial_number == table.c.target))
        .outerjoin(MU, and_(table.c.kind == "user", MU.c.id == table.c.target))
    )


def with_known_keys(session: Session, keys: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str, bool]]:
    """(adamId, pricingParam, kind, target) keys, sorted, with whether the inventory knows each
    holder (as :func:`with_known` gives them from a query)."""
    devices, users = known_holders(session, [t for _, _, k, t in keys if k == "device"], [t for _, _, k, t in keys if k != "device"])
    return [(a, p, k, t, t in (devices if k == "device" else users)) for a, p, k, t in sorted(keys)]


def record_license_events(host: Host, session: Session, account: VppAccount, event: str, rows: Iterable[Any], batch: EventBatch | None = None) -> int:
    """Record license events of ``account`` from (adamId, pricingParam, kind, target, known) rows (sorted by
    asset and kind, a repeated row skipped; ``known``: see :func:`with_known`), at most
    ``EVENT_TARGETS`` targets each, in ``batch`` (the transaction's events, written by its owner)
    or in one of their own, written at the end; returns the row count.

    The events (:func:`_license_events`) are handed to the batch :data:`ADD_EVENTS` at a time, a
    full one at once: an incremental sync's ~1,400 rows are about as many events of one or two
    targets (1,400 rows: about 1.4 ms of CPU, most of it the payloads)."""
    events = EventBatch(host, session, stored_id(account)) if batch is None else batch
    total = 0
    ready: list[tuple[str, Mapping[str, Any]]] = []
    weight = 0
    for adam_id, pricing, kind, targets, known in _license_events(rows):
        ready.append((event, licenses_payload(account.name, adam_id, pricing, kind, targets, known, "sync")))
        weight += len(targets)
        total += len(targets)
        if len(ready) >= ADD_EVENTS or weight >= EVENT_TARGETS:  # a full event is handed over at once
            events.add(ready, weight)
            ready, weight = [], 0
    if ready:
        events.add(ready, weight)
    if batch is None:
        events.write()
    return total


def _license_events(rows: Iterable[Any]) -> Iterator[tuple[str, str, str, list[str], set[str]]]:
    """Each license event's (adamId, pricingParam, kind, targets, known targets) from rows sorted
    by asset and kind (:func:`record_license_events`): a repeated row skipped, at most
    :data:`EVENT_TARGETS` targets an event."""
    for (adam_id, pricing, kind), group in groupby(rows, _ASSET_KIND):
        targets: list[str] = []
        known: set[str] = set()
        previous = None
        for row in group:
            target = row[3]
            if target == previous:  # a repeated row (the same asset and kind: adjacent)
                continue
            previous = target
            if len(targets) >= EVENT_TARGETS:
                yield adam_id, pricing, kind, targets, known
                targets, known = [], set()
            targets.append(target)
            if row[4]:
                known.add(target)
        yield adam_id, pricing, kind, targets, known


def license_payload(session: Session, account: str, adam_id: str, pricing: str, kind: str, targets: list[str], source: str) -> LicensesPayload:
    """The payload of a licenses event, with the targets the MDM inventory knows."""
    column = table_of(Device).c.serial_number if kind == "device" else table_of(MdmUser).c.id
    return licenses_payload(account, adam_id, pricing, kind, targets, known_ids(session, column, targets), source)


def licenses_payload(account: str, adam_id: str, pricing: str, kind: str, targets: list[str], known: set[str], source: str) -> LicensesPayload:
    """The payload of a licenses event; ``known``: the targets the MDM inventory knows."""
    if kind == "device":
        return {
            "account": account,
            "adamId": adam_id,
            "pricingParam": pricing,
            "source": source,
            "serialNumbers": targets,
            "clientUserIds": [],
            "enrolledSerialNumbers": [t for t in targets if t in known],
            "mdmUserIds": [],
        }
    return {
        "account": account,
        "adamId": adam_id,
        "pricingParam": pricing,
        "source": source,
        "serialNumbers": [],
        "clientUserIds": targets,
        "enrolledSerialNumbers": [],
        "mdmUserIds": [t for t in targets if t in known],
    }


_KNOWN: dict[Any, Any] = {}  # (column, dialect) -> its query, built once (one per license event otherwise)


def known_ids(session: Session, column: Any, values: list[str]) -> set[str]:
    """The ``values`` present in ``column`` (the enrolled serials, the MDM user ids): on
    PostgreSQL by one ``= ANY(:array)`` (one parameter: the statement text is the same at every
    call, where an ``IN`` list of 500 parameters is parsed again each time, by psycopg and by
    the server), elsewhere 500 at a time (:func:`mdm_core.db.bulk.one_of`)."""
    found: set[str] = set()
    postgres = session.get_bind().dialect.name == "postgresql"
    query = _KNOWN.get((column, postgres))
    if query is None:
        query = _KNOWN[(column, postgres)] = select(column).where(one_of(column, "values", postgres))
    for chunk in [values] if postgres else in_chunks(values):
        if chunk:
            found.update(session.execute(query, {"values": chunk}).scalars())
    return found


_HOLDERS: dict[bool, Any] = {}  # postgres -> the query of both kinds of holders, built once


def known_holders(session: Session, serials: list[str], user_ids: list[str]) -> tuple[set[str], set[str]]:
    """The enrolled ``serials`` and the MDM users among ``user_ids``, both by one statement
    (a ``UNION ALL`` of the two lookups of :func:`known_ids`): a sync that takes back
    licenses of devices and of users asks once, not once per kind."""
    D, MU = table_of(Device).c.serial_number, table_of(MdmUser).c.id
    if not serials or not user_ids:
        return known_ids(session, D, serials), known_ids(session, MU, user_ids)
    postgres = session.get_bind().dialect.name == "postgresql"
    query = _HOLDERS.get(postgres)
    if query is None:
        devices = select(literal("device").label("kind"), D.label("holder")).where(one_of(D, "serials", postgres))
        query = _HOLDERS[postgres] = devices.union_all(select(literal("user"), MU).where(one_of(MU, "user_ids", postgres)))
    found: dict[str, set[str]] = {"device": set(), "user": set()}
    empty: list[str] = []
    chunks: Iterable[tuple[list[str], list[str]]] = [(serials, user_ids)] if postgres else zip_longest(in_chunks(serials), in_chunks(user_ids), fillvalue=empty)
    for serial_chunk, user_chunk in chunks:
        for kind, holder in session.execute(query, {"serials": serial_chunk, "user_ids": user_chunk}):
            found[kind].add(holder)
    return found["device"], found["user"]
