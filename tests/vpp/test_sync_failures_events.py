"""A failing sync changes nothing; events are delivered after commit, with full payloads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from mdm_core.inventory import add_device, add_user
from mdm_core.models import OutboxEvent
from plugins.vpp.models import VppStageLicense, VppStageUser, VppSyncRun
from plugins.vpp.simulator import DEVICE, USER
from plugins.vpp.sync.run import recent_runs, sync_account
from plugins.vpp.testing import apple_state, assert_mirror_equals_apple, mirror_state

from .conftest import account_row


def _stage_rows(host: Any) -> int:
    with host.db.session() as session:
        return sum(session.execute(select(func.count()).select_from(t)).scalar_one() for t in (VppStageLicense, VppStageUser))


def test_fault_on_users_page_2_keeps_version_and_mirror(synced: Any, simulator: Any, recorder: Any) -> None:
    before_mirror = mirror_state(synced)
    before = account_row(synced)
    for i in range(3):
        simulator.create_user(f"user-extra-{i}")
    simulator.faults.add("server_error", endpoint="users", after=1, retry_after=0)
    report = sync_account(synced, "school", full=True)
    assert report["status"] == "error"
    assert report["error_type"] == "ServerError"
    after = account_row(synced)
    assert after.users_version_id == before.users_version_id
    assert after.assignments_version_id == before.assignments_version_id
    assert after.last_full_sync_at == before.last_full_sync_at
    assert mirror_state(synced) == before_mirror
    assert _stage_rows(synced) == 0
    simulator.faults.clear()
    assert sync_account(synced, "school")["status"] == "ok"
    assert_mirror_equals_apple(synced, simulator)


def test_failure_on_last_assignments_page_changes_nothing(school: Any, simulator: Any, recorder: Any) -> None:
    pages = -(-len(simulator.snapshot()["assignments"]) // 7)
    assert pages > 2
    simulator.faults.add("server_error", endpoint="assignments", after=pages - 1, retry_after=0)
    report = sync_account(school, "school")
    assert report["status"] == "error" and report["mode"] == "full"
    assert report["error"] and "\n" not in report["error"]
    assert mirror_state(school) == {"assets": {}, "assignments": set(), "users": {}}
    assert _stage_rows(school) == 0
    # the run is recorded with its error
    runs = recent_runs(school, "school")
    assert runs[0]["status"] == "error" and runs[0]["error"] == report["error"] and runs[0]["error_type"] == "ServerError"
    assert account_row(school).last_sync_result.startswith("error: ")
    assert account_row(school).assignments_version_id is None
    # no mirror event was announced, only the failed sync
    assert recorder.names() == ["vpp_sync_finished"]
    assert recorder.named("vpp_sync_finished")[0]["status"] == "error"


def test_events_are_delivered_after_commit(school: Any, simulator: Any, recorder: Any) -> None:
    seen_committed: list[int] = []

    def check(host: Any, event: Any) -> None:
        # when a subscriber runs, the mirror is already committed (read from another session)
        seen_committed.append(len(host.pm.hook.mdm_vpp_assets(host=host, account="school")))

    class Probe:
        from mdm_core import hookimpl

        @hookimpl
        def mdm_vpp_assets_added(self, host: Any, event: Any) -> None:
            check(host, event)

    school.pm.register(Probe())
    sync_account(school, "school")
    assert seen_committed == [len(simulator.snapshot()["assets"])]
    with school.db.session() as session:
        pending = session.execute(select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.delivered_at).is_(None))).scalar_one()
    assert pending == 0


def test_sync_event_payloads(school: Any, simulator: Any, recorder: Any) -> None:
    sync_account(school, "school")
    apple = simulator.snapshot()
    added = [a for p in recorder.named("vpp_assets_added") for a in p["assets"]]
    assert {(a["adamId"], a["pricingParam"]) for a in added} == set(apple["assets"])
    sample = added[0]
    assert sample["account"] == "school"
    assert {k: v for k, v in sample.items() if k not in ("account", "supportedPlatforms")} == {
        k: v for k, v in apple["assets"][(sample["adamId"], sample["pricingParam"])].items() if k != "supportedPlatforms"
    }
    users = [u for p in recorder.named("vpp_users_added") for u in p["users"]]
    assert {u["clientUserId"] for u in users} == set(apple["users"])
    assert all(p["account"] == "school" for p in recorder.named("vpp_users_added"))
    assoc = recorder.named("vpp_licenses_associated")
    got = {(p["adamId"], p["pricingParam"], DEVICE, s) for p in assoc for s in p["serialNumbers"]}
    got |= {(p["adamId"], p["pricingParam"], USER, c) for p in assoc for c in p["clientUserIds"]}
    assert got == set(apple["assignments"])
    assert all(p["source"] == "sync" for p in assoc)
    finished = recorder.named("vpp_sync_finished")
    assert len(finished) == 1 and finished[0]["status"] == "ok" and finished[0]["mode"] == "full"
    assert recorder.names()[-1] == "vpp_sync_finished"


def test_incremental_event_payloads(synced: Any, simulator: Any, recorder: Any) -> None:
    sim = simulator
    mirror = mirror_state(synced)
    # enrol one device and one MDM user so they show in the events and views
    device_key = next(k for k in sorted(mirror["assignments"]) if k[2] == DEVICE)
    add_device(synced, device_key[3], "iOS")
    user_key = next(k for k in sorted(mirror["assignments"]) if k[2] == USER)
    add_user(synced, user_key[3], email="someone@example.org")
    recorder.clear()

    sim.remove_in_portal(device_key[0], device_key[1], serial_number=device_key[3])
    assert sim.remove_in_portal(user_key[0], user_key[1], client_user_id=user_key[3])
    new_key = sim.purchase(count=4)
    sim.assign_in_portal(new_key[0], new_key[1], serial_number=device_key[3])
    refunded = next(k for k in sorted(sim.snapshot()["assets"]) if k != new_key and k[0] != device_key[0] and k[0] != user_key[0])
    sim.remove_asset(*refunded)
    retiree = next(cid for cid, u in sorted(mirror["users"].items()) if u["status"] == "Associated" and cid != user_key[3])
    sim.retire_user(retiree)
    sim.create_user("user-new-x", email="new@example.org")
    registered = next(cid for cid, u in sorted(mirror["users"].items()) if u["status"] == "Registered")
    sim.accept_invite(registered)

    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental"
    assert_mirror_equals_apple(synced, sim)

    added = recorder.named("vpp_assets_added")
    assert [a["adamId"] for p in added for a in p["assets"]] == [new_key[0]]
    removed = recorder.named("vpp_assets_removed")
    assert [(a["adamId"], a["pricingParam"]) for p in removed for a in p["assets"]] == [refunded]
    changed = {a["adamId"] for p in recorder.named("vpp_assets_changed") for a in p["assets"]}
    assert device_key[0] in changed and user_key[0] in changed

    assoc = [p for p in recorder.named("vpp_licenses_associated") if p["adamId"] == new_key[0]]
    assert assoc and assoc[0]["serialNumbers"] == [device_key[3]]
    assert assoc[0]["enrolledSerialNumbers"] == [device_key[3]]
    dis = recorder.named("vpp_licenses_disassociated")
    dev = [p for p in dis if p["adamId"] == device_key[0] and device_key[3] in p["serialNumbers"]]
    assert dev and dev[0]["enrolledSerialNumbers"] == [device_key[3]] and dev[0]["account"] == "school"
    usr = [p for p in dis if p["adamId"] == user_key[0] and user_key[3] in p["clientUserIds"]]
    assert usr and usr[0]["mdmUserIds"] == [user_key[3]]
    assert any(refunded[0] == p["adamId"] for p in dis), "the refunded asset's licenses are disassociated"

    retired = [u for p in recorder.named("vpp_users_retired") for u in p["users"]]
    assert [u["clientUserId"] for u in retired] == [retiree] and retired[0]["status"] == "Retired"
    new_users = [u for p in recorder.named("vpp_users_added") for u in p["users"]]
    assert [u["clientUserId"] for u in new_users] == ["user-new-x"]
    assert new_users[0]["inviteCode"] and new_users[0]["status"] == "Registered"
    changed_users = [u for p in recorder.named("vpp_users_changed") for u in p["users"]]
    assert [(u["clientUserId"], u["status"]) for u in changed_users] == [(registered, "Associated")]
    assert changed_users[0]["idHash"]

    # views link licenses to the enrolled device and the MDM user
    rows = synced.pm.hook.mdm_vpp_licenses(
        host=synced, account=None, adam_id=None, serial_number=device_key[3], client_user_id=None, serial_numbers=None, client_user_ids=None
    )
    assert rows and all(r["enrolled"] is True for r in rows)
    others = synced.pm.hook.mdm_vpp_licenses(
        host=synced, account="school", adam_id=None, serial_number=None, client_user_id=None, serial_numbers=None, client_user_ids=None
    )
    assert any(r.get("enrolled") is False for r in others)
    user_rows = [r for r in synced.pm.hook.mdm_vpp_users(host=synced, account="school", client_user_ids=None) if r["clientUserId"] == user_key[3]]
    assert user_rows[0]["mdmUser"] == user_key[3]
    linked = synced.pm.hook.mdm_vpp_licenses(
        host=synced, account="school", adam_id=None, serial_number=None, client_user_id=user_key[3], serial_numbers=None, client_user_ids=None
    )
    assert all(r["mdmUser"] == user_key[3] for r in linked)


def test_sync_run_records(synced: Any) -> None:
    with synced.db.session() as session:
        runs = list(session.execute(select(VppSyncRun)).scalars())
    assert len(runs) == 1 and runs[0].status == "ok" and runs[0].pages > 0 and runs[0].trigger == "manual"


def test_data_changing_while_paging_is_read_to_the_end(synced: Any, simulator: Any) -> None:
    """Issue 12 point 2: the first page's versionId is kept (Apple's rule); what changed while
    paging is read too, so the full sync still ends equal to Apple."""
    first = simulator.versions()["users"]
    simulator.faults.add("version_change", endpoint="users", count=1)
    simulator.faults.add("version_change", endpoint="assignments", count=1)
    report = sync_account(synced, "school", full=True)
    assert report["status"] == "ok", report
    mirror, apple = mirror_state(synced), apple_state(simulator)
    assert mirror["users"] == apple["users"] and mirror["assignments"] == apple["assignments"]
    assert account_row(synced).users_version_id == first != simulator.versions()["users"]
    # the change made after /assets was read shows in the counts at the next sync
    assert sync_account(synced, "school")["status"] == "ok"
    assert_mirror_equals_apple(synced, simulator)


def test_data_that_keeps_changing_still_syncs_and_loses_nothing(synced: Any, simulator: Any) -> None:
    """Issue 12 point 2: a versionId that changes at every page no longer fails the sync (it
    failed after four restarts before); the first page's versionId is kept, no user is lost,
    and the next sync picks up what changed meanwhile."""
    before = set(apple_state(simulator)["users"])
    simulator.faults.add("version_change", endpoint="users")
    report = sync_account(synced, "school", full=True)
    assert report["status"] == "ok", report
    assert before <= set(mirror_state(synced)["users"])
    assert _stage_rows(synced) == 0
    simulator.faults.clear()
    report = sync_account(synced, "school")
    assert (report["status"], report["mode"]) == ("ok", "incremental")
    assert_mirror_equals_apple(synced, simulator)


def test_error_inside_the_final_transaction_rolls_everything_back(synced: Any, simulator: Any, recorder: Any, monkeypatch: Any) -> None:
    """Assets and users are applied first; a failure applying licenses undoes them too."""
    from plugins.vpp.sync import apply

    before, row = mirror_state(synced), account_row(synced)
    simulator.purchase(count=2)
    simulator.create_user("user-rollback")
    simulator.remove_in_portal(
        *next((a, p) for a, p, k, t in sorted(before["assignments"]) if k == DEVICE),
        serial_number=next(t for a, p, k, t in sorted(before["assignments"]) if k == DEVICE),
    )

    def boom(self: Any, session: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(apply.MirrorUpdate, "_apply_licenses", boom)
    report = sync_account(synced, "school")
    assert report["status"] == "error" and "disk on fire" in report["error"]
    assert mirror_state(synced) == before
    after = account_row(synced)
    assert (after.users_version_id, after.assignments_version_id) == (row.users_version_id, row.assignments_version_id)
    assert recorder.names() == ["vpp_sync_finished"]
    assert _stage_rows(synced) == 0
    monkeypatch.undo()
    assert sync_account(synced, "school")["status"] == "ok"
    assert_mirror_equals_apple(synced, simulator)
    assert "vpp_assets_added" in recorder.names() and "vpp_users_added" in recorder.names()
