"""A sync's own records (its lock, its run, its account) are written by plain statements, with the same
outcome: no ORM object of them is flushed (each cost a fresh ``mdm vpp sync`` process the
unit of work's machinery and a statement compiled for it), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlmodel import col

from mdm_core.db.typed import table_of
from mdm_core.host import Host
from mdm_core.models import Lock
from plugins.vpp.models import VppAccount, VppSyncRun
from plugins.vpp.sync.run import recent_runs, sync_account
from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple
from tests.conftest import PG_ADMIN_URL, PG_SKIP_REASON


@pytest.fixture(params=["sqlite", "postgres"])
def vpp_host(request: pytest.FixtureRequest, make_host: Callable[..., Host], simulator: Any, project_dir: Any) -> Host:
    import plugins.vpp.plugin

    if request.param == "postgres" and not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    host = make_host(plugins=[plugins.vpp.plugin], database_url=url)
    add_simulated_account(host, simulator, project_dir)
    return host


@pytest.fixture
def flushed() -> Iterator[list[type]]:
    """The classes of the ORM objects every session flushes while the test runs."""
    seen: list[type] = []

    def note(session: Session, _context: Any, _instances: Any) -> None:
        seen.extend(type(o) for o in (*session.new, *session.dirty, *session.deleted))

    event.listen(Session, "before_flush", note)
    yield seen
    event.remove(Session, "before_flush", note)


def test_full_and_incremental_syncs_write_their_lock_and_run_without_orm_objects(vpp_host: Host, simulator: Any, flushed: list[type]) -> None:
    first = sync_account(vpp_host, "school")
    simulator.mutate_fraction(0.1, seed=3)
    second = sync_account(vpp_host, "school")

    assert (first["status"], first["mode"], second["status"], second["mode"]) == ("ok", "full", "ok", "incremental")
    assert not {VppSyncRun, Lock, VppAccount} & set(flushed)
    assert_mirror_equals_apple(vpp_host, simulator)
    runs = recent_runs(vpp_host, "school")
    assert [(r["mode"], r["status"], r["progress"], r["error"]) for r in runs] == [("incremental", "ok", None, None), ("full", "ok", None, None)]
    assert runs[0]["counts"] == second["counts"] and runs[1]["counts"] == first["counts"]
    assert runs[0]["pages"] == second["pages"] and runs[0]["finished_at"] >= runs[0]["started_at"] >= runs[1]["finished_at"]
    assert runs[0]["holder"] != runs[1]["holder"]
    # the lock's row: released, a new generation per sync, held last by the second sync's holder
    locks = table_of(Lock)
    with vpp_host.db.session() as session:
        holder, generation = session.execute(select(locks.c.holder, locks.c.generation).where(locks.c.name.like("vpp.sync.%"))).one()
    assert (holder, generation) == (runs[0]["holder"], 2)
    # the account as the syncs left it: Apple's versionIds, both syncs' times, its token's state
    with vpp_host.db.session() as session:
        account = session.execute(select(VppAccount).where(col(VppAccount.name) == "school")).scalar_one()
    assert (account.last_sync_result, account.paused, account.token_state, account.state_detail) == ("ok (incremental)", False, "valid", None)
    assert account.users_version_id and account.assignments_version_id and account.assets_version_id and account.invitation_template
    assert account.last_full_sync_at is not None and account.last_sync_at is not None and account.last_full_sync_at < account.last_sync_at
    assert account.last_full_sync_at == runs[1]["finished_at"] and account.last_sync_at == runs[0]["finished_at"]


def test_token_expiration_is_parsed_once_per_value_and_stored(vpp_host: Host, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page repeats Apple's tokenExpirationDate: a sync parses each value it sees once
    (it parsed every page's), and stores the expiry Apple sent."""
    from datetime import UTC, datetime

    from plugins.vpp.sync import read

    parsed: list[object] = []
    real = read.parse_apple_date

    def counting(value: object) -> datetime | None:
        parsed.append(value)
        return real(value)

    monkeypatch.setattr(read, "parse_apple_date", counting)
    report = sync_account(vpp_host, "school")
    assert report["status"] == "ok" and report["pages"] > 5, report
    assert parsed == [simulator.token_expiration_date], parsed
    with vpp_host.db.session() as session:
        account = session.execute(select(VppAccount).where(col(VppAccount.name) == "school")).scalar_one()
    assert account.token_expires_at == datetime.fromisoformat(simulator.token_expiration_date.replace("Z", "+00:00")).astimezone(UTC)


def test_a_sync_looks_for_leftover_staged_rows_with_one_read_and_drops_them(vpp_host: Host, simulator: Any) -> None:
    """Before it reads, a sync drops the rows staged by runs that ended (a crash left them): one
    read looks for them in both staging tables (it took one per table), and finding some, they go."""
    from plugins.vpp.accounts import account_lock, get_account
    from plugins.vpp.models import VppStageLicense, VppStageUser
    from plugins.vpp.sync.run import _cleanup_abandoned, _new_run

    with vpp_host.db.session() as session:
        account_id = get_account(session, "school").id
    assert account_id is not None
    lock = account_lock(vpp_host, account_id)
    staged_users, staged_licenses = table_of(VppStageUser), table_of(VppStageLicense)

    def cleanup() -> list[str]:
        seen: list[str] = []

        def look(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            seen.append(" ".join(statement.split()))

        event.listen(Engine, "before_cursor_execute", look)  # every engine of the host's (a write engine derived from the reading one hears its statements too)
        try:
            _cleanup_abandoned(vpp_host, account_id, lock)
        finally:
            event.remove(Engine, "before_cursor_execute", look)
        return [s for s in seen if "vpp_stage_" in s]

    assert len(cleanup()) == 1  # nothing left: one read, no write
    ended = vpp_host.db.run_write(lambda s: _new_run(s, account_id, "manual", "full", "gone-host"))
    vpp_host.db.run_write(lambda s: s.execute(update(table_of(VppSyncRun)).where(table_of(VppSyncRun).c.id == ended).values(status="error")))
    row = {"run_id": ended, "client_user_id": "u-left", "email": None, "status": "Registered", "id_hash": None, "invite_code": None, "rank": 0}
    vpp_host.db.run_write(lambda s: s.execute(staged_users.insert().values(**{k: v for k, v in row.items() if k in staged_users.c})))
    statements = cleanup()
    assert len(statements) == 3 and statements[0].startswith("SELECT"), statements  # the read, then each table's delete
    with vpp_host.db.session() as session:
        assert session.execute(select(staged_users.c.id)).first() is None
        assert session.execute(select(staged_licenses.c.id)).first() is None


def test_a_sync_reads_its_account_and_its_runs_once_each_before_it_asks_apple(vpp_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """The statements a sync runs alone before its first request to Apple: the account's row is
    read before the lock and once under it (the token gate's back-off comes from that read: it
    read the row a third time), and the account's running runs with the leftover staged rows
    of ended ones by one statement (was two)."""
    import re

    from plugins.vpp.apple.transport import Transport

    assert sync_account(vpp_host, "school")["status"] == "ok"
    seen: list[str] = []
    asked: list[str] = []
    real = Transport._request

    def first_request(self: Transport, *args: Any, **kwargs: Any) -> Any:
        asked.append(args[1])
        return real(self, *args, **kwargs)

    def look(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not asked:
            seen.append(" ".join(statement.replace('"', "").split()))

    monkeypatch.setattr(Transport, "_request", first_request)
    event.listen(Engine, "before_cursor_execute", look)
    try:
        assert sync_account(vpp_host, "school")["status"] == "ok"
    finally:
        event.remove(Engine, "before_cursor_execute", look)
    reads = [s for s in seen if s.upper().startswith("SELECT")]
    assert len([s for s in reads if re.search(r"\bFROM vpp_account\b", s)]) == 2, reads
    assert len([s for s in reads if "vpp_sync_run" in s]) == 1, reads


def test_a_sync_stopped_right_after_its_commit_has_its_report_recorded(vpp_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync's report (``vpp_sync_finished``) commits in the transaction of what it reports: it
    was a write transaction of its own after the apply's (one more commit and round trips for
    every sync), and a sync stopped between the two was written with no report for the plugins."""
    from mdm_core.models import OutboxEvent
    from plugins.vpp.sync import run

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(run, "refresh_statistics", interrupted)  # the first step after the commit
    with pytest.raises(KeyboardInterrupt):
        sync_account(vpp_host, "school")
    with vpp_host.db.session() as session:
        reports = [e.payload for e in session.execute(select(OutboxEvent).where(col(OutboxEvent.name) == "vpp_sync_finished")).scalars()]
    [latest] = recent_runs(vpp_host, "school")
    assert latest["status"] == "ok"
    assert [(r["status"], r["mode"], r["counts"]) for r in reports] == [("ok", "full", latest["counts"])], reports
