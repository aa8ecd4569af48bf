"""Events: recorded in the transaction of the change they describe, delivered after commit.

``EventBus.record(session, name, payload)`` writes an event into the ``core_event`` outbox in
the caller's transaction; ``EventBus.deliver_pending()`` runs after the commit (and at every
start, for what a crash left undelivered) and calls the hook ``mdm_<name>`` then ``mdm_event``,
each implementation on its own so that one failing subscriber does not stop the others.

Only declared events can be recorded: ``name`` needs a hookspec ``mdm_<name>`` (the core's, or
one a plugin added with ``mdm_add_hookspecs``), so a misspelt event name fails at once instead
of being delivered to nobody (datasette's ``register_events`` idea). Events already in the
outbox are delivered whatever their name.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, Text, bindparam, cast, delete, func, null, select, union_all, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session, col

from mdm_core.db.bulk import bound_value, insert_rows, one_of
from mdm_core.db.typed import table_of, values_of
from mdm_core.errors import NotFound, PluginError, describe
from mdm_core.locks import local_holder_is_dead, new_holder
from mdm_core.plugins import call_isolated, hook_impls, hooks_observed

if TYPE_CHECKING:
    import pluggy

    from mdm_core.db import Database

log = logging.getLogger(__name__)

CLAIM_TIMEOUT = timedelta(minutes=5)
#: Waits before the 2nd, 3rd ... delivery to a subscriber that failed; then it is left ``failed``.
RETRY_DELAYS = tuple(timedelta(minutes=m) for m in (1, 5, 15, 60, 180, 360))
#: Events claimed, dispatched and marked delivered together, at most: a sync's 1,381 small events
#: after the benchmark's spread change in one batch (one read, one claim, one mark; at 1,000 two
#: reads and two claims, 7 ms more wall on PostgreSQL).
DELIVERY_BATCH = 2000
#: The bytes of a batch's payloads (JSON text), at most, but its first event whatever its size: a
#: full sync's user events (500 users, ~90 kB each) about 40 at a time (was 100), so that the one
#: batch in memory stays small.
DELIVERY_BYTES = 4_000_000
OUTBOX_COLUMNS = ("id", "name", "payload", "created_at")  # those a recorded event sets (seq: the database's)


class DeliveryBatch(list["Event"]):
    """The events of one delivery batch, in order (:meth:`EventBus.delivering`); a list with
    weak references, so that a subscriber's memo of a batch never keeps its payloads alive."""


@dataclass(frozen=True)
class Event:
    """A plain-value event: ``name`` selects the hook ``mdm_<name>``; ``id`` is stable."""

    name: str
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: datetime | None = None

    @property
    def hook_name(self) -> str:
        """The hook that delivers this event."""
        return f"mdm_{self.name}"


class EventBus:
    """The outbox and its delivery."""

    def __init__(self, db: Database, pm: pluggy.PluginManager, host: Any):
        self.db = db
        self.pm = pm
        self.host = host
        self._local = threading.local()
        self.left_behind = False  # the last delivery stopped at its budget with events still waiting
        self._declared: set[str] = set()  # names checked already (a hookspec is never removed)

    def check_declared(self, name: str) -> None:
        """Raise ``PluginError`` unless a hookspec ``mdm_<name>`` declares the event ``name``."""
        if name in self._declared:
            return
        caller = getattr(self.pm.hook, f"mdm_{name}", None)
        if caller is None or caller.spec is None:
            raise PluginError(
                f"event '{name}' is not declared: add a hookspec mdm_{name}(host, event) to the plugin's hookspecs "
                "(registered with mdm_add_hookspecs) before recording it"
            )
        self._declared.add(name)

    def declared(self) -> list[str]:
        """The names of the events the loaded plugins declare (hookspecs ``mdm_<name>(host, event)``)."""
        names = (n for n in dir(self.pm.hook) if n.startswith("mdm_") and n != "mdm_event")
        return sorted(n[4:] for n in names if (spec := getattr(self.pm.hook, n).spec) is not None and tuple(spec.argnames) == ("host", "event"))

    def check_name(self, session: Session, name: str) -> None:
        """Refuse (:class:`NotFound`) a filter by an event name that is neither declared nor in
        the outbox (a disabled plugin's events stay listed): it listed no event, as if none
        had happened."""
        declared = self.declared()
        from mdm_core.models import OutboxEvent

        if name in declared or session.execute(select(col(OutboxEvent.seq)).where(col(OutboxEvent.name) == name).limit(1)).first() is not None:
            return
        raise NotFound(f"no event named '{name[:50]}': events are named {', '.join(declared)}")

    def record(self, session: Session, name: str, payload: Mapping[str, Any]) -> Event:
        """Add an event to the caller's transaction; it is delivered only if that commits.

        Raises ``PluginError`` when no hookspec ``mdm_<name>`` declares the event.
        """
        from mdm_core.models import OutboxEvent, utcnow

        self.check_declared(name)
        created_at = utcnow()
        event = Event(name=name, payload=dict(payload), created_at=created_at)
        session.add(OutboxEvent(id=event.id, name=name, payload=event.payload, created_at=created_at))
        self._local.recorded = True
        return event

    def outbox_rows(self, events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        """The outbox rows of several (declared) events, for :meth:`record_rows`: built before
        the transaction, so that a large batch holds the write lock only to insert them."""
        from mdm_core.models import utcnow

        now = utcnow()
        pairs = list(events)
        rows: list[dict[str, Any]] = [{"id": i, "name": n, "payload": p, "created_at": now} for i, (n, p) in zip(new_ids(len(pairs)), pairs, strict=True)]
        for name in {r["name"] for r in rows}:
            self.check_declared(name)
        return rows

    def record_rows(self, session: Session, rows: list[dict[str, Any]]) -> int:
        """Insert rows made by :meth:`outbox_rows` in the caller's transaction; returns how many.

        One ``COPY`` on PostgreSQL, the driver's ``executemany`` on SQLite (``insert_rows``),
        each payload serialised once, to the JSON text its column's bind processing gives (the
        dialect's serializer, ``json.dumps`` by default), which both take as it is: an
        incremental sync's 1,381 events went through SQLAlchemy's per-row parameter processing,
        and on PostgreSQL into ``INSERT ... VALUES`` statements of 1,000 rows that psycopg parses
        and binds; then each payload was wrapped for psycopg's JSON dumper (1 of the 7 ms of
        CPU the COPY of 471 events took)."""
        from mdm_core.models import OutboxEvent

        if rows:
            outbox = table_of(OutboxEvent)
            conn = session.connection()
            if session.autoflush:  # events added before (record) stay first, as session.execute's autoflush kept them
                session.flush()
            encode = conn.dialect._json_serializer or json.dumps  # the text SQLite's bind processing stores, and psycopg's dumper sends
            stamps = {at: bound_value(conn.dialect, outbox.c.created_at, at) for at in {r["created_at"] for r in rows}}  # one for all (outbox_rows)
            values = [(r["id"], r["name"], encode(r["payload"]), stamps[r["created_at"]]) for r in rows]
            insert_rows(session, outbox, OUTBOX_COLUMNS, values)
            self._local.recorded = True
        return len(rows)

    def record_many(self, session: Session, events: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Add several (declared) events in one bulk insert; returns how many."""
        rows = self.outbox_rows(events)
        self.record_rows(session, rows)
        return len(rows)

    def deliver_pending(self, limit: int | None = None, budget: float | None = None) -> int:
        """Deliver undelivered events in order; returns how many were delivered by this call.

        ``budget``: stop starting new batches after that many seconds (a command delivers what
        its change caused and leaves a backlog to ``mdm run``); ``left_behind`` then says that
        events are still waiting. A subscriber that causes new events (and asks for delivery)
        does not start a nested delivery: the delivery already running in this thread picks
        them up in order.
        """
        if getattr(self._local, "delivering", False):
            return 0
        self._local.delivering = True
        try:
            return self._deliver_pending(limit, None if budget is None else time.monotonic() + budget)
        finally:
            self._local.delivering = False

    def delivering(self) -> DeliveryBatch:
        """The batch of events this thread is delivering (empty outside a delivery), for a
        subscriber that answers the same question for each of many events: it may ask once for
        the whole batch (mobile_apps: whether an install waits for a license event's asset).
        The answer is then as of the first event of the batch that asked, not of each event."""
        return getattr(self._local, "batch", None) or DeliveryBatch()

    def pending_count(self) -> int:
        """How many events wait for delivery."""
        from sqlalchemy import func

        from mdm_core.models import OutboxEvent

        with self.db.session() as session:
            return int(session.execute(select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.delivered_at).is_(None))).scalar_one())

    def _deliver_pending(self, limit: int | None, deadline: float | None) -> int:
        """A batch is read and claimed by one statement on PostgreSQL, by a read then a claim on
        SQLite (:meth:`_next_batch`), the previous batch marked delivered just before its claim.
        A crash before that write redelivers the previous batch (ids are stable), as before.
        A batch that held every event waiting when it was read, and whose subscribers recorded
        none, is the last: no read after it (which would find nothing; a sync's delivery is one
        batch). Events recorded meanwhile elsewhere are delivered by their own recorder's
        delivery (or ``mdm run``'s next turn), as those recorded just after that read always were."""

        delivered = 0
        last_seq = 0
        self.left_behind = False
        token = ""  # the holder of the last claim
        done: list[int] = []  # delivered, not yet marked: marked with the next claim, or at the end
        left: list[int] = []  # claimed, not delivered (out of budget, or a subscriber raised through)
        try:
            while limit is None or delivered < limit:
                if deadline is not None and time.monotonic() >= deadline:
                    self.left_behind = True
                    return delivered
                size = DELIVERY_BATCH if limit is None else min(DELIVERY_BATCH, limit - delivered)
                read = self._next_batch(last_seq, size, (token, done))
                if read is None:
                    return delivered
                batch, last_seq, drained, token = read
                done = []  # marked with the claim
                left = [seq for seq, _ in batch]
                self._local.recorded = False  # set by a subscriber's record: its events come after this batch
                self._dispatch_batch(batch, deadline, done, left)
                del read, batch  # this batch's payloads go before the next read: one batch in memory at a time
                delivered += len(done)
                if self.left_behind or (drained and not self._local.recorded):
                    return delivered
            return delivered
        finally:
            self._finish(token, done, left)

    def _next_batch(self, last_seq: int, size: int, mark_delivered: tuple[str, list[int]]) -> tuple[list[tuple[int, Event]], int, bool, str] | None:
        """The next batch after ``last_seq`` (``size`` events at most, ``DELIVERY_BYTES`` of
        payloads), claimed: the events won, in order, the last seq read, whether every event
        waiting was read, and the claim's holder; None when no event waits (``mark_delivered``
        is then left to :meth:`_finish`). ``mark_delivered`` (as :meth:`_claim`) is marked with
        the claim.

        PostgreSQL reads and claims in one statement (:func:`_claim_next`: the free events of the
        batch claimed, the payloads of those won returned, every event read listed with its
        holder): one round trip and no list of seqs bound, where a read then a claim naming each
        seq took two. Events held by a dead process of this machine (a holder the database
        cannot judge) are claimed after it, with the same holder. SQLite reads, then claims."""
        values = {"last_seq": last_seq, "size": size, "bytes": DELIVERY_BYTES}
        if self.db.is_sqlite:
            with self.db.reading() as conn:
                rows = conn.execute(_next_events(), values).all()
            if not rows:
                return None
            dead = {r[1] for r in rows if r[1] and local_holder_is_dead(r[1])}
            claimed, token = self._claim([r[0] for r in rows], dead, mark_delivered=mark_delivered)
            # rows unpacked, not read by name: a Row's attributes cost 11 ms of CPU for a sync's 1,381 events, this 3 ms
            batch = [(seq, Event(name=name, payload=payload, id=id_, created_at=at)) for seq, _, id_, name, payload, at, _ in rows if seq in claimed]
            return batch, rows[-1][0], len(rows) == rows[-1][6] < size, token  # drained: every event waiting is in this batch
        from mdm_core.models import utcnow

        now, token = utcnow(), new_holder()
        loads: Callable[[str], Any] = self.db.engine.dialect._json_deserializer or json.loads  # the payloads come as their JSON text (_claim_next)
        with self.db.writing() as conn:  # each statement alone: one round trip each
            self._mark(conn, mark_delivered, now)
            rows = conn.execute(_claim_next(), {**values, "stale": now - CLAIM_TIMEOUT, "now": now, "token": token}).all()
        mark_delivered[1].clear()  # marked above
        won: dict[int, Event] = {}
        read: list[tuple[int, str | None]] = []  # every event read, in order, with its holder when read
        for seq, holder, id_, name, payload, at, _ in rows:
            if id_ is not None:  # won (its row comes before the one that tells it was read)
                won[seq] = Event(name=name, payload=loads(payload), id=id_, created_at=at)
            else:
                read.append((seq, holder))
        if not read:
            return None
        dead = {holder for seq, holder in read if holder and seq not in won and local_holder_is_dead(holder)}
        if dead:  # what a crashed delivery of this machine left (rare): claimed for the same holder, then read
            taken, _ = self._claim([seq for seq, holder in read if holder in dead], dead, token=token)
            won |= dict(self._load_batch(sorted(taken)))
        batch = [(seq, won[seq]) for seq, _ in read if seq in won]
        return batch, read[-1][0], len(read) == rows[-1][6] < size, token  # the last row is a read one's, with the count

    def _dispatch_batch(self, batch: list[tuple[int, Event]], deadline: float | None, done: list[int], left: list[int]) -> None:
        """Dispatch a claimed batch in order, moving each seq from ``left`` to ``done``; stops
        early (``left_behind``) when past ``deadline`` after at least one event."""
        self._local.batch = DeliveryBatch(event for _, event in batch)
        self._local.callers = {}  # each event name's subscribers, found once for the batch (:meth:`_callers`)
        delivered = 0
        try:
            for seq, event in batch:
                if deadline is not None and done and time.monotonic() >= deadline:
                    self.left_behind = True  # out of budget: the rest of the batch is left, unclaimed below
                    return
                self.dispatch(event)
                done.append(seq)
                delivered += 1
        finally:
            del left[:delivered]  # delivered in the batch's order: always the first ones left (one move, not one per event)
            self._local.batch = self._local.callers = None

    def _finish(self, token: str, done: list[int], left: list[int]) -> None:
        """Mark ``done`` delivered and release the claims of ``left``, both claimed by ``token``
        (one write, if any)."""
        from mdm_core.models import utcnow

        if done or left:
            _, release = _held_statements()
            with self.db.writing() as conn:  # each statement alone: one round trip on PostgreSQL
                self._mark(conn, (token, done), utcnow())
                if left:
                    conn.execute(release, {"first": left[0], "last": left[-1], "holder": token})

    def _load_batch(self, seqs: list[int]) -> list[tuple[int, Event]]:
        """The events of these seqs, in order, read at once."""
        from mdm_core.models import OutboxEvent

        if not seqs:
            return []
        with self.db.session() as session:
            rows = session.execute(
                select(col(OutboxEvent.seq), col(OutboxEvent.id), col(OutboxEvent.name), col(OutboxEvent.payload), col(OutboxEvent.created_at))
                .where(col(OutboxEvent.seq).in_(seqs))
                .order_by(col(OutboxEvent.seq))
            ).all()
        return [(row.seq, Event(name=row.name, payload=row.payload, id=row.id, created_at=row.created_at)) for row in rows]

    def _claim(
        self, seqs: list[int], dead_holders: Collection[str] = frozenset(), mark_delivered: tuple[str, list[int]] = ("", []), token: str | None = None
    ) -> tuple[set[int], str]:
        """Claim events so that two deliveries (processes or threads) never run the same one.

        A claim is free when nobody holds it, when it is older than ``CLAIM_TIMEOUT``, or when
        its holder is a process of this machine that no longer exists. ``mark_delivered``: the
        holder of the previous claim and the events of it delivered since (the first ones it
        won, in order), marked in the same transaction. ``token``: the holder to claim for (a
        new one by default). Returns the seqs won and their holder.
        """
        from mdm_core.models import utcnow

        now = utcnow()
        claim = _claim_statement(not self.db.is_sqlite)
        token = token or new_holder()
        # core statements, built once (no ORM bulk-update bookkeeping), each whole alone: the mark
        # and the claim one round trip each on PostgreSQL (was: BEGIN and COMMIT around them)
        with self.db.writing() as conn:
            self._mark(conn, mark_delivered, now)
            values = {
                "first": seqs[0],
                "last": seqs[-1],
                "seqs": list(seqs),
                "dead": sorted(dead_holders),
                "stale": now - CLAIM_TIMEOUT,
                "now": now,
                "token": token,
            }
            won = set(conn.execute(claim, values).scalars())  # the seqs this claim won (RETURNING), without a second read
        return won, token

    @staticmethod
    def _mark(conn: Any, mark_delivered: tuple[str, list[int]], now: datetime) -> None:
        """Mark delivered the events ``mark_delivered`` (the holder of their claim, their seqs in
        order), if any: one statement, by their range and holder (:func:`_held_statements`)."""
        holder, delivered = mark_delivered
        if delivered:
            mark, _ = _held_statements()
            conn.execute(mark, {"first": delivered[0], "last": delivered[-1], "holder": holder, "now": now})

    def dispatch(self, event: Event) -> list[tuple[str, str]]:
        """Call ``mdm_<name>`` then ``mdm_event`` for ``event``; returns the failures (plugin, error).

        A subscriber that raises is recorded (``core_subscriber_failure``) and gets the event
        again later, on its own (:meth:`retry_due`)."""
        failures: list[tuple[str, str]] = []
        kwargs = {"host": self.host, "event": event}
        for hook_name, caller, impls in self._callers(event.name):
            failures += call_isolated(self.pm, caller, kwargs, on_error=self._on_error(event, hook_name), impls=impls)
        return failures

    def _callers(self, name: str) -> list[tuple[str, Any, list[Any]]]:
        """The hooks that deliver the event ``name`` (``mdm_<name>``, then ``mdm_event``), each
        with its implementations in calling order, but those with none (unless hook calls are
        observed: :func:`mdm_core.plugins.observe_hook_calls` is told of every call). Found once
        per name for a delivery batch (a sync's 1,400 license events: two hooks looked up and their
        implementations listed and reversed for each, where its names are a few), at each call
        outside one."""
        memo: dict[str, list[tuple[str, Any, list[Any]]]] | None = getattr(self._local, "callers", None)
        found = memo.get(name) if memo is not None else None
        if found is None:
            found = []
            for hook_name in dict.fromkeys((f"mdm_{name}", "mdm_event")):
                caller = getattr(self.pm.hook, hook_name, None)
                impls = hook_impls(caller) if caller is not None else []
                if impls or (caller is not None and hooks_observed()):
                    found.append((hook_name, caller, impls))
            if memo is not None:
                memo[name] = found
        return found

    def _on_error(
        self, event: Event, hook_name: str, failure_id: int | None = None, manual: bool = False, now: datetime | None = None
    ) -> Callable[[str, BaseException], None]:
        def record(plugin: str, exc: BaseException) -> None:
            log.error("subscriber %s failed on event %s (%s): %s", plugin, event.name, event.id, describe(exc))
            try:
                self._record_failure(event, hook_name, plugin, exc, failure_id, manual, now)
            except Exception as db_exc:  # the failure is logged above even if it cannot be stored
                log.error("could not record the failure of %s: %s", plugin, describe(db_exc))

        return record

    def _record_failure(
        self, event: Event, hook_name: str, plugin: str, exc: BaseException, failure_id: int | None, manual: bool, now: datetime | None = None
    ) -> None:
        """A new failure, or one more attempt of a recorded one: its next attempt (back-off,
        bounded), ``waiting`` for a start when what it needs is not loaded, ``failed`` at the end."""
        from mdm_core.errors import Unavailable
        from mdm_core.models import SubscriberFailure, utcnow

        with self.db.write_session() as session:
            row = session.get(SubscriberFailure, failure_id) if failure_id is not None else None
            if row is None:
                row = SubscriberFailure(event_id=event.id, event_name=event.name, plugin=plugin, hook=hook_name, error="", attempts=0)
            now = now or utcnow()
            row.attempts = (row.attempts or 0) + (0 if isinstance(exc, Unavailable) else 1)
            row.error, row.at = describe(exc), now
            if isinstance(exc, Unavailable):
                row.status, row.next_attempt_at = "waiting", None
            elif manual or row.attempts > len(RETRY_DELAYS):
                row.status, row.next_attempt_at = "failed", None
            else:
                row.status, row.next_attempt_at = "retrying", now + RETRY_DELAYS[max(0, row.attempts - 1)]
            session.add(row)
            session.commit()

    # ------------------------------------------------------------------ failed deliveries

    def failures(self, everything: bool = True) -> list[dict[str, Any]]:
        """Recorded failed deliveries, oldest first (only ``failed`` ones unless ``everything``)."""
        return list(self.iter_failures(everything))

    def iter_failures(self, everything: bool = True, *, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """:meth:`failures` streamed in constant memory (``mdm events failures``), ``offset``
        and ``limit`` applied in SQL."""
        from mdm_core.db.stream import stream_rows
        from mdm_core.models import SubscriberFailure

        query = select(SubscriberFailure).order_by(col(SubscriberFailure.id))
        if not everything:
            query = query.where(col(SubscriberFailure.status) == "failed")
        return (values_of(row[0]) for row in stream_rows(self.db, query, offset=offset, limit=limit))

    def retry_due(self, now: datetime | None = None, *, at_start: bool = False, limit: int = 200) -> tuple[int, int]:
        """Deliver again, each to the one subscriber that failed, the events whose next attempt
        is due (``mdm run`` calls it at every turn); ``at_start`` adds those ``waiting`` for a
        start. Returns (delivered, failed again)."""
        from mdm_core.models import SubscriberFailure, utcnow

        now = now or utcnow()
        due = (col(SubscriberFailure.status) == "retrying") & (col(SubscriberFailure.next_attempt_at) <= now)
        if at_start:
            due = due | (SubscriberFailure.status == "waiting")
        with self.db.session() as session:
            ids = list(session.execute(select(col(SubscriberFailure.id)).where(due).order_by(col(SubscriberFailure.id)).limit(limit)).scalars())
        ok = failed = 0
        for failure_id in ids:
            error = self.redeliver(failure_id, manual=False, now=now)
            ok, failed = (ok + 1, failed) if error is None else (ok, failed + 1)
        return ok, failed

    def redeliver(self, failure_id: int, *, manual: bool = True, now: datetime | None = None) -> str | None:
        """Deliver again, to the one subscriber that failed, the event of a recorded failure.

        Returns ``None`` when it succeeded (the failure record is removed), else the new error
        (recorded on the same failure: ``failed`` when ``manual``; a subscriber that is not
        loaded leaves it ``waiting``). An unknown failure id raises ``MdmError``."""
        from mdm_core.errors import Unavailable
        from mdm_core.models import OutboxEvent, SubscriberFailure

        with self.db.session() as session:
            failure = session.get(SubscriberFailure, failure_id)
            seq = session.execute(select(col(OutboxEvent.seq)).where(col(OutboxEvent.id) == failure.event_id)).scalar_one_or_none() if failure else None
        if failure is None or seq is None:
            raise NotFound(f"no failed delivery {failure_id}: it was delivered again meanwhile or its event is gone (see `mdm events failures`)")
        [(_, event)] = self._load_batch([seq])
        hook_name = failure.hook or event.hook_name
        plugin = self.pm.get_plugin(failure.plugin)
        caller = getattr(self.pm.hook, hook_name, None)
        impls = [i for i in caller.get_hookimpls() if i.plugin is plugin] if caller is not None and plugin is not None else []
        if not impls:
            error = f"plugin {failure.plugin} is not loaded (or no longer implements {hook_name})"
            self._record_failure(event, hook_name, failure.plugin, Unavailable(error), failure_id, manual, now)
            return error
        errors = call_isolated(
            self.pm, _SomeImpls(hook_name, impls), {"host": self.host, "event": event}, on_error=self._on_error(event, hook_name, failure_id, manual, now)
        )
        if errors:
            return errors[0][1]
        with self.db.write_session() as session:
            session.execute(delete(SubscriberFailure).where(col(SubscriberFailure.id) == failure_id))
            session.commit()
        log.info("event %s (%s) delivered to %s on attempt %d", event.name, event.id, failure.plugin, (failure.attempts or 0) + 1)
        return None


def new_ids(count: int) -> list[str]:
    """``count`` new event ids: random UUIDs (version 4, as ``uuid.uuid4()`` makes them) from one
    read of the system's random source, formatted at once (``str(uuid.uuid4())`` one at a time
    cost 2.7 ms of CPU for a sync's 1,381 events, this 0.7 ms)."""
    raw = bytearray(os.urandom(16 * count))
    for i in range(0, 16 * count, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40  # version 4
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return [f"{h[j : j + 8]}-{h[j + 8 : j + 12]}-{h[j + 12 : j + 16]}-{h[j + 16 : j + 20]}-{h[j + 20 : j + 32]}" for j in range(0, 32 * count, 32)]


def first_time(session: Session, seen: Any, values: Mapping[str, Any]) -> bool:
    """Insert the row ``values`` into ``seen`` (a subscriber's table of the events it applied,
    keyed by the event's id) unless one with its key is there; True when this call inserted it:
    the event is applied now, else it was before (a redelivery). One statement, ``INSERT ... ON
    CONFLICT DO NOTHING`` (was: a read, then the insert: two statements, two round trips on
    PostgreSQL, for each event a subscriber guards); a concurrent delivery of the same event
    waits for the other's transaction and then finds the row."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert  # the only two (Database)
    inserted = insert(seen).values(**values).on_conflict_do_nothing().returning(*seen.primary_key)  # a row back: inserted
    return session.execute(inserted).first() is not None


@functools.cache
def _claim_statement(arrays: bool) -> Any:
    """The claim of :meth:`EventBus._claim`: those of the events ``seqs`` (``first`` to ``last``)
    that are undelivered and free (unclaimed, claimed before ``stale``, or by one of the ``dead``
    holders) become ``token``'s, returning their seqs. On SQLite, whose one writer at a time
    numbers every new event after the others, the events between ``first`` and ``last`` are
    those read: the claim names the range, not 2,000 seqs rendered and bound one by one.
    PostgreSQL (where an event numbered earlier can commit later) names each seq, in one array
    parameter (``= ANY``)."""
    from mdm_core.models import OutboxEvent

    outbox = table_of(OutboxEvent)
    now = bindparam("now", type_=outbox.c.claimed_at.type)
    events = one_of(outbox.c.seq, "seqs", True) if arrays else outbox.c.seq.between(bindparam("first"), bindparam("last"))
    dead = one_of(outbox.c.claimed_by, "dead", arrays)
    free = outbox.c.claimed_at.is_(None) | (outbox.c.claimed_at < bindparam("stale", type_=outbox.c.claimed_at.type)) | dead
    return update(outbox).where(events, outbox.c.delivered_at.is_(None), free).values(claimed_by=bindparam("token"), claimed_at=now).returning(outbox.c.seq)


@functools.cache
def _held_statements() -> tuple[Any, Any]:
    """Mark delivered, and release, the events from ``first`` to ``last`` that ``holder``
    claimed: a claim's token is its own, so the range names exactly those it won (a few plain
    parameters, whatever the batch's size)."""
    from mdm_core.models import OutboxEvent

    outbox = table_of(OutboxEvent)
    held = (outbox.c.seq.between(bindparam("first"), bindparam("last")), outbox.c.claimed_by == bindparam("holder"))
    mark = update(outbox).where(*held).values(delivered_at=bindparam("now", type_=outbox.c.delivered_at.type))
    release = update(outbox).where(*held).values(claimed_by=None, claimed_at=None)
    return mark, release


class text_bytes(FunctionElement[int]):
    """The bytes of a JSON value's text, counted by the database without sending it (not its
    stored size: PostgreSQL compresses a sync's user events ~5 times, which would let a batch
    hold five times more)."""

    type = Integer()
    inherit_cache = True


@compiles(text_bytes)
def _text_bytes(element: text_bytes, compiler: Any, **kw: Any) -> str:
    return f"octet_length(CAST({compiler.process(element.clauses, **kw)} AS TEXT))"


@compiles(text_bytes, "sqlite")
def _text_bytes_sqlite(element: text_bytes, compiler: Any, **kw: Any) -> str:
    return f"length(CAST({compiler.process(element.clauses, **kw)} AS BLOB))"  # SQLite before 3.43 has no octet_length


def _window(*columns: Any) -> Any:
    """The undelivered events after ``last_seq``, ``size`` at most, in order: each one's seq (and
    ``columns`` of the outbox), the bytes of payload text before it (``before``) and how many
    were waiting (``waiting``, ``size`` at most)."""
    from mdm_core.models import OutboxEvent

    outbox = table_of(OutboxEvent)
    ahead = (  # no payload: payloads carried through the window would be copied (SQLite stores the subquery)
        select(outbox.c.seq, *columns, text_bytes(outbox.c.payload).label("size"))
        .where(outbox.c.delivered_at.is_(None), outbox.c.seq > bindparam("last_seq"))
        .order_by(outbox.c.seq)
        .limit(bindparam("size"))
        .subquery("ahead")
    )
    before = func.sum(ahead.c.size).over(order_by=ahead.c.seq) - ahead.c.size  # the batch's bytes before each event
    return select(ahead.c.seq, *(ahead.c[c.name] for c in columns), before.label("before"), func.count().over().label("waiting")).subquery("sized")


@functools.cache
def _next_events() -> Any:
    """The read of the next batch: the undelivered events after ``last_seq``, ``size`` at most,
    as many as start within ``bytes`` of payload text (the first one always), each with how many
    were waiting (``size`` at most); its columns in the order ``_next_batch`` unpacks them.
    Built once."""
    from mdm_core.models import OutboxEvent

    outbox = table_of(OutboxEvent)
    sized = _window()
    return (
        select(outbox.c.seq, outbox.c.claimed_by, outbox.c.id, outbox.c.name, outbox.c.payload, outbox.c.created_at, sized.c.waiting)
        .join_from(outbox, sized, outbox.c.seq == sized.c.seq)
        .where(sized.c.before < bindparam("bytes"))
        .order_by(outbox.c.seq)
    )


@functools.cache
def _claim_next() -> Any:
    """PostgreSQL's read and claim of the next batch in one statement: the events
    :func:`_next_events` reads, those of them free (undelivered, unclaimed or claimed before
    ``stale``) claimed for ``token`` at ``now``. Rows in order of seq, in ``_next_events``'
    columns: for each event won, a row with its id, name, payload and creation time (no holder,
    no count); then, for every event read, a row with its holder when read and how many were
    waiting (no id). The claim names the batch's range of seqs, its first and last: the batch
    holds every event undelivered in that range, and one statement sees the outbox as of one
    snapshot, so those are the events the claim finds there (one numbered in the range that
    commits later is seen by neither). Was: an array of the batch's seqs built in the database
    (= ANY), searched from its start for each event, 4.3 of the 12.6 ms the server took for a
    claim of 1,400 events (an outbox of 30,000 delivered events), the range 0.4 of 9.3 ms. No
    join: with the outbox's statistics taken when it was empty (after a full sync's delivery) a
    join of the two chose nested loops, 270 ms for a sync's 471 events. The payloads are returned as their JSON text, which the
    caller decodes with the dialect's deserializer (``json.loads`` by default, as SQLite's
    result processing does): psycopg's JSON loader, called per value on its bytes, made the
    claim of a sync's 463 events (217 kB of payloads) with their ``Event`` objects cost 13.6
    and 14.6 ms of CPU, 10.7 and 11.8 ms from the text (medians of 30 alternating runs, twice).
    Built once."""
    from mdm_core.models import OutboxEvent

    outbox = table_of(OutboxEvent)
    sized = _window(outbox.c.claimed_by)
    batch = select(sized.c.seq, sized.c.claimed_by, sized.c.waiting).where(sized.c.before < bindparam("bytes")).cte("batch")
    free = outbox.c.claimed_at.is_(None) | (outbox.c.claimed_at < bindparam("stale", type_=outbox.c.claimed_at.type))
    won = (
        update(outbox)
        .where(
            outbox.c.seq.between(select(func.min(batch.c.seq)).scalar_subquery(), select(func.max(batch.c.seq)).scalar_subquery()),
            outbox.c.delivered_at.is_(None),
            free,
        )
        .values(claimed_by=bindparam("token"), claimed_at=bindparam("now", type_=outbox.c.claimed_at.type))
        .returning(outbox.c.seq, outbox.c.id, outbox.c.name, cast(outbox.c.payload, Text).label("payload"), outbox.c.created_at)
        .cte("won")
    )
    rows = union_all(
        select(won.c.seq, null().label("claimed_by"), won.c.id, won.c.name, won.c.payload, won.c.created_at, null().label("waiting")),
        select(batch.c.seq, batch.c.claimed_by, null(), null(), null(), null(), batch.c.waiting),
    ).subquery("rows")
    return select(*rows.c).order_by(rows.c.seq, rows.c.id.nulls_last())


class _SomeImpls:
    """A hook caller reduced to some of its implementations (one plugin's, for a redelivery)."""

    def __init__(self, name: str, impls: list[Any]):
        self.name = name
        self._impls = impls

    def get_hookimpls(self) -> list[Any]:
        return list(self._impls)
