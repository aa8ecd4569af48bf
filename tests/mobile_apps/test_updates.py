"""Automatic app updates: a new version Apple publishes is installed again, without a new
license, on the devices that had the app (``mdm apps check-updates``, the ``mobile_apps.updates``
job), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.inventory import add_device, add_user, set_command_status
from mdm_core.scheduler import Told
from mdm_core.testing import EventRecorder, MdmRunner

from .conftest import BASE_CONFIG, app_id, commands, fixed_assets, free_serials, holders, sync


@pytest.fixture
def setup(
    make_host: Callable[..., Host], simulator: Any, project_dir: Path, apps_events: EventRecorder, database_url: str | None, monkeypatch: Any, capsys: Any
) -> Callable[[str], tuple[Host, MdmRunner]]:
    """``setup(extra_config)``: a host with account ``school`` on the simulator, synced, its
    metadata looked up, and ``mdm`` on the same database."""
    from plugins.vpp.testing import add_simulated_account

    def make(extra_config: str = "", *, again: bool = False) -> tuple[Host, MdmRunner]:
        host = make_host(config=BASE_CONFIG + extra_config, database_url=database_url)
        host.pm.register(apps_events)
        mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url} if database_url else None)
        if again:  # another host on the same database
            return host, mdm
        add_simulated_account(host, simulator, project_dir)
        sync(host)
        code, _, err = mdm("apps", "refresh-metadata")
        assert code == 0, err
        return host, mdm

    return make


def _fired(host: Host, name: str) -> list[dict[str, Any]]:
    """The payloads of the events ``name`` recorded and delivered (by any process: ``mdm`` too)."""
    from sqlmodel import col, select

    from mdm_core.models import OutboxEvent

    with host.db.session() as session:
        rows = session.execute(select(OutboxEvent).where(col(OutboxEvent.name) == name).order_by(col(OutboxEvent.seq))).scalars()
        return [dict(e.payload) for e in rows if e.delivered_at is not None]


def _known_version(host: Host, app: str) -> str | None:
    """The version the application's devices were last brought to."""
    from plugins.mobile_apps.models import MobileApp

    with host.db.session() as session:
        found = session.get(MobileApp, int(app))
        return found.known_version if found else None


def _installed(host: Host, simulator: Any, mdm: MdmRunner) -> dict[str, str]:
    """An iOS app installed with a device license on two iPads (acknowledged), on one whose
    command was never acknowledged, on one whose license was then reclaimed, and with a user
    license on the iPad of an MDM user (acknowledged). Returns the serials by role."""
    a = fixed_assets(simulator)[0]  # iOS only; asset 5 is its PLUS pricing
    ipads = free_serials(simulator, a["adamId"])[:4]
    user = next(u for u in simulator.state.user_ids("Associated") if u not in holders(simulator, a["adamId"]))
    add_user(host, user)
    owned = free_serials(simulator, a["adamId"])[4]
    for serial in ipads:
        add_device(host, serial, "iPadOS")
    add_device(host, owned, "iOS", owner=user)
    app = app_id(host, a["adamId"])
    code, out, err = mdm("apps", "install", app, *[arg for s in ipads for arg in ("--device", s)], "--wait", "5")
    assert code == 0, out + err
    code, out, err = mdm("apps", "install", app, "--user", user, "--wait", "5")
    assert code == 0, out + err
    roles = {"acked": ipads[0], "acked2": ipads[1], "waiting": ipads[2], "reclaimed": ipads[3], "owned": owned, "user": user, "app": app, "adam": a["adamId"]}
    for role in ("acked", "acked2", "reclaimed", "owned"):
        [command] = commands(host, roles[role])
        set_command_status(host, command["uuid"], "acknowledged")  # the device installed it
    code, out, err = mdm("apps", "reclaim", app, "--device", roles["reclaimed"])
    assert code == 0, out + err
    return roles


def test_a_new_version_is_installed_where_the_app_was_without_a_new_license(setup, simulator):
    host, mdm = setup()
    d = _installed(host, simulator, mdm)
    old = simulator.state.assets[(d["adam"], "STDQ")].version
    new = simulator.publish_version(d["adam"])
    assert new != old
    before = simulator.requests.copy()
    licenses_before = holders(simulator, d["adam"])

    code, out, err = mdm("apps", "check-updates")

    assert code == 0, out + err
    assert f"({d['adam']} STDQ) iOS: {old} -> {new}" in out
    assert f"{d['acked']}: queued: InstallApplication queued" in out and "device license" in out
    assert f"{d['owned']}: queued: InstallApplication queued" in out and f"user license of {d['user']}" in out
    assert f"{d['reclaimed']}: skipped: it holds no license of the app any more" in out
    assert d["waiting"] not in out  # its first install never arrived: it installs the new version anyway
    # and the check says so, under this pricing's application only (it said "0 queued, 0 skipped" of such an app)
    assert out.count(f"  1 device(s) whose install of the app still waits get {new} with it: nothing more queued") == 1, out
    for role in ("acked", "acked2", "owned"):
        first, update = commands(host, d[role])
        assert first["status"] == "acknowledged" and update["status"] == "queued"
        assert update["payload"]["iTunesStoreID"] == int(d["adam"]) and update["payload"]["Options"] == {"PurchaseMethod": 1}
    assert [c["status"] for c in commands(host, d["waiting"])] == ["queued"]
    assert [c["status"] for c in commands(host, d["reclaimed"])] == ["acknowledged"]
    # Apple was asked the metadata, nothing else: no license associated again
    asked = simulator.requests - before
    assert asked["lookup"] >= 1 and set(asked) <= {"lookup", "service/config"}, asked  # the client reads Apple's endpoints first
    assert holders(simulator, d["adam"]) == licenses_before
    code, out, _ = mdm("apps", "list", "--json")
    [shown] = [a for a in json.loads(out) if str(a["id"]) == d["app"]]
    assert shown["version"] == new
    [event] = [e for e in _fired(host, "mobile_apps_app_updated") if str(e["id"]) == d["app"]]
    assert (event["adamId"], event["platform"], event["oldVersion"], event["newVersion"]) == (d["adam"], "iOS", old, new)
    queued = [e for e in _fired(host, "mobile_apps_install_queued") if e["source"] == "update"]
    assert sorted(e["serialNumber"] for e in queued) == sorted([d["acked"], d["acked2"], d["owned"]])

    # again: the version is known, nothing is queued twice, no event
    updated_events = len(_fired(host, "mobile_apps_app_updated"))
    code, out, err = mdm("apps", "check-updates", "--json")
    assert code == 0, err
    assert json.loads(out)["updates"] == []
    assert len(commands(host, d["acked"])) == 2
    assert len(_fired(host, "mobile_apps_app_updated")) == updated_events


def test_a_license_taken_back_cancels_the_update_still_waiting(setup, simulator):
    """The update's command belongs to the install it updates: reclaiming the license cancels
    it while it waits (before, it stayed queued, and the device then failed to install an app
    it held no license for), and removes the version installed before."""
    from mdm_core.inventory import list_commands

    host, mdm = setup()
    d = _installed(host, simulator, mdm)
    simulator.publish_version(d["adam"])
    assert mdm("apps", "check-updates")[0] == 0
    code, out, err = mdm("apps", "reclaim", d["app"], "--device", d["acked"])
    assert code == 0, out + err
    first, update = commands(host, d["acked"])
    assert (first["status"], update["status"]) == ("acknowledged", "canceled"), (first, update)  # was: the update stayed queued
    assert [c["status"] for c in list_commands(host, d["acked"]) if c["request_type"] == "RemoveApplication"] == ["queued"]
    assert [c["status"] for c in commands(host, d["acked2"])] == ["acknowledged", "queued"]  # its license stays: so does its update


def _updated_twice(host: Host, simulator: Any, mdm: MdmRunner, adam: str, serial: str) -> dict[str, Any]:
    """Two new versions published, each update acknowledged by ``serial``; returns the last one's command."""
    for _ in range(2):
        simulator.publish_version(adam)
        assert mdm("apps", "check-updates")[0] == 0
        [update] = [c for c in commands(host, serial) if c["status"] == "queued"]
        set_command_status(host, update["uuid"], "acknowledged")
    return update


def test_a_license_taken_back_after_updates_removes_the_app_once(setup, simulator):
    """A device that installed the app and then two of its updates (three acknowledged
    InstallApplication) gets one RemoveApplication when the license is taken back, and the
    reclaim says one removal: it queued one per acknowledged command, three for one app."""
    from mdm_core.inventory import list_commands

    host, mdm = setup()
    d = _installed(host, simulator, mdm)
    _updated_twice(host, simulator, mdm, d["adam"], d["acked"])
    code, out, err = mdm("apps", "reclaim", d["app"], "--device", d["acked"])
    assert code == 0, out + err
    assert [c["status"] for c in list_commands(host, d["acked"]) if c["request_type"] == "RemoveApplication"] == ["queued"]
    code, out, err = mdm("apps", "installs", "--status", "removed")
    assert code == 0, err
    [line] = [row for row in out.splitlines() if d["acked"] in row]
    assert line.endswith("license taken back: 1 removed"), line


def test_an_install_lists_only_the_commands_still_needed_however_many_updates(setup, simulator):
    """Each update's command joined its install's list, for ever (the console's installs table
    and ``mdm apps installs --json`` grew one id per version). It now keeps the command still
    waiting and the last one the device acknowledged: taking the license back still removes the
    app once, and cancels the update still waiting."""
    from mdm_core.inventory import list_commands

    host, mdm = setup()
    d = _installed(host, simulator, mdm)
    last = _updated_twice(host, simulator, mdm, d["adam"], d["acked"])
    _updated_twice(host, simulator, mdm, d["adam"], d["acked"])
    simulator.publish_version(d["adam"])
    assert mdm("apps", "check-updates")[0] == 0
    [waiting] = [c for c in commands(host, d["acked"]) if c["status"] == "queued"]
    code, out, err = mdm("apps", "installs", "--status", "queued", "--json")
    assert code == 0, err
    [listed] = [i["command_uuids"] for i in json.loads(out) if i["target"] == d["acked"]]
    acknowledged = [c["uuid"] for c in commands(host, d["acked"]) if c["status"] == "acknowledged"]
    assert len(acknowledged) == 5 and last["uuid"] in acknowledged, acknowledged  # the install and four updates
    assert listed == [acknowledged[-1], waiting["uuid"]], (listed, acknowledged)
    code, out, err = mdm("apps", "reclaim", d["app"], "--device", d["acked"])
    assert code == 0, out + err
    assert [c["status"] for c in list_commands(host, d["acked"]) if c["request_type"] == "RemoveApplication"] == ["queued"]
    assert [c["status"] for c in commands(host, d["acked"]) if c["uuid"] == waiting["uuid"]] == ["canceled"]


def _shared_install_then_updated(host, mdm, simulator) -> tuple[str, str, str, str]:
    """An app installed on a device with a device license, then for its owner with a user
    license (one command for both, acknowledged), then updated (acknowledged): (app, serial,
    user, the update's command uuid)."""
    a = fixed_assets(simulator)[0]
    held = holders(simulator, a["adamId"]) | holders(simulator, a["adamId"], "PLUS")
    user = next(u for u in simulator.state.user_ids("Associated") if u not in held)  # no license of the app in either pricing
    serial = free_serials(simulator, a["adamId"])[0]
    add_user(host, user)
    add_device(host, serial, "iOS", owner=user)
    app = app_id(host, a["adamId"])
    assert mdm("apps", "install", app, "--device", serial, "--wait", "5")[0] == 0
    code, out, err = mdm("apps", "install", app, "--user", user, "--wait", "5")
    assert code == 0 and f"{serial}: queued: InstallApplication already queued" in out, out + err
    [command] = commands(host, serial)
    set_command_status(host, command["uuid"], "acknowledged")
    simulator.publish_version(a["adamId"])
    assert mdm("apps", "check-updates")[0] == 0
    [update] = [c for c in commands(host, serial) if c["status"] == "queued"]
    set_command_status(host, update["uuid"], "acknowledged")
    return app, serial, user, update["uuid"]


def _removals(host, serial: str) -> list[str]:
    """The statuses of the device's RemoveApplication commands."""
    from mdm_core.inventory import list_commands

    return [c["status"] for c in list_commands(host, serial) if c["request_type"] == "RemoveApplication"]


def test_a_device_license_taken_back_after_an_update_keeps_the_app_its_owners_license_covers(setup, simulator):
    """An app installed with a device license, then for the device's owner with a user license
    (one command for both), then updated: the update's command joins the device license's
    install only. Taking back the device license kept the first command (the user's license
    covers it) but queued RemoveApplication for the update's, so the app left a device its
    owner's license still covers. The device keeps it; the user's reclaim removes it, once."""

    host, mdm = setup()
    app, serial, user, _ = _shared_install_then_updated(host, mdm, simulator)

    def removals() -> list[str]:
        return _removals(host, serial)

    code, out, err = mdm("apps", "reclaim", app, "--device", serial)
    assert code == 0, out + err
    assert removals() == []  # was ["queued"]: the app removed though the user's license covers it
    code, out, err = mdm("apps", "installs", "--status", "canceled")
    assert code == 0 and out.rstrip().endswith("license taken back: 1 kept for another license"), out + err
    code, out, err = mdm("apps", "reclaim", app, "--user", user)
    assert code == 0, out + err
    assert removals() == ["queued"]


def test_after_housekeeping_pruned_the_shared_install_the_owners_license_still_keeps_the_app(setup, simulator):
    """As above, but housekeeping ran after the update: it deleted the first command (the update
    superseded it), the only one the user's install holds. Taking back the device license then
    found no command of the user's install on the device and queued RemoveApplication, taking
    the app from a device its owner's license still covers; the user's reclaim then removed
    nothing. The device keeps the app; the user's reclaim removes it, once."""
    from datetime import timedelta

    from mdm_core.housekeeping import housekeeping
    from mdm_core.models import utcnow

    host, mdm = setup()
    app, serial, user, update = _shared_install_then_updated(host, mdm, simulator)
    housekeeping(host, utcnow() + timedelta(days=200))
    assert [c["uuid"] for c in commands(host, serial)] == [update]  # the shared first command is gone

    def removals() -> list[str]:
        return _removals(host, serial)

    code, out, err = mdm("apps", "reclaim", app, "--device", serial)
    assert code == 0, out + err
    assert removals() == []  # was ["queued"]: the app removed though the user's license covers it
    code, out, err = mdm("apps", "reclaim", app, "--user", user)
    assert code == 0, out + err
    assert removals() == ["queued"]  # was []: nothing left to say the app is there


def test_after_housekeeping_pruned_older_versions_the_device_still_gets_updates_and_removal(setup, simulator):
    """Housekeeping deletes the installs an update replaced once past their retention (they grew
    by one per update and device for as long as the host ran) and keeps each device's latest:
    the next update still reaches the device, and a reclaim still removes the app there."""
    from datetime import timedelta

    from mdm_core.housekeeping import housekeeping
    from mdm_core.inventory import list_commands
    from mdm_core.models import utcnow

    host, mdm = setup()
    d = _installed(host, simulator, mdm)
    update = _updated_twice(host, simulator, mdm, d["adam"], d["acked"])
    assert len(commands(host, d["acked"])) == 3

    housekeeping(host, utcnow() + timedelta(days=200))

    [latest] = commands(host, d["acked"])  # the first install and the first update are gone
    assert latest["uuid"] == update["uuid"]
    assert [c["status"] for c in commands(host, d["acked2"])] == ["acknowledged", "queued"]  # its first update never arrived: both stay
    simulator.publish_version(d["adam"])
    code, out, err = mdm("apps", "check-updates")
    assert code == 0, out + err
    assert f"{d['acked']}: queued: InstallApplication queued" in out
    [update] = [c for c in commands(host, d["acked"]) if c["status"] == "queued"]
    set_command_status(host, update["uuid"], "acknowledged")
    code, out, err = mdm("apps", "reclaim", d["app"], "--device", d["acked"])
    assert code == 0, out + err
    assert [c["status"] for c in list_commands(host, d["acked"]) if c["request_type"] == "RemoveApplication"] == ["queued"]


def test_the_job_does_nothing_unless_auto_update_is_on(setup, simulator, apps_events):
    from plugins.mobile_apps.jobs import updates_job

    host, mdm = setup()
    d = _installed(host, simulator, mdm)
    simulator.publish_version(d["adam"])
    before = simulator.requests.copy()
    job = host.build_scheduler(inline=True).jobs["mobile_apps.updates"]
    assert job.seconds == 86400
    assert updates_job(host) == {}
    assert simulator.requests == before  # not even a lookup
    assert len(commands(host, d["acked"])) == 1 and apps_events.named("mobile_apps_app_updated") == []

    host, _ = setup("auto_update = true\nupdate_check = 3600\n", again=True)
    assert host.build_scheduler(inline=True).jobs["mobile_apps.updates"].seconds == 3600
    told = updates_job(host)
    assert isinstance(told, Told) and told.line == "2 app(s) updated: 3 InstallApplication queued, 2 skipped"  # STDQ and PLUS
    assert told.data["updated"] >= 1 and told.data["queued"] == 3 and told.data["failed"] == 0
    [event] = [e for e in apps_events.named("mobile_apps_app_updated") if str(e["id"]) == d["app"]]  # delivered to plugins
    assert [c["status"] for c in commands(host, d["acked"])] == ["acknowledged", "queued"]
    again = updates_job(host)
    assert isinstance(again, Told) and again.line == "no new version" and again.data["queued"] == 0


def test_the_job_fails_when_no_app_was_checked_and_says_how_many_were_not(setup, simulator):
    """Every lookup failing (Apple unreachable) recorded the job's run as ``ok``: `mdm jobs` never
    told that no update was checked for. The run now fails with the check's one line; when only
    some lookups fail it is ``ok`` and says how many apps were not checked."""
    host, mdm = setup("auto_update = true\n")
    d = _installed(host, simulator, mdm)
    simulator.publish_version(d["adam"])
    simulator.faults.add("server_error", endpoint="lookup")
    code, out, err = mdm("jobs", "run", "mobile_apps.updates")
    assert code == 1, out + err
    [line] = err.splitlines()
    assert re.match(r"mobile_apps\.updates: failed in [\d.]+s: no app was checked for a new version: ", line), line
    assert "the lookup of all 10 app(s) failed (account school: cannot reach Apple" in line, line
    assert line.endswith("; fix what it says; checked again in 86400s, or now: mdm apps check-updates"), line
    rows = {r["name"]: r for r in json.loads(mdm("jobs", "--json")[1])}
    assert rows["mobile_apps.updates"]["last_result"] == "failed: " + re.sub(r"^.*? failed in [\d.]+s: ", "", line)  # was: ok
    assert len(commands(host, d["acked"])) == 1

    simulator.faults.clear()
    mac = fixed_assets(simulator)[3]["adamId"]  # macOS: looked up after the iOS batch, which fails
    simulator.publish_version(mac)
    simulator.faults.add("server_error", endpoint="lookup", count=1)
    code, out, err = mdm("jobs", "run", "mobile_apps.updates", "--json")
    assert code == 0, out + err
    [row] = json.loads(out)
    failed = row["result"]["failed"]
    assert row["status"] == "ok" and 0 < failed < 10 and row["result"]["updated"] == 1, row
    assert row["note"] == f"1 app(s) updated: 0 InstallApplication queued, 0 skipped; {failed} not checked (their lookup failed)", row
    rows = {r["name"]: r for r in json.loads(mdm("jobs", "--json")[1])}
    unchecked = f"{failed} app(s) not checked: their lookup failed; looked up again in 86400s, or now: mdm apps check-updates"
    row = rows["mobile_apps.updates"]
    assert (row["last_result"], row["last_note"], row["last_error"]) == ("ok", unchecked, None)  # the note was none
    text = {line.split()[0]: line for line in mdm("jobs")[1].splitlines()}
    assert text["mobile_apps.updates"].endswith(f" attention: {unchecked}"), text  # the last run's outcome, not the failure before it; was `ok: `
    assert len(commands(host, d["acked"])) == 1  # its iOS lookup failed: looked up again at the next check
    assert mdm("jobs", "run", "mobile_apps.updates")[0] == 0  # every app checked: a plain ok
    assert {r["name"]: r for r in json.loads(mdm("jobs", "--json")[1])}["mobile_apps.updates"]["last_note"] is None


def test_a_failed_lookup_changes_nothing_and_the_next_check_finds_the_version(setup, simulator):
    host, mdm = setup()
    d = _installed(host, simulator, mdm)
    from plugins.vpp.simulator.remote import call

    answer = call(simulator.root_url, "POST", "change", {"action": "publish_version", "adam_id": int(d["adam"]), "version": "99.0"})  # the control API
    new = answer["result"]
    assert new == "99.0" and simulator.state.assets[(d["adam"], "STDQ")].version == new
    simulator.faults.add("server_error", endpoint="lookup")
    code, out, err = mdm("apps", "check-updates")
    # every lookup failed: nothing was checked (it used to end "no new version", exit 1)
    assert (code, out) == (3, ""), out + err
    assert err.count("\n") == 1 and "no new version" not in err, err
    assert err.startswith("mdm: error: no app was checked for a new version: the lookup of all 10 app(s) failed (account school: cannot reach Apple"), err
    assert "try again later: mdm apps check-updates" in err, err
    code, out, _ = mdm("apps", "check-updates", "--json")
    assert code == 3 and json.loads(out)["failed"] == json.loads(out)["looked_up"] == 10
    assert len(commands(host, d["acked"])) == 1
    simulator.faults.clear()
    simulator.faults.add("server_error", endpoint="lookup", count=1)  # the first batch (iOS, the new version's) fails, the others answer
    code, out, err = mdm("apps", "check-updates")
    assert code == 1 and "failed (account school: " in out and "looked up again by the next check" in out, out + err
    looked_up, last = out.splitlines()
    failed = int(re.search(r"(\d+) failed", looked_up)[1])  # type: ignore[index]
    assert 0 < failed < 10 and last == f"no new version among the {10 - failed} app(s) looked up; {failed} not checked (their lookup failed)", out
    assert len(commands(host, d["acked"])) == 1
    simulator.faults.clear()
    mac = fixed_assets(simulator)[3]["adamId"]  # macOS: looked up after the iOS batch
    simulator.publish_version(mac)
    simulator.faults.add("server_error", endpoint="lookup", count=1)  # a new version found while some lookups fail
    code, out, err = mdm("apps", "check-updates")
    assert code == 1, out + err
    lines = out.splitlines()
    assert lines[0].startswith("looked up 10 app(s)") and f"-> {simulator.state.assets[(mac, 'STDQ')].version}" in lines[1], out
    assert lines[-1] == f"1 app(s) updated: 0 InstallApplication queued, 0 skipped; {failed} not checked (their lookup failed)", out
    simulator.faults.clear()
    code, out, err = mdm("apps", "check-updates", "--no-install")
    assert code == 0 and f"-> {new}" in out and "0 InstallApplication queued" in out, out + err
    assert len(commands(host, d["acked"])) == 1  # --no-install: recorded, nothing queued
    assert [e["newVersion"] for e in _fired(host, "mobile_apps_app_updated") if str(e["id"]) == d["app"]] == [new]
    code, out, _ = mdm("apps", "check-updates")
    assert code == 0 and "no new version" in out and len(commands(host, d["acked"])) == 1


def test_a_lower_version_looked_up_is_not_an_update(setup, simulator, caplog):
    """A stale lookup answering an older version queues nothing and fires no event (before, it
    was "new": installs queued everywhere, then queued again when the lookup answered the newer
    version); the known version stays, and the next higher version is an update."""
    host, mdm = setup()
    d = _installed(host, simulator, mdm)
    known = simulator.state.assets[(d["adam"], "STDQ")].version
    major, _, rest = known.partition(".")
    older = f"{int(major) - 1}.{rest}"  # the simulator's versions start at 1
    simulator.publish_version(d["adam"], older)
    with caplog.at_level(logging.WARNING, logger="plugins.mobile_apps"):
        code, out, err = mdm("apps", "check-updates")
    assert code == 0 and "no new version" in out, out + err
    assert len(commands(host, d["acked"])) == 1 and _fired(host, "mobile_apps_app_updated") == []
    [line] = [r.getMessage() for r in caplog.records if f"answers version {older}, lower than the known {known}" in r.getMessage()]
    assert d["adam"] in line
    assert _known_version(host, d["app"]) == known

    simulator.publish_version(d["adam"], f"{known}.0")  # the same version, written otherwise
    code, out, err = mdm("apps", "check-updates")
    assert code == 0 and "no new version" in out and len(commands(host, d["acked"])) == 1, out + err

    head, _, last = known.rpartition(".")
    nine, ten = f"{head}.{last}9", f"{head}.{last}10"  # numerically, not as text: 9 < 10
    for version in (nine, ten):
        simulator.publish_version(d["adam"], version)
        code, out, err = mdm("apps", "check-updates")
        assert code == 0 and f"-> {version}" in out, out + err
    assert [e["newVersion"] for e in _fired(host, "mobile_apps_app_updated") if str(e["id"]) == d["app"]] == [nine, ten]
    assert [c["status"] for c in commands(host, d["acked"])] == ["acknowledged", "queued"]  # the first update still waits: no second command


def test_the_list_shows_the_version_devices_are_on_and_the_newer_one_apart(setup, simulator):
    """A lookup (here ``refresh-metadata``) answers a new version before the update check
    applies it: `mdm apps list` showed that version as the app's (before, with nothing on the
    devices yet); it shows the one devices are on, the newer one as ``available``."""
    host, mdm = setup()
    d = _installed(host, simulator, mdm)
    old = simulator.state.assets[(d["adam"], "STDQ")].version
    new = simulator.publish_version(d["adam"])
    code, out, err = mdm("apps", "refresh-metadata", "--all")
    assert code == 0, out + err

    def listed(*args: str) -> dict[str, Any]:
        code, out, err = mdm("apps", "list", *args)
        assert code == 0, out + err
        rows = json.loads(out) if "--json" in args else [json.loads(line) for line in out.splitlines()]
        [shown] = [a for a in rows if str(a["id"]) == d["app"]]
        return dict(shown)

    for fmt in ("--json", "--jsonl"):
        shown = listed(fmt)
        assert (shown["version"], shown["available"]) == (old, new)
    code, out, _ = mdm("apps", "list")
    header, *lines = out.splitlines()
    [line] = [line for line in lines if line.split()[0] == d["app"]]
    assert header.split()[5:7] == ["version", "available"] and f" {old} " in line and f" {new} " in line
    code, out, _ = mdm("apps", "show", d["app"])
    assert f"{old} ({new} available: the update check installs it)" in out

    code, out, err = mdm("apps", "check-updates", "--no-install")
    assert code == 0 and f"-> {new}" in out, out + err
    shown = listed("--json")
    assert (shown["version"], shown["available"]) == (new, None)


def _stale_warnings(caplog: Any, mdm: MdmRunner) -> list[str]:
    """The stale-answer warnings one ``mdm apps check-updates`` logs."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="plugins.mobile_apps"):
        code, out, err = mdm("apps", "check-updates")
    assert code == 0, out + err
    return [r.getMessage() for r in caplog.records if "lower than the known" in r.getMessage()]


def test_a_stale_answer_is_warned_of_once_per_version(setup, simulator, caplog):
    """A stale lookup can last days while the scheduler checks often: its warning is logged by
    the first check only (before, by every check), even from another process (the state is in the
    database); a different stale version is warned of again, and after a real update the same
    stale version is news again."""
    host, mdm = setup()
    d = _installed(host, simulator, mdm)
    known = simulator.state.assets[(d["adam"], "STDQ")].version
    major, _, rest = known.partition(".")
    older, oldest = f"{int(major) - 1}.{rest}", f"{int(major) - 1}.0.1"
    simulator.publish_version(d["adam"], older)
    [line] = _stale_warnings(caplog, mdm)
    assert f"answers version {older}, lower than the known {known}" in line and d["adam"] in line
    assert _stale_warnings(caplog, mdm) == []  # the same stale answer: said already
    _, mdm2 = setup(again=True)  # another process on the same database
    assert _stale_warnings(caplog, mdm2) == []
    simulator.publish_version(d["adam"], oldest)
    [line] = _stale_warnings(caplog, mdm)
    assert f"answers version {oldest}, lower than the known {known}" in line
    simulator.publish_version(d["adam"], older)
    assert len(_stale_warnings(caplog, mdm)) == 1  # changed again: a different answer from the last warned

    newer = simulator.publish_version(d["adam"], f"{known}.1")
    assert _stale_warnings(caplog, mdm) == [] and _known_version(host, d["app"]) == newer
    simulator.publish_version(d["adam"], older)
    [line] = _stale_warnings(caplog, mdm)
    assert f"answers version {older}, lower than the known {newer}" in line


@pytest.mark.parametrize("value", ["0", "-5", "true"])
def test_update_check_is_validated_like_the_other_intervals(project_dir, monkeypatch, capsys, value):
    mdm = MdmRunner(project_dir, monkeypatch, capsys, config=f"[mobile_apps]\nupdate_check = {value}\n")
    code, out, err = mdm("apps", "list")
    assert code != 0 and "update_check" in err and len(err.strip().splitlines()) == 1, err


def test_mobile_apps_0003_apps_start_from_the_version_looked_up(project_dir, monkeypatch, capsys, database_url):
    from ..test_apple_migrations import _database_at, _upgrade_then_query

    app = (
        "INSERT INTO mobile_apps_app (id, account, adam_id, pricing_param, platform, kind, state, product_type, device_assignable, revocable,"
        " supported_platforms, assigned_count, available_count, retired_count, total_count, published_at, updated_at)"
        " VALUES ({id}, 'school', '{adam}', 'STDQ', '{platform}', 'app', 'published', 'App', true, true, '[]', 0, 1, 0, 1,"
        " '2026-01-02 03:04:05+00', '2026-01-02 03:04:05+00')"
    )
    meta = (
        "INSERT INTO mobile_apps_metadata (adam_id, platform, account, status, version, device_families, attempts)"
        " VALUES ('{adam}', '{platform}', 'school', '{status}', {version}, '[]', 0)"
    )
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"mobile_apps": "0002"},
        [
            app.format(id=1, adam="111", platform="iOS"),
            app.format(id=2, adam="111", platform="macOS"),
            app.format(id=3, adam="222", platform="iOS"),
            meta.format(adam="111", platform="iOS", status="ok", version="'6.2'"),
            meta.format(adam="111", platform="macOS", status="ok", version="'16.2'"),
            meta.format(adam="222", platform="iOS", status="pending", version="NULL"),
        ],
        url=database_url,
    )
    [rows] = _upgrade_then_query(
        mdm, "mobile_apps: applied 0003 (app known version", "SELECT id, known_version FROM mobile_apps_app ORDER BY id", url=database_url
    )
    assert rows == [(1, "6.2"), (2, "16.2"), (3, None)]


def test_mobile_apps_0004_metadata_keeps_its_rows_with_no_warning_said(project_dir, monkeypatch, capsys, database_url):
    from ..test_apple_migrations import _database_at, _upgrade_then_query

    meta = (
        "INSERT INTO mobile_apps_metadata (adam_id, platform, account, status, name, version, device_families, attempts)"
        " VALUES ('{adam}', '{platform}', 'school', 'ok', 'Atlas', '{version}', '[\"iPad\"]', 0)"
    )
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"mobile_apps": "0003"},
        [meta.format(adam="111", platform="iOS", version="6.2"), meta.format(adam="111", platform="macOS", version="16.2")],
        url=database_url,
    )
    [rows] = _upgrade_then_query(
        mdm,
        "mobile_apps: applied 0004 (metadata warned version",
        "SELECT adam_id, platform, name, version, warned_version FROM mobile_apps_metadata ORDER BY platform",
        url=database_url,
    )
    assert rows == [("111", "iOS", "Atlas", "6.2", None), ("111", "macOS", "Atlas", "16.2", None)]


def test_an_install_keeps_the_command_the_device_acknowledged_last_the_one_housekeeping_keeps(on_both):
    """A device answered an install's commands out of their order (the first one after a NotNow,
    once the update's): the install kept the one listed last, while housekeeping keeps the one
    acknowledged last and deletes the other, so the install's list matched no command on the
    device and a license taken back left the app there. Both now keep the one acknowledged last."""
    from datetime import timedelta

    from sqlalchemy import select, update
    from sqlmodel import col

    from mdm_core.housekeeping import prune_commands
    from mdm_core.inventory import add_device
    from mdm_core.inventory.commands import queue_command
    from mdm_core.models import Command, utcnow
    from plugins.mobile_apps.installs.commands import with_commands

    host, _ = on_both
    add_device(host, "C02ORDER", "iOS")
    payload = {"iTunesStoreID": 361309726}
    first, update_ = host.db.run_write(lambda s: [queue_command(host, s, "C02ORDER", "InstallApplication", payload).uuid for _ in range(2)])
    old = utcnow() - timedelta(days=400)
    for uuid, at in ((update_, old), (first, old + timedelta(minutes=5))):  # the update acknowledged first, then the install
        host.db.run_write(lambda s, u=uuid, t=at: s.execute(update(Command).where(Command.uuid == u).values(status="acknowledged", updated_at=t)))

    kept = host.db.run_write(lambda s: with_commands(s, [first, update_], []))
    prune_commands(host.db, utcnow(), 100)

    with host.db.session() as s:
        left = list(s.execute(select(col(Command.uuid))).scalars())
    assert kept == left == [first], (kept, left)
