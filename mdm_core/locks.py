"""Named locks kept in the database, shared by every process, with an expiry and a fencing token.

A lock row (``core_lock``) names its holder (``host:pid:random``, unique to each ``DbLock``) and
a generation that grows at every acquisition: holder and generation together are the
*fencing token*. Work that must only be committed by the current holder checks the token
inside its own transaction with :meth:`DbLock.fence`, so a holder that was paused past its
expiry and lost the lock can never commit afterwards.

A lock is free when nobody holds it, when its expiry has passed, or when its holder is gone:
a process of this machine that has exited (its pid is dead), or, on PostgreSQL, a holder
whose database session ended (each holder keeps a session advisory lock named after itself,
which dies with its connection, and a taker checks the row's holder for it). A live holder keeps its lock with :meth:`DbLock.refresh`, or with
:meth:`DbLock.heartbeat`, a thread that refreshes it while long work goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col

from mdm_core.db.typed import rowcount, table_of
from mdm_core.errors import MdmError, describe
from mdm_core.models import Lock, utcnow

if TYPE_CHECKING:
    from mdm_core.db import Database

log = logging.getLogger(__name__)

#: PostgreSQL advisory lock namespace (the first of the two int4 keys) of lock holders.
_PG_HOLDER_CLASS = 0x4D444D48  # "MDMH"
_RELEASED = datetime(1970, 1, 1, tzinfo=UTC)
_PG_LOCK_NOT_AVAILABLE = "55P03"  # SELECT ... FOR UPDATE NOWAIT on a row another transaction holds
#: Seconds before a waiter first tries a busy lock again (doubling up to ``acquire``'s ``poll``).
FIRST_POLL = 0.05
_LOCKS = table_of(Lock)
_LOCK_ROW = select(_LOCKS.c.holder, _LOCKS.c.generation, _LOCKS.c.acquired_at, _LOCKS.c.expires_at)


def new_holder() -> str:
    """A holder id unique to this call: ``host:pid:random`` (so a dead local holder can be recognised)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def local_holder_is_dead(holder: str) -> bool:
    """True when ``holder`` names a process of this machine that has exited.

    Any other holder (another machine, this process, a pid we may not signal) counts as alive.
    """
    try:
        hostname, pid_text, _ = holder.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if hostname != socket.gethostname() or pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, someone else's
        return False
    return False


def holder_is_dead(db: Database, holder: str) -> bool:
    """True when ``holder`` is known to be gone: a dead process of this machine, or on
    PostgreSQL a holder whose database session (and so its advisory lock) has ended."""
    if local_holder_is_dead(holder):
        return True
    if db.is_sqlite or not holder:
        return False
    try:
        with db.engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": _PG_HOLDER_CLASS, "k": _key(holder)}).scalar_one()
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"), {"c": _PG_HOLDER_CLASS, "k": _key(holder)})
            conn.commit()
            return bool(got)
    except Exception as exc:  # cannot tell: alive
        log.debug("cannot check holder %s: %s", holder, describe(exc))
        return False


def live_locks(db: Database, prefix: str, *, mine: str | None = None) -> list[LockInfo]:
    """The locks named ``prefix...`` unexpired whose holder is not known to be gone (``mine``,
    this process's holder, is not asked): the jobs running (``job.``), the live hosts (``host.``)."""
    with db.session() as session:
        rows = session.execute(select(Lock).where(col(Lock.name).startswith(prefix, autoescape=True), col(Lock.expires_at) > utcnow())).scalars().all()
    found = [LockInfo(r.name, r.holder, r.generation, r.acquired_at, r.expires_at) for r in rows]
    return [info for info in found if info.holder == mine or not holder_is_dead(db, info.holder)]


def _session_alive(conn: Any) -> bool:
    """Whether a kept PostgreSQL connection (and so every session lock on it) still lives."""
    try:
        conn.execute(text("SELECT 1"))
        conn.commit()
        return True
    except Exception as exc:
        log.debug("a kept database session has ended: %s", describe(exc))
        return False


def describe_holder(holder: str) -> str:
    """``process 1234 on host-a`` from a holder id (the id itself when it has another form)."""
    try:
        hostname, pid, _ = holder.rsplit(":", 2)
        int(pid)
    except ValueError:
        return holder
    return f"process {pid} on {hostname}"


def _key(value: str) -> int:
    """A signed int4 advisory-lock key for a name or holder."""
    return zlib.crc32(value.encode()) - (1 << 31)


def _hhmmss(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%H:%M:%S UTC")


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock, since when, until when."""

    name: str
    holder: str
    generation: int
    acquired_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        """``held by process 1234 on host-a since 10:00:01 UTC; its lock expires at 10:05:01 UTC unless renewed``;
        a lock read just after its holder gave it back (a try found the row busy with the release)
        says so, not an expiry of ``00:00:00 UTC``."""
        held = f"held by {describe_holder(self.holder)} since {_hhmmss(self.acquired_at)}"
        if self.expires_at <= _RELEASED:
            return f"{held}, which was giving it back just then"
        if self.expires_at <= utcnow():
            return f"{held}; its lock expired at {_hhmmss(self.expires_at)}"
        return f"{held}; its lock expires at {_hhmmss(self.expires_at)} unless renewed"


class LockBusy(MdmError):
    """Another process holds the lock; ``info`` says who and until when."""

    def __init__(self, message: str, info: LockInfo | None = None):
        super().__init__(message)
        self.info = info


class LockLost(MdmError):
    """This holder no longer holds the lock: it expired and another holder took it (or it was
    released). Work guarded by the lock must stop without committing anything."""

    retryable = True


class DbLock:
    """One named lock; ``acquire`` waits up to ``wait`` seconds, then raises ``LockBusy``."""

    def __init__(self, db: Database, name: str, *, ttl: float = 600.0, holder: str | None = None):
        self.db = db
        self.name = name
        self.ttl = ttl
        self.holder = holder or new_holder()
        self.generation: int | None = None
        self.busy: LockInfo | None = None  # the holder that made the last try fail
        self._pg_conn: Any = None
        self._session_guard = threading.RLock()  # the heartbeat's refresh and the holder's release

    def __repr__(self) -> str:
        return f"DbLock({self.name!r}, holder={self.holder!r}, generation={self.generation})"

    def __del__(self) -> None:
        # a lock dropped without release: its PostgreSQL connection must not go back to the pool
        # still holding session advisory locks (they would look alive for as long as it lives)
        conn = getattr(self, "_pg_conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()

    # ------------------------------------------------------------------ taking and giving back

    def try_acquire(self) -> bool:
        """Take the lock if it is free, expired or its holder is gone; True if we hold it now.

        A try that raises (Ctrl-C or SIGTERM during its commit, raised once its write session
        has ended) never tells its caller it holds the lock: a lock it took is given back
        first, else the next run would find it "already running" until it expired."""
        held = self.generation is not None
        self._take_session_lock()
        try:
            won = self._take()
        except IntegrityError:  # another process inserted the row first
            won = False
        except BaseException as exc:
            try:
                # taken: mdm's interruption is raised once the write session has ended, so the
                # try knows; Python's own KeyboardInterrupt may have come after the server's commit
                if not held and (self.generation is not None or type(exc) is KeyboardInterrupt):
                    self._give_back()
            finally:
                self._drop_session_lock()
            raise
        if not won:
            self._drop_session_lock()
        return won

    def _give_back(self) -> None:
        """Release the row a failed try committed: our holder's, whatever its generation (an
        interruption may have come before the try learned it). Only this ``DbLock`` takes
        rows under its holder, so no other holder's lock or fencing token is touched."""
        self.generation = None
        try:
            with self._write_session() as session:
                ours: tuple[Any, ...] = (_LOCKS.c.name == self.name, _LOCKS.c.holder == self.holder, _LOCKS.c.expires_at > _RELEASED)
                session.execute(update(_LOCKS).where(*ours).values(expires_at=_RELEASED))
                session.commit()
        except Exception as exc:  # its expiry frees it (or, on PostgreSQL, the end of our session)
            log.error("could not give back the lock %s: %s", self.name, describe(exc))

    def _take(self) -> bool:
        now = utcnow()
        expires = now + timedelta(seconds=self.ttl)
        with self._write_session() as session:
            try:
                # PostgreSQL: never wait for the row's lock. Its holder is in a transaction on it
                # (a sync's apply, from its fence to its commit): it is alive, so the lock is busy
                # plain rows and statements (Core): no ORM object loaded, tracked and flushed
                row = session.execute(_LOCK_ROW.where(_LOCKS.c.name == self.name).with_for_update(nowait=not self.db.is_sqlite)).first()
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != _PG_LOCK_NOT_AVAILABLE:
                    raise
                session.rollback()
                self.busy = self.info()  # a plain read does not wait for the row's lock
                return False
            if row is None:
                session.execute(insert(_LOCKS).values(name=self.name, holder=self.holder, acquired_at=now, expires_at=expires, generation=1))
                session.commit()
                self.generation, self.busy = 1, None
                return True
            # the row's own holder is checked (its session advisory lock), never the name: a
            # holder that won the row while another try was under way must still count as alive
            free = row.expires_at <= now or row.holder == self.holder or holder_is_dead(self.db, row.holder)
            if not free:
                self.busy = LockInfo(self.name, row.holder, row.generation, row.acquired_at, row.expires_at)
                return False
            if row.expires_at > now and row.holder != self.holder:
                log.warning("lock %s: its holder (%s) is gone; taking it", self.name, describe_holder(row.holder))
            generation = (row.generation or 0) + 1
            session.execute(
                update(_LOCKS).where(_LOCKS.c.name == self.name).values(holder=self.holder, acquired_at=now, expires_at=expires, generation=generation)
            )
            session.commit()
            self.generation, self.busy = generation, None
            return True

    def acquire(self, wait: float = 0.0, poll: float = 0.5) -> None:
        """Take the lock, waiting at most ``wait`` seconds; ``LockBusy`` names the holder.

        A waiter tries again after 50 ms, then twice as long each time up to ``poll`` seconds:
        a lock held for a moment (a short sync, a command) is taken at once after its release,
        one held for minutes is asked about at most every ``poll`` seconds."""
        deadline = time.monotonic() + wait
        interval = min(FIRST_POLL, poll)
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                detail = f": {self.busy.describe()}" if self.busy else ""
                raise LockBusy(f"{self.name} is already running in another process{detail}; try again later", self.busy)
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())) or interval)
            interval = min(interval * 2, poll)

    def release(self) -> None:
        """Give the lock back (only if we still hold it). The row stays, so that generations
        keep growing: a released lock is one whose expiry has passed."""
        try:
            with self._write_session() as session:
                session.execute(update(_LOCKS).where(*self._ours()).values(expires_at=_RELEASED))
                session.commit()
        finally:
            self.generation = None
            self._drop_session_lock()

    @contextmanager
    def held(self, wait: float = 0.0) -> Iterator[DbLock]:
        """``with lock.held(): ...``"""
        self.acquire(wait)
        try:
            yield self
        finally:
            self.release()

    # ------------------------------------------------------------------ keeping it

    def _ours(self) -> tuple[Any, ...]:
        """The lock's row while we hold it: our holder and generation, not released. A renewal
        that was under way when the lock was released (the heartbeat's, waiting for a write
        lock while the holder released it) finds nothing, instead of holding a released lock
        again for a whole time to live (the next sync was "already running"). Core columns, as
        every statement on the row: an ORM-enabled UPDATE cost 0.4-0.9 ms of CPU more a call
        (the fence runs twice in each sync's apply transaction)."""
        return (_LOCKS.c.name == self.name, _LOCKS.c.holder == self.holder, _LOCKS.c.generation == self.generation, _LOCKS.c.expires_at > _RELEASED)

    def _lost(self, outcome: str = "stopped with nothing written") -> LockLost:
        current = self.info()
        if current is None:
            who = "it no longer exists"
        elif current.holder == self.holder:
            who = "it was released"
        elif current.expires_at <= utcnow():
            who = f"{describe_holder(current.holder)} took it meanwhile and has finished"
        else:
            who = f"it is now {current.describe()}"
        return LockLost(f"lost the lock {self.name} (it expired and {who}): {outcome}")

    def refresh(self, *, outcome: str = "stopped with nothing written") -> None:
        """Push the expiry forward; ``LockLost`` at once if another holder has taken the lock
        (its message ends with ``outcome``: what the holder does about it). On PostgreSQL, the
        session advisory lock that tells others we are alive is taken again if its session ended."""
        if self.generation is None:
            raise LockLost(f"lock {self.name} is not held")
        self._take_session_lock()
        with self._write_session() as session:
            result = session.execute(update(_LOCKS).where(*self._ours()).values(expires_at=utcnow() + timedelta(seconds=self.ttl)))
            session.commit()
        if rowcount(result) != 1:
            raise self._lost(outcome)

    def fence(self, session: Session) -> None:
        """In the caller's write transaction: check that we still hold the lock (holder and
        generation) and extend it; ``LockLost`` otherwise, and the caller must roll back.

        The row stays locked until that transaction ends (PostgreSQL row lock, SQLite write
        lock), so nobody can take the lock between this check and the commit.
        """
        if self.generation is None:
            raise LockLost(f"lock {self.name} is not held")
        result = session.execute(update(_LOCKS).where(*self._ours()).values(expires_at=utcnow() + timedelta(seconds=self.ttl)))
        if rowcount(result) != 1:
            raise self._lost()

    def info(self) -> LockInfo | None:
        """The lock's row as it is now (``None`` when it never existed)."""
        with self.db.session() as session:
            row = session.execute(_LOCK_ROW.where(_LOCKS.c.name == self.name)).first()
            if row is None:
                return None
            return LockInfo(self.name, row.holder, row.generation, row.acquired_at, row.expires_at)

    @contextmanager
    def heartbeat(self, every: float | None = None, *, tick: Callable[[], None] | None = None, tick_every: float = 1.0) -> Iterator[Heartbeat]:
        """Refresh the lock from a background thread every ``every`` seconds (a third of the
        time to live by default) while the block runs; ``beat.check()`` raises ``LockLost``
        as soon as a refresh found the lock taken. ``tick``, if given, is called from the same
        thread every ``tick_every`` seconds (periodic work of the lock's holder, such as
        recording its progress; an error is logged, never raised)."""
        beat = Heartbeat(self, every if every is not None else max(0.05, self.ttl / 3), tick=tick, tick_every=tick_every)
        beat.start()
        try:
            yield beat
        finally:
            beat.stop()

    # ------------------------------------------------------------------ PostgreSQL sessions

    @contextmanager
    def _write_session(self) -> Iterator[Session]:
        """A write transaction on the lock's row. On PostgreSQL the server ends it if it stays
        idle longer than the lock's time to live: a process frozen between its renewal's UPDATE
        and its COMMIT (a suspended VM, SIGSTOP) would otherwise keep the row locked for as
        long as it stays frozen, and every other host's try would find it busy."""
        with self.db.write_session() as session:
            if not self.db.is_sqlite:
                session.execute(text("SELECT set_config('idle_in_transaction_session_timeout', :ms, true)"), {"ms": str(max(1000, round(self.ttl * 1000)))})
            yield session

    def _take_session_lock(self) -> None:
        """On PostgreSQL: take the session advisory lock of our holder on a connection kept for
        as long as we hold the lock, so that others can tell when our session has ended
        (:func:`holder_is_dead`). A session that ended while we are alive (the server restarted,
        a connection cut) took that lock with it, and every other host would count us gone for
        as long as we live: it is taken again on a new connection (each :meth:`refresh` checks)."""
        if self.db.is_sqlite:
            return
        with self._session_guard:
            if self._pg_conn is not None:
                if _session_alive(self._pg_conn):
                    return
                log.warning("lock %s: its database session ended (a server restart, a cut connection): holding it on a new one", self.name)
                self._drop_session_lock()
            self._connect_session_lock()

    def _connect_session_lock(self) -> None:
        conn = self.db.engine.connect()
        try:
            conn.execute(text("SELECT pg_advisory_lock(:c, :k)"), {"c": _PG_HOLDER_CLASS, "k": _key(self.holder)})
            conn.commit()
        except BaseException:
            conn.close()
            raise
        self._pg_conn = conn

    def _drop_session_lock(self) -> None:
        with self._session_guard:
            conn, self._pg_conn = self._pg_conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
            conn.commit()
        except Exception as exc:  # the connection is gone: so are its locks
            log.debug("lock %s: %s", self.name, describe(exc))
            conn.invalidate()
        finally:
            conn.close()


class Heartbeat:
    """A daemon thread that refreshes a lock until stopped (see :meth:`DbLock.heartbeat`)."""

    def __init__(self, lock: DbLock, every: float, *, tick: Callable[[], None] | None = None, tick_every: float = 1.0):
        self.lock = lock
        self.every = every
        self.tick = tick
        self.tick_every = tick_every
        self.lost: LockLost | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{lock.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        due = time.monotonic() + self.every
        while not self._stop.wait(max(0.0, min(due - time.monotonic(), self.tick_every if self.tick else self.every))):
            if time.monotonic() >= due:
                due = time.monotonic() + self.every
                try:
                    self.lock.refresh()
                except LockLost as exc:
                    self.lost = exc
                    if not self._stop.is_set():  # else released while this renewal waited: not lost
                        log.error("%s", exc)
                    return
                except Exception as exc:  # a busy database: try again at the next beat
                    log.warning("lock %s: refresh failed, retrying: %s", self.lock.name, describe(exc))
            if self.tick is not None and not self._stop.is_set():
                try:
                    self.tick()
                except Exception as exc:
                    log.warning("lock %s: %s", self.lock.name, describe(exc))

    def check(self) -> None:
        """Raise ``LockLost`` if a refresh found the lock taken by another holder."""
        if self.lost is not None:
            raise self.lost

    __call__ = check
