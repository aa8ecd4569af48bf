"""Reclaiming licenses: on device removal, kept pending when Apple is unreachable and retried by
the job, irrevocable assets reported, and ``mdm apps reclaim --unused``."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import update

from mdm_core.inventory import add_device, add_user, remove_device, remove_user
from mdm_core.models import utcnow
from plugins.mobile_apps.models import Reclaim
from plugins.mobile_apps.reclaims import list_reclaims

from .conftest import app_id, fixed_assets, holders


def seeded_holder(sim, adam_id):
    return sorted(s for s in holders(sim, adam_id) if s in sim.state.device_serials())[0]


def test_removing_a_device_reclaims_its_licenses(host, simulator, apps_events):
    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    add_device(host, serial, "iOS")
    held = {(t[0], t[1]) for t in simulator.snapshot()["assignments"] if t[3] == serial}
    remove_device(host, serial)
    assert all(t[3] != serial for t in simulator.snapshot()["assignments"] if (t[0], t[1]) in held and simulator.state.assets[(t[0], t[1])].revocable)
    assert serial not in holders(simulator, a["adamId"])
    done = [r for r in list_reclaims(host, everything=True) if r["target"] == serial]
    assert done and {r["status"] for r in done} <= {"done", "irrevocable"}
    assert any(r["adam_id"] == a["adamId"] and r["status"] == "done" and r["reason"] == "device_removed" for r in done)
    finished = apps_events.named("mobile_apps_reclaim_finished")
    assert sorted((e["id"], e["serialNumber"], e["status"], e["reason"]) for e in finished) == sorted(
        (r["id"], serial, r["status"], "device_removed") for r in done)  # one event per reclaim that reached its end


def test_removing_an_mdm_user_reclaims_its_revocable_user_licenses(host, simulator):
    snapshot = simulator.snapshot()
    revocable = {key for key, asset in snapshot["assets"].items() if asset["revocable"]}
    held = {}
    for adam_id, pricing, kind, target in snapshot["assignments"]:
        if kind == "clientUserId":
            held.setdefault(target, set()).add(((adam_id, pricing) in revocable, adam_id))
    user = next(u for u, licenses in sorted(held.items()) if any(r for r, _ in licenses))
    add_user(host, user)
    remove_user(host, user)
    left = {(a, p) for a, p, k, t in simulator.snapshot()["assignments"] if k == "clientUserId" and t == user}
    assert not left & revocable  # every revocable user license went back to the pool
    rows = [r for r in list_reclaims(host, everything=True) if r["target"] == user]
    assert rows and {r["reason"] for r in rows} == {"user_removed"}
    assert {r["status"] for r in rows} <= {"done", "irrevocable"}
    assert {r["adam_id"] for r in rows if r["status"] == "irrevocable"} == {a for r, a in held[user] if not r}


def test_reclaim_stays_pending_when_apple_is_unreachable_and_the_job_retries(host, simulator, mdm):
    from plugins.mobile_apps.jobs import reclaim_job

    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    add_device(host, serial, "iOS")
    simulator.faults.add("drop", endpoint="assets/disassociate")
    remove_device(host, serial)  # the removal itself succeeds
    assert serial in holders(simulator, a["adamId"])
    pending = [r for r in list_reclaims(host) if r["target"] == serial and r["adam_id"] == a["adamId"]]
    assert [r["status"] for r in pending] == ["pending"] and pending[0]["attempts"] == 1 and pending[0]["last_error"]
    code, out, _ = mdm("apps", "reclaims")
    assert code == 0 and serial in out and "pending" in out

    assert reclaim_job(host)["done"] == 0  # not due yet
    simulator.faults.clear()
    host.db.run_write(lambda s: s.execute(update(Reclaim).values(next_attempt_at=utcnow() - timedelta(seconds=1))))
    counts = reclaim_job(host)
    assert counts["done"] >= 1 and counts["pending"] == 0
    assert serial not in holders(simulator, a["adamId"])
    assert [r for r in list_reclaims(host) if r["target"] == serial and r["status"] == "pending"] == []


def test_irrevocable_licenses_are_reported_not_attempted(host, simulator, mdm):
    a = fixed_assets(simulator)[3]  # macOS, irrevocable
    serial = seeded_holder(simulator, a["adamId"])
    add_device(host, serial, "macOS")
    remove_device(host, serial)
    assert serial in holders(simulator, a["adamId"])
    [row] = [r for r in list_reclaims(host) if r["target"] == serial and r["adam_id"] == a["adamId"]]
    assert row["status"] == "irrevocable" and row["attempts"] == 0
    code, out, _ = mdm("apps", "reclaims", "--json")
    assert any(r["status"] == "irrevocable" and r["serialNumber"] == serial for r in json.loads(out))


def test_reclaim_unused_device_and_user(host, simulator, mdm):
    a = fixed_assets(simulator)[0]
    devices = sorted(s for s in holders(simulator, a["adamId"]) if s in simulator.state.device_serials())
    users = sorted(u for u in holders(simulator, a["adamId"]) if u.startswith("user-"))
    kept = devices[0]
    add_device(host, kept, "iOS")
    if users:
        add_user(host, users[0])
    code, out, err = mdm("apps", "reclaim", app_id(host, a["adamId"]), "--unused")
    assert code == 0, err
    left = holders(simulator, a["adamId"])
    assert kept in left and all(d not in left for d in devices[1:])
    assert (users[0] in left) if users else True
    assert all(u not in left for u in users[1:])
    assert out.count(": done: license reclaimed") == len(devices) - 1 + max(len(users) - 1, 0)

    code, out, err = mdm("apps", "reclaim", app_id(host, a["adamId"]), "--device", kept)
    assert code == 0 and f"{kept}: done: license reclaimed" in out
    assert kept not in holders(simulator, a["adamId"])
    code, out, _ = mdm("apps", "reclaim", app_id(host, a["adamId"]), "--device", kept)
    assert code == 0 and "no license to reclaim" in out
    code, _, err = mdm("apps", "reclaim", "--all", "--device", kept)
    assert code == 2 and "--all needs --unused" in err


def test_reclaim_all_unused_reports_irrevocable(host, simulator, mdm):
    a = fixed_assets(simulator)
    code, out, _ = mdm("apps", "reclaim", "--all", "--unused")
    assert code == 1  # irrevocable licenses (books, asset 3) are reported
    assert "irrevocable" in out and ": done: license reclaimed" in out
    snapshot_targets = {(t[0], t[1]) for t in simulator.snapshot()["assignments"]}
    assert (a[0]["adamId"], "STDQ") not in snapshot_targets
    assert (a[3]["adamId"], "STDQ") in snapshot_targets
