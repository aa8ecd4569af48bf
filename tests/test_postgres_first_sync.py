"""A first full sync on PostgreSQL writes its licenses straight into the mirror, in a
transaction that the apply continues and commits (plugins/vpp/sync/read.py: DirectLicenses):
each license written once, nothing visible before the commit, the same mirror and events as
the staged way, and whatever needs the staged rows reads again staging them.

Runs when ``MDM_TEST_POSTGRES_URL`` is set (as tests/test_postgres.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mdm_core.host import Host

from .conftest import PG_ADMIN_URL, PG_SKIP_REASON
from .test_postgres import _mirror

pytestmark = pytest.mark.skipif(not PG_ADMIN_URL, reason=PG_SKIP_REASON)


@pytest.fixture
def pg_host(make_host: Callable[..., Host], pg_url: str) -> Host:
    return make_host(database_url=pg_url)


@pytest.fixture
def license_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The tables license batches are written to, in order (the staging table or the mirror)."""
    from plugins.vpp.sync import read

    writes: list[str] = []
    real = read.insert_rows

    def recording(session: Any, table: Any, columns: Any, rows: Any) -> None:
        if table.name in ("vpp_stage_license", "vpp_license"):
            writes.append(table.name)
        real(session, table, columns, rows)

    monkeypatch.setattr(read, "insert_rows", recording)
    monkeypatch.setattr(read, "STAGE_BATCH", 300)
    yield writes


def _associated(host: Host) -> list[str]:
    """Every target of the recorded vpp_licenses_associated events, as adamId/kind/target."""
    found = []
    with host.db.engine.connect() as conn:
        for (payload,) in conn.execute(text("SELECT payload FROM core_event WHERE name = 'vpp_licenses_associated'")):
            for kind, key in (("serialNumber", "serialNumbers"), ("clientUserId", "clientUserIds")):
                found += [f"{payload['adamId']}/{payload['pricingParam']}/{kind}/{t}" for t in payload[key]]
    return sorted(found)


def _apple(sim: Any) -> set[tuple[str, str, str, str]]:
    return {tuple(a) for a in sim.snapshot()["assignments"]}


def test_a_first_full_sync_writes_each_license_once_straight_into_the_mirror(
    pg_host: Host, simulator: Any, project_dir: Path, license_writes: list[str]
) -> None:
    """No license is staged; the mirror is Apple's, each license has its associated event; the
    next (incremental) sync stages its changes as before and the mirror stays exact."""
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple

    add_simulated_account(pg_host, simulator, project_dir)
    report = sync_account(pg_host, "school", full=True)
    want = _apple(simulator)
    assert report["status"] == "ok", report
    assert license_writes and set(license_writes) == {"vpp_license"}
    assert _mirror(pg_host) == want and report["counts"]["licenses"] == {"added": len(want), "removed": 0, "reread_assets": 0}
    assert _associated(pg_host) == sorted("/".join(a) for a in want)
    with pg_host.db.engine.connect() as conn:  # the stored per-asset counts are the mirror's
        stored: dict[str, int] = dict(conn.execute(text("SELECT adam_id || '/' || pricing_param, license_count FROM vpp_asset")).all())
    assert stored == {key: sum(1 for a in want if f"{a[0]}/{a[1]}" == key) for key in stored}

    simulator.mutate_fraction(0.2, seed=4)
    license_writes.clear()
    report = sync_account(pg_host, "school")
    assert report["status"] == "ok", (report.get("error_type"), report.get("error"))
    assert set(license_writes) == {"vpp_stage_license"} and _mirror(pg_host) == _apple(simulator)
    assert report["counts"]["assets"]["changed"] > 1  # their new values set by one statement (unnest)
    assert_mirror_equals_apple(pg_host, simulator)  # assets, users, licenses and the stored counts


def test_nothing_is_visible_before_the_first_sync_commits(pg_host: Host, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the read goes on (licenses already written in the sync's transaction) another
    connection sees no license; a failure in the apply then leaves none at all."""
    from plugins.vpp.sync import apply, read
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    seen: list[int] = []
    real_reconcile = read.SyncReader.reconcile

    def looking(self: Any, *args: Any, **kwargs: Any) -> Any:
        assert self.direct is not None and self.direct.rows > 0
        with pg_host.db.engine.connect() as conn:
            seen.append(conn.execute(text("SELECT count(*) FROM vpp_license")).scalar_one())
        return real_reconcile(self, *args, **kwargs)

    def failing(self: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(read.SyncReader, "reconcile", looking)
    monkeypatch.setattr(apply.MirrorUpdate, "_delete_stage", failing)  # after the licenses' events, before the commit
    add_simulated_account(pg_host, simulator, project_dir)
    report = sync_account(pg_host, "school", full=True)
    assert report["status"] == "error" and "disk on fire" in str(report["error"])
    assert seen == [0]
    assert _mirror(pg_host) == set()
    with pg_host.db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM core_event WHERE name LIKE 'vpp_licenses%'")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM vpp_stage_user")).scalar_one() == 0
    monkeypatch.undo()
    assert sync_account(pg_host, "school", full=True)["status"] == "ok"
    assert _mirror(pg_host) == _apple(simulator)


def test_a_license_listed_in_two_batches_reads_again_staging(
    pg_host: Host, project_dir: Path, license_writes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A license Apple repeats in a later batch (its data changing underway) is already in the
    mirror: that transaction is rolled back, the sync reads again staging the licenses, and
    the mirror holds it once, each license with one event."""
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.sync import read
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    real_page_assignments = read.page_assignments
    pages: list[list[tuple[str, str, str, str]]] = []

    def repeating_the_first_page(page: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        rows = real_page_assignments(page)
        pages.append(rows)
        return [*rows, pages[0][0]] if len(pages) == 5 else rows

    monkeypatch.setattr(read, "page_assignments", repeating_the_first_page)
    with Simulator(seed=5, assets=6, devices=900, users=700, assignments=1200, page_size=100, async_delay=0) as sim:  # 12 pages, 3 a batch
        add_simulated_account(pg_host, sim, project_dir)
        report = sync_account(pg_host, "school", full=True)
        want = _apple(sim)
    assert report["status"] == "ok", report
    assert license_writes[0] == "vpp_license" and license_writes[-1] == "vpp_stage_license"
    assert _mirror(pg_host) == want and report["counts"]["licenses"]["added"] == len(want)
    assert _associated(pg_host) == sorted("/".join(a) for a in want)


def test_a_license_another_writer_commits_during_the_first_sync_reads_again_staging(
    pg_host: Host, simulator: Any, project_dir: Path, license_writes: list[str], monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    """A license of the account committed by another writer while the first sync reads (one
    Apple does not list): the mirror would hold more than the sync wrote, so it reads again
    staging, and the full sync takes that license back: the mirror is Apple's."""
    from plugins.vpp.sync import read
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    real_page_assignments = read.page_assignments
    calls: list[int] = []
    other = create_engine(pg_url)

    def writing_meanwhile(page: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        calls.append(1)
        if len(calls) == 3:
            with other.begin() as conn:
                conn.execute(text("INSERT INTO vpp_license SELECT id, '999', 'STDQ', 'device', 'ELSEWHERE' FROM vpp_account WHERE name = 'school'"))
        return real_page_assignments(page)

    monkeypatch.setattr(read, "page_assignments", writing_meanwhile)
    add_simulated_account(pg_host, simulator, project_dir)
    try:
        report = sync_account(pg_host, "school", full=True)
    finally:
        other.dispose()
    assert report["status"] == "ok", report
    assert license_writes[0] == "vpp_license" and license_writes[-1] == "vpp_stage_license"
    assert _mirror(pg_host) == _apple(simulator) and report["counts"]["licenses"]["removed"] == 1


def test_a_first_sync_failing_after_its_apply_wrote_the_account_records_the_failure(
    pg_host: Host, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apply of a first full sync continues the read's transaction; failing once it has
    written the account's row, that transaction is rolled back before the failure is
    recorded on the same row (else the record would wait on it): the sync reports the error,
    the account and the run say so, nothing of the mirror is written."""
    from plugins.vpp.sync import apply
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    def failing(host: Any, session: Any, *args: Any, **kwargs: Any) -> None:
        session.flush()  # the account's row is now this transaction's
        raise RuntimeError("token state lost")

    monkeypatch.setattr(apply.token_state, "sync_succeeded", failing)
    add_simulated_account(pg_host, simulator, project_dir)
    report = sync_account(pg_host, "school", full=True)
    assert report["status"] == "error" and "token state lost" in str(report["error"])
    with pg_host.db.engine.connect() as conn:
        assert conn.execute(text("SELECT last_sync_result FROM vpp_account")).scalar_one().startswith("error: ")
        assert conn.execute(text("SELECT status FROM vpp_sync_run")).scalar_one() == "error"
    assert _mirror(pg_host) == set()


def _stage_statements(host: Host) -> list[str]:
    """The statements the sync runs that name a staging table (recorded from now on)."""
    from sqlalchemy import event

    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "vpp_stage_" in statement:
            seen.append(" ".join(statement.split()))

    event.listen(host.db.engine, "before_cursor_execute", record)
    return seen


def test_a_full_sync_leaves_no_dead_staged_rows_for_the_next_syncs_to_scan(
    pg_host: Host, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staged users of a full sync are deleted by run and the table vacuumed after the
    commit: the next (incremental) sync finds it empty on disk, not 100,000 dead rows to scan;
    the apply deletes its staged rows without first reading the run ids staged (PostgreSQL)."""
    from plugins.vpp.sync import apply, stored_progress
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple

    monkeypatch.setattr(apply, "VACUUM_AFTER", 1)  # the simulated account's few users count as many
    # the heartbeat's progress writes as often as they come: one still open at the vacuum would
    # keep the deleted rows visible to it (seen once under CI's load, when the vacuum ran before
    # the heartbeat stopped)
    monkeypatch.setattr(stored_progress, "TICK", 0.001)
    add_simulated_account(pg_host, simulator, project_dir)
    statements = _stage_statements(pg_host)
    report = sync_account(pg_host, "school", full=True)
    assert report["status"] == "ok", report
    assert [s for s in statements if "DELETE FROM vpp_stage_user WHERE vpp_stage_user.run_id = " in s and "EXISTS" not in s]  # with the licenses'
    assert not [s for s in statements if "min(vpp_stage" in s]  # one statement: no read of the run ids staged first
    with pg_host.db.engine.connect() as conn:
        sizes: dict[str, int] = dict(
            conn.execute(text("SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relname IN ('vpp_stage_user', 'vpp_stage_license')")).all()
        )
    assert sizes == {"vpp_stage_user": 0, "vpp_stage_license": 0}
    simulator.mutate_fraction(0.2, seed=4)
    assert sync_account(pg_host, "school")["status"] == "ok"
    assert_mirror_equals_apple(pg_host, simulator)


def test_the_staged_rows_are_vacuumed_once_the_sync_s_heartbeat_has_stopped(
    pg_host: Host, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat writes the lock's renewal and the sync's progress from a thread of its own;
    a write of it still open when the staging tables are vacuumed would keep the deleted rows
    visible to the vacuum. The vacuum comes after the heartbeat has stopped, once per sync,
    with the rows every try of the apply deleted."""
    import threading

    from plugins.vpp.sync import apply, stored_progress
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    monkeypatch.setattr(apply, "VACUUM_AFTER", 1)
    monkeypatch.setattr(stored_progress, "TICK", 0.001)
    add_simulated_account(pg_host, simulator, project_dir)
    calls: list[tuple[dict[str, int], list[str]]] = []
    real = apply.vacuum_stage

    def vacuum(host: Host, cleared: dict[str, int]) -> list[str]:
        beating = [t.name for t in threading.enumerate() if t.name.startswith("heartbeat-") and t.is_alive()]
        calls.append((dict(cleared), beating))
        return real(host, cleared)

    monkeypatch.setattr(apply, "vacuum_stage", vacuum)
    assert sync_account(pg_host, "school", full=True)["status"] == "ok"
    assert len(calls) == 1, calls
    cleared, beating = calls[0]
    assert beating == [] and cleared.get("vpp_stage_user", 0) > 0, calls


def test_the_vacuum_after_a_sync_keeps_the_rows_other_runs_are_staging(
    pg_host: Host, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another account's run staging meanwhile (its transaction open across the sync) keeps
    every staged row; the sync neither waits for it nor fails."""
    from plugins.vpp.sync import apply
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    monkeypatch.setattr(apply, "VACUUM_AFTER", 1)
    add_simulated_account(pg_host, simulator, project_dir)
    vacuumed: list[list[str]] = []
    real = apply.vacuum_stage

    def recording(host: Host, cleared: dict[str, int]) -> list[str]:
        vacuumed.append(real(host, cleared))
        return vacuumed[-1]

    monkeypatch.setattr(apply, "vacuum_stage", recording)
    other = create_engine(pg_host.db.url)
    try:
        with other.connect() as conn:
            staging = "SELECT 999999, 'other-' || n, 'Registered', n FROM generate_series(1, 50) AS n"
            conn.execute(text(f"INSERT INTO vpp_stage_user (run_id, client_user_id, status, rank) {staging}"))
            report = sync_account(pg_host, "school", full=True)
            conn.commit()
            kept = conn.execute(text("SELECT count(*) FROM vpp_stage_user WHERE run_id = 999999")).scalar_one()
    finally:
        other.dispose()
    assert report["status"] == "ok", report
    assert vacuumed == [["vpp_stage_user"]] and kept == 50


def test_an_incremental_sync_reads_the_staged_licenses_the_mirror_lacks_once(pg_host: Host, simulator: Any, project_dir: Path) -> None:
    """PostgreSQL: the reconcile's second count check (after assets were read again) reuses the
    first one's count of the staged licenses the mirror lacks: one anti-join with the mirror."""
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple

    from .vpp.test_sync_reread import added_count_reads

    add_simulated_account(pg_host, simulator, project_dir)
    assert sync_account(pg_host, "school", full=True)["status"] == "ok"
    simulator.mutate_fraction(0.3, seed=5)
    reads = added_count_reads(pg_host)
    report = sync_account(pg_host, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    assert report["counts"]["licenses"]["reread_assets"] > 0
    assert len(reads) == 1
    assert_mirror_equals_apple(pg_host, simulator)
