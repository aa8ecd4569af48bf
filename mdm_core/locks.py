"""Named locks kept in the database, shared by every process, with an expiry.

A crashed holder blocks nobody for longer than the lock's time to live; a live holder keeps
its lock with ``refresh()`` while it works.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from mdm_core.db import Database
from mdm_core.errors import MdmError
from mdm_core.models import Lock, utcnow


def new_holder() -> str:
    """A holder id unique to this call: ``host:pid:random`` (so a dead local holder can be recognised)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LockBusy(MdmError):
    """Another process holds the lock."""


class DbLock:
    """One named lock; ``acquire`` waits up to ``wait`` seconds, then raises ``LockBusy``."""

    def __init__(self, db: Database, name: str, *, ttl: float = 600.0, holder: str | None = None):
        self.db = db
        self.name = name
        self.ttl = ttl
        self.holder = holder or new_holder()

    def try_acquire(self) -> bool:
        """Take the lock if it is free or expired; True if we hold it now."""
        now = utcnow()
        expires = now + timedelta(seconds=self.ttl)
        try:
            with self.db.write_session() as session:
                session.add(Lock(name=self.name, holder=self.holder, acquired_at=now, expires_at=expires))
                session.commit()
                return True
        except IntegrityError:
            pass
        with self.db.write_session() as session:
            result = session.execute(
                update(Lock)
                .where(Lock.name == self.name, (Lock.expires_at < now) | (Lock.holder == self.holder))
                .values(holder=self.holder, acquired_at=now, expires_at=expires)
            )
            session.commit()
            return result.rowcount == 1

    def acquire(self, wait: float = 0.0, poll: float = 0.5) -> None:
        """Take the lock, waiting at most ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                raise LockBusy(f"{self.name} is already running in another process; try again later")
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())) or poll)

    def refresh(self) -> None:
        """Push the expiry forward while the work goes on."""
        with self.db.write_session() as session:
            session.execute(
                update(Lock)
                .where(Lock.name == self.name, Lock.holder == self.holder)
                .values(expires_at=utcnow() + timedelta(seconds=self.ttl))
            )
            session.commit()

    def release(self) -> None:
        """Give the lock back (only if we still hold it)."""
        with self.db.write_session() as session:
            session.execute(delete(Lock).where(Lock.name == self.name, Lock.holder == self.holder))
            session.commit()

    @contextmanager
    def held(self, wait: float = 0.0) -> Iterator["DbLock"]:
        """``with lock.held(): ...``"""
        self.acquire(wait)
        try:
            yield self
        finally:
            self.release()
