"""One run of a job at a time across processes and hosts sharing the database.

The scheduler's own check (never start a job while its previous run is still going) only sees
its process: ``mdm run`` on several hosts, or ``mdm jobs run`` from cron beside them, would
run the same job at once (two reclaims of one license, an install queued twice). The host's
job wrapper therefore holds a :class:`~mdm_core.locks.DbLock` named ``job.NAME`` while a job
runs, refreshed by its heartbeat; a job whose lock another process holds is skipped for that
turn. A holder that crashed frees the lock at once when it was a process of this machine or
its PostgreSQL session has ended, otherwise when its expiry (:data:`JOB_LOCK_TTL`) passes.

A holder paused past that expiry (a long GC pause, a frozen VM, a lost network) may find the
lock taken by another host when it wakes up. A long job therefore calls :func:`check_held`
before each item that acts on Apple or the queue: once the lock is lost it raises ``LockLost``,
the turn ends as a failed one, and the items left wait for the lock's next holder.

When that renewal fails because the database is busy or unavailable, the lock is still the
job's until the last expiry it is known to hold it to (its own renewals and acquisition, or the
row as a plain read still shows it): the job goes on while at least a third of the time to live
(the heartbeat's interval) is left, and stops with ``LockLost`` otherwise, never running an
item past a lock it cannot prove it still holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from mdm_core import locks
from mdm_core.errors import describe
from mdm_core.locks import DbLock, Heartbeat, LockLost, describe_holder
from mdm_core.output import format_time

if TYPE_CHECKING:
    from mdm_core.db import Database

log = logging.getLogger(__name__)

JOB_LOCK_TTL = 300.0  # seconds; the heartbeat renews it every third of that while the job runs
PREFIX = "job."
LOST = "stopped before its next item; what is left waits for the next run"


@dataclass
class _Held:
    """The running job's lock, its heartbeat, and the earliest time the lock is known to be
    held until (its acquisition's or :func:`check_held`'s last renewal's start, plus the ttl)."""

    lock: DbLock
    beat: Heartbeat
    until: datetime


#: the lock of the job running in this context, set by :func:`running_alone`
_HELD: ContextVar[_Held | None] = ContextVar("mdm_job_lock", default=None)


def running_holder() -> str:
    """The holder id of the running job's lock (``host:pid:random``), or a new one naming this
    process and host outside a guarded job (a ``local`` job): what ``core_job_run`` records as
    who ran the job's last run."""
    held = _HELD.get()
    return held.lock.holder if held is not None else locks.new_holder()


def check_held() -> None:
    """Raise ``LockLost`` when the running job's lock was lost (it expired and another process
    took it), else renew it; a job calls this before each item that acts on Apple or the queue.
    When the database is busy or unavailable, go on while the lock is known to be held for at
    least a third of its time to live, else raise ``LockLost``. Does nothing outside a guarded
    job (a ``local`` job, a command, a test calling the job)."""
    held = _HELD.get()
    if held is None:
        return
    lock, started = held.lock, locks.utcnow()
    try:
        lock.refresh(outcome=LOST)
    except LockLost:
        raise
    except Exception as exc:  # busy or unavailable: not lost, but renewed no further
        held.beat.check()  # a renewal of the heartbeat's found it taken
        _go_on_while_held(held, describe(exc))
        return
    held.until = max(held.until, started + timedelta(seconds=lock.ttl))


def _go_on_while_held(held: _Held, why: str) -> None:
    """After a failed renewal: return while the lock is known to be ours for a third of its
    time to live, else raise ``LockLost``. The lock's row, read without waiting for a writer,
    tells of the heartbeat's renewals (and of another holder that took it)."""
    lock, until = held.lock, held.until
    try:
        row = lock.info()
    except Exception as exc:  # unreadable too: what this process knows stands
        log.debug("lock %s: cannot read it: %s", lock.name, describe(exc))
        row = None
    if row is not None and (row.holder, row.generation) != (lock.holder, lock.generation):
        raise LockLost(f"lost the lock {lock.name} (it is now held by {describe_holder(row.holder)}): {LOST}")
    if row is not None:
        until = held.until = max(until, row.expires_at)
    left = (until - locks.utcnow()).total_seconds()
    if left < lock.ttl / 3:
        when = f"expires at {format_time(until)}" if left > 0 else f"expired at {format_time(until)}"
        raise LockLost(f"cannot renew the lock {lock.name} ({why}) and it {when}: {LOST}")
    log.warning("lock %s: cannot renew it before the next item (%s); going on, it is held until %s", lock.name, why, format_time(until))


def held_jobs(db: Database) -> dict[str, locks.LockInfo]:
    """The jobs running now in any process or host of the database, by job name: their
    ``job.NAME`` lock unexpired and its holder not known to be gone (``mdm jobs``' ``running``)."""
    return {info.name[len(PREFIX) :]: info for info in locks.live_locks(db, PREFIX)}


@contextmanager
def running_alone(db: Database, name: str, *, ttl: float = JOB_LOCK_TTL) -> Iterator[str | None]:
    """Hold job ``name``'s lock while the block runs, yielding ``None``; or, when another process
    holds it, yield who does (``held by process 1234 on host-a since ...``) without taking it."""
    lock = DbLock(db, PREFIX + name, ttl=ttl)
    started = locks.utcnow()
    if not lock.try_acquire():
        yield lock.busy.describe() if lock.busy else "held by another process"
        return
    try:
        with lock.heartbeat() as beat:
            token = _HELD.set(_Held(lock, beat, started + timedelta(seconds=ttl)))
            try:
                yield None
            finally:
                _HELD.reset(token)
    finally:
        try:
            lock.release()
        except Exception as exc:  # its expiry frees it
            log.warning("job %s: could not release its lock (free again in %ss at most): %s", name, round(ttl), describe(exc))
