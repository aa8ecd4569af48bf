"""Several hosts sharing one database: which ``mdm run`` processes are alive, and which of them
does which share of the work.

Each ``mdm run`` joins at start: it holds a lock of its own, ``host.<holder>`` in ``core_lock``,
refreshed by a thread every third of :data:`HOST_TTL`. A host is alive while that lock is
unexpired and its holder is not known to be gone (a dead process of this machine; on
PostgreSQL, a holder whose database session ended: its advisory lock died with it, so a killed
host drops out at once). :meth:`Cluster.owner` shares keys (e.g. account names) round-robin
over the live hosts in a fixed order, so that every host computes the same owner for a key
without talking to the others; when a host joins or leaves, its keys move.

Ownership only says who goes first: the work itself stays guarded by its own lock (a
key's work never runs twice at a time), and the others step in when the owner does not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, text
from sqlmodel import col

from mdm_core.errors import MdmError, describe
from mdm_core.locks import DbLock, LockLost, describe_holder, live_locks, new_holder
from mdm_core.models import Lock, utcnow

if TYPE_CHECKING:
    from mdm_core.db import Database

log = logging.getLogger(__name__)

HOST_PREFIX = "host."
HOST_TTL = 30.0  # seconds a host stays listed after its last refresh (a crashed host on another machine, without PostgreSQL)
MEMBERS_CACHE = 1.0  # seconds the list of live hosts is reused
MAX_SKEW = 5.0  # seconds this host's clock may differ from the database server's before `mdm run` warns


class Cluster:
    """This process's view of the hosts sharing its database (see the module docstring)."""

    def __init__(self, db: Database, ttl: float = HOST_TTL):
        self.db = db
        self.ttl = ttl
        self.lock: DbLock | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._members: tuple[float, list[str]] | None = None

    @property
    def holder(self) -> str | None:
        """This host's id (``host:pid:random``) once it has joined."""
        return self.lock.holder if self.lock is not None else None

    def join(self) -> None:
        """Be listed as a live host until :meth:`leave` (``mdm run`` joins at start)."""
        if self.lock is not None:
            return
        holder = new_holder()
        self._prune()
        self.lock = DbLock(self.db, HOST_PREFIX + holder, ttl=self.ttl, holder=holder)
        self.lock.acquire()
        self._members = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep, name="cluster-membership", daemon=True)
        self._thread.start()
        log.info("joined the hosts of this database as %s", holder)
        warn_of_clock_skew(self.db)

    def leave(self) -> None:
        """Stop being listed (at shutdown): the others take this host's share at once."""
        lock, self.lock = self.lock, None
        if lock is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            lock.release()
        except Exception as exc:  # the row expires by itself
            log.warning("could not leave the hosts of this database: %s", describe(exc))
        self._members = None

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            lock = self.lock
            if lock is None:
                return
            try:
                lock.refresh()
            except LockLost:  # listed as gone (paused past the expiry, pruned): join again
                try:
                    lock.try_acquire()
                except Exception as exc:
                    log.warning("could not rejoin the hosts of this database: %s", describe(exc))
            except Exception as exc:  # a busy database: next beat
                log.warning("could not refresh this host's membership: %s", describe(exc))

    def _prune(self) -> None:
        """Forget hosts whose membership expired long ago (each start adds one row)."""
        old = utcnow() - timedelta(seconds=max(self.ttl * 10, 3600))
        try:
            self.db.run_write(lambda s: s.execute(delete(Lock).where(col(Lock.name).like(HOST_PREFIX + "%"), col(Lock.expires_at) < old)))
        except Exception as exc:
            log.debug("could not prune old hosts: %s", describe(exc))

    def members(self) -> list[str]:
        """The live hosts' ids, sorted; this host among them once joined."""
        cached = self._members
        if cached is not None and time.monotonic() - cached[0] < MEMBERS_CACHE:
            return cached[1]
        me = self.holder
        live = sorted({info.holder for info in live_locks(self.db, HOST_PREFIX, mine=me)} | ({me} if me else set()))
        self._members = (time.monotonic(), live)
        return live

    def owner(self, key: str, keys: Sequence[str]) -> str | None:
        """The live host whose share ``key`` is: round-robin over the live hosts, in the order of
        the sorted ``keys`` (every host computes the same). ``None`` when no host is listed."""
        members = self.members()
        if not members:
            return None
        ordered = sorted(set(keys) | {key})
        return members[ordered.index(key) % len(members)]

    def owns(self, key: str, keys: Sequence[str]) -> bool:
        """True when this host should do ``key`` first: its owner, or any host while this
        process has not joined (a single host, ``mdm vpp sync``)."""
        if self.lock is None:
            return True
        return self.owner(key, keys) == self.lock.holder


def clock_skew(db: Database) -> float | None:
    """Seconds this host's clock is ahead of the database server's (negative: behind); ``None``
    on SQLite (one machine, one clock)."""
    if db.is_sqlite:
        return None
    with db.engine.connect() as conn:
        before = utcnow()
        server = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        after = utcnow()
    return ((before - server) + (after - server)).total_seconds() / 2


def warn_of_clock_skew(db: Database) -> None:
    """Log a warning when this host's clock is more than :data:`MAX_SKEW` off the database
    server's: the hosts compare the expiries other hosts wrote with their own clocks."""
    try:
        skew = clock_skew(db)
    except Exception as exc:  # the next beat tells of an unreachable database
        log.debug("cannot compare this host's clock with the database server's: %s", describe(exc))
        return
    if skew is not None and abs(skew) > MAX_SKEW:
        log.warning(
            "this host's clock is %.0f s %s the database server's: the hosts of a database tell who is alive by the times they "
            "write there, and a host more than %.0f s off counts the others gone or is counted gone (the accounts' shares then "
            "disagree): set the clocks right (NTP)",
            abs(skew),
            "ahead of" if skew > 0 else "behind",
            HOST_TTL,
        )


def refuse_upgrade_while_running(db: Database, states: Sequence[Any]) -> None:
    """Stop an upgrade that would change tables a live ``mdm run`` uses (a history ``behind`` or
    ``unstamped``; creating a new plugin's tables is fine): that process keeps running the code
    it started with, which knows the schema before the upgrade (a column a migration fills, a
    table it backfills would then be written as the previous release did). Nothing is changed."""
    changed = [s.name for s in states if s.state in ("behind", "unstamped")]
    if not changed:
        return
    try:
        running = Cluster(db).members()
    except Exception as exc:  # no host table yet (release 0.1.0's schema), an unreadable row: no mdm run of this kind
        log.debug("cannot list the hosts running on %s: %s", db.describe(), describe(exc))
        return
    if running:
        raise MdmError(
            f"`mdm run` is running on database {db.describe()} ({', '.join(describe_holder(h) for h in running)}): stop it first "
            f"(it runs the release it started with, which would go on writing the tables of {', '.join(changed)} as before the "
            "upgrade), then run `mdm db upgrade`, then start it again; nothing was changed"
        )
