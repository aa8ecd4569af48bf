"""Issue 12 on the VPP side, against the simulator: transient failures inside Apple's events
(9603) are sent again, success is confirmed (numCompleted, assignments), Apple's revoke for
a device or a user, VPP users following MDM users (users/update, users/retire), and the
account commands (--service-url, remove asking first)."""

from __future__ import annotations

from typing import Any

from mdm_core import inventory
from mdm_core.host import Host
from mdm_core.testing import EventRecorder as Recorder
from plugins.vpp.testing import assert_mirror_equals_apple


def _free_app(sim: Any) -> tuple[str, str]:
    for (adam_id, pricing), asset in sim.snapshot()["assets"].items():
        if asset["productType"] == "App" and asset["deviceAssignable"] and asset["revocable"] and asset["availableCount"] > 2:
            return adam_id, pricing
    raise AssertionError("no asset with licenses left")


def _free_serial(sim: Any, adam_id: str) -> str:
    held = {t[3] for t in sim.snapshot()["assignments"] if t[0] == adam_id}
    return next(s for s in sim.state.device_serials() if s not in held)


def _associate(host: Host, adam_id: str, pricing: str, serials: list[str], wait: float = 5) -> dict[str, Any]:
    return host.pm.hook.mdm_vpp_associate(
        host=host, account="school", adam_id=adam_id, pricing_param=pricing, serial_numbers=serials, client_user_ids=[], wait=wait
    )


def test_an_internal_error_inside_the_event_is_sent_again_not_reported_final(synced: Host, simulator: Any, skipped_waits: Any) -> None:
    adam_id, pricing = _free_app(simulator)
    serial = _free_serial(simulator, adam_id)
    simulator.fail_next_event("ASSOCIATE", 9603)  # Apple's event FAILs naming the serial, with 9603
    result = _associate(synced, adam_id, pricing, [serial])
    assert result["status"] == "COMPLETE" and result["succeeded"]["serialNumbers"] == [serial] and not result["failed"]
    assert len(result["event_ids"]) == 2  # the second round did it
    assert skipped_waits.waits  # after a back-off
    assert (adam_id, pricing, "serialNumber", serial) in simulator.snapshot()["assignments"]
    assert_mirror_equals_apple(synced, simulator)


def test_an_event_that_did_less_than_asked_is_not_believed(synced: Host, simulator: Any) -> None:
    adam_id, pricing = _free_app(simulator)
    serial = _free_serial(simulator, adam_id)
    simulator.fail_next_event("ASSOCIATE", silent=True)  # COMPLETE, no failures, numCompleted 0
    result = _associate(synced, adam_id, pricing, [serial])
    # Apple shows no license for it: not a success (it was one before), asked again later
    assert result["succeeded"]["serialNumbers"] == [] and result["pending"]["serialNumbers"] == [serial]
    assert result["status"] == "PENDING"
    assert_mirror_equals_apple(synced, simulator)


def test_revoke_takes_back_licenses_granted_since_the_last_sync(synced: Host, simulator: Any, recorder: Recorder) -> None:
    adam_id, pricing = _free_app(simulator)
    serial = _free_serial(simulator, adam_id)
    other = next(k for k, a in simulator.snapshot()["assets"].items() if k != (adam_id, pricing) and a["deviceAssignable"] and a["revocable"])
    _associate(synced, adam_id, pricing, [serial])
    simulator.assign_in_portal(other[0], other[1], serial_number=serial)  # after the last sync: not in the mirror
    recorder.clear()
    result = synced.pm.hook.mdm_vpp_revoke(host=synced, account="school", serial_numbers=[serial], client_user_ids=[], wait=5, quick=False)
    assert result["status"] == "COMPLETE" and result["succeeded"]["serialNumbers"] == [serial]
    assert not [t for t in simulator.snapshot()["assignments"] if t[3] == serial]  # both went back
    events = {e["adamId"]: e for e in recorder.named("vpp_licenses_disassociated")}
    assert (events[adam_id]["serialNumbers"], events[adam_id]["source"]) == ([serial], "request")
    assert other[0] not in events  # the mirror never knew it; Apple's revoke took it all the same
    held = synced.pm.hook.mdm_vpp_licenses(
        host=synced, account="school", adam_id=None, serial_number=serial, client_user_id=None, serial_numbers=None, client_user_ids=None
    )
    assert held == []


def test_vpp_users_follow_mdm_users_and_can_be_retired_by_hand(synced: Host, simulator: Any, cli: Any, recorder: Recorder) -> None:
    inventory.add_user(synced, "pupil-1", email="pupil@example.com", managed_apple_id="pupil@school.example.com")
    assert synced.pm.hook.mdm_vpp_update_users(host=synced, mdm_user_ids=["pupil-1"], account=None, wait=5) == []  # not a VPP user yet
    code, out, err = cli("vpp", "users", "register", "pupil-1", "--account", "school")
    assert code == 0, err
    recorder.clear()
    # the MDM user's e-mail changes: Apple is told (users/update), the mirror follows
    code, out, err = cli("users", "set", "pupil-1", "--email", "new.pupil@example.com")
    assert code == 0, err
    assert simulator.state.user("pupil-1")["email"] == "new.pupil@example.com"
    assert [u["email"] for u in synced.pm.hook.mdm_vpp_users(host=synced, account="school", client_user_ids=["pupil-1"])] == ["new.pupil@example.com"]

    adam_id, pricing = _free_app(simulator)
    assert (
        synced.pm.hook.mdm_vpp_associate(
            host=synced, account="school", adam_id=adam_id, pricing_param=pricing, serial_numbers=[], client_user_ids=["pupil-1"], wait=5
        )["status"]
        == "COMPLETE"
    )
    code, out, err = cli("vpp", "users", "retire", "pupil-1")
    assert code == 0, err
    assert out.strip() == "pupil-1: retired in school"
    assert simulator.state.user("pupil-1")["status"] == "Retired"
    assert not [t for t in simulator.snapshot()["assignments"] if t[3] == "pupil-1"]  # its revocable license went back
    assert [u["status"] for u in synced.pm.hook.mdm_vpp_users(host=synced, account="school", client_user_ids=["pupil-1"])] == ["Retired"]
    assert_mirror_equals_apple(synced, simulator)
    code, out, err = cli("vpp", "users", "retire", "pupil-1")
    assert code == 1 and "not a live VPP user" in out
    assert synced.pm.hook.mdm_vpp_retire_users(host=synced, client_user_ids=["nobody"], account=None, wait=1)[0]["status"] == "unknown"


def test_account_service_url_can_be_changed_after_a_check(synced: Host, simulator: Any, cli: Any) -> None:
    from plugins.vpp.simulator import Simulator

    moved = simulator.base_url.replace("127.0.0.1", "localhost")
    code, out, err = cli("vpp", "account", "set", "school", "--service-url", moved)
    assert code == 0, err
    assert f"service {moved}" in out
    assert [a["service_url"] for a in synced.pm.hook.mdm_vpp_accounts(host=synced)] == [moved]
    with Simulator(seed=99, assets=2, devices=2, users=2, async_delay=0) as elsewhere:  # another location's service
        code, out, err = cli("vpp", "account", "set", "school", "--service-url", elsewhere.base_url)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert [a["service_url"] for a in synced.pm.hook.mdm_vpp_accounts(host=synced)] == [moved]
    code, out, err = cli("vpp", "account", "set", "school", "--service-url", "ftp:/nowhere")
    assert code == 2 and "is not an http(s) URL" in err


def test_account_remove_asks_first_and_has_a_dry_run(synced: Host, cli: Any) -> None:
    code, out, err = cli("vpp", "account", "remove", "school", "--dry-run")
    assert code == 0 and out.startswith("would remove account school and its mirror (")
    code, out, err = cli("vpp", "account", "remove", "school")  # no terminal, no --yes
    assert code == 2 and "add --yes" in err
    assert [a["name"] for a in synced.pm.hook.mdm_vpp_accounts(host=synced)] == ["school"]
    assert cli("vpp", "account", "remove", "school", "--yes")[0] == 0


def test_a_users_update_that_apple_refuses_is_sent_again_by_the_failed_deliveries_retry(synced: Host, simulator: Any, cli: Any, skipped_waits: Any) -> None:
    """The MDM user's change is kept even when Apple fails; the subscriber's failure is recorded
    and the host's retry of failed deliveries sends the users/update again once Apple answers."""
    from datetime import timedelta

    from sqlalchemy import select

    from mdm_core.models import SubscriberFailure, utcnow

    inventory.add_user(synced, "pupil-2", email="old@example.com")
    assert cli("vpp", "users", "register", "pupil-2", "--account", "school")[0] == 0
    simulator.faults.add("server_error", endpoint="users/update", status=503, retry_after=0)  # every try
    code, out, err = cli("users", "set", "pupil-2", "--email", "moved@example.com")
    assert code == 0, err  # the inventory changed; Apple's side follows later
    assert simulator.state.user("pupil-2")["email"] == "old@example.com"
    with synced.db.session() as session:
        [failure] = session.execute(select(SubscriberFailure)).scalars().all()
        assert (failure.plugin, failure.status) == ("vpp", "retrying")
    simulator.faults.clear()
    assert synced.events.retry_due(now=utcnow() + timedelta(minutes=2)) == (1, 0)
    assert simulator.state.user("pupil-2")["email"] == "moved@example.com"
    assert [u["email"] for u in synced.pm.hook.mdm_vpp_users(host=synced, account="school", client_user_ids=["pupil-2"])] == ["moved@example.com"]
