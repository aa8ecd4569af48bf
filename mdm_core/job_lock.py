"""One run of a job at a time across processes and hosts sharing the database.

The scheduler's own check (never start a job while its previous run is still going) only sees
its process: ``mdm run`` on several hosts, or ``mdm jobs run`` from cron beside them, would
run the same job at once (two reclaims of one license, an install queued twice). The host's
job wrapper therefore holds a :class:`~mdm_core.locks.DbLock` named ``job.NAME`` while a job
runs, refreshed by its heartbeat; a job whose lock another process holds is skipped for that
turn. A holder that crashed frees the lock at once when it was a process of this machine or
its PostgreSQL session has ended, otherwise when its expiry (:data:`JOB_LOCK_TTL`) passes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mdm_core.errors import describe
from mdm_core.locks import DbLock

if TYPE_CHECKING:
    from mdm_core.db import Database

log = logging.getLogger(__name__)

JOB_LOCK_TTL = 300.0  # seconds; the heartbeat renews it every third of that while the job runs
PREFIX = "job."


@contextmanager
def running_alone(db: Database, name: str, *, ttl: float = JOB_LOCK_TTL) -> Iterator[str | None]:
    """Hold job ``name``'s lock while the block runs, yielding ``None``; or, when another process
    holds it, yield who does (``held by process 1234 on host-a since ...``) without taking it."""
    lock = DbLock(db, PREFIX + name, ttl=ttl)
    if not lock.try_acquire():
        yield lock.busy.describe() if lock.busy else "held by another process"
        return
    try:
        with lock.heartbeat():
            yield None
    finally:
        try:
            lock.release()
        except Exception as exc:  # its expiry frees it
            log.warning("job %s: could not release its lock (free again in %ss at most): %s", name, round(ttl), describe(exc))
