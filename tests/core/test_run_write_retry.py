"""``Database.run_write`` runs a PostgreSQL write again when the server rolled it back for a
deadlock (40P01) or a serialization failure (40001), as PostgreSQL documents, instead of
failing the user's command."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from mdm_core.db import Database
from mdm_core.db import engine as engine_module


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    db = Database(pg_url)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE counter (id integer PRIMARY KEY, n integer NOT NULL)"))
        conn.execute(text("INSERT INTO counter VALUES (1, 0), (2, 0)"))
    yield db
    db.dispose()


def _bump(session: Session, row: int) -> None:
    session.execute(text("UPDATE counter SET n = n + 1 WHERE id = :id"), {"id": row})


def _counts(db: Database) -> dict[int, int]:
    with db.engine.connect() as conn:
        return {int(i): int(n) for i, n in conn.execute(text("SELECT id, n FROM counter"))}


def _in_threads(*targets: Callable[[], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a write hung"
    return errors


@pytest.mark.slow  # PostgreSQL finds the deadlock after its deadlock_timeout (1 s)
def test_two_writes_that_deadlock_both_complete(pg_db: Database) -> None:
    """Two writes locking the same rows in opposite orders: PostgreSQL rolls one back
    ("deadlock detected"); that one runs again and both are written, nothing raised."""
    both_hold_one = threading.Barrier(2, timeout=30)
    calls = {"a": 0, "b": 0}

    def work(name: str, first: int, second: int) -> Callable[[Session], None]:
        def run(session: Session) -> None:
            calls[name] += 1
            _bump(session, first)
            if calls[name] == 1:  # the first attempt: each holds one row, then wants the other's
                both_hold_one.wait()
            _bump(session, second)

        return run

    errors = _in_threads(lambda: pg_db.run_write(work("a", 1, 2)), lambda: pg_db.run_write(work("b", 2, 1)))

    assert errors == []
    assert _counts(pg_db) == {1: 2, 2: 2}  # each write counted once on each row
    assert calls["a"] + calls["b"] == 3  # one of them was rolled back by the deadlock, and ran again


def test_a_write_that_cannot_be_serialized_runs_again(pg_db: Database) -> None:
    """A repeatable-read write whose row another session changed after its snapshot
    ("could not serialize access due to concurrent update") runs again and is written."""
    calls = 0

    def work(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()  # the snapshot
        if calls == 1:
            with pg_db.engine.begin() as other:  # another session commits meanwhile
                other.execute(text("UPDATE counter SET n = n + 10 WHERE id = 1"))
        _bump(session, 1)

    pg_db.run_write(work)

    assert _counts(pg_db)[1] == 11  # the other's change and this write's, none lost
    assert calls == 2


def test_a_postgresql_error_that_says_locked_is_not_run_again(pg_db: Database) -> None:
    """Only SQLite's busy file is retried by its words: a PostgreSQL error is retried by its
    SQLSTATE (above), never because its text says "locked" or "busy" (a value, a name in it)."""
    calls = 0

    def work(session: Session) -> None:
        nonlocal calls
        calls += 1
        session.execute(text("DO $$ BEGIN RAISE EXCEPTION 'account row is locked by a busy job' USING ERRCODE = '55P03'; END $$"))

    with pytest.raises(OperationalError, match="locked by a busy job"):
        pg_db.run_write(work)
    assert calls == 1  # failed once, at once: not run four more times, seconds apart


def test_a_busy_sqlite_file_is_still_run_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another connection holds SQLite's write lock: the write fails with "database is locked"
    after the busy timeout, waits, and runs again once the lock is released."""
    path = tmp_path / "busy.sqlite3"
    db = Database(f"sqlite:///{path}", busy_timeout=0.05)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE counter (id integer PRIMARY KEY, n integer NOT NULL)"))
        conn.execute(text("INSERT INTO counter VALUES (1, 0)"))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other writer holds the lock
    waits: list[float] = []

    def wait(seconds: float) -> None:  # run_write's pause between attempts: the other writer commits meanwhile
        waits.append(seconds)
        other.execute("COMMIT")

    monkeypatch.setattr(engine_module.time, "sleep", wait)
    try:
        db.run_write(lambda session: _bump(session, 1))
        assert _counts(db) == {1: 1}
        assert len(waits) == 1  # failed once (locked), ran again and was written
    finally:
        other.close()
        db.dispose()
