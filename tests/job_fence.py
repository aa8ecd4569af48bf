"""Losing a job's cross-host lock for real in a test: the job's process is 'paused' past the
lock's expiry (the locks' clock moves forward) and another host's ``DbLock`` takes it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from mdm_core import locks
from mdm_core.db import Database
from mdm_core.job_lock import JOB_LOCK_TTL
from mdm_core.locks import DbLock
from mdm_core.models import utcnow

#: the holder that takes the lock once it has expired (``process 4242 on host-b``)
OTHER = "host-b:4242:cafecafe"


class Clock:
    """The locks' clock, ``offset`` seconds ahead of the real one."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> datetime:
        return utcnow() + timedelta(seconds=self.offset)


def lose_lock_after_first(db: Database, monkeypatch: pytest.MonkeyPatch, owner: Any, method: str, job: str) -> list[DbLock]:
    """After the first real call of ``owner.method`` (a class's method), the job's lock expires
    and another host takes it; returns a list that holds that host's lock once taken."""
    clock, original = Clock(), getattr(owner, method)
    taken: list[DbLock] = []
    monkeypatch.setattr(locks, "utcnow", clock)

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if not taken:
            clock.offset = JOB_LOCK_TTL + 1
            other = DbLock(db, f"job.{job}", ttl=JOB_LOCK_TTL, holder=OTHER)
            assert other.try_acquire()
            taken.append(other)
        return result

    monkeypatch.setattr(owner, method, spy)
    return taken


def lost_message(job: str) -> str:
    """The start of the failed turn's error (``mdm jobs``' ``last_error``)."""
    return f"lost the lock job.{job} (it expired and it is now held by process 4242 on host-b since "


#: the end of that error
LOST_END = "stopped before its next item; what is left waits for the next run"
