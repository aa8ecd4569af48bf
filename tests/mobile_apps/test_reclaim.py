"""Reclaiming licenses: on device removal, kept pending when Apple is unreachable and retried by
the job, irrevocable assets reported, and ``mdm apps reclaim --unused``."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from mdm_core.inventory import add_device, add_user, remove_device, remove_user
from mdm_core.models import utcnow
from plugins.mobile_apps.models import Reclaim
from plugins.mobile_apps.reclaims import list_reclaims, removal_summary

from .conftest import app_id, fixed_assets, holders, sync


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
        (r["id"], serial, r["status"], "device_removed") for r in done
    )  # one event per reclaim that reached its end


def test_removing_an_mdm_user_reclaims_its_revocable_user_licenses(host, simulator):
    snapshot = simulator.snapshot()
    revocable = {key for key, asset in snapshot["assets"].items() if asset["revocable"]}
    held: dict[Any, Any] = {}
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


def test_reclaim_stays_pending_when_apple_is_unreachable_and_the_job_retries(host, simulator, mdm, caplog):
    from plugins.mobile_apps.jobs import reclaim_job

    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    add_device(host, serial, "iOS")
    simulator.faults.add("drop", endpoint="assets/revoke")
    remove_device(host, serial)  # the removal itself succeeds
    assert serial in holders(simulator, a["adamId"])
    pending = [r for r in list_reclaims(host) if r["target"] == serial and r["adam_id"] == a["adamId"]]
    assert [r["status"] for r in pending] == ["pending"] and pending[0]["attempts"] == 1 and pending[0]["last_error"]
    code, out, _ = mdm("apps", "reclaims")
    assert code == 0 and serial in out and "pending" in out

    assert reclaim_job(host)["done"] == 0  # not due yet
    host.db.run_write(lambda s: s.execute(update(Reclaim).values(next_attempt_at=utcnow() - timedelta(seconds=1))))
    with caplog.at_level(logging.WARNING, logger="plugins.mobile_apps"):
        assert reclaim_job(host)["pending"] >= 1  # the job, which nobody watches, warns
    assert any("revoke of the licenses of 1 device(s) in school" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
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


def test_reclaim_with_an_empty_device_or_user_is_refused(host, simulator, mdm):
    """`--device ""` selected no holder, that is every license of the app, without asking."""
    a = fixed_assets(simulator)[0]
    before = sorted(simulator.snapshot()["assignments"])
    for option in ("--device", "--user"):
        for value in ("", " "):
            code, _, err = mdm("apps", "reclaim", a["adamId"], option, value)
            assert code == 2 and "is empty: give the one whose license to reclaim" in err, (option, err)
    assert sorted(simulator.snapshot()["assignments"]) == before


def test_reclaim_unused_takes_only_licenses_of_devices_and_users_removed_from_this_mdm(host, simulator, mdm):
    """ "Unused" means held by a device or user this MDM removed (recorded), never one it never
    knew (a partial inventory during a migration): those used to be reclaimed too."""
    a = fixed_assets(simulator)[0]
    devices = sorted(s for s in holders(simulator, a["adamId"]) if s in simulator.state.device_serials())
    users = sorted(u for u in holders(simulator, a["adamId"]) if u.startswith("user-"))
    removed, unknown = devices[0], devices[1:]
    add_device(host, removed, "iOS")
    simulator.faults.add("drop", endpoint="assets/revoke")  # the removal's revoke fails: the license stays
    remove_device(host, removed)
    simulator.faults.clear()
    assert removed in holders(simulator, a["adamId"])

    code, out, err = mdm("apps", "reclaim", app_id(host, a["adamId"]), "--unused", "--dry-run")
    assert code == 0, err
    assert out.splitlines() == [f"{a['adamId']} STDQ {removed}: would be reclaimed (account school)", "would reclaim 1 license(s)"]
    code, out, err = mdm("apps", "reclaim", app_id(host, a["adamId"]), "--unused")  # no terminal, no --yes
    assert code == 2 and "add --yes" in err and removed in holders(simulator, a["adamId"])
    code, out, err = mdm("apps", "reclaim", app_id(host, a["adamId"]), "--unused", "--yes")
    assert code == 0, err
    left = holders(simulator, a["adamId"])
    assert removed not in left
    assert set(unknown) <= left and set(users) <= left  # never in this MDM: kept
    assert out.count(": done: license reclaimed") == 1

    kept = unknown[0]
    add_device(host, kept, "iOS")
    code, out, err = mdm("apps", "reclaim", app_id(host, a["adamId"]), "--device", kept)
    assert code == 0 and f"{kept}: done: license reclaimed" in out
    assert kept not in holders(simulator, a["adamId"])
    code, out, _ = mdm("apps", "reclaim", app_id(host, a["adamId"]), "--device", kept)
    assert code == 0 and "no license to reclaim" in out
    code, out, err = mdm("apps", "reclaim", a["adamId"], "--device", kept)  # given back: the message names what was looked for
    assert (code, err) == (0, "")
    assert out == f"no license to reclaim: device {kept} holds no license of {a['adamId']} (see `mdm vpp licenses --device {kept}`)\n"
    add_user(host, "user-9999")
    code, out, _ = mdm("apps", "reclaim", a["adamId"], "--user", "user-9999", "--dry-run")
    assert out == f"no license to reclaim: MDM user user-9999 holds no license of {a['adamId']} (see `mdm vpp licenses --user user-9999`)\n"
    code, _, err = mdm("apps", "reclaim", "--all", "--device", kept)
    assert code == 2 and "--all needs --unused" in err


def test_reclaim_all_unused_reports_irrevocable(host, simulator, mdm):
    a = fixed_assets(simulator)
    revocable_holder = seeded_holder(simulator, a[0]["adamId"])
    irrevocable_holder = seeded_holder(simulator, a[3]["adamId"])
    for serial, platform in ((revocable_holder, "iOS"), (irrevocable_holder, "macOS")):
        add_device(host, serial, platform)
    simulator.faults.add("drop", endpoint="assets/revoke")
    remove_device(host, revocable_holder)
    remove_device(host, irrevocable_holder)
    simulator.faults.clear()
    code, out, _ = mdm("apps", "reclaim", "--all", "--unused", "--yes")
    assert code == 1  # irrevocable licenses (asset 3) are reported
    assert "irrevocable" in out and f"{revocable_holder}: done: license reclaimed" in out
    assert revocable_holder not in holders(simulator, a[0]["adamId"])
    assert irrevocable_holder in holders(simulator, a[3]["adamId"])


def test_quiet_reclaim_prints_nothing_when_every_license_came_back(host, simulator, mdm):
    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    add_device(host, serial, "iOS")
    assert mdm("-q", "apps", "reclaim", app_id(host, a["adamId"]), "--device", serial) == (0, "", "")
    assert serial not in holders(simulator, a["adamId"])
    assert mdm("-q", "apps", "reclaim", app_id(host, a["adamId"]), "--device", serial) == (0, "", "")  # nothing left to reclaim


def test_removing_a_device_reclaims_licenses_granted_since_the_last_sync(host, simulator):
    """Apple's revoke for the serial number takes every revocable license it holds, including
    one assigned in the portal after the last sync (which the mirror does not know yet)."""
    a = fixed_assets(simulator)[0]
    serial = sorted(s for s in simulator.state.device_serials() if s not in holders(simulator, a["adamId"]))[0]
    add_device(host, serial, "iOS")
    simulator.assign_in_portal(a["adamId"], "STDQ", serial_number=serial)  # after the sync: not mirrored
    assert serial in holders(simulator, a["adamId"])
    remove_device(host, serial)
    assert serial not in holders(simulator, a["adamId"])
    assert "done" in {r["status"] for r in list_reclaims(host, everything=True) if r["target"] == serial}


def _due_now(host) -> None:
    host.db.run_write(lambda s: s.execute(update(Reclaim).values(next_attempt_at=utcnow() - timedelta(seconds=1))))


def test_a_device_or_user_back_before_the_retry_keeps_its_licenses(host, simulator, mdm, apps_events):
    """A device removed while Apple was down and enrolled again (wiped and re-enrolled), or a
    user removed by mistake and added again, before the job retried: the job used to revoke
    every license the device held, those assigned after it came back too (canceling their
    installs), and to retire the user's VPP user at Apple."""
    from plugins.mobile_apps.jobs import reclaim_job

    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    snapshot = simulator.snapshot()
    revocable = {key for key, asset in snapshot["assets"].items() if asset["revocable"]}
    user = sorted(
        t
        for ad, p, k, t in snapshot["assignments"]
        if k == "clientUserId" and (ad, p) in revocable and snapshot["users"].get(t, {}).get("status") == "Associated"
    )[0]
    user_held = {(ad, p) for ad, p, k, t in snapshot["assignments"] if t == user}
    add_device(host, serial, "iOS")
    add_user(host, user)
    simulator.faults.add("drop", endpoint="assets/revoke")
    remove_device(host, serial)
    remove_user(host, user)
    assert {r["status"] for r in list_reclaims(host) if r["target"] in (serial, user)} == {"pending"}
    add_device(host, serial, "iOS")  # back in the inventory before the job retries
    add_user(host, user)
    simulator.faults.clear()
    _due_now(host)
    counts = reclaim_job(host)
    assert counts["done"] == 0 and counts["pending"] == 0, counts
    assert serial in holders(simulator, a["adamId"])  # kept
    after = simulator.snapshot()
    assert {(ad, p) for ad, p, k, t in after["assignments"] if t == user} == user_held
    assert after["users"][user]["status"] == "Associated"  # not retired
    rows = [r for r in list_reclaims(host, everything=True) if r["target"] in (serial, user)]
    assert rows and {r["status"] for r in rows} == {"canceled"}
    assert all("again" in r["last_error"] for r in rows)
    code, out, _ = mdm("apps", "reclaims")
    assert code == 0 and serial not in out and user not in out
    finished = apps_events.named("mobile_apps_reclaim_finished")
    assert {(e.get("serialNumber") or e.get("clientUserId"), e["status"]) for e in finished} == {(serial, "canceled"), (user, "canceled")}


def test_a_device_removed_again_after_coming_back_is_reclaimed(host, simulator):
    """Canceling the reclaims of a device that came back does not protect it for ever: removed
    again, its licenses go back."""
    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    add_device(host, serial, "iOS")
    simulator.faults.add("drop", endpoint="assets/revoke", count=1)
    remove_device(host, serial)
    add_device(host, serial, "iOS")
    remove_device(host, serial)  # Apple answers now: the pending revoke goes through
    assert serial not in holders(simulator, a["adamId"])


def test_dry_run_says_a_book_is_kept_as_the_real_run_does(on_both, simulator):
    """A removed user's book (irrevocable) stays with it at Apple: `--dry-run` listed it as
    "would be reclaimed" while the real run reports it irrevocable, kept (exit 1)."""
    host, mdm = on_both
    book = fixed_assets(simulator)[4]
    snapshot = simulator.snapshot()
    user = sorted(
        t
        for ad, p, k, t in snapshot["assignments"]
        if k == "clientUserId" and (ad, p) == (book["adamId"], book["pricingParam"]) and snapshot["users"].get(t, {}).get("status") == "Associated"
    )[0]
    add_user(host, user)
    remove_user(host, user)
    assert user in holders(simulator, book["adamId"], book["pricingParam"])  # Apple keeps it

    line = f"{book['adamId']} {book['pricingParam']} {user}: irrevocable: not reclaimed: the asset is irrevocable (the license is kept)"
    code, out, err = mdm("apps", "reclaim", "--all", "--unused", "--dry-run")
    assert code == 0, err
    assert f"{line} (account school)" in out.splitlines(), out
    assert "would be reclaimed" not in out  # its other licenses (revocable) went back at its removal
    kept = out.count(": irrevocable: not reclaimed: the asset is irrevocable (the license is kept) (account school)")
    assert kept >= 1 and out.splitlines()[-1] == f"would reclaim 0 license(s); {kept} irrevocable (kept)"
    code, out, _ = mdm("apps", "reclaim", "--all", "--unused", "--dry-run", "--json")
    [shown] = [lic for lic in json.loads(out) if (lic.get("clientUserId"), lic["adamId"]) == (user, book["adamId"])]
    assert shown["status"] == "irrevocable"
    assert {lic["status"] for lic in json.loads(out)} == {"irrevocable"}

    code, out, err = mdm("apps", "reclaim", "--all", "--unused", "--yes")  # what the dry run said
    assert code == 1 and line in out, out + err
    assert user in holders(simulator, book["adamId"], book["pricingParam"])


def test_reclaims_says_how_many_finished_ones_it_does_not_show(on_both, simulator):
    """The README says every reclaim is recorded and points to `mdm apps reclaims`, which listed
    only the open ones (pending, failed, irrevocable): a removal whose licenses all came back
    showed "no pending or failed reclaims", as if nothing had been recorded."""
    host, mdm = on_both
    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    add_device(host, serial, "iOS")
    remove_device(host, serial)
    rows = list_reclaims(host, everything=True)
    closed = [r for r in rows if r["status"] in ("done", "canceled")]
    assert closed

    code, out, err = mdm("apps", "reclaims")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-1] == f"{len(closed)} done, canceled or superseded reclaim(s) not shown: `mdm apps reclaims --all` lists them"
    assert not {line.split()[0] for line in lines[:-1]} & {str(r["id"]) for r in closed}
    code, out, _ = mdm("apps", "reclaims", "--all")
    assert code == 0 and "not shown" not in out
    assert {line.split()[0] for line in out.splitlines()[1:]} == {str(r["id"]) for r in rows}
    code, out, _ = mdm("apps", "reclaims", "--json")  # JSON stays JSON: the open ones
    assert [r["id"] for r in json.loads(out)] == [r["id"] for r in rows if r["status"] not in ("done", "canceled")]


def test_reclaim_reads_the_irrevocable_assets_once(host, simulator, mdm, monkeypatch):
    """The dry run's rule (irrevocable assets kept) and the reclaim itself read the account's
    assets once: they were read twice, once to list and confirm, once more to record."""
    from plugins.mobile_apps.vpp_port import VppPort

    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    add_device(host, serial, "iOS")
    simulator.faults.add("drop", endpoint="assets/revoke")
    remove_device(host, serial)
    simulator.faults.clear()
    reads: list[str] = []
    real = VppPort.assets

    def counted(self: VppPort, account: str) -> Any:
        reads.append(account)
        return real(self, account)

    monkeypatch.setattr(VppPort, "assets", counted)
    code, out, err = mdm("apps", "reclaim", "--all", "--unused", "--yes")
    assert code == 0 and f"{serial}: done: license reclaimed" in out, out + err
    assert reads == ["school"]


def test_reclaim_for_a_device_or_user_this_mdm_does_not_know_says_so_and_fails(on_both, simulator):
    """`mdm apps reclaim APP --user ghost` (not an MDM user) or `--device NOSUCH0001` (not
    enrolled) said "holds no license" and exited 0, as for a holder that gave it back: a misspelt
    one went unnoticed. Now one line naming what is unknown and how to list them, exit 2; a
    removed device that still holds a license is still reclaimed."""
    host, mdm = on_both
    a = fixed_assets(simulator)[0]
    for args, line in [
        (("--device", "nosuch0001"), "no license to reclaim: device NOSUCH0001 is not enrolled (see `mdm devices list`)"),
        (("--user", "ghost"), "no license to reclaim: ghost is not an MDM user (see `mdm users list`)"),
    ]:
        for extra in ((), ("--dry-run",), ("--json",)):
            code, out, err = mdm("apps", "reclaim", a["adamId"], *args, *extra)
            assert (code, out) == (2, "") and line in err and len(err.strip().splitlines()) == 1, (args, extra, err)
    add_device(host, "NOSUCH0001", "iOS")
    add_user(host, "ghost")
    for args in (("--device", "NOSUCH0001"), ("--user", "ghost")):  # known now: they hold none, as before
        code, out, err = mdm("apps", "reclaim", a["adamId"], *args)
        assert code == 0 and "holds no license of" in out, err
    held = seeded_holder(simulator, a["adamId"])  # never enrolled here, holding a license: reclaimed
    code, out, err = mdm("apps", "reclaim", a["adamId"], "--device", held)
    assert code == 0 and f"{held}: done: license reclaimed" in out, err


def test_a_failed_reclaim_reclaimed_again_is_no_longer_listed_open(on_both, simulator):
    """Apple refused a reclaim (it stays `failed`, for the admin to act on); the admin reclaimed
    the license again and Apple took it back: the failed reclaim stayed listed as open for good
    (and was never pruned), as if the license were still out. The new reclaim supersedes it."""
    host, mdm = on_both
    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    add_device(host, serial, "iOS")
    simulator.fail_next_event("DISASSOCIATE", 9706)
    code, out, _ = mdm("apps", "reclaim", a["adamId"], "--device", serial)
    assert code == 1 and f"{serial}: failed: Apple refused" in out, out
    code, out, _ = mdm("apps", "reclaims", "--json")
    [failed] = json.loads(out)
    assert (failed["status"], failed["serialNumber"], failed.get("superseded_by")) == ("failed", serial, None)

    code, out, _ = mdm("apps", "reclaim", a["adamId"], "--device", serial)  # Apple takes it this time
    assert code == 0 and f"{serial}: done: license reclaimed" in out, out
    assert serial not in holders(simulator, a["adamId"])
    code, out, _ = mdm("apps", "reclaims", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = mdm("apps", "reclaims")
    assert out.splitlines() == [
        "no pending, failed or irrevocable reclaims",
        "2 done, canceled or superseded reclaim(s) not shown: `mdm apps reclaims --all` lists them",
    ]
    shown = {r["id"]: (r["status"], r["superseded_by"]) for r in list_reclaims(host, everything=True)}
    assert shown == {failed["id"]: ("failed", failed["id"] + 1), failed["id"] + 1: ("done", None)}
    code, out, _ = mdm("apps", "reclaims", "--all")
    assert out.splitlines()[0].split()[-1] == "superseded_by" and out.splitlines()[1].split()[-1] == str(failed["id"] + 1), out


def test_a_failed_reclaim_stays_open_while_nothing_reclaimed_its_license_again(on_both, simulator):
    """Another license's reclaim, or another device's of the same app, supersedes nothing."""
    host, mdm = on_both
    a = fixed_assets(simulator)[0]
    first, second = sorted(s for s in holders(simulator, a["adamId"]) if s in simulator.state.device_serials())[:2]
    for serial in (first, second):
        add_device(host, serial, "iOS")
    simulator.fail_next_event("DISASSOCIATE", 9706)
    assert mdm("apps", "reclaim", a["adamId"], "--device", first)[0] == 1
    assert mdm("apps", "reclaim", a["adamId"], "--device", second)[0] == 0
    code, out, _ = mdm("apps", "reclaims", "--json")
    assert [(r["serialNumber"], r["status"], r["superseded_by"]) for r in json.loads(out)] == [(first, "failed", None)]


def _failed_reclaim(host, mdm, simulator, serial: str, adam_id: str) -> dict[str, Any]:
    """A reclaim of the device's license of the app that Apple refused (open, ``failed``)."""
    add_device(host, serial, "iOS")
    simulator.fail_next_event("DISASSOCIATE", 9706)
    assert mdm("apps", "reclaim", adam_id, "--device", serial)[0] == 1
    [failed] = [r for r in list_reclaims(host) if r["target"] == serial]
    assert failed["status"] == "failed"
    return failed


def test_a_failed_reclaim_whose_license_was_released_elsewhere_ends_done(on_both, simulator, apps_events):
    """Apple refused a reclaim; the admin then released the license in Apple's portal. Nothing
    could supersede the failed reclaim (a new one finds no license to reclaim), so it stayed
    listed open for good, as if the license were still out. Once a sync shows the license gone,
    the reclaim job ends it ``done``, saying it was released elsewhere, and announces it; a failed
    reclaim whose license is still held stays open."""
    from plugins.mobile_apps.jobs import reclaim_job
    from plugins.mobile_apps.reclaims import RELEASED_ELSEWHERE

    host, mdm = on_both
    a = fixed_assets(simulator)[0]
    released, kept = sorted(s for s in holders(simulator, a["adamId"]) if s in simulator.state.device_serials())[:2]
    failed = _failed_reclaim(host, mdm, simulator, released, a["adamId"])
    other = _failed_reclaim(host, mdm, simulator, kept, a["adamId"])
    assert simulator.state.remove_in_portal(a["adamId"], a["pricingParam"], serial_number=released)
    assert reclaim_job(host)["released"] == 0  # the mirror still holds it until a sync says otherwise
    apps_events.clear()

    sync(host)
    assert reclaim_job(host)["released"] == 1
    code, out, _ = mdm("apps", "reclaims", "--json")
    assert code == 0 and [(r["id"], r["status"]) for r in json.loads(out)] == [(other["id"], "failed")]
    shown = {r["id"]: (r["status"], r["last_error"]) for r in list_reclaims(host, everything=True)}
    assert shown[failed["id"]] == ("done", RELEASED_ELSEWHERE)
    assert [(e["id"], e["status"], e["serialNumber"]) for e in apps_events.named("mobile_apps_reclaim_finished")] == [(failed["id"], "done", released)]
    assert reclaim_job(host)["released"] == 0  # ended once
    assert len(apps_events.named("mobile_apps_reclaim_finished")) == 1


def test_removing_an_account_cancels_its_failed_reclaims(on_both, simulator, apps_events):
    """A removed account's failed reclaims stayed open under its name for good: no reclaim can
    supersede them, and the job never looks at them. They end ``canceled`` with the reason, as
    its pending ones do."""
    from plugins.mobile_apps.accounts import removed_reason
    from plugins.vpp.accounts import remove_account

    host, mdm = on_both
    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    failed = _failed_reclaim(host, mdm, simulator, serial, a["adamId"])
    apps_events.clear()
    remove_account(host, "school")
    host.deliver_events()
    code, out, _ = mdm("apps", "reclaims", "--json")
    assert code == 0 and json.loads(out) == []
    [row] = [r for r in list_reclaims(host, everything=True) if r["id"] == failed["id"]]
    assert (row["status"], row["last_error"]) == ("canceled", removed_reason("school"))
    assert [(e["id"], e["status"]) for e in apps_events.named("mobile_apps_reclaim_finished")] == [(failed["id"], "canceled")]


def _revocable_device_asset(sim: Any) -> dict[str, Any]:
    return next(a for a in fixed_assets(sim) if sim.state.assets[(a["adamId"], a["pricingParam"])].revocable and a["deviceAssignable"])


def test_a_refused_revoke_of_licenses_the_mirror_does_not_know_is_said(on_both, simulator, apps_events):
    """A removed device holds a license assigned in Apple's portal since the last sync, and Apple
    refuses the revoke: `mdm devices remove` said "0 reclaimed, 0 pending" and nothing else told
    it (no license of the mirror rode on the revoke). It now says the revoke was refused, and the
    revoke's event says that no license rode on it (what an alert is raised from)."""
    host, _ = on_both
    a = _revocable_device_asset(simulator)
    held = {t[3] for t in simulator.snapshot()["assignments"]}
    serial = next(s for s in sorted(simulator.state.device_serials()) if s not in held)  # no license at all
    assert simulator.assign_in_portal(a["adamId"], a["pricingParam"], serial_number=serial)
    add_device(host, serial, "iOS")
    simulator.fail_next_event("REVOKE", 9602)
    remove_device(host, serial)
    assert removal_summary(host, "device", serial) == (
        "VPP licenses: 0 reclaimed, 0 pending; Apple refused the revoke (Invalid argument (Apple error 9602)): "
        "what it holds stays assigned, see `mdm apps reclaims`"
    )
    assert serial in holders(simulator, a["adamId"], a["pricingParam"])  # still assigned at Apple
    [revoke] = [r for r in list_reclaims(host) if r["target"] == serial]
    assert (revoke["adam_id"], revoke["status"]) == ("*", "failed")
    [finished] = apps_events.named("mobile_apps_reclaim_finished")
    assert (finished["adamId"], finished["status"], finished["licenses"]) == ("*", "failed", 0)


def test_a_refused_revoke_counts_the_mirrored_licenses_refused_with_it(host, simulator, apps_events):
    """The licenses the mirror held ride on the revoke and are refused with it, each counted in
    the summary (not the revoke a second time); the revoke's event counts them."""
    a = fixed_assets(simulator)[0]
    serial = seeded_holder(simulator, a["adamId"])
    held = len([t for t in simulator.snapshot()["assignments"] if t[3] == serial and simulator.state.assets[(t[0], t[1])].revocable])
    add_device(host, serial, "iOS")
    simulator.fail_next_event("REVOKE", 9602)
    remove_device(host, serial)
    assert removal_summary(host, "device", serial) == f"VPP licenses: 0 reclaimed, 0 pending, {held} refused by Apple"
    finished = apps_events.named("mobile_apps_reclaim_finished")
    [revoke] = [e for e in finished if e["adamId"] == "*"]
    assert revoke["status"] == "failed" and revoke["licenses"] == held == len([e for e in finished if e["adamId"] != "*" and e["status"] == "failed"])
