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
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from mdm_core.errors import describe
from mdm_core.locks import DbLock, Heartbeat, LockLost

if TYPE_CHECKING:
    from mdm_core.db import Database

log = logging.getLogger(__name__)

JOB_LOCK_TTL = 300.0  # seconds; the heartbeat renews it every third of that while the job runs
PREFIX = "job."
#: the lock (and its heartbeat) of the job running in this context, set by :func:`running_alone`
_HELD: ContextVar[tuple[DbLock, Heartbeat] | None] = ContextVar("mdm_job_lock", default=None)
LOST = "stopped before its next item; what is left waits for the next run"


def check_held() -> None:
    """Raise ``LockLost`` when the running job's lock was lost (it expired and another process
    took it), else renew it; a job calls this before each item that acts on Apple or the queue.
    Does nothing outside a guarded job (a ``local`` job, a command, a test calling the job)."""
    held = _HELD.get()
    if held is None:
        return
    lock, beat = held
    try:
        lock.refresh(outcome=LOST)
    except LockLost:
        raise
    except Exception as exc:  # the database is busy: the heartbeat's last word stands
        log.warning("lock %s: cannot check it before the next item, going on: %s", lock.name, describe(exc))
        beat.check()


@contextmanager
def running_alone(db: Database, name: str, *, ttl: float = JOB_LOCK_TTL) -> Iterator[str | None]:
    """Hold job ``name``'s lock while the block runs, yielding ``None``; or, when another process
    holds it, yield who does (``held by process 1234 on host-a since ...``) without taking it."""
    lock = DbLock(db, PREFIX + name, ttl=ttl)
    if not lock.try_acquire():
        yield lock.busy.describe() if lock.busy else "held by another process"
        return
    try:
        with lock.heartbeat() as beat:
            token = _HELD.set((lock, beat))
            try:
                yield None
            finally:
                _HELD.reset(token)
    finally:
        try:
            lock.release()
        except Exception as exc:  # its expiry frees it
            log.warning("job %s: could not release its lock (free again in %ss at most): %s", name, round(ttl), describe(exc))
