"""The writes of an incremental sync's apply (one transaction), on SQLite and PostgreSQL:
each row written once, by as few statements as the change needs, the mirror exact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import recorded_statements
from plugins.vpp.sync.run import sync_account
from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple, mirror_state

from .conftest import FAST_CONFIG


@pytest.fixture
def synced(make_host: Callable[..., Host], project_dir: Path, database_url: str | None, simulator: Any) -> Host:
    """A host on SQLite or PostgreSQL with the account ``school``, after a first (full) sync."""
    import plugins.vpp.plugin

    host = make_host(plugins=[plugins.vpp.plugin], config=FAST_CONFIG, database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    assert sync_account(host, "school")["status"] == "ok"
    return host


def heard_sync(host: Host) -> tuple[Any, list[str], Any]:
    """An incremental sync of ``school``: its report, the statements it ran (quotes dropped)
    and a recorder of the VPP events it delivered."""
    from mdm_core.testing import EventRecorder
    from plugins.vpp.payloads import EVENT_PAYLOADS

    recorder = EventRecorder(events=EVENT_PAYLOADS)
    host.pm.register(recorder)
    with recorded_statements(host.db.write_engine) as statements:
        report = sync_account(host, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    return report, [s.sql.replace('"', "") for s in statements], recorder


def test_an_incremental_sync_writes_each_changed_asset_once_with_its_license_count(synced: Any, simulator: Any) -> None:
    """Licenses added and taken back in one sync move their assets' stored counts by the sum,
    written by the one statement that writes the changed assets' new values: each asset row
    written once (a second ``UPDATE`` of ``license_count`` by delta wrote every such row again,
    a new row version each on PostgreSQL), not once per statement that inserted or deleted
    licenses; the counts are exact."""
    summary = simulator.mutate_fraction(0.3, seed=11)
    assert summary["assignments_removed"] and summary["assignments_added"]
    with recorded_statements(synced.db.write_engine) as statements:
        report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental"
    assert report["counts"]["licenses"]["added"] and report["counts"]["licenses"]["removed"]
    assert report["counts"]["assets"]["changed"] > 1
    flat = [s.sql.replace('"', "") for s in statements]
    asset_writes = [s for s in flat if s.startswith("UPDATE vpp_asset SET") and "(SELECT count(*)" not in s]
    assert len(asset_writes) == 1, asset_writes
    (written,) = asset_writes
    assert written.startswith("UPDATE vpp_asset SET product_type") and "license_count" in written, written
    assert_mirror_equals_apple(synced, simulator)  # the stored counts included


def test_an_incremental_sync_whose_write_is_run_again_moves_each_count_once(synced: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The apply's transaction rolled back by another writer (SQLite busy, a PostgreSQL
    deadlock) after its assets were compared, and run again: the changed assets and their
    license counts are written once, by the second run alone; the mirror is Apple's."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from mdm_core.db import engine
    from plugins.vpp.sync.apply import MirrorUpdate

    simulator.mutate_fraction(0.3, seed=11)
    original = MirrorUpdate._apply_users
    calls: list[int] = []

    def busy_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE vpp_user", {}, sqlite3.OperationalError("database is locked"))  # a busy file: run again
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MirrorUpdate, "_apply_users", busy_once)
    monkeypatch.setattr(engine.time, "sleep", lambda seconds: None)
    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    assert len(calls) == 2, calls
    assert_mirror_equals_apple(synced, simulator)  # the stored counts included


def test_an_incremental_sync_asks_once_which_holders_of_taken_back_licenses_the_inventory_knows(synced: Any, simulator: Any) -> None:
    """Licenses taken back from an enrolled device and from an MDM user in one sync: which
    holders the MDM inventory knows is read by one statement for both kinds (one per kind
    before), and the events still name them (``enrolledSerialNumbers``, ``mdmUserIds``)."""
    from mdm_core.inventory import add_device, add_user
    from plugins.vpp.simulator import DEVICE, USER

    mirror = mirror_state(synced)
    device_key = next(k for k in sorted(mirror["assignments"]) if k[2] == DEVICE)
    user_key = next(k for k in sorted(mirror["assignments"]) if k[2] == USER)
    add_device(synced, device_key[3], "iOS")
    add_user(synced, user_key[3], email="someone@example.org")
    assert simulator.remove_in_portal(device_key[0], device_key[1], serial_number=device_key[3])
    assert simulator.remove_in_portal(user_key[0], user_key[1], client_user_id=user_key[3])
    report, flat, recorder = heard_sync(synced)
    lookups = [s for s in flat if "FROM core_device WHERE core_device.serial_number" in s or "FROM core_user WHERE core_user.id" in s]
    assert len(lookups) == 1 and "core_device" in lookups[0] and "core_user" in lookups[0], lookups
    taken = recorder.named("vpp_licenses_disassociated")
    assert [p["enrolledSerialNumbers"] for p in taken if device_key[3] in p["serialNumbers"]] == [[device_key[3]]]
    assert [p["mdmUserIds"] for p in taken if user_key[3] in p["clientUserIds"]] == [[user_key[3]]]
    assert_mirror_equals_apple(synced, simulator)


def test_the_holders_the_inventory_knows_are_found_among_many_of_both_kinds(synced: Any) -> None:
    """More holders of each kind than one SQLite statement takes (500 a list): every enrolled
    serial and every MDM user among them is found, none of the others, whichever list is longer."""
    from mdm_core.inventory import add_device, add_user
    from plugins.vpp.sync.events import known_holders

    add_device(synced, "C-KNOWN-1", "iOS")
    add_device(synced, "C-KNOWN-2", "iOS")
    add_user(synced, "u-known", email="known@example.org")
    serials = [f"C-{n:04}" for n in range(1200)] + ["C-KNOWN-2", "C-KNOWN-1"]
    users = ["u-known"] + [f"u-{n:04}" for n in range(600)]
    with synced.db.session() as session:
        assert known_holders(session, serials, users) == ({"C-KNOWN-1", "C-KNOWN-2"}, {"u-known"})
        assert known_holders(session, users[:3], serials[-3:]) == (set(), set())
        assert known_holders(session, [], users) == (set(), {"u-known"})


def test_an_incremental_sync_writes_its_mirror_events_at_once_in_their_order(synced: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The events of an incremental sync's changes (assets changed, users added, changed and
    retired, licenses associated and taken back) reach the outbox by one write (a COPY on
    PostgreSQL), then the sync's report by another: the apply wrote them by one per kind (seven
    here, each a COPY with its own round trips). Their order in the outbox (the delivery's) is
    the one they were recorded in."""
    from sqlalchemy import select

    from mdm_core.db.typed import table_of
    from mdm_core.models import OutboxEvent

    simulator.mutate_fraction(0.3, seed=11)
    outbox = table_of(OutboxEvent)
    with synced.db.session() as session:
        last = session.execute(select(outbox.c.seq).order_by(outbox.c.seq.desc()).limit(1)).scalar_one()
    writes: list[list[str]] = []
    record_rows = synced.events.record_rows

    def counted(session: Any, rows: list[dict[str, Any]]) -> int:
        writes.append([r["name"] for r in rows])
        return record_rows(session, rows)

    monkeypatch.setattr(synced.events, "record_rows", counted)
    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    users = report["counts"]["users"]
    assert users["added"] and users["changed"] and users["retired"], users
    assert len(writes) == 2, [sorted(set(w)) for w in writes]
    assert writes[1] == ["vpp_sync_finished"]
    with synced.db.session() as session:
        names = list(session.execute(select(outbox.c.name).where(outbox.c.seq > last).order_by(outbox.c.seq)).scalars())
    assert names == writes[0] + writes[1]
    kinds = [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]  # each kind's events together, in the apply's order
    assert kinds == [
        "vpp_assets_changed",
        "vpp_users_added",
        "vpp_users_changed",
        "vpp_users_retired",
        "vpp_licenses_associated",
        "vpp_licenses_disassociated",
        "vpp_sync_finished",
    ], kinds
    assert_mirror_equals_apple(synced, simulator)


def test_an_incremental_sync_reads_its_new_and_changed_users_by_one_statement(synced: Any, simulator: Any) -> None:
    """The staged users of an incremental sync that are new or changed are read by one
    statement (two joined the stage with the mirror twice, one per kind), the new ones first:
    the users' events are those of the change, added before changed and retired."""
    from sqlalchemy import select

    from mdm_core.db.typed import table_of
    from mdm_core.models import OutboxEvent

    summary = simulator.mutate_fraction(0.3, seed=11)
    outbox = table_of(OutboxEvent)
    with synced.db.session() as session:
        last = session.execute(select(outbox.c.seq).order_by(outbox.c.seq.desc()).limit(1)).scalar_one()
    with recorded_statements(synced.db.write_engine) as statements:
        report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    reads = [s for s in statements if s.sql.replace('"', "").startswith("SELECT vpp_stage_user.client_user_id")]
    assert len(reads) == 1, [s.sql for s in reads]
    with synced.db.session() as session:
        rows = session.execute(
            select(outbox.c.name, outbox.c.payload).where(outbox.c.seq > last, outbox.c.name.like("vpp_users_%")).order_by(outbox.c.seq)
        ).all()
    users: dict[str, list[str]] = {}
    for name, payload in rows:
        users.setdefault(name, []).extend(u["clientUserId"] for u in payload["users"])
    assert [name for name, _ in rows] == sorted((name for name, _ in rows), key=["vpp_users_added", "vpp_users_changed", "vpp_users_retired"].index)
    assert (len(users["vpp_users_added"]), len(users["vpp_users_changed"]), len(users["vpp_users_retired"])) == (
        summary["users_created"],
        summary["users_updated"],
        summary["users_retired"],
    )
    assert all(u.startswith("user-new-") for u in users["vpp_users_added"])
    assert users["vpp_users_added"] == sorted(users["vpp_users_added"])
    assert_mirror_equals_apple(synced, simulator)


def test_an_incremental_sync_writes_the_changed_assets_platforms(synced: Any, simulator: Any) -> None:
    """Changed assets whose platforms Apple now lists differently (several distinct lists, one
    shared by two assets) are written with them, by the one statement that writes the changed
    assets (on PostgreSQL each names its list by its place among the distinct ones)."""
    state = simulator.state
    keys = sorted(state.assets)[:4]
    lists = [("iOS", "macOS"), ("tvOS",), ("iOS", "macOS"), ("visionOS", 'w"eird\\OS')]
    with state.lock:
        for key, platforms in zip(keys, lists, strict=True):
            state.assets[key].platforms = platforms
            state.assets[key].total += 1
        state._bump("assets")
    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    assert report["counts"]["assets"]["changed"] == 4, report["counts"]
    stored = {key: mirror_state(synced, "school")["assets"][key]["supportedPlatforms"] for key in keys}
    assert stored == {key: sorted(p) for key, p in zip(keys, lists, strict=True)}
    assert_mirror_equals_apple(synced, simulator)


def test_an_incremental_sync_takes_its_new_licenses_from_the_statement_that_inserts_them(synced: Any, simulator: Any) -> None:
    """The licenses an incremental sync adds are the rows its insert of the staged licenses
    inserted (``RETURNING``): no statement of its own reads them first (it joined every staged
    license with the mirror once more); their events name each of them once, with the holders
    the MDM inventory knows (``enrolledSerialNumbers``, ``mdmUserIds``), and the mirror is Apple's."""
    from mdm_core.inventory import add_device, add_user
    from plugins.vpp.simulator import USER

    summary = simulator.mutate_fraction(0.3, seed=11)
    assert summary["assignments_added"]
    state = simulator.state
    adam_id, pricing = next(key for key, asset in sorted(state.assets.items()) if asset.device_assignable and asset.available >= 2)
    user = next(u for u in sorted(state.users.record_ids()) if state._user_can_receive(u) and (adam_id, pricing, USER, u) not in state.assignments)
    add_device(synced, "C-NEW-KNOWN", "iOS")
    add_user(synced, user, email="known@example.org")
    assert simulator.assign_in_portal(adam_id, pricing, serial_number="C-NEW-KNOWN")
    assert simulator.assign_in_portal(adam_id, pricing, client_user_id=user)
    before = mirror_state(synced)["assignments"]
    report, flat, recorder = heard_sync(synced)
    first_read = [s for s in flat if s.startswith("SELECT") and "FROM vpp_stage_license" in s and "core_device" in s]  # with their known holders
    assert not first_read, first_read
    added = recorder.named("vpp_licenses_associated")
    targets = [(p["adamId"], p["pricingParam"], t) for p in added for t in p["serialNumbers"] + p["clientUserIds"]]
    assert sorted(targets) == sorted((a, p, t) for a, p, _, t in set(mirror_state(synced)["assignments"]) - set(before))
    assert len(targets) == len(set(targets)) == report["counts"]["licenses"]["added"]
    assert [p["enrolledSerialNumbers"] for p in added if "C-NEW-KNOWN" in p["serialNumbers"]] == [["C-NEW-KNOWN"]]
    assert [p["mdmUserIds"] for p in added if user in p["clientUserIds"]] == [[user]]
    assert all(p["serialNumbers"] == sorted(p["serialNumbers"]) and p["clientUserIds"] == sorted(p["clientUserIds"]) for p in added)
    assert_mirror_equals_apple(synced, simulator)


def test_an_incremental_sync_writes_its_new_and_changed_users_by_one_statement(synced: Any, simulator: Any) -> None:
    """The staged users of an incremental sync reach the mirror by one statement: each new one
    inserted, each mirrored one that differs updated (an INSERT of the new ones and an UPDATE
    of the changed ones joined the stage with the mirror once each); the users that did not
    change keep their row (``updated_at`` as before), and the mirror is Apple's."""
    from sqlalchemy import select

    from mdm_core.db.typed import table_of
    from plugins.vpp.models import VppUser

    summary = simulator.mutate_fraction(0.3, seed=11)
    assert summary["users_created"] and summary["users_updated"] and summary["users_retired"], summary
    users = table_of(VppUser)
    stamps = select(users.c.client_user_id, users.c.updated_at)
    with synced.db.session() as session:
        before = {user: at for user, at in session.execute(stamps)}
    with recorded_statements(synced.db.write_engine) as statements:
        report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    writes = [s.sql.replace('"', "") for s in statements if s.sql.replace('"', "").startswith(("INSERT INTO vpp_user ", "UPDATE vpp_user "))]
    assert len(writes) == 1 and "ON CONFLICT" in writes[0], writes
    with synced.db.session() as session:
        after = {user: at for user, at in session.execute(stamps)}
    written = {user for user, at in after.items() if before.get(user) != at}
    counts = report["counts"]["users"]
    expected = summary["users_created"] + summary["users_updated"] + summary["users_retired"]
    assert len(written) == counts["added"] + counts["changed"] + counts["retired"] == expected, (len(written), counts, summary)
    assert_mirror_equals_apple(synced, simulator)


def test_an_incremental_sync_drops_its_staged_rows_by_one_statement_on_postgresql(synced: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's staged licenses and users are deleted before the commit, counted for the
    vacuum after it (``cleared``): on PostgreSQL by one statement for both tables (a statement
    per table took a round trip each), on SQLite as before; no staged row is left."""
    from sqlalchemy import func, select

    from plugins.vpp.sync import apply, read

    staged: dict[str, int] = {}
    real_delete: Any = apply.MirrorUpdate._delete_stage

    def counting(self: Any, session: Any, *args: Any) -> None:
        for table in (read.SL, read.SU):
            staged.setdefault(table.name, session.execute(select(func.count()).select_from(table).where(table.c.run_id == self.run_id)).scalar_one())
        real_delete(self, session, *args)

    cleared: list[dict[str, int]] = []

    def vacuumed(host: Host, counts: dict[str, int]) -> list[str]:
        cleared.append(dict(counts))
        return []

    monkeypatch.setattr(apply.MirrorUpdate, "_delete_stage", counting)
    monkeypatch.setattr(apply, "vacuum_stage", vacuumed)
    summary = simulator.mutate_fraction(0.3, seed=11)
    assert summary["assignments_added"] and summary["users_created"], summary
    with recorded_statements(synced.db.write_engine) as statements:
        report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    assert staged["vpp_stage_license"] and staged["vpp_stage_user"], staged
    assert cleared == [staged]
    with synced.db.session() as session:
        assert [session.execute(select(func.count()).select_from(t)).scalar_one() for t in (read.SL, read.SU)] == [0, 0]
    both = [s.sql for s in statements if "DELETE FROM" in s.sql and "vpp_stage_license" in s.sql and "vpp_stage_user" in s.sql]
    assert len(both) == (0 if synced.db.is_sqlite else 1), both
    assert_mirror_equals_apple(synced, simulator)
