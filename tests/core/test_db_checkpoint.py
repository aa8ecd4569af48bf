"""SQLite's WAL checkpoints run on a thread of their own, after the commits that need them."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mdm_core.db.engine import Database
from mdm_core.interrupts import Interrupted

ROWS = 400  # of 4 KiB each: 1,600 pages, past SQLite's automatic checkpoint (1,000 pages)


def _write(db: Database) -> None:
    db.run_write(lambda s: s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")))
    for start in range(0, ROWS, 100):
        rows = [{"id": i, "body": "x" * 4096} for i in range(start, start + 100)]

        def insert(session: Any, rows: list[dict[str, Any]] = rows) -> None:
            session.execute(text("INSERT INTO t (id, body) VALUES (:id, :body)"), rows)

        db.run_write(insert)


def test_commits_return_before_the_checkpoint_which_a_thread_of_its_own_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connections of the host do no checkpoint in their commits (SQLite's automatic one is
    off on them); after the writes, the database file itself holds the rows, copied there by
    the checkpoint thread while every connection is still open (SQLite's own checkpoint at the
    last close plays no part)."""
    db = Database(f"sqlite:///{tmp_path / 'mdm.sqlite3'}")
    assert db.checkpointer is not None
    where: list[str] = []
    checkpoint = db.checkpointer.checkpoint

    def noted() -> None:
        where.append(threading.current_thread().name)
        checkpoint()

    monkeypatch.setattr(db.checkpointer, "checkpoint", noted)
    held = db.engine.connect()  # a pooled connection stays open: no close-time checkpoint
    try:
        assert held.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        held.rollback()  # checked out, in no transaction: a snapshot it held would keep frames in the log
        _write(db)
        db.checkpointer.wait()  # the checkpoints asked for are done
        assert where and set(where) == {"mdm-wal-checkpoint"}
        assert (tmp_path / "mdm.sqlite3").stat().st_size >= ROWS * 4096  # the file's own pages, not the log's
        assert not any(t.name == "mdm-wal-checkpoint" for t in threading.enumerate())  # no thread idles after
    finally:
        held.close()
        db.dispose()


def test_without_the_thread_the_rows_would_stay_in_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: with the thread's checkpoints left out, the same writes leave
    the database file as small as the empty table."""
    db = Database(f"sqlite:///{tmp_path / 'mdm.sqlite3'}")
    assert db.checkpointer is not None
    skipped: list[Any] = []
    monkeypatch.setattr(db.checkpointer, "checkpoint", lambda: skipped.append(1))
    held = db.engine.connect()  # as above
    try:
        _write(db)
        db.checkpointer.wait()
        assert skipped
        assert (tmp_path / "mdm.sqlite3").stat().st_size < ROWS * 4096 // 10
    finally:
        held.close()
        db.dispose()


def test_an_in_memory_database_has_no_checkpoint_thread() -> None:
    assert Database("sqlite://").checkpointer is None


def test_ctrl_c_while_a_checkpoint_thread_starts_leaves_none_half_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C at the commit that asks for a checkpoint (``mdm db upgrade`` interrupted between
    two migrations) raised in the main thread as the checkpoint thread was being started: the
    command then ended with a traceback, ``cannot join thread before it is started``, from
    closing the database, instead of ``mdm: interrupted``, and no later commit was
    checkpointed. Now the interruption leaves no thread recorded; the next commit starts one."""
    db = Database(f"sqlite:///{tmp_path / 'mdm.sqlite3'}")
    checkpointer = db.checkpointer
    assert checkpointer is not None
    start = threading.Thread.start
    calls: list[str] = []

    def interrupted_once(thread: threading.Thread) -> None:
        calls.append(thread.name)
        if len(calls) == 1:
            raise Interrupted(signal.SIGINT)  # the signal lands before the thread runs
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", interrupted_once)
    with pytest.raises(Interrupted):
        checkpointer.nudge()
    checkpointer.wait()  # closing the database: returns, nothing to join
    checkpoints = checkpointer.checkpoints
    db.run_write(lambda s: s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)")))  # the next commit
    checkpointer.wait()
    db.dispose()
    assert calls == ["mdm-wal-checkpoint", "mdm-wal-checkpoint"]
    assert checkpointer.checkpoints > checkpoints
