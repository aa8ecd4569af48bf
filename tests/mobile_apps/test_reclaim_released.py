"""A license Apple has released already is a done reclaim: a removal's revoke that Apple had
not confirmed in time is not shown failed when the job asks again (Apple answers 9610, the
license is not there any more), and is not asked again once the mirror shows it gone."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from mdm_core.inventory import add_device, add_user, remove_device, remove_user
from mdm_core.models import utcnow
from plugins.mobile_apps import reclaims
from plugins.mobile_apps.jobs import reclaim_job
from plugins.mobile_apps.models import Reclaim
from plugins.mobile_apps.reclaims import list_reclaims, reclaim_result
from plugins.mobile_apps.vpp_port import VppPort

from .conftest import fixed_assets, holders, sync


def _removed_while_apple_is_slow(host, simulator, kind: str = "device") -> str:
    """A device (or a user, Associated) holding a license of asset 0, removed while Apple takes
    longer than the removal waits: its revoke is left pending, then Apple carries it out."""
    a = fixed_assets(simulator)[0]
    known = simulator.state.device_serials() if kind == "device" else simulator.state.user_ids("Associated")
    target = sorted(t for t in holders(simulator, a["adamId"]) if t in known)[0]
    if kind == "device":
        add_device(host, target, "iOS")
    else:
        add_user(host, target)
    simulator.state.async_delay = 30.0  # longer than the removal's one quick attempt follows it
    (remove_device if kind == "device" else remove_user)(host, target)
    assert {r["status"] for r in list_reclaims(host) if r["target"] == target} == {"pending"}
    simulator.state.async_delay = 0.0
    with simulator.state.lock:
        simulator.state.process_due(now=time.monotonic() + 60)  # Apple carries the revoke out
    assert target not in holders(simulator, a["adamId"])
    _due_now(host)
    return target


def _due_now(host) -> None:
    host.db.run_write(lambda s: s.execute(update(Reclaim).values(next_attempt_at=utcnow() - timedelta(seconds=1))))


def _revokes_asked(monkeypatch) -> list[list[str]]:
    """The targets of each revoke asked of Apple from now on (the call still goes through)."""
    asked: list[list[str]] = []
    real = VppPort.revoke

    def revoke(port, account, **kwargs):
        asked.append([*kwargs["serial_numbers"], *kwargs["client_user_ids"]])
        return real(port, account, **kwargs)

    monkeypatch.setattr(VppPort, "revoke", revoke)
    return asked


@pytest.mark.slow
@pytest.mark.parametrize("number", [9610, 9619])
def test_a_revoke_asked_again_after_apple_released_the_license_is_done(on_both, simulator, monkeypatch, number):
    """Apple's error list has both 9610 "License not found" and 9619 "License not associated";
    either answer to a take-back means the license is released already."""
    from plugins.vpp.simulator import state

    real = state.failure
    monkeypatch.setattr(state, "failure", lambda n, **info: real(number if n == 9610 else n, **info))
    host, mdm = on_both
    serial = _removed_while_apple_is_slow(host, simulator)
    counts = reclaim_job(host)  # asks Apple again: the license is not there any more
    assert counts["failed"] == 0 and counts["done"] >= 1, counts
    rows = [r for r in list_reclaims(host, everything=True) if r["target"] == serial]
    assert {r["status"] for r in rows} == {"done"}, rows
    assert all(f"released already at Apple (error {number})" in reclaim_result(r) for r in rows), [reclaim_result(r) for r in rows]
    code, out, _ = mdm("apps", "reclaims")
    assert code == 0 and serial not in out  # nothing for the admin to act on


@pytest.mark.slow
def test_a_revoke_the_mirror_shows_done_is_not_asked_again(on_both, simulator, monkeypatch):
    host, _ = on_both
    serial = _removed_while_apple_is_slow(host, simulator)
    sync(host)  # the mirror learns the license is gone
    asked = _revokes_asked(monkeypatch)
    counts = reclaim_job(host)
    assert asked == [] and counts["failed"] == 0, (asked, counts)
    rows = [r for r in list_reclaims(host, everything=True) if r["target"] == serial]
    assert {r["status"] for r in rows} == {"done"}, rows


def _disassociated(host, serial: str) -> list[str]:
    """The assets of the ``vpp_licenses_disassociated`` events that named ``serial``."""
    from sqlmodel import col, select

    from mdm_core.models import OutboxEvent

    with host.db.session() as session:
        rows = session.execute(select(OutboxEvent).where(col(OutboxEvent.name) == "vpp_licenses_disassociated")).scalars()
        return [e.payload["adamId"] for e in rows if serial in (e.payload.get("serialNumbers") or [])]


def _assigned(port: VppPort, adam_id: str) -> int:
    """The mirror's assigned count of the asset."""
    asset = port.asset("school", adam_id, "STDQ")
    assert asset is not None
    return asset["assignedCount"]


@pytest.mark.parametrize("how", ["disassociate", "revoke"])
def test_a_take_back_apple_answers_released_already_leaves_the_mirror_at_once(on_both, simulator, how):
    """Apple answered 9610 (or 9619): it has no such license any more (taken back in its portal
    here), yet the mirror kept listing and counting it until the next sync. It now drops it at
    once, announced once (the next sync finds nothing to change, and counts as Apple does)."""
    host, _ = on_both
    a = fixed_assets(simulator)[0]
    serial = sorted(s for s in holders(simulator, a["adamId"]) if s in simulator.state.device_serials())[0]
    port = VppPort(host)
    held = {lic["adamId"] for lic in port.licenses("school", serial_number=serial)}
    for adam_id in held:  # taken back at Apple, not in the mirror yet
        assert simulator.remove_in_portal(adam_id, serial_number=serial)
    assigned = _assigned(port, a["adamId"])
    if how == "disassociate":
        result = port.disassociate("school", a["adamId"], "STDQ", serial_numbers=[serial], wait=5.0)
    else:
        result = port.revoke("school", serial_numbers=[serial], wait=5.0, quick=False)
    assert [(f.get("serialNumber"), f["errorNumber"]) for f in result["failed"]] == [(serial, 9610)], result
    gone = {a["adamId"]} if how == "disassociate" else held
    assert {lic["adamId"] for lic in port.licenses("school", serial_number=serial)} == held - gone
    assert _assigned(port, a["adamId"]) == assigned - 1 == simulator.state.asset(a["adamId"])["assignedCount"]
    assert sorted(_disassociated(host, serial)) == sorted(gone)
    sync(host)
    assert sorted(_disassociated(host, serial)) == sorted(held)  # what the take-back dropped is not announced again
    assert _assigned(port, a["adamId"]) == assigned - 1


@pytest.mark.slow
def test_a_removed_users_revoke_the_mirror_shows_done_is_not_sent_again(on_both, simulator, monkeypatch):
    """A removed user's revoke Apple carried out after the removal stopped waiting, the mirror
    told (a sync): the job sent the revoke again at every attempt, though the mirror showed its
    licenses released. It now only retires the VPP user, which the revoke was waiting for."""
    host, _ = on_both
    user = _removed_while_apple_is_slow(host, simulator, "user")
    sync(host)  # the mirror learns the licenses are gone
    _due_now(host)
    asked = _revokes_asked(monkeypatch)
    simulator.faults.add("server_error", endpoint="users/retire", status=503, retry_after=0)  # Apple cannot retire it yet
    counts = reclaim_job(host)
    assert asked == [] and counts["pending"] == 1, (asked, counts)
    [revoke_row] = [r for r in list_reclaims(host) if r["target"] == user]
    assert revoke_row["adam_id"] == "*" and "could not be retired yet" in revoke_row["last_error"], revoke_row
    assert revoke_row["unretired"] is True, revoke_row
    # told by its state, not by its message: a reworded message must not send the revoke again
    monkeypatch.setattr(reclaims, "NOT_RETIRED", "its VPP user is still to be retired; asking again later")
    simulator.faults.clear()
    _due_now(host)
    counts = reclaim_job(host)
    assert asked == [] and counts["failed"] == 0 and counts["pending"] == 0, (asked, counts)
    rows = [r for r in list_reclaims(host, everything=True) if r["target"] == user]
    assert {r["status"] for r in rows} == {"done"}, rows
    assert simulator.state.user(user)["status"] == "Retired"  # what the revoke was kept pending for
