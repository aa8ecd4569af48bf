"""Full and incremental syncs against the simulator: the mirror equals Apple afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from mdm_core.testing import recorded_statements
from plugins.vpp.simulator import DEVICE, USER
from plugins.vpp.sync.run import sync_account
from plugins.vpp.testing import apple_state, assert_mirror_equals_apple, mirror_state

from .conftest import account_row


@contextmanager
def pooled_connections(host: Any) -> Iterator[list[Any]]:
    """Every connection the host's write pool holds, checked out for the block."""
    pool = host.db.write_engine.pool
    connections = [pool.connect() for _ in range(pool.checkedin())]
    try:
        yield connections
    finally:
        for c in connections:
            c.close()


def _device_asset(sim: Any) -> tuple[str, str]:
    for (adam_id, pricing), asset in sim.snapshot()["assets"].items():
        if asset["deviceAssignable"] and asset["availableCount"] > 0:
            return adam_id, pricing
    raise AssertionError("no device-assignable asset with free licenses")


def test_full_sync_mirror_equals_apple(school: Any, simulator: Any) -> None:
    report = sync_account(school, "school")
    assert report["status"] == "ok" and report["mode"] == "full"
    assert_mirror_equals_apple(school, simulator)
    apple = apple_state(simulator)
    assert report["counts"]["assets"]["added"] == len(apple["assets"])
    assert report["counts"]["licenses"]["added"] == len(apple["assignments"])
    assert report["counts"]["users"]["added"] == len(apple["users"])
    kinds = {k for _, _, k, _ in apple["assignments"]}
    assert kinds == {DEVICE, USER}, "the seed should hold device and user assignments"
    statuses = {u["status"] for u in apple["users"].values()}
    assert {"Associated", "Registered"} <= statuses
    row = account_row(school)
    versions = simulator.versions()
    assert row.users_version_id == versions["users"]
    assert row.assignments_version_id == versions["assignments"]
    assert row.last_full_sync_at is not None and row.last_sync_result == "ok (full)"


def test_incremental_after_out_of_band_changes(synced: Any, simulator: Any) -> None:
    sim = simulator
    before = mirror_state(synced)
    # a new asset and more licenses of an existing one
    new_key = sim.purchase(count=5)
    existing = next(iter(sim.snapshot()["assets"]))
    sim.purchase(adam_id=existing[0], pricing_param=existing[1], count=3)
    # an assignment made in Apple's portal
    adam, pricing = _device_asset(sim)
    assert sim.assign_in_portal(adam, pricing, serial_number="PORTAL000001")
    # a REMOVAL in the portal: does not show in a sinceVersionId delta
    removed = next(k for k in sorted(before["assignments"]) if k[2] == DEVICE and k[0] != adam)
    assert sim.remove_in_portal(removed[0], removed[1], serial_number=removed[3])
    # users: one retired, one created
    retiree = next(cid for cid, u in sorted(before["users"].items()) if u["status"] == "Associated")
    assert sim.retire_user(retiree)
    created = sim.create_user("user-created-1", email="created@example.org")

    report = sync_account(synced, "school")
    assert report["status"] == "ok", report
    assert report["mode"] == "incremental"
    assert_mirror_equals_apple(synced, sim)
    mirror = mirror_state(synced)
    assert new_key in mirror["assets"]
    assert removed not in mirror["assignments"]
    assert (adam, pricing, DEVICE, "PORTAL000001") in mirror["assignments"]
    assert mirror["users"][retiree]["status"] == "Retired"
    assert mirror["users"][created]["status"] == "Registered"
    # only the assets whose counts disagree were read again: the removed license's asset, and
    # the retired user's assets (retiring released its revocable licenses)
    retired_assets = {k[0] for k in before["assignments"] if k[2] == USER and k[3] == retiree}
    expected = {removed[0]} | retired_assets
    assert report["counts"]["licenses"]["reread_assets"] == len(expected)
    assert report["counts"]["users"]["retired"] == 1
    assert report["counts"]["users"]["added"] == 1


@pytest.mark.parametrize("full", [True, False], ids=["full", "incremental"])
@pytest.mark.parametrize("order", ["served", "reversed"])
def test_a_live_user_record_beats_a_retired_one_of_the_same_client_user_id(synced: Any, simulator: Any, full: bool, order: str) -> None:
    """Retired, then created again: Apple lists both records of the clientUserId, in no promised
    order; the mirror keeps the live one, whichever comes first."""
    before = mirror_state(synced)
    cid = next(c for c, u in sorted(before["users"].items()) if u["status"] == "Associated")
    assert simulator.retire_user(cid)
    simulator.create_user(cid, email="back-again@example.org")
    if order == "reversed":  # the retired record after the live one (the simulator serves them oldest first)
        simulator.faults.add("reverse_records", endpoint="users")
    records = [u for u in _user_records(simulator) if u["clientUserId"] == cid]
    assert sorted(u["status"] for u in records) == ["Registered", "Retired"]  # both listed
    report = sync_account(synced, "school", full=full)
    assert report["status"] == "ok" and report["mode"] == ("full" if full else "incremental"), report
    user = mirror_state(synced)["users"][cid]
    assert (user["status"], user["email"]) == ("Registered", "back-again@example.org")
    assert user["inviteCode"] and user["idHash"] is None
    assert_mirror_equals_apple(synced, simulator)


def _user_records(sim: Any) -> list[dict[str, Any]]:
    """Every record ``GET /users`` serves (all pages, the armed faults applied)."""
    import requests

    out, index = [], 0
    while index is not None:
        page = requests.get(f"{sim.base_url}/users", params={"pageIndex": index}, headers={"Authorization": f"Bearer {sim.token}"}, timeout=10).json()
        out += page["users"]
        index = page.get("nextPageIndex")
    return out


def test_incremental_after_mutate_fraction(synced: Any, simulator: Any) -> None:
    summary = simulator.mutate_fraction(0.3, seed=5)
    assert summary["assignments_removed"] and summary["users_retired"]
    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental"
    assert_mirror_equals_apple(synced, simulator)
    assert 0 < report["counts"]["licenses"]["reread_assets"] < len(simulator.snapshot()["assets"])


def test_incremental_without_changes_reads_nothing_again(synced: Any, simulator: Any) -> None:
    report = sync_account(synced, "school")
    assert report["mode"] == "incremental" and report["status"] == "ok"
    assert report["counts"]["licenses"] == {"added": 0, "removed": 0, "reread_assets": 0}
    assert_mirror_equals_apple(synced, simulator)


def test_an_incremental_sync_compares_apple_counts_with_the_stored_license_counts(synced: Any, simulator: Any) -> None:
    """The licenses the mirror holds per asset are stored on the asset (no count of the whole
    mirror at each sync): an asset whose stored count is off is read again, and the read puts
    the count right."""
    from sqlalchemy import update

    from mdm_core.db.typed import table_of
    from plugins.vpp.models import VppAsset

    adam_id, pricing = next(k for k in sorted(mirror_state(synced)["assignments"]))[:2]
    A = table_of(VppAsset)
    with synced.db.write_session() as session:
        session.execute(update(A).where(A.c.adam_id == adam_id, A.c.pricing_param == pricing).values(license_count=A.c.license_count + 1))
        session.commit()
    report = sync_account(synced, "school")
    assert report["mode"] == "incremental" and report["status"] == "ok"
    assert report["counts"]["licenses"] == {"added": 0, "removed": 0, "reread_assets": 1}
    assert_mirror_equals_apple(synced, simulator)  # the stored counts included
    report = sync_account(synced, "school")
    assert report["counts"]["licenses"]["reread_assets"] == 0


def test_refund_removes_asset_and_its_licenses(synced: Any, simulator: Any) -> None:
    held = next(k for k in sorted(mirror_state(synced)["assignments"]))
    assert simulator.remove_asset(held[0], held[1])
    report = sync_account(synced, "school")
    assert report["status"] == "ok"
    assert report["counts"]["assets"]["removed"] == 1
    assert_mirror_equals_apple(synced, simulator)


def test_9721_falls_back_to_full(synced: Any, simulator: Any) -> None:
    from plugins.vpp.models import VppAccount

    def corrupt(session: Any) -> None:
        row = session.get(VppAccount, account_row(synced).id)
        row.assignments_version_id = "not-a-version-id"
        session.add(row)

    synced.db.run_write(corrupt)
    simulator.remove_in_portal(*_first_device_assignment(synced))
    report = sync_account(synced, "school")
    assert report["status"] == "ok", report
    assert report["mode"] == "full"
    assert_mirror_equals_apple(synced, simulator)
    assert account_row(synced).assignments_version_id == simulator.versions()["assignments"]


def test_9650_falls_back_to_full(synced: Any, simulator: Any) -> None:
    simulator.create_user("user-9650")
    simulator.faults.add("error_200", endpoint="users", count=1, error_number=9650)
    report = sync_account(synced, "school")
    assert report["status"] == "ok", report
    assert report["mode"] == "full"
    assert_mirror_equals_apple(synced, simulator)


def _first_device_assignment(host: Any) -> tuple[str, str, None, str]:
    a, p, _, serial = next(k for k in sorted(mirror_state(host)["assignments"]) if k[2] == DEVICE)
    return a, p, serial  # type: ignore[return-value]


def test_full_reconcile_when_last_full_sync_is_old(synced: Any, simulator: Any) -> None:
    from plugins.vpp.models import VppAccount

    assert sync_account(synced, "school")["mode"] == "incremental"

    def age(session: Any) -> None:
        row = session.get(VppAccount, account_row(synced).id)
        row.last_full_sync_at = row.last_full_sync_at - timedelta(seconds=86400 + 5)
        session.add(row)

    synced.db.run_write(age)
    report = sync_account(synced, "school")
    assert report["mode"] == "full" and report["status"] == "ok"
    assert sync_account(synced, "school")["mode"] == "incremental"


def test_full_reconcile_interval_is_configurable(make_host: Any, simulator: Any, token_file: Any) -> None:
    """An hour instead of the default day: a last full sync just under an hour old gives an
    incremental sync, just over an hour a full one (the last full sync's time is moved back
    instead of waiting)."""
    import plugins.vpp.plugin
    from plugins.vpp.accounts import add_account
    from plugins.vpp.models import VppAccount

    host = make_host(plugins=[plugins.vpp.plugin], config="[vpp]\nfull_reconcile_interval = 3600\nmax_attempts = 2\n")
    add_account(host, "school", str(token_file), service_url=simulator.base_url)
    assert sync_account(host, "school")["mode"] == "full"

    def age(seconds: int) -> None:
        def write(session: Any) -> None:
            row = session.get(VppAccount, account_row(host).id)
            row.last_full_sync_at = row.last_full_sync_at - timedelta(seconds=seconds)
            session.add(row)

        host.db.run_write(write)

    age(3600 - 60)
    assert sync_account(host, "school")["mode"] == "incremental"
    age(60 + 5)
    assert sync_account(host, "school")["mode"] == "full"


def test_forced_full_sync(synced: Any, simulator: Any) -> None:
    report = sync_account(synced, "school", full=True)
    assert report["mode"] == "full" and report["status"] == "ok"
    assert report["counts"]["assets"] == {"added": 0, "changed": 0, "removed": 0, "total": len(simulator.snapshot()["assets"])}


def test_licenses_another_writer_removed_during_the_read_leave_the_stored_counts_exact(synced: Any, simulator: Any, monkeypatch: Any) -> None:
    """An incremental sync moves the stored counts of the assets it read again by the licenses
    it inserts and deletes, and recounts only those whose count is then not Apple's; when
    another writer deleted some of the removed licenses between the read and the apply (and
    moved the counts itself), the sync deletes fewer than it read and recounts instead of
    taking them off twice."""
    from plugins.vpp.sync import run
    from plugins.vpp.testing import delete_licenses_as_another_writer

    summary = simulator.mutate_fraction(0.3, seed=5)
    assert summary["assignments_removed"]
    original = run.apply_read
    taken: list[tuple[str, str, str, str]] = []

    def apply_after_another_writer(host: Any, account: Any, run_id: int, read: Any, lock: Any, *more: Any) -> Any:
        taken.extend(read.removed[:3])  # licenses Apple no longer lists: this host disassociates them meanwhile
        delete_licenses_as_another_writer(host, account.id, taken)
        return original(host, account, run_id, read, lock, *more)

    monkeypatch.setattr(run, "apply_read", apply_after_another_writer)
    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental"
    assert len(taken) == 3
    assert_mirror_equals_apple(synced, simulator)  # the stored license counts included


def test_the_mirrored_licenses_of_the_assets_read_again_are_read_exactly(synced: Any, monkeypatch: Any) -> None:
    """The licenses an incremental sync compares with Apple's come back as one string per chunk
    of assets (split in Python); a target holding the separators is still
    read exactly (row by row), an asset without licenses is empty, and an asset past DIFF_LIMIT
    (read, or known from its stored count) is still staged whole."""
    from collections import Counter

    from sqlalchemy import insert, select

    from mdm_core.db.typed import table_of
    from plugins.vpp.models import VppLicense
    from plugins.vpp.sync import read as read_module

    L = table_of(VppLicense)
    acc = account_row(synced).id
    with synced.db.session() as session:
        rows = session.execute(select(L.c.adam_id, L.c.pricing_param, L.c.kind, L.c.target).where(L.c.account_id == acc)).all()
    assets = sorted({r[0] for r in rows})
    # each on an asset of its own: a separator adds a record, adds fields, or both
    odd = {assets[1]: ("STDQ", "user", "odd\x1ename"), assets[2]: ("STDQ", "user", "odd\x1fpart"), assets[3]: ("STDQ", "user", "x\x1fy\x1ez")}
    odd[assets[4]], odd[assets[5]] = ("STDQ", "user", "g\x1droup"), ("STDQ", "user", "f\x1cile")  # the latter: its chunk row by row
    odd["ad\x1dam"] = ("STDQ", "user", "t")  # an adamId holding a separator
    # an asset's licenses under several pricingParams and kinds (each group read on its own)
    groups = [(assets[6], "PLUS", "device", "S1"), (assets[6], "PLUS", "user", "S1"), (assets[6], "STDQ", "device", "S1")]
    with synced.db.write_session() as session:
        licenses = [{"adam_id": a, "pricing_param": p, "kind": k, "target": t} for a, (p, k, t) in odd.items()]
        licenses += [{"adam_id": a, "pricing_param": p, "kind": k, "target": t} for a, p, k, t in groups]
        session.execute(insert(L), [{"account_id": acc, **license} for license in licenses])
        session.commit()
    held = {a: {(p, k, t) for a2, p, k, t in [*rows, *groups] if a2 == a} for a in assets}
    for a, license in odd.items():
        held.setdefault(a, set()).add(license)
    held["no-such-asset"] = set()
    order = [assets[2], assets[1], "no-such-asset", *assets[3:], "ad\x1dam", assets[0]]
    monkeypatch.setattr(read_module, "MIRROR_CHUNK", 3)  # chunks of 1, 2, 3, 3...

    def read(**kwargs: Any) -> list[tuple[str, Any]]:
        with synced.db.reading() as conn:
            return list(read_module.mirrored_licenses(conn, acc, order, **kwargs))

    got = read(first=1)
    assert [(a, m.licenses()) for a, m in got] == [(a, held[a]) for a in order]
    # each license is the string the database joined, unless a value holds a separator
    row_by_row = {a for a, m in got if not m.joined}
    assert {assets[1], assets[2], assets[3], "ad\x1dam", assets[5]} <= row_by_row and not {assets[0], assets[6], "no-such-asset"} & row_by_row
    for a, m in got:
        assert m.per_pricing == Counter(p for p, _, _ in held[a]), a  # the matched counts come from these
    # chunks cut by the assets' known sizes too (one asset at least)
    monkeypatch.setattr(read_module, "CHUNK_LICENSES", len(held[assets[2]]))
    assert [(a, m.licenses()) for a, m in read(sizes={a: len(h) for a, h in held.items()})] == [(a, held[a]) for a in order]
    # an asset whose stored count is past DIFF_LIMIT is not read (staged whole), the others are
    known = dict(read(sizes={assets[6]: read_module.DIFF_LIMIT + 1}))
    assert known[assets[6]] is None and all(known[a].licenses() == held[a] for a in order if a != assets[6])
    monkeypatch.setattr(read_module, "DIFF_LIMIT", len(held[assets[0]]) - 1)
    past = dict(read(first=1))
    assert past[assets[0]] is None and all(past[a] is None for a in assets if len(held[a]) > len(held[assets[0]]) - 1)
    assert past["no-such-asset"].licenses() == set()
    assert all(past[a].licenses() == held[a] for a in assets if len(held[a]) < len(held[assets[0]]))


def changed_assets_written_by_the_driver(host: Any, simulator: Any) -> None:
    """An incremental sync after counts moved on many assets: their new values and their count
    history are written without SQLAlchemy's per-row parameter processing (the driver's
    executemany of one prepared statement, or one statement of arrays / COPY on PostgreSQL),
    yet stored as SQLAlchemy stores them: the mirror is Apple's, and each asset whose counts
    moved has one new history row of its new counts, at the time its row was updated."""
    from sqlalchemy import select

    from mdm_core.db.typed import table_of
    from plugins.vpp.models import VppAsset, VppAssetCount

    A, AC = table_of(VppAsset), table_of(VppAssetCount)
    with host.db.session() as session:
        history_before = session.execute(select(AC.c.id)).scalars().all()
    simulator.mutate_fraction(0.3, seed=11)
    with recorded_statements(host.db.write_engine) as written:  # compiled: processed by SQLAlchemy
        report = sync_account(host, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    changed = report["counts"]["assets"]["changed"]
    assert changed > 1
    values = [(s.many, s.compiled) for s in written if s.sql.startswith(("UPDATE vpp_asset SET product_type", 'UPDATE "vpp_asset" SET "product_type"'))]
    assert values in ([(True, False)], [(False, True)]), values  # the driver's executemany, or one UPDATE ... FROM unnest(...)
    assert not [s for s in written if "vpp_asset_count" in s.sql and s.compiled]  # COPY on PostgreSQL: not seen here
    assert_mirror_equals_apple(host, simulator)  # the values and platforms read back as SQLAlchemy stored them
    with host.db.session() as session:
        assets = {(r.adam_id, r.pricing_param): r for r in session.execute(select(A))}
        new = session.execute(select(AC).where(AC.c.id.not_in(history_before))).all()
    assert changed >= len(new) > 1 and len({(r.adam_id, r.pricing_param) for r in new}) == len(new)
    for r in new:
        asset = assets[(r.adam_id, r.pricing_param)]
        assert r.at == asset.updated_at and r.at.tzinfo is not None
        assert (r.assigned_count, r.available_count, r.retired_count, r.total_count) == (
            asset.assigned_count, asset.available_count, asset.retired_count, asset.total_count,
        )  # fmt: skip


def test_changed_assets_are_written_by_the_driver(synced: Any, simulator: Any) -> None:
    changed_assets_written_by_the_driver(synced, simulator)


def new_licenses_inserted_by_the_conflict_check(host: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An incremental sync inserts the staged licenses with ``ON CONFLICT DO NOTHING`` alone,
    without an anti-join that looked each one up in the mirror first (the conflict check looks
    again): the assets read again are staged whole here, so most staged licenses are mirrored
    already; only the new ones are inserted and counted, and the mirror is Apple's."""
    from plugins.vpp.sync import read as read_module

    monkeypatch.setattr(read_module, "DIFF_LIMIT", 0)  # every asset read again is staged whole
    before = mirror_state(host)["assignments"]
    summary = simulator.mutate_fraction(0.3, seed=12)
    assert summary["assignments_removed"] and summary["assignments_added"]
    with recorded_statements(host.db.write_engine) as statements:
        report = sync_account(host, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    after = mirror_state(host)["assignments"]
    inserts = [s.sql for s in statements if "INSERT INTO vpp_license " in s.sql]  # on PostgreSQL inside the statement that reads what it inserted
    assert len(inserts) == 1 and "ON CONFLICT DO NOTHING" in inserts[0] and "FROM vpp_license" not in inserts[0], inserts
    whole = [s.sql for s in statements if s.sql.startswith("DELETE FROM vpp_license WHERE") and "NOT (EXISTS" in s.sql]
    assert whole  # staged whole: what the stage lacks is deleted by anti-join
    licenses = report["counts"]["licenses"]
    assert (licenses["added"], licenses["removed"]) == (len(after - before), len(before - after)) and after - before
    assert_mirror_equals_apple(host, simulator)  # the stored counts included


def test_new_licenses_are_inserted_by_the_conflict_check(synced: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    new_licenses_inserted_by_the_conflict_check(synced, simulator, monkeypatch)


def test_a_sync_runs_with_fewer_collections_and_gives_the_thresholds_back(synced: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync holds hundreds of thousands of rows alive while it compares them: the collector
    scans its young generation every BULK_THRESHOLD allocations meanwhile (the read and apply,
    and the delivery of the sync's events), and the process's thresholds are as before once
    the sync has returned, also after a sync that failed."""
    import gc

    from mdm_core.collector import BULK_THRESHOLD
    from mdm_core.host import Host
    from plugins.vpp.sync import run

    before = gc.get_threshold()
    seen: list[tuple[str, int]] = []

    def observing(name: str, work: Any) -> Any:
        def observed(*args: Any, **kwargs: Any) -> Any:
            seen.append((name, gc.get_threshold()[0]))
            return work(*args, **kwargs)

        return observed

    monkeypatch.setattr(run, "_locked_sync", observing("sync", run._locked_sync))
    monkeypatch.setattr(Host, "deliver_events", observing("delivery", Host.deliver_events))
    simulator.purchase(count=2)
    assert sync_account(synced, "school")["status"] == "ok"
    assert seen == [("sync", BULK_THRESHOLD), ("delivery", BULK_THRESHOLD)]
    assert gc.get_threshold() == before
    simulator.faults.add("server_error", endpoint="assets", retry_after=0)
    assert sync_account(synced, "school")["status"] == "error"
    assert seen[2:] == [("sync", BULK_THRESHOLD), ("delivery", BULK_THRESHOLD)]
    assert gc.get_threshold() == before


def test_an_incremental_sync_writes_with_a_larger_page_cache_on_sqlite(synced: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write transaction of an incremental sync keeps APPLY_CACHE_MIB of pages (its changes
    spread over the mirror: with SQLite's 2 MiB each page dropped was read again); a full sync
    keeps the default, and the connection goes back to the pool with it, also after a failure."""
    from sqlalchemy import text

    from plugins.vpp.sync import apply as apply_module

    seen: list[int] = []
    record = apply_module.record_license_events

    def looking(host: Any, session: Any, *args: Any) -> int:
        seen.append(session.execute(text("PRAGMA cache_size")).scalar_one())
        return record(host, session, *args)

    monkeypatch.setattr(apply_module, "record_license_events", looking)
    simulator.mutate_fraction(0.3, seed=13)
    assert sync_account(synced, "school")["mode"] == "incremental"
    assert seen and set(seen) == {-apply_module.APPLY_CACHE_MIB * 1024}
    seen.clear()
    assert sync_account(synced, "school", full=True)["mode"] == "full"
    assert seen and set(seen) == {-2000}  # SQLite's default
    simulator.mutate_fraction(0.3, seed=14)

    def failing(*args: Any) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(apply_module, "record_license_events", failing)
    assert sync_account(synced, "school")["status"] == "error"
    with pooled_connections(synced) as connections:
        assert connections and all(c.driver_connection.execute("PRAGMA cache_size").fetchone()[0] == -2000 for c in connections)
    monkeypatch.setattr(apply_module, "record_license_events", looking)
    assert sync_account(synced, "school")["status"] == "ok"
    assert_mirror_equals_apple(synced, simulator)


def test_a_sync_that_fails_while_it_streams_licenses_leaves_every_pooled_connection_able_to_write(
    synced: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new licenses' events fail (disk full) while their rows stream: the stream is closed
    before the rollback. Left open (kept by the failure's traceback until the collector ran),
    its cursor held a read snapshot on its pooled connection, and the next write there (the
    event delivery, the sync report) failed at once with "database is locked" once another
    writer had committed (SQLITE_BUSY_SNAPSHOT: the busy timeout is not waited)."""
    import sqlite3

    from plugins.vpp.sync import apply as apply_module

    kept: list[Any] = []
    record = apply_module.record_license_events

    def failing(host: Any, session: Any, account: str, event: str, rows: Any, *rest: Any) -> int:
        kept.append(rows)  # as the traceback of the failure keeps them until it is collected
        raise OSError("disk full")

    simulator.mutate_fraction(0.3, seed=14)
    monkeypatch.setattr(apply_module, "record_license_events", failing)
    assert sync_account(synced, "school")["status"] == "error"
    assert kept
    other = sqlite3.connect(synced.db.url.database, isolation_level=None)  # another process writes meanwhile
    try:
        other.execute("UPDATE vpp_account SET last_sync_result = last_sync_result")
    finally:
        other.close()
    with pooled_connections(synced) as connections:
        assert connections
        for c in connections:
            c.driver_connection.execute("BEGIN IMMEDIATE")
            c.driver_connection.execute("ROLLBACK")
    monkeypatch.setattr(apply_module, "record_license_events", record)
    assert sync_account(synced, "school")["status"] == "ok"
    assert_mirror_equals_apple(synced, simulator)
