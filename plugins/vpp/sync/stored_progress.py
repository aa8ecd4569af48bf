"""A running sync's progress in its run record (``vpp_sync_run.progress``), seen from every process.

The syncing process writes the values of :meth:`.progress.SyncProgress.as_dict` plus ``at``
(when they were written, UTC ISO 8601, by the database's clock: see :func:`database_now`) every
:data:`STORE_EVERY` seconds while it reads, even
when no page came meanwhile (its age then says the process is alive: its figures are the
latest), and never a write per page:

- from the lock's heartbeat thread, which the recorder ticks every :data:`TICK` seconds
  (:meth:`mdm_core.locks.DbLock.heartbeat`), in a short transaction of its own;
- on SQLite, inside the staging writes' own transactions when one is due (they hold the
  database's write lock anyway): the tick writes only when none carried the figures for a
  second longer, so that the progress adds no transaction to hold up a busy sync's staging.

The first figures are due a second after the sync starts: a sync quicker than that writes
none. Before the final transaction they are written once more, in phase ``writing``, and the
recorder stops (nothing is read then; on SQLite that transaction holds the write lock): their
age grows while it runs. That ``writing`` mark is final: a heartbeat's write already under way
when it landed does not replace it (its UPDATE skips a run whose figures say ``writing``); only
:meth:`ProgressRecorder.reading`, when the sync reads again, writes over it. The run's end (success, failure, interruption) sets the column back
to NULL. Every write is guarded by ``status = 'running'``: a run that ended is never given
figures again. A run whose process died
keeps its last figures, but shows ``interrupted`` (:func:`.run.run_rows`), and :func:`shown`
shows progress only for a running run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Text, cast, func, literal, select, text, update
from sqlmodel import Session

from mdm_core.db.typed import table_of
from mdm_core.errors import describe
from mdm_core.models import utcnow

from ..models import VppSyncRun
from . import progress

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)

STORE_EVERY = 2.0  # seconds between two writes of a run's progress at least
TICK = 1.0  # seconds between two looks of the heartbeat thread
SQLITE_GRACE = 1.0  # on SQLite the tick leaves a due write this long to a staging transaction
FUTURE_SLACK = 5.0  # seconds a stamp may lie ahead of the reader's clock and show age 0 (else no age)

_RUNS = table_of(VppSyncRun)
_lock = threading.Lock()
_recorders: dict[int, ProgressRecorder] = {}  # run id -> its recorder, for the staging writes


class ProgressRecorder:
    """Writes the progress of one run of this process into its run record (see the module docstring)."""

    def __init__(self, host: Host, run_id: int, account: str):
        self.host, self.run_id, self.account = host, run_id, account
        self.stopped = False  # set during the final transaction: nothing is read then
        # when the figures were last written (monotonic): the first ones are due after a second
        self._written_at = time.monotonic() + TICK - STORE_EVERY
        self._stored = False  # figures were written

    def _claim(self, grace: float) -> dict[str, Any] | None:
        """The figures to write now (claimed: nobody else writes them), or None."""
        if self.stopped:
            return None
        now = time.monotonic()
        with _lock:
            current = progress.snapshot(self.account)
            if current is None or now - self._written_at < STORE_EVERY + grace:
                return None
            self._written_at, self._stored = now, True
        return current[1]

    def _store(self, session: Session, values: dict[str, Any], *, mark: bool = False) -> None:
        """``values`` stamped with the database's clock, into a running run; unless ``mark``
        (the ``writing`` or ``reading`` mark itself), never over a stored ``writing`` mark."""
        run = update(_RUNS).where(_RUNS.c.id == self.run_id, _RUNS.c.status == "running")
        if not mark:
            run = run.where(func.coalesce(_RUNS.c.progress["phase"].as_string(), "") != "writing")
        # a Core statement: no ORM object of the run is held, so nothing to synchronize, and the
        # ORM's UPDATE path cost 0.4-0.9 ms of CPU more a write (the ``writing`` mark is on the
        # sync's own thread, before its apply)
        session.execute(run.values(progress=_stamped(values, self.host.db.is_sqlite)))

    def writing(self) -> None:
        """The read is done and the final transaction begins: the figures once more, in phase
        ``writing`` (from the sync's own thread, before that transaction), then no more. A read
        too short to have stored figures (under a second: the first tick) adds no write."""
        self._mark("writing")
        self.stopped = True

    def reading(self) -> None:
        """The sync reads again (its final transaction gave way to a read that stages every
        license): the figures in phase ``reading`` replace the ``writing`` mark."""
        self._mark("reading")
        self.stopped = False

    def _mark(self, phase: str) -> None:
        progress.set_phase(self.account, phase)
        current = progress.snapshot(self.account)
        if current is not None and self._stored:  # a read under a second stored nothing: nor does its end
            self._write(current[1], mark=True)

    def carry(self, session: Session) -> None:
        """In a write transaction the sync makes anyway (a staging batch on SQLite): the figures, if due."""
        values = self._claim(0.0)
        if values is not None:
            self._store(session, values)

    def tick(self) -> None:
        """From the heartbeat thread: the figures, if due, in a transaction of their own. A
        failure is logged (the next tick tries again): progress never fails a sync."""
        self._write(self._claim(SQLITE_GRACE if self.host.db.is_sqlite else 0.0))

    def _write(self, values: dict[str, Any] | None, *, mark: bool = False) -> None:
        if values is None:
            return
        try:
            self.host.db.run_write(lambda session: self._store(session, values, mark=mark), attempts=1)
        except Exception as exc:
            log.debug("run %d: could not record its progress: %s", self.run_id, describe(exc))


@contextmanager
def recording(host: Host, run_id: int, account: str) -> Iterator[ProgressRecorder]:
    """The recorder of run ``run_id`` while the block runs; its ``tick`` goes to the heartbeat."""
    recorder = ProgressRecorder(host, run_id, account)
    with _lock:
        _recorders[run_id] = recorder
    try:
        yield recorder
    finally:
        with _lock:
            _recorders.pop(run_id, None)


def carry(session: Session, run_id: int) -> None:
    """In a staging transaction of run ``run_id`` (SQLite): its progress too, when due."""
    recorder = _recorders.get(run_id)
    if recorder is not None:
        recorder.carry(session)


#: PostgreSQL's statement_timestamp() as ``datetime.isoformat`` writes it in UTC (its
#: microseconds left out when they are 0)
_PG_NOW_ISO = text(
    "to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') "
    "|| CASE WHEN to_char(statement_timestamp(), 'US') = '000000' THEN '' ELSE to_char(statement_timestamp(), '.US') END || '+00:00'"
)


def _stamped(values: dict[str, Any], sqlite: bool) -> Any:
    """``values`` with ``at``, the database's clock (see :func:`_now`), for the progress column.
    On PostgreSQL the UPDATE stamps them itself: the JSON text ``json.dumps`` writes (the
    column's serializer), its stamp's value filled in by the statement (a statement less per
    write than reading the clock first)."""
    if sqlite:
        return {**values, "at": utcnow().isoformat()}
    head = json.dumps({**values, "at": ""})[:-2]  # up to the stamp's opening quote
    return cast(literal(head, Text) + _PG_NOW_ISO + literal('"}', Text), JSON)


def _now(session: Session, sqlite: bool) -> datetime:
    """The database's clock: PostgreSQL's (one clock for every host that shares it), in
    ``session``'s transaction; on SQLite this process's (SQLite has no clock of its own)."""
    if sqlite:
        return utcnow()
    now: datetime = session.execute(select(func.statement_timestamp())).scalar_one()
    return now.astimezone(UTC)


def database_now(host: Host) -> datetime:
    """The clock the stamps of stored progress are written with, for the age of a reader's
    (so a host whose clock is off sees the right age)."""
    if host.db.is_sqlite:
        return utcnow()
    with host.db.session() as session:
        return _now(session, False)


def shown(run: dict[str, Any], now: datetime | None = None) -> dict[str, Any] | None:
    """The progress to show for ``run`` (a row of :func:`.run.run_rows`, ``progress`` as stored):
    None unless it is running; this process's live figures when it runs here (``age_s`` 0), else
    the figures its process stored, with ``age_s``, the seconds since they were written by
    ``now`` (:func:`database_now`): 0 for a stamp up to :data:`FUTURE_SLACK` seconds ahead, None
    (no age rather than a wrong one) for a stamp further ahead (written by a clock that was wrong)."""
    if run["status"] != "running":
        return None
    now = now or utcnow()
    live = progress.snapshot(run["account"])
    if live is not None and live[0] == run["id"]:
        return {**live[1], "at": now.isoformat(), "age_s": 0.0}
    stored = run.get("progress")
    if not isinstance(stored, dict) or not isinstance(stored.get("at"), str):
        return None
    try:
        at = datetime.fromisoformat(stored["at"])
    except ValueError:
        return None
    age = (now - (at if at.tzinfo else at.replace(tzinfo=UTC))).total_seconds()
    return {**stored, "age_s": None if age < -FUTURE_SLACK else max(0.0, round(age, 1))}
