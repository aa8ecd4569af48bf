"""SQLite's WAL checkpoints on a thread of their own, not inside the commit that needs one.

In WAL mode every commit appends the pages it changed to the write-ahead log, and a
*checkpoint* copies them back into the database file. SQLite's automatic checkpoint runs it in
the connection whose commit took the log past 1,000 pages, before that commit returns: an
incremental sync's apply (3,000 licenses spread over the mirror's b-trees) waited 0.15 s for it,
and a full sync paid it at every staged batch. The host turns it off on its connections
(``PRAGMA wal_autocheckpoint=0``) and runs this instead: after a connection that committed
goes back to the pool, one thread runs a ``PASSIVE`` checkpoint, which never blocks a reader
or a writer (what a reader still needs is copied by a later one), while the process goes on
(the sync delivers its events meanwhile). Nudges that come while a checkpoint runs make one
more. The last connection to close still checkpoints as SQLite always does.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from mdm_core.errors import describe

log = logging.getLogger(__name__)

COMMITTED = "mdm_committed"  # a pooled connection's info: it committed since it was checked out


class WalCheckpointer:
    """Checkpoints ``engine``'s SQLite database on a thread of its own after commits: a thread
    starts at a commit when none runs, and ends once no commit came during its checkpoint (no
    thread waits while nothing is written)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending = False  # a commit came since the running checkpoint began
        self.checkpoints = 0  # run so far (tests, diagnostics)
        event.listen(engine, "commit", self._committed)
        event.listen(engine, "checkin", self._checked_in)

    @staticmethod
    def _committed(conn: Connection) -> None:
        conn.info[COMMITTED] = True  # the pooled connection's own dict: seen again at its checkin

    def _checked_in(self, _dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(COMMITTED, False):  # the commit has returned
            self.nudge()

    def nudge(self) -> None:
        """Ask for a checkpoint: one more after the running one, or a thread of its own."""
        with self._lock:
            self._pending = True
            if self._thread is not None:
                return
            # Started before it is recorded: an interruption (Ctrl-C raises in the main thread
            # wherever it is) never leaves a recorded thread that never starts, which wait()
            # could not join and which would keep every later nudge from starting one.
            thread = threading.Thread(target=self._run, name="mdm-wal-checkpoint", daemon=True)
            thread.start()
            self._thread = thread

    def wait(self) -> None:
        """Return once no checkpoint runs or waits (those asked for so far are done)."""
        while True:
            with self._lock:
                thread = self._thread
            if thread is None or thread is threading.current_thread():
                return
            thread.join()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
                self._pending = False
            try:
                self.checkpoint()
            except Exception as exc:  # a read-only file, a closed engine: the next commit tries again
                log.debug("WAL checkpoint failed: %s", describe(exc))

    def checkpoint(self) -> None:
        """One ``PASSIVE`` checkpoint, on a pooled connection outside any transaction."""
        raw = self.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None  # a checked-out connection has its driver connection
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        finally:
            raw.close()
