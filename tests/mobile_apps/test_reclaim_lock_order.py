"""Two hosts settling overlapping reclaims on PostgreSQL (two ``mdm run`` hosts, ``mdm apps
reclaim`` by hand beside the job): each locks the pending ones in the order of their ids, so
one waits for the other instead of each holding a row the other wants. Every reclaim is settled
once, with the first settle's outcome, and announced finished once; neither settle fails.

Before, the settle's update locked them in the order its plan read them: an index's (ids) for a
few reclaims, the table's for many, where a reclaim written again since (an earlier attempt)
sits after the others. Two such settles deadlocked and PostgreSQL rolled one back (40P01)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Engine
from sqlmodel import col

from mdm_core.db.typed import table_of
from mdm_core.models import OutboxEvent
from plugins.mobile_apps import accounts, reclaims
from plugins.mobile_apps.models import Reclaim

from .conftest import BASE_CONFIG

WAIT = 30.0  # seconds before a stuck test fails (never reached when it passes or fails as meant)
RETRY = 60
ROUNDS = 25
#: the plans of two hosts' settles: an index's order (a few ids) and the table's (many ids)
BY_INDEX = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"
BY_TABLE = "SET LOCAL enable_indexscan = off; SET LOCAL enable_indexonlyscan = off; SET LOCAL enable_bitmapscan = off"


@pytest.fixture
def two_hosts(make_host: Callable[..., Any], pg_url: str) -> Iterator[tuple[Any, Any, Engine]]:
    """Two hosts on one PostgreSQL database, and an engine of the test's own (a third session)."""
    first, second = make_host(config=BASE_CONFIG, database_url=pg_url), make_host(config=BASE_CONFIG, database_url=pg_url)
    for host in (first, second):  # each migrates (the first) or checks the database when it first uses it
        host.db.engine.dispose()
    engine = create_engine(pg_url)
    yield first, second, engine
    engine.dispose()


def _pending(host: Any, targets: list[str]) -> list[int]:
    rows = [Reclaim(account="school", adam_id="4242", pricing_param="STDQ", kind="device", target=t, reason="manual") for t in targets]

    def add(session: Any) -> list[int]:
        session.add_all(rows)
        session.flush()
        return [int(row.id or 0) for row in rows]

    return list(host.db.run_write(add))


def _rows(host: Any, ids: list[int]) -> dict[int, tuple[str, str | None, int]]:
    with host.db.session() as session:
        found = session.execute(select(Reclaim).where(col(Reclaim.id).in_(ids))).scalars()
        return {int(r.id or 0): (r.status, r.last_error, r.attempts) for r in found}


def _finished(host: Any, ids: list[int]) -> list[tuple[int, str]]:
    """(id, status) of each ``mobile_apps_reclaim_finished`` recorded for these reclaims."""
    events = table_of(OutboxEvent)
    with host.db.session() as session:
        payloads = session.execute(select(events.c.payload).where(events.c.name == "mobile_apps_reclaim_finished").order_by(events.c.seq)).scalars()
        return sorted((int(p["id"]), str(p["status"])) for p in payloads if p["id"] in ids)


def _settle(host: Any, ids: list[int], status: str, plan: str | None = None, before: Callable[[], object] | None = None) -> Callable[[], None]:
    """One host's settle of these reclaims (in this order) with ``status``, in one transaction
    (no second attempt: a deadlock is raised, not hidden by ``run_write``'s retry)."""

    def run() -> None:
        with host.db.write_session() as session:
            if plan:
                session.execute(text(plan))
            rows = list(session.execute(select(Reclaim).where(col(Reclaim.id).in_(ids))).scalars())
            rows.sort(key=lambda r: ids.index(int(r.id or 0)))
            if before is not None:
                before()
            reclaims._update(host, session, rows, status, f"settled {status}", [f"apple-{status}"], RETRY)
            session.commit()

    return run


def _reversed_in_table(host: Any, engine: Engine, prefix: str) -> list[int]:
    """Three pending reclaims (their ids, ascending), the lower two written again since (an
    earlier attempt): the table holds them in the reverse order of their ids."""
    with engine.begin() as conn:  # the table as new: its rows in the order written below
        conn.execute(text("TRUNCATE mobile_apps_reclaim"))
    low, middle, high = ids = _pending(host, [f"{prefix}-A", f"{prefix}-B", f"{prefix}-C"])
    with engine.begin() as conn:  # retried since: their new versions sit after the highest
        for again in (middle, low):
            conn.execute(text("UPDATE mobile_apps_reclaim SET attempts = attempts WHERE id = :id"), {"id": again})
    with engine.connect() as conn:
        order = [int(i) for i in conn.execute(text("SELECT id FROM mobile_apps_reclaim ORDER BY ctid")).scalars()]
    assert order == [high, middle, low]
    return ids


def _start(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_blocked(engine: Engine, sessions: int) -> None:
    """Until ``sessions`` sessions of the database wait for a row lock (PostgreSQL says so)."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
    deadline = threading.Event()
    timer = threading.Timer(WAIT, deadline.set)
    timer.start()
    try:
        while not deadline.wait(0.02):
            with engine.connect() as conn:
                if int(conn.execute(query).scalar_one()) >= sessions:
                    return
        raise AssertionError(f"{sessions} session(s) never waited for a lock")
    finally:
        timer.cancel()


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(WAIT * 2)
        assert not thread.is_alive(), "a settle hung"


def test_two_hosts_settling_reclaims_read_in_opposite_orders_settle_each_once(two_hosts: tuple[Any, Any, Engine]) -> None:
    """Three reclaims, the lower two written again since (an earlier attempt), so the table holds
    them in the reverse order of their ids. One host's settle reads them by their index (ids), the
    other's by the table; a third session holds the middle one until both wait: each has taken
    the rows its order reaches first. Rounds alternate which host goes first; its outcome stays."""
    first, second, engine = two_hosts
    for n in range(4):
        low, middle, high = ids = _reversed_in_table(first, engine, f"R{n}")
        (one, one_plan), (other, other_plan) = ((first, BY_INDEX), (second, BY_TABLE))[:: 1 if n % 2 else -1]
        errors: list[BaseException] = []
        with engine.connect() as holder:  # a third session holds the middle reclaim
            holder.execute(text("SELECT id FROM mobile_apps_reclaim WHERE id = :id FOR UPDATE"), {"id": middle})
            threads = [_start(_settle(one, ids, "done", one_plan), errors)]
            _wait_blocked(engine, 1)
            threads.append(_start(_settle(other, ids[::-1], "failed", other_plan), errors))
            _wait_blocked(engine, 2)
            holder.rollback()
        _join(threads)

        assert errors == [], errors
        assert _rows(first, ids) == {i: ("done", "settled done", 1) for i in ids}
        assert _finished(first, ids) == [(i, "done") for i in ids]


def test_two_hosts_settling_overlapping_reclaims_at_once_settle_each_once(two_hosts: tuple[Any, Any, Engine]) -> None:
    """Overlapping sets given in opposite orders, both settles begun before either locks a row,
    many times: every reclaim settled once (the first settle's outcome) and announced once."""
    first, second, _ = two_hosts
    for n in range(ROUNDS):
        ids = _pending(first, [f"M{n}-{i}" for i in range(6)])
        both_in = threading.Barrier(2, timeout=WAIT)
        errors: list[BaseException] = []
        threads = [
            _start(_settle(first, ids[:4], "done", before=both_in.wait), errors),
            _start(_settle(second, ids[2:][::-1], "failed", before=both_in.wait), errors),
        ]
        _join(threads)

        assert errors == [], errors
        rows = _rows(first, ids)
        assert all(rows[i] == ("done", "settled done", 1) for i in ids[:2]), rows
        assert all(rows[i] == ("failed", "settled failed", 1) for i in ids[4:]), rows
        assert all(rows[i] in {("done", "settled done", 1), ("failed", "settled failed", 1)} for i in ids[2:4]), rows
        assert _finished(first, ids) == sorted((i, rows[i][0]) for i in ids)


def test_a_settled_reclaim_is_written_once(on_both: tuple[Any, Any]) -> None:
    """Settling pending reclaims writes each of them once (its lock is a read), where the read
    that locked them was itself an update of each: two writes a reclaim, two statements."""
    host, _ = on_both
    ids = _pending(host, [f"ONCE-{i}" for i in range(5)])
    written: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE MOBILE_APPS_RECLAIM"):
            written.append(cursor.rowcount)

    event.listen(host.db.write_engine, "after_cursor_execute", count)  # a write's engine
    try:
        host.db.run_write(lambda session: reclaims._update(host, session, _rows_of(session, ids), "done", None, ["apple-1"], RETRY))
    finally:
        event.remove(host.db.write_engine, "after_cursor_execute", count)
    assert written == [len(ids)]  # one update, of each once (before: a second one, which also locked them)
    assert _rows(host, ids) == {i: ("done", None, 1) for i in ids}
    assert _finished(host, ids) == [(i, "done") for i in ids]


def _rows_of(session: Any, ids: list[int]) -> list[Reclaim]:
    return list(session.execute(select(Reclaim).where(col(Reclaim.id).in_(ids))).scalars())


@pytest.fixture
def hosts_on_both(make_host: Callable[..., Any], database_url: str | None) -> Iterator[tuple[Any, Any, Engine | None]]:
    """Two hosts on one database, SQLite's or PostgreSQL's, and on PostgreSQL an engine of the
    test's own (a third session; SQLite has no row locks: None)."""
    first, second = make_host(config=BASE_CONFIG, database_url=database_url), make_host(config=BASE_CONFIG, database_url=database_url)
    for host in (first, second):
        host.db.engine.dispose()
    engine = create_engine(database_url) if database_url else None
    yield first, second, engine
    if engine is not None:
        engine.dispose()


def _account_changed(host: Any, change: str, plan: str | None = None) -> Callable[[], None]:
    """mobile_apps following VPP account ``school`` renamed (to ``college``) or removed, in one
    transaction with this plan (no second attempt: a deadlock is raised, not retried)."""

    def run() -> None:
        with host.db.write_session() as session:
            if plan:
                session.execute(text(plan))
            if change == "renamed":
                accounts.account_renamed(session, "school", "college")
            else:
                accounts.account_removed(host, session, "school")
            session.commit()

    return run


@pytest.mark.parametrize("first_in", ["settle", "account"])
@pytest.mark.parametrize("change", ["renamed", "removed"])
def test_a_settle_and_its_accounts_rename_or_removal_both_complete(hosts_on_both: tuple[Any, Any, Engine | None], change: str, first_in: str) -> None:
    """A host settles reclaims while another follows their VPP account renamed or removed. On
    PostgreSQL the settle reads them by their index, the account's change by the table (which
    holds them in the reverse order of their ids), and a third session holds the middle one
    until both wait: each has taken what its order reaches first. Both complete (before, the
    rename updated them in the table's order: a deadlock, one rolled back and retried a second
    later); each reclaim ends in the first one's state, announced finished once."""
    settler, follower, engine = hosts_on_both
    if engine is None:  # SQLite: one write transaction at a time
        ids = _pending(settler, ["S-A", "S-B", "S-C"])
    else:
        ids = _reversed_in_table(settler, engine, "S")
    settle = _settle(settler, ids, "done", BY_INDEX if engine else None)
    change_account = _account_changed(follower, change, BY_TABLE if engine else None)
    steps = [settle, change_account] if first_in == "settle" else [change_account, settle]
    errors: list[BaseException] = []
    if engine is None:  # one after the other
        for step in steps:
            _join([_start(step, errors)])
    else:
        with engine.connect() as holder:
            holder.execute(text("SELECT id FROM mobile_apps_reclaim WHERE id = :id FOR UPDATE"), {"id": ids[1]})
            threads = [_start(steps[0], errors)]
            _wait_blocked(engine, 1)
            threads.append(_start(steps[1], errors))
            _wait_blocked(engine, 2)
            holder.rollback()
        _join(threads)

    assert errors == [], errors
    canceled = change == "removed" and first_in == "account"
    status, error = ("canceled", accounts.removed_reason("school")) if canceled else ("done", "settled done")
    assert _rows(settler, ids) == {i: (status, error, 1) for i in ids}
    assert _finished(settler, ids) == [(i, status) for i in ids]
    with settler.db.session() as session:
        filed = set(session.execute(select(col(Reclaim.account)).where(col(Reclaim.id).in_(ids))).scalars())
    assert filed == {"college" if change == "renamed" else "school"}
