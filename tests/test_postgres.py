"""The same host on PostgreSQL: inventory, outbox, locks and a full + incremental VPP sync.

Runs when ``MDM_TEST_POSTGRES_URL`` is set (``.ci/run`` starts a local PostgreSQL server and
sets it): each test session works in a database of its own (``pg_database`` in conftest.py);
without it the module is skipped, saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core import inventory
from mdm_core.host import Host
from mdm_core.testing import recorded_statements

from .conftest import PG_ADMIN_URL, PG_SKIP_REASON

pytestmark = pytest.mark.skipif(not PG_ADMIN_URL, reason=PG_SKIP_REASON)


@pytest.fixture
def pg_host(make_host: Callable[..., Host], pg_url: str) -> Host:
    """A host on an empty PostgreSQL database of its own."""
    return make_host(database_url=pg_url)


def _mirror(host: Host) -> set[tuple[str, str, str, str]]:
    from plugins.vpp.views import list_licenses

    return {
        (
            lic["adamId"],
            lic["pricingParam"],
            "serialNumber" if "serialNumber" in lic else "clientUserId",
            str(lic.get("serialNumber") or lic.get("clientUserId")),
        )
        for lic in list_licenses(host, "school")
    }


@pytest.mark.slow  # a full and an incremental sync on PostgreSQL
def test_sync_on_postgres_mirrors_apple_after_full_and_incremental(pg_host: Host, simulator: Any, project_dir: Path) -> None:
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account
    from plugins.vpp.views import list_assets

    assert pg_host.db.url.get_backend_name() == "postgresql"
    serial = simulator.state.device_serials()[0]
    inventory.add_device(pg_host, serial, "iOS")
    add_simulated_account(pg_host, simulator, project_dir)
    assert sync_account(pg_host, "school")["status"] == "ok"
    assert _mirror(pg_host) == {tuple(a) for a in simulator.snapshot()["assignments"]}

    adam_id, pricing, _, target = next(tuple(a) for a in simulator.snapshot()["assignments"] if a[2] == "serialNumber")
    simulator.remove_in_portal(adam_id, pricing, serial_number=target)
    new_adam, _ = simulator.purchase(count=4)
    report = sync_account(pg_host, "school")
    assert (report["status"], report["mode"]) == ("ok", "incremental")
    assert report["counts"]["licenses"]["removed"] == 1
    assert _mirror(pg_host) == {tuple(a) for a in simulator.snapshot()["assignments"]}
    assert new_adam in {a["adamId"] for a in list_assets(pg_host, "school")}


def test_inventory_outbox_and_locks_on_postgres(pg_host: Host, tmp_path: Path) -> None:
    from mdm_core.errors import UsageError
    from mdm_core.locks import LockBusy

    csv = tmp_path / "devices.csv"
    csv.write_text("serial_number,platform,udid,model,user\nAAA111,iOS,,,\nBBB222,windows,,,\n")
    with pytest.raises(UsageError, match="line 3"):
        inventory.import_devices(pg_host, csv)
    assert inventory.list_devices(pg_host) == []

    inventory.add_device(pg_host, "AAA111", "ios")
    inventory.remove_device(pg_host, "AAA111")
    assert pg_host.deliver_events() == 0  # delivered as part of each change

    first, second = pg_host.lock("vpp.sync.1", ttl=60), pg_host.lock("vpp.sync.1", ttl=60)
    first.acquire()
    with pytest.raises(LockBusy, match="already running"):
        second.acquire(wait=0)
    first.release()
    second.acquire()
    second.release()


def test_lock_fencing_on_postgres(pg_host: Host) -> None:
    """Issue 17 point 1 on PostgreSQL: refresh reports a lost lock, the fence writes nothing."""
    from tests.core.test_db import check_fencing

    check_fencing(pg_host.db)


def test_a_lock_won_while_another_try_was_under_way_stays_with_its_live_holder(pg_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two tries at once on a fresh lock (two `vpp account add` of one name): the first to
    insert the row holds it, and the other's next try must find it busy. The lock was taken
    from its live holder when the loser's own earlier try was taken as proof that the winner's
    session had ended (test_two_adds_of_one_name_at_once_claim_once failed ~1 run in 3)."""
    from mdm_core.locks import DbLock

    first, second = pg_host.lock("vpp.accounts", ttl=60), pg_host.lock("vpp.accounts", ttl=60)
    real_take = DbLock._take
    interleaved: list[bool] = []

    def take_after_the_other(self: DbLock, *args: Any) -> bool:
        if self is second and not interleaved:
            interleaved.append(first.try_acquire())  # the other try wins the row meanwhile
        return real_take(self, *args)

    monkeypatch.setattr(DbLock, "_take", take_after_the_other)
    assert second.try_acquire() is False and interleaved == [True]
    assert second.try_acquire() is False, "the lock was taken from its live holder"
    assert second.busy is not None and second.busy.holder == first.holder
    first.release()
    assert second.try_acquire() is True
    second.release()


def test_a_lock_whose_row_a_transaction_holds_is_busy_at_once(pg_host: Host) -> None:
    """A sync's apply holds its lock's row from its fence to its commit (minutes at ten times
    the size). Another host's try with ``wait=0`` (`mdm vpp sync`) waited for that commit,
    and `--wait 5` waited far past five seconds: a try answers busy at once, naming the holder."""
    import threading

    from mdm_core.locks import LockBusy

    holder, other = pg_host.lock("vpp.sync.1", ttl=60), pg_host.lock("vpp.sync.1", ttl=60)
    holder.acquire()
    with pg_host.db.write_session() as applying:
        holder.fence(applying)  # the apply's transaction, still open
        answers: list[bool] = []
        attempt = threading.Thread(target=lambda: answers.append(other.try_acquire()), daemon=True)
        attempt.start()
        attempt.join(timeout=10)
        assert answers == [False], "a try waited for the holder's transaction to end"
        assert other.busy is not None and other.busy.holder == holder.holder
        with pytest.raises(LockBusy, match="already running"):
            other.acquire(wait=0.3)
        applying.commit()
    holder.release()
    assert other.try_acquire() is True
    other.release()


@pytest.mark.slow  # waits for the server to end a transaction left idle for the lock's time to live (1 s)
def test_a_renewal_frozen_before_its_commit_holds_the_row_one_time_to_live_at_most(pg_host: Host) -> None:
    """A host frozen (suspended VM, SIGSTOP) between its renewal's UPDATE and COMMIT kept the
    lock's row locked for as long as it stayed frozen: every other host found it busy (before,
    they hung). The server ends such a transaction after the lock's time to live, so its
    lock expires as any other and another host takes it."""
    import threading

    from sqlalchemy import update

    from mdm_core.models import Lock, utcnow

    frozen, other = pg_host.lock("vpp.sync.2", ttl=1), pg_host.lock("vpp.sync.2", ttl=60)
    frozen.acquire()
    thawed, renewing = threading.Event(), threading.Event()
    ended: list[BaseException] = []

    def renew_then_freeze() -> None:
        try:
            with frozen._write_session() as session:
                session.execute(update(Lock).where(*frozen._ours()).values(expires_at=utcnow()))
                renewing.set()
                thawed.wait(20)
                session.commit()
        except Exception as exc:
            ended.append(exc)

    thread = threading.Thread(target=renew_then_freeze, daemon=True)
    thread.start()
    assert renewing.wait(10)
    try:
        other.acquire(wait=10, poll=0.1)  # busy while the frozen transaction holds the row, then free
    finally:
        thawed.set()
        thread.join(timeout=10)
    assert ended, "the frozen renewal committed: the server did not end its transaction"
    info = other.info()
    assert info is not None and info.holder == other.holder
    other.release()


def _vacuumed(host: Host, table: str) -> tuple[int, int, float]:
    """The table's manual vacuums (autovacuum's not counted), pages in the visibility map (all
    visible: an index-only scan reads the index alone) and rows the planner counts."""
    from sqlalchemy import text

    with host.db.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT s.vacuum_count, c.relallvisible, c.reltuples FROM pg_class AS c JOIN pg_stat_user_tables AS s ON s.relid = c.oid "
                "WHERE c.oid = to_regclass(:t)"
            ),
            {"t": table},
        ).one()
    return int(row[0]), int(row[1]), float(row[2])


@pytest.mark.slow  # a full sync of 1,200 licenses and an incremental one on PostgreSQL
def test_a_sync_that_fills_the_mirror_vacuums_and_analyzes_it(pg_host: Host, project_dir: Path) -> None:
    """A first full sync bulk-loads the mirror; until autovacuum passes, PostgreSQL plans the
    next sync's joins with it as with empty tables (seconds instead of milliseconds at 300,000
    licenses), and its index-only scans of the mirrored licenses fetch every row from the table
    (no page is in the visibility map). The sync runs ``VACUUM (ANALYZE)`` of what it changed
    by a large share, and only that: a small incremental sync vacuums nothing."""
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.sync.apply import refresh_statistics
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    with Simulator(seed=5, assets=6, devices=900, users=700, assignments=1200, page_size=200, async_delay=0) as sim:
        add_simulated_account(pg_host, sim, project_dir)
        assert _vacuumed(pg_host, "vpp_license")[2] <= 0  # never analyzed (-1), or empty
        report = sync_account(pg_host, "school", full=True)
        assert report["status"] == "ok" and report["counts"]["licenses"]["added"] == 1200
        licenses, users = _vacuumed(pg_host, "vpp_license"), _vacuumed(pg_host, "vpp_user")
        assert licenses[0] == users[0] == 1 and licenses[1] > 0 and users[1] > 0
        assert licenses[2] == 1200
        assert users[2] == report["counts"]["users"]["added"] == 700
        adam_id, pricing, _, serial = next(a for a in sim.snapshot()["assignments"] if a[2] == "serialNumber")
        sim.remove_in_portal(adam_id, pricing, serial_number=serial)
        report = sync_account(pg_host, "school")
        assert (report["status"], report["counts"]["licenses"]["removed"]) == ("ok", 1)
        assert _vacuumed(pg_host, "vpp_license")[0] == 1  # not again
        assert refresh_statistics(pg_host, report["counts"]) == []


@pytest.mark.slow  # a full sync of 1,200 licenses on PostgreSQL
def test_a_vacuum_after_a_sync_that_fails_is_logged_and_the_sync_stands(
    pg_host: Host, project_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The vacuum after a committed sync is best effort: one line logged, the sync reported
    and recorded as it was committed, the mirror complete."""
    from sqlalchemy.exc import OperationalError

    from mdm_core.db.engine import Database
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple

    def refused(self: Database, *tables: str, analyze: bool = False) -> None:
        raise OperationalError("VACUUM", {}, Exception("canceling statement due to statement timeout"))

    monkeypatch.setattr(Database, "vacuum", refused)
    with Simulator(seed=5, assets=6, devices=900, users=700, assignments=1200, page_size=200, async_delay=0) as sim:
        add_simulated_account(pg_host, sim, project_dir)
        report = sync_account(pg_host, "school", full=True)
        assert report["status"] == "ok", report
        assert_mirror_equals_apple(pg_host, sim)
    lines = [r.getMessage() for r in caplog.records if "vacuum" in r.getMessage().lower() or "statistics" in r.getMessage()]
    assert len(lines) == 1 and "statement timeout" in lines[0], lines


def test_a_first_sync_on_postgres_publishes_each_asset_under_its_own_application_id(pg_host: Host, simulator: Any, project_dir: Path) -> None:
    """mobile_apps publishes a first sync's assets in bulk (one insert of the applications, with
    their ids returned, one of their events): each ``mobile_apps_app_published`` event names the
    id of its own application, on PostgreSQL as on SQLite."""
    from sqlalchemy import select

    from mdm_core.models import OutboxEvent
    from plugins.mobile_apps.catalog import list_apps
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    add_simulated_account(pg_host, simulator, project_dir)
    assert sync_account(pg_host, "school")["status"] == "ok"
    apps = {(r["adamId"], r["pricingParam"], r["platform"]): r["id"] for r in list_apps(pg_host)}
    assert set(apps) == {(k[0], k[1], p) for k, asset in simulator.snapshot()["assets"].items() for p in asset["supportedPlatforms"]}
    with pg_host.db.session() as session:
        events = [e.payload for e in session.execute(select(OutboxEvent).where(OutboxEvent.name == "mobile_apps_app_published")).scalars()]  # type: ignore[arg-type]
    assert sorted((e["id"], e["adamId"], e["pricingParam"], e["platform"]) for e in events) == sorted((i, *key) for key, i in apps.items())


@pytest.mark.parametrize("first", [True, False], ids=["first-sync-straight-into-the-mirror", "staged"])
def test_a_license_write_that_fails_in_the_background_fails_the_sync_with_nothing_written(
    pg_host: Host, project_dir: Path, monkeypatch: pytest.MonkeyPatch, first: bool
) -> None:
    """On PostgreSQL the license batches are written by a thread of their own while the next
    pages are parsed (staged, or on a first full sync straight into the mirror in the sync's
    open transaction): a batch whose COPY fails fails the sync (it is not lost, leaving a
    mirror short of licenses), nothing is written (the mirror as before, no staged row), and
    no writer thread is left."""
    import threading

    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError

    from plugins.vpp.models import VppStageLicense, VppStageUser
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.sync import read
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    writes: list[str] = []
    real_insert_rows = read.insert_rows

    def failing_third_license_batch(session: Any, table: Any, columns: Any, rows: Any) -> None:
        if table.name in ("vpp_stage_license", "vpp_license"):
            writes.append(table.name)
            if len(writes) == 3:
                raise OperationalError(f"COPY {table.name}", {}, Exception("could not extend file: No space left on device"))
        real_insert_rows(session, table, columns, rows)

    monkeypatch.setattr(read, "STAGE_BATCH", 200)
    with Simulator(seed=5, assets=6, devices=900, users=700, assignments=1200, page_size=100, async_delay=0) as sim:
        add_simulated_account(pg_host, sim, project_dir)
        if not first:
            assert sync_account(pg_host, "school", full=True)["status"] == "ok"
            sim.mutate_fraction(0.1, seed=3)
        before = _mirror(pg_host)
        monkeypatch.setattr(read, "insert_rows", failing_third_license_batch)
        report = sync_account(pg_host, "school", full=True)
    assert report["status"] == "error" and "No space left on device" in str(report["error"])
    assert writes == 3 * ["vpp_license" if first else "vpp_stage_license"]  # the read stopped at the failed batch
    assert _mirror(pg_host) == before and len(before) == (0 if first else 1200)
    with pg_host.db.session() as session:
        for model in (VppStageLicense, VppStageUser):
            assert session.execute(select(func.count()).select_from(model)).scalar_one() == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("vpp-stage")]


def test_the_staging_tables_are_unlogged_and_the_mirror_logged_on_postgres(pg_host: Host) -> None:
    """vpp migration 0007: the sync's staging tables write no WAL (a full sync stages as many
    rows as the mirror holds); the mirror's own tables stay logged (crash-safe)."""
    from sqlalchemy import text

    tables = ["vpp_stage_license", "vpp_stage_user", "vpp_license", "vpp_user", "vpp_asset", "vpp_account", "vpp_sync_run"]
    with pg_host.db.engine.connect() as conn:
        persistence: dict[str, str] = dict(
            conn.execute(text("SELECT relname, relpersistence FROM pg_class WHERE relkind = 'r' AND relname = ANY(:t)"), {"t": tables}).all()
        )
    assert persistence == {
        "vpp_stage_license": "u",
        "vpp_stage_user": "u",
        "vpp_license": "p",
        "vpp_user": "p",
        "vpp_asset": "p",
        "vpp_account": "p",
        "vpp_sync_run": "p",
    }


def test_a_license_apple_lists_twice_in_a_full_sync_is_mirrored_once_on_postgres(
    pg_host: Host, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full sync on PostgreSQL inserts its new licenses without a conflict check per row; a
    license staged twice (Apple repeats a record while its data changes) makes that insert
    fail, and the sync inserts them again skipping what exists: one license, mirror exact."""
    from plugins.vpp.sync import read
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    real_page_assignments = read.page_assignments
    repeated: list[tuple[str, str, str, str]] = []

    def repeating_the_first_record(page: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        rows = real_page_assignments(page)
        if rows and not repeated:
            repeated.append(rows[0])
            return [*rows, rows[0]]
        return rows

    monkeypatch.setattr(read, "page_assignments", repeating_the_first_record)
    add_simulated_account(pg_host, simulator, project_dir)
    report = sync_account(pg_host, "school", full=True)
    assert report["status"] == "ok", report
    assert repeated
    want = {tuple(a) for a in simulator.snapshot()["assignments"]}
    assert _mirror(pg_host) == want and report["counts"]["licenses"]["added"] == len(want)


def test_a_pooled_connection_is_pinged_only_after_being_idle(pg_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection returned to the pool less than PING_AFTER_IDLE ago is handed out without a
    round trip (a sync's delivery checks one out per event); one idle longer is pinged, and a
    dead one (its server session ended) is replaced before anyone uses it."""
    from sqlalchemy import text

    from mdm_core.db import engine as engine_module

    engine = pg_host.db.engine
    pings: list[int] = []
    real_ping = engine.dialect.do_ping

    def counted_ping(conn: Any) -> bool:
        pings.append(1)
        return bool(real_ping(conn))

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)

    def backend_pid(conn: Any) -> int:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

    for _ in range(10):  # every pooled connection used once (those idle since the host was made are pinged)
        with pg_host.db.reading() as conn:
            backend_pid(conn)
    pinged = len(pings)
    for _ in range(20):
        with pg_host.db.reading() as conn:
            backend_pid(conn)
    assert len(pings) == pinged  # each returned just before: no round trip

    # a pooled connection's server session ends while it is idle (a server restart, a firewall)
    victim = pg_host.db.reading()
    first = backend_pid(victim.__enter__())
    with pg_host.db.reading() as other:
        assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one() is True
    victim.__exit__(None, None, None)  # back in the pool, dead
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", 0.0)
    seen = set()
    for _ in range(5):  # whichever connection the pool hands out is alive: the dead one is replaced
        with pg_host.db.reading() as conn:
            seen.add(backend_pid(conn))
    assert first not in seen and len(pings) > pinged


def test_license_counts_of_many_assets_move_by_one_statement_on_postgres(pg_host: Host) -> None:
    """On PostgreSQL the deltas of several assets go in one ``UPDATE ... FROM unnest(...)``
    (an executemany runs the statement once per asset): each asset moves by its own delta, a
    zero delta and an asset the mirror does not list change nothing."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, select

    from mdm_core.db.typed import table_of
    from plugins.vpp.license_counts import add_license_counts
    from plugins.vpp.models import VppAccount, VppAsset

    A = table_of(VppAsset)
    with pg_host.db.write_session() as session:
        account = VppAccount(
            name="counts", uid="u-counts", service_url="http://x", token_ciphertext="c", token_fingerprint="f",
            token_expires_at=datetime(2030, 1, 1, tzinfo=UTC), mdm_info_id="m",
        )  # fmt: skip
        session.add(account)
        session.flush()
        acc = account.id
        session.execute(
            insert(A),
            [
                {"account_id": acc, "adam_id": a, "pricing_param": "STDQ", "product_type": "App", "supported_platforms": [], "license_count": n}
                for a, n in (("1", 5), ("2", 2), ("3", 7))
            ],
        )
        session.commit()
    with recorded_statements(pg_host.db.write_engine) as statements, pg_host.db.write_session() as session:
        add_license_counts(session, acc, {("1", "STDQ"): 3, ("2", "STDQ"): -2, ("3", "STDQ"): 0, ("9", "STDQ"): 4})
        session.commit()
    assert [s.many for s in statements if s.sql.startswith("UPDATE vpp_asset")] == [False]  # not once per row on the server
    with pg_host.db.session() as session:
        stored = dict(session.execute(select(A.c.adam_id, A.c.license_count).where(A.c.account_id == acc)).all())
    assert stored == {"1": 8, "2": 0, "3": 7}


def test_the_assets_read_again_on_postgres_are_compared_with_their_mirrored_licenses_exactly(pg_host: Host, simulator: Any, project_dir: Path) -> None:
    """On PostgreSQL the mirrored licenses of the assets read again come back as one row per
    asset, pricingParam and kind, its targets joined: values holding the separators are read
    exactly (a target holding the record or unit separator row by row), and
    an incremental sync after licenses were removed, added and kept (the odd ones, which Apple
    does not list, among the removed) leaves the mirror exactly Apple's."""
    from sqlalchemy import insert, select

    from mdm_core.db.typed import table_of
    from plugins.vpp.license_counts import add_license_counts
    from plugins.vpp.models import VppAccount, VppLicense
    from plugins.vpp.sync import read
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple

    add_simulated_account(pg_host, simulator, project_dir)
    assert sync_account(pg_host, "school")["status"] == "ok"
    L = table_of(VppLicense)
    with pg_host.db.session() as session:
        acc = session.execute(select(table_of(VppAccount).c.id)).scalar_one()
        rows = session.execute(select(L.c.adam_id, L.c.pricing_param, L.c.kind, L.c.target).where(L.c.account_id == acc)).all()
    assets = sorted({r[0] for r in rows})
    odd = {assets[0]: ("STDQ", "user", "odd\x1ename"), assets[1]: ("STDQ", "user", "odd\x1fpart"), assets[2]: ("STDQ", "user", "x\x1fy\x1ez")}
    odd[assets[3]] = ("STDQ", "user", "f\x1cile")
    with pg_host.db.write_session() as session:
        session.execute(insert(L), [{"account_id": acc, "adam_id": a, "pricing_param": p, "kind": k, "target": t} for a, (p, k, t) in odd.items()])
        add_license_counts(session, acc, {(a, p): 1 for a, (p, _, _) in odd.items()})
        session.commit()
    held = {a: {(p, k, t) for a2, p, k, t in rows if a2 == a} | ({odd[a]} if a in odd else set()) for a in assets}
    order = [*reversed(assets), "no-such-asset"]
    with pg_host.db.reading() as conn:
        got = list(read.mirrored_licenses(conn, acc, order, first=2))
    assert [(a, m.licenses()) for a, m in got] == [(a, held.get(a, set())) for a in order]
    row_by_row = {a for a, m in got if not m.joined}  # a target holds a separator of the licenses or their fields
    assert {assets[0], assets[1], assets[2]} <= row_by_row and assets[3] not in row_by_row  # the file separator separates nothing here
    assert order[0] not in row_by_row and "no-such-asset" not in row_by_row

    simulator.mutate_fraction(0.3, seed=5)
    report = sync_account(pg_host, "school")
    assert (report["status"], report["mode"]) == ("ok", "incremental"), report
    assert report["counts"]["licenses"]["removed"] >= len(odd) and report["counts"]["licenses"]["added"]
    assert_mirror_equals_apple(pg_host, simulator)


def test_the_licenses_apple_took_back_go_by_one_statement_on_postgres(pg_host: Host, simulator: Any, project_dir: Path, monkeypatch: Any) -> None:
    """On PostgreSQL the licenses an incremental sync read as gone are deleted by one
    ``DELETE ... USING unnest(...)`` and their enrolled holders found by one ``= ANY(...)`` per
    kind (an executemany or an ``IN`` list sends one statement a license, or a new text per
    500): their events name exactly the licenses taken back and the enrolled devices among
    them; when another writer deleted some of them meanwhile the stored counts stay exact."""
    from sqlalchemy import select

    from mdm_core.db.typed import table_of
    from mdm_core.models import OutboxEvent
    from plugins.vpp.sync import run
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple, delete_licenses_as_another_writer

    add_simulated_account(pg_host, simulator, project_dir)
    assert sync_account(pg_host, "school", full=True)["status"] == "ok"
    before = _mirror(pg_host)
    assert simulator.mutate_fraction(0.3, seed=5)["assignments_removed"]
    E = table_of(OutboxEvent)
    original, taken, enrolled = run.apply_read, [], []

    def apply_after_another_writer(host: Any, account: Any, run_id: int, read: Any, lock: Any, *more: Any) -> Any:
        devices = [key for key in read.removed if key[2] == "device"]
        assert len(read.removed) > 10 and devices  # named by the read: the statement under test deletes them
        enrolled.append(devices[0][3])
        inventory.add_device(host, devices[0][3], "iOS")
        taken.extend(read.removed[-3:])  # another writer disassociates these meanwhile
        delete_licenses_as_another_writer(host, account.id, taken)
        return original(host, account, run_id, read, lock, *more)

    monkeypatch.setattr(run, "apply_read", apply_after_another_writer)
    with pg_host.db.write_session() as session:
        seen = session.execute(select(E.c.seq).order_by(E.c.seq.desc()).limit(1)).scalar() or 0
    with recorded_statements(pg_host.db.write_engine) as statements:
        report = sync_account(pg_host, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    assert [s.many for s in statements if s.sql.startswith("DELETE FROM vpp_license USING unnest(")] == [False]
    assert not [s for s in statements if s.sql.startswith("DELETE FROM vpp_license") and s.many]
    # the enrolled holders' lookup: the devices' alone, or the devices' and the users' together
    lookups = ("SELECT core_device.serial_number FROM core_device WHERE", "core_device.serial_number AS holder FROM core_device WHERE")
    devices = [s.sql for s in statements if any(lookup in s.sql for lookup in lookups)]
    assert devices and all("= ANY (" in s for s in devices)
    assert_mirror_equals_apple(pg_host, simulator)  # the stored license counts included
    gone = before - _mirror(pg_host)
    with pg_host.db.session() as session:
        payloads = session.execute(select(E.c.payload).where(E.c.seq > seen, E.c.name == "vpp_licenses_disassociated")).scalars().all()
    named = {(p["adamId"], p["pricingParam"], "serialNumber", t) for p in payloads for t in p["serialNumbers"]}
    named |= {(p["adamId"], p["pricingParam"], "clientUserId", t) for p in payloads for t in p["clientUserIds"]}
    assert named == gone  # those the other writer took included: the sync read them as gone
    assert [s for p in payloads for s in p["enrolledSerialNumbers"]] == enrolled


def test_changed_assets_are_written_by_one_statement_and_copy_on_postgres(pg_host: Host, simulator: Any, project_dir: Path) -> None:
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    from .vpp.test_sync_full_incremental import changed_assets_written_by_the_driver

    add_simulated_account(pg_host, simulator, project_dir)
    assert sync_account(pg_host, "school", full=True)["status"] == "ok"
    changed_assets_written_by_the_driver(pg_host, simulator)


def test_new_licenses_are_inserted_by_the_conflict_check_on_postgres(pg_host: Host, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    from .vpp.test_sync_full_incremental import new_licenses_inserted_by_the_conflict_check

    add_simulated_account(pg_host, simulator, project_dir)
    assert sync_account(pg_host, "school", full=True)["status"] == "ok"
    new_licenses_inserted_by_the_conflict_check(pg_host, simulator, monkeypatch)


def test_an_incremental_sync_delivers_its_events_to_every_plugin_by_array_parameters_on_postgres(pg_host: Host, simulator: Any, project_dir: Path) -> None:
    """After licenses were assigned in Apple's portal, every plugin hears the incremental sync
    on PostgreSQL as on SQLite: mobile_apps' applications take their assets' new counts, alerts
    records the asset left without a license; the lists of an event's keys (its assets, their
    license states, the installs of a batch's assets) go as one array parameter each (``= ANY``,
    or unnested and joined: the stored applications of an event's assets), not as an ``IN`` list
    rendered, sent and parsed again at each event."""
    from sqlalchemy import event

    from plugins.mobile_apps.catalog import list_apps
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    add_simulated_account(pg_host, simulator, project_dir)
    assert sync_account(pg_host, "school")["status"] == "ok"
    scarce, _ = simulator.purchase(count=1)
    assert sync_account(pg_host, "school")["status"] == "ok"
    simulator.assign_in_portal(scarce, serial_number="PORTAL000001")
    statements: list[str] = []
    event.listen(pg_host.db.engine, "before_cursor_execute", lambda _c, _cur, statement, *_a: statements.append(" ".join(statement.split())))
    assert sync_account(pg_host, "school")["status"] == "ok"
    apps = {(r["adamId"], r["pricingParam"]): r for r in list_apps(pg_host)}
    assets = simulator.snapshot()["assets"]
    assert all((apps[key]["availableCount"], apps[key]["totalCount"]) == (a["availableCount"], a["totalCount"]) for key, a in assets.items())
    assert apps[(scarce, "STDQ")]["availableCount"] == 0
    marks = (
        "AS has_metadata FROM mobile_apps_app JOIN unnest(",  # with whether each has its metadata (one read)
        "FROM mobile_apps_metadata WHERE",
        "FROM alerts_subject WHERE alerts_subject.kind",
        "mobile_apps_install.status FROM",
    )
    keyed = {m: [s for s in statements if s.startswith("SELECT") and m in s] for m in marks}
    assert all(keyed.values()) and all("= ANY (" in s or "JOIN unnest(" in s for found in keyed.values() for s in found), keyed
    with pg_host.db.session() as session:
        from plugins.alerts.models import AlertSubject

        assert session.get(AlertSubject, f"licenses:school:{scarce}:STDQ") is not None


def test_an_incremental_sync_joins_its_staged_users_by_the_mirrors_key_on_postgres(pg_host: Host, simulator: Any, project_dir: Path) -> None:
    """An incremental sync's statements over its few staged users are planned without hash
    joins (the planner hashed every mirrored user of the account in each: 81 ms of server time
    at 100,000 users, 32 ms through the primary key); a full sync's (every user staged) and
    the licenses' statements after them are planned as configured; the users end as Apple's."""
    from sqlalchemy import event

    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple

    add_simulated_account(pg_host, simulator, project_dir)
    planned: list[tuple[str, str]] = []  # (statement, enable_hashjoin when it ran)

    def look(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(
            ("UPDATE vpp_user", "INSERT INTO vpp_user", "SELECT vpp_stage_user.client_user_id", "INSERT INTO vpp_license", "DELETE FROM vpp_license")
        ):
            with conn.connection.dbapi_connection.cursor() as other:  # the same transaction
                other.execute("SHOW enable_hashjoin")
                planned.append((statement.split(" (")[0].split(" SET")[0][:40], other.fetchone()[0]))

    event.listen(pg_host.db.write_engine, "before_cursor_execute", look)
    try:
        assert sync_account(pg_host, "school", full=True)["status"] == "ok"
        full = list(planned)
        planned.clear()
        summary = simulator.mutate_fraction(0.3, seed=3)
        report = sync_account(pg_host, "school")
    finally:
        event.remove(pg_host.db.write_engine, "before_cursor_execute", look)
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    assert summary["users_updated"] and summary["users_created"] and report["counts"]["users"]["changed"] and report["counts"]["users"]["added"]
    users = [on for s, on in planned if "vpp_user" in s or "vpp_stage_user" in s]
    licenses = [on for s, on in planned if "vpp_license" in s]
    assert len(users) >= 2 and set(users) == {"off"}, planned  # the read, and the write of the new and changed ones
    assert licenses and set(licenses) == {"on"}, planned
    assert full and {on for _, on in full} == {"on"}, full
    assert_mirror_equals_apple(pg_host, simulator)
