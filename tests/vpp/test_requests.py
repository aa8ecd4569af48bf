"""The VPP plugin's request hooks, called as other plugins call them, against the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from mdm_core import inventory
from mdm_core.errors import MdmError, TemporaryError
from mdm_core.host import Host
from mdm_core.testing import EventRecorder
from plugins.vpp.testing import assert_mirror_equals_apple

from .conftest import account_row


def _asset(sim: Any, **wanted: Any) -> tuple[str, str, dict[str, Any]]:
    for (adam_id, pricing), asset in sim.snapshot()["assets"].items():
        if all(asset[k] == v for k, v in wanted.items()) and asset["availableCount"] > 1:
            return adam_id, pricing, asset
    raise AssertionError(f"no asset with {wanted}")


def _associate(host: Host, adam_id: str, pricing: str, serials: list[str] = [], users: list[str] = [], wait: float = 5) -> dict[str, Any]:  # noqa: B006
    return host.pm.hook.mdm_vpp_associate(
        host=host, account="school", adam_id=adam_id, pricing_param=pricing, serial_numbers=serials, client_user_ids=users, wait=wait
    )


def test_associate_devices_follows_the_event_and_updates_the_mirror(synced: Host, simulator: Any, recorder: EventRecorder) -> None:
    adam_id, pricing, asset = _asset(simulator, deviceAssignable=True, productType="App")
    held = {a[3] for a in simulator.snapshot()["assignments"] if a[:2] == (adam_id, pricing) and a[2] == "serialNumber"}
    serial = next(s for s in simulator.state.device_serials() if s not in held)
    inventory.add_device(synced, serial, "iOS")

    result = _associate(synced, adam_id, pricing, serials=[serial])

    assert result["status"] == "COMPLETE" and result["succeeded"]["serialNumbers"] == [serial] and not result["failed"]
    assert (adam_id, pricing, "serialNumber", serial) in simulator.snapshot()["assignments"]
    assert_mirror_equals_apple(synced, simulator)  # counts moved the same way on both sides
    [event] = recorder.named("vpp_licenses_associated")
    assert (event["source"], event["serialNumbers"], event["enrolledSerialNumbers"]) == ("request", [serial], [serial])


def test_not_enough_licenses_fails_per_device_with_apples_reason(synced: Host, simulator: Any) -> None:
    adam_id, pricing, asset = _asset(simulator, deviceAssignable=True, productType="App")
    held = {a[3] for a in simulator.snapshot()["assignments"] if a[:2] == (adam_id, pricing)}
    free = [s for s in simulator.state.device_serials() if s not in held][: asset["availableCount"] + 2]

    result = _associate(synced, adam_id, pricing, serials=free)

    assert result["status"] == "FAILED"
    assert len(result["succeeded"]["serialNumbers"]) == asset["availableCount"]
    assert {f["errorNumber"] for f in result["failed"]} == {9709} and len(result["failed"]) == 2
    assert_mirror_equals_apple(synced, simulator)


def test_user_without_vpp_record_fails_with_9609(synced: Host, simulator: Any) -> None:
    adam_id, pricing, _ = _asset(simulator, productType="App")
    result = _associate(synced, adam_id, pricing, users=["nobody-here"])
    assert result["status"] == "FAILED" and result["failed"][0]["clientUserId"] == "nobody-here"
    assert result["failed"][0]["errorNumber"] == 9609 and not result["succeeded"]["clientUserIds"]


def test_disassociate_reclaims_and_irrevocable_is_refused_without_calling_apple(synced: Host, simulator: Any, recorder: EventRecorder) -> None:
    revocable = next(a for a in simulator.snapshot()["assignments"] if a[2] == "serialNumber" and simulator.snapshot()["assets"][(a[0], a[1])]["revocable"])
    result = synced.pm.hook.mdm_vpp_disassociate(
        host=synced, account="school", adam_id=revocable[0], pricing_param=revocable[1], serial_numbers=[revocable[3]], client_user_ids=[], wait=5
    )
    assert result["status"] == "COMPLETE" and revocable not in simulator.snapshot()["assignments"]
    assert recorder.named("vpp_licenses_disassociated")[0]["serialNumbers"] == [revocable[3]]
    assert_mirror_equals_apple(synced, simulator)

    irrevocable = next(a for a in simulator.snapshot()["assignments"] if not simulator.snapshot()["assets"][(a[0], a[1])]["revocable"])
    counter = simulator.faults.add("slow", seconds=0)
    with pytest.raises(MdmError, match="irrevocable"):
        synced.pm.hook.mdm_vpp_disassociate(
            host=synced,
            account="school",
            adam_id=irrevocable[0],
            pricing_param=irrevocable[1],
            serial_numbers=[irrevocable[3]] if irrevocable[2] == "serialNumber" else [],
            client_user_ids=[irrevocable[3]] if irrevocable[2] == "clientUserId" else [],
            wait=5,
        )
    assert counter.seen == 0


def test_apple_unreachable_is_a_temporary_error(synced: Host, simulator: Any, skipped_waits: Any) -> None:
    adam_id, pricing, _ = _asset(simulator, deviceAssignable=True, productType="App")
    simulator.faults.add("drop")
    with pytest.raises(TemporaryError, match="try again later"):
        _associate(synced, adam_id, pricing, serials=[simulator.state.device_serials()[0]])


def test_lookup_metadata_returns_names_bundle_ids_and_icons(synced: Host, simulator: Any) -> None:
    apps = [a for (a, _), asset in simulator.snapshot()["assets"].items() if asset["productType"] == "App"]
    found = synced.pm.hook.mdm_vpp_lookup_metadata(host=synced, account="school", adam_ids=apps + ["1"], platform=None)
    assert set(found) == set(apps)  # an id Apple does not know is absent
    sample = found[apps[0]]
    assert sample["name"] and sample["bundleId"] and sample["version"]
    assert sample["iconUrl"].endswith("128x128bb.png")


def test_registering_users_while_apple_is_unreachable_is_a_temporary_error(synced: Host, simulator: Any, skipped_waits: Any) -> None:
    from plugins.vpp.operations import register_users

    inventory.add_user(synced, "new-teacher", email="new-teacher@example.com")
    simulator.faults.add("drop", endpoint="users/create")
    with pytest.raises(TemporaryError, match="cannot reach Apple to register users"):
        register_users(synced, "school", ["new-teacher"], wait=2)
    assert "new-teacher" not in simulator.snapshot()["users"]


def test_registering_users_invites_those_without_a_managed_apple_id(synced: Host, simulator: Any, recorder: EventRecorder) -> None:
    """A Managed Apple ID associates the VPP user at once; without one the user is Registered and
    the invitation URL is both returned and announced (``vpp_user_invited``)."""
    from plugins.vpp.operations import register_users

    inventory.add_user(synced, "new-teacher", email="new-teacher@example.com")
    inventory.add_user(synced, "new-pupil", email="pupil@example.com", managed_apple_id="pupil@school.appleid.com")
    rows = {r["clientUserId"]: r for r in register_users(synced, "school", ["new-teacher", "new-pupil"], wait=5)}
    assert rows["new-pupil"]["status"] == "Associated" and rows["new-pupil"]["invitationUrl"] is None
    teacher = rows["new-teacher"]
    assert teacher["status"] == "Registered" and teacher["invitationUrl"]
    code = simulator.snapshot()["users"]["new-teacher"]["inviteCode"]
    assert code and code in teacher["invitationUrl"]
    assert recorder.named("vpp_user_invited") == [
        {
            "account": "school",
            "accountId": account_row(synced).id,
            "clientUserId": "new-teacher",
            "email": "new-teacher@example.com",
            "invitationUrl": teacher["invitationUrl"],
        }
    ]
    added = {u["clientUserId"]: u for p in recorder.named("vpp_users_added") for u in p["users"]}
    assert set(added) == {"new-teacher", "new-pupil"} and added["new-pupil"]["mdmUser"] == "new-pupil"
    assert_mirror_equals_apple(synced, simulator)
