"""Installing with VPP licenses: devices, users, files, every refusal, Apple's failures,
licenses already held, pending confirmations and auto-install of portal assignments."""

from __future__ import annotations

import json
import re
import shlex
import time
from typing import Any

from sqlmodel import col

from mdm_core import hookimpl
from mdm_core.inventory import add_device, add_user
from plugins.mobile_apps.installs.commands import list_installs
from plugins.mobile_apps.installs.request import install
from plugins.mobile_apps.models import Install
from plugins.mobile_apps.vpp_port import VppPort

from .conftest import app_id, commands, fixed_assets, free_serials, holders, sync


def test_device_install_end_to_end(host, simulator, mdm):
    a = fixed_assets(simulator)[1]  # iOS + macOS
    ipad, mac = free_serials(simulator, a["adamId"])[:2]
    add_device(host, ipad, "iPadOS")
    add_device(host, mac, "macOS")
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device", ipad, "--device", mac, "--wait", "5")
    assert code == 0, err
    assert f"{ipad}: queued: InstallApplication queued" in out and "license associated" in out
    assert {ipad, mac} <= holders(simulator, a["adamId"])
    [ios_cmd] = commands(host, ipad)
    assert ios_cmd["payload"] == {
        "RequestType": "InstallApplication",
        "iTunesStoreID": int(a["adamId"]),
        "Options": {"PurchaseMethod": 1},
        "ManagementFlags": 1,
        "ChangeManagementState": "Managed",
    }
    assert isinstance(ios_cmd["payload"]["iTunesStoreID"], int)
    [mac_cmd] = commands(host, mac)
    assert mac_cmd["payload"]["InstallAsManaged"] is True
    assert {r["target"] for r in list_installs(host, "queued")} == {ipad, mac}
    code, out, _ = mdm("apps", "show", app_id(host, a["adamId"], platform="macOS"))
    assert code == 0 and ipad in out and mac in out


def test_user_enrollment_gets_only_the_keys_apple_allows_there(host, simulator, mdm, project_dir):
    """Apple forbids ChangeManagementState under User Enrollment (iOS and macOS), and on macOS
    ManagementFlags and InstallAsManaged too (apple/device-management application.install.yaml)."""
    a = fixed_assets(simulator)[1]  # iOS + macOS
    phone, mac, byod_mac = free_serials(simulator, a["adamId"])[:3]
    assert mdm("devices", "add", phone, "--platform", "iOS", "--enrollment-type", "user")[0] == 0
    (project_dir / "devices.csv").write_text(f"serial_number,platform,udid,model,user,enrollment_type\n{mac},macOS,,,,automated\n{byod_mac},macOS,,,,User\n")
    code, out, err = mdm("devices", "import", str(project_dir / "devices.csv"))
    assert code == 0, err
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device", phone, "--device", mac, "--device", byod_mac, "--wait", "5")
    assert code == 0, err
    [byod_phone_cmd] = commands(host, phone)
    assert byod_phone_cmd["payload"] == {
        "RequestType": "InstallApplication",
        "iTunesStoreID": int(a["adamId"]),
        "Options": {"PurchaseMethod": 1},
        "ManagementFlags": 1,
    }
    [managed_mac_cmd] = commands(host, mac)
    assert managed_mac_cmd["payload"]["ChangeManagementState"] == "Managed" and managed_mac_cmd["payload"]["InstallAsManaged"] is True
    [byod_mac_cmd] = commands(host, byod_mac)
    assert byod_mac_cmd["payload"] == {"RequestType": "InstallApplication", "iTunesStoreID": int(a["adamId"]), "Options": {"PurchaseMethod": 1}}
    code, out, _ = mdm("devices", "list")
    assert code == 0 and "enrollment_type" in out.splitlines()[0]
    code, out, err = mdm("devices", "add", "C02BAD", "--platform", "iOS", "--enrollment-type", "byod")
    assert code == 2 and "invalid choice: 'byod'" in err


def test_already_licensed_device_gets_the_command_without_a_second_association(host, simulator, mdm):
    a = fixed_assets(simulator)[0]
    serial = sorted(s for s in holders(simulator, a["adamId"]) if s in simulator.state.device_serials())[0]
    add_device(host, serial, "iOS")
    events_before = simulator.state._event_counter
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device", serial)
    assert code == 0, err
    assert "license already held" in out
    assert simulator.state._event_counter == events_before  # no associate request reached Apple
    assert len(commands(host, serial)) == 1
    code, out, _ = mdm("apps", "install", app_id(host, a["adamId"]), "--device", serial)
    assert code == 0 and "already queued" in out and len(commands(host, serial)) == 1
    # asked twice while its command waits: one install in `mdm apps installs`, not two
    [install] = [i for i in list_installs(host) if i["target"] == serial]
    assert install["status"] == "queued" and install["command_uuids"] == [commands(host, serial)[0]["uuid"]]


def test_user_install_end_to_end(host, simulator, mdm):
    a = fixed_assets(simulator)[0]  # iOS only
    associated = [u for u in simulator.state.user_ids("Associated") if u not in holders(simulator, a["adamId"])]
    user = associated[0]
    add_user(host, user)
    ipad, mac = free_serials(simulator, a["adamId"])[:2]
    add_device(host, ipad, "iPadOS", owner=user)
    add_device(host, mac, "macOS", owner=user)
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--user", user)
    assert code == 0, err
    assert f"{user}: licensed: user license associated" in out
    assert f"{mac}: skipped: platform mismatch" in out
    assert user in holders(simulator, a["adamId"])
    assert len(commands(host, ipad)) == 1 and commands(host, mac) == []
    assert ipad not in holders(simulator, a["adamId"])  # a user license, not a device one
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--user", user)
    assert code == 0 and f"{ipad}: queued: InstallApplication already queued" in out, out + err
    [install] = [i for i in list_installs(host) if i["target"] == user]  # the same install, not a second one
    assert install["status"] == "queued" and install["command_uuids"] == [commands(host, ipad)[0]["uuid"]]


def test_a_user_whose_only_devices_cannot_run_the_app_is_told_so(on_both, simulator):
    """A user whose enrolled devices are all Macs, an iOS app: the Macs were skipped and the user
    licensed with no word about why nothing was installed (the note was said only for a user
    with no device at all). Now the user's line says the license is ready and why it waits."""
    host, mdm = on_both
    a = fixed_assets(simulator)[0]  # iOS only
    user = [u for u in simulator.state.user_ids("Associated") if u not in holders(simulator, a["adamId"])][0]
    add_user(host, user)
    mac = free_serials(simulator, a["adamId"])[0]
    add_device(host, mac, "macOS", owner=user)
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--user", user)
    assert code == 0, err
    assert out.splitlines()[:3] == [
        f"{mac}: skipped: platform mismatch: the device runs macOS, adamId {a['adamId']} supports iOS: install it on a device that runs iOS or iPadOS; "
        "for this device, choose an app `mdm apps list --platform macOS` lists",
        f"{user}: licensed: user license associated",
        f"{user}: note: no enrolled device of this user runs iOS: the license is ready; run the install again once a device is enrolled",
    ], out
    assert commands(host, mac) == [] and user in holders(simulator, a["adamId"])


def test_user_registered_with_mdm_vpp_users_register(host, simulator, mdm):
    a = fixed_assets(simulator)[1]
    add_user(host, "kid-42", email="kid42@example.org", managed_apple_id="kid42@appleid.example.org")
    serial = free_serials(simulator, a["adamId"])[0]
    add_device(host, serial, "iOS", owner="kid-42")
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--user", "kid-42")
    assert code == 1 and "register it with `mdm vpp users register kid-42 --account school`" in err
    code, out, err = mdm("vpp", "users", "register", "kid-42")
    assert code == 0 and "associated" in out, err
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--user", "kid-42")
    assert code == 0, err
    assert "kid-42" in holders(simulator, a["adamId"]) and len(commands(host, serial)) == 1


def test_the_advice_to_register_a_vpp_user_works_as_written_with_several_accounts(host, simulator, mdm, project_dir):
    """With two accounts, the refusal said `mdm vpp users register kid-42`, which refuses to
    guess the account ('give --account NAME'): the advice names the account it means."""
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.testing import add_simulated_account

    a = fixed_assets(simulator)[1]
    add_user(host, "kid-42", email="kid42@example.org", managed_apple_id="kid42@appleid.example.org")
    serial = free_serials(simulator, a["adamId"])[0]
    add_device(host, serial, "iOS", owner="kid-42")
    with Simulator(seed=12, assets=2, devices=3, users=2, async_delay=0) as other:
        add_simulated_account(host, other, project_dir, name="district")
        code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--user", "kid-42")
        assert code == 1
        [advice] = re.findall(r"register it with `mdm ([^`]*)`", err)
        assert advice == "vpp users register kid-42 --account school"
        code, out, err = mdm(*shlex.split(advice))
        assert code == 0 and "kid-42: associated" in out, err
        code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--user", "kid-42")
        assert code == 0, err
    assert "kid-42" in holders(simulator, a["adamId"]) and len(commands(host, serial)) == 1


def test_every_refusal_says_why_and_queues_nothing(host, simulator, mdm):
    assets = fixed_assets(simulator)
    ios, user_only = assets[0], assets[2]
    serials = free_serials(simulator, ios["adamId"], user_only["adamId"])
    mac, ipad = serials[0], serials[1]
    add_device(host, mac, "macOS")
    add_device(host, ipad, "iPadOS")
    ios_app = app_id(host, ios["adamId"])

    code, _, err = mdm("apps", "install", ios_app, "--device", mac)
    assert code == 1 and f"{mac}: refused: platform mismatch: the device runs macOS" in err
    [advice] = re.findall(r"for this device, choose an app `mdm ([^`]*)` lists", err)  # the fix, a command that runs as written
    code, out, _ = mdm(*shlex.split(advice), "--json")
    assert code == 0 and {a["platform"] for a in json.loads(out)} == {"macOS"} and ios_app not in {str(a["id"]) for a in json.loads(out)}
    code, _, err = mdm("apps", "install", app_id(host, user_only["adamId"]), "--device", ipad)
    assert code == 1 and "not device-assignable" in err
    code, _, err = mdm("apps", "install", ios_app, "--device", "NOSUCHDEVICE1")
    assert code == 1 and "NOSUCHDEVICE1: refused: not enrolled" in err
    add_user(host, "nobody")
    code, _, err = mdm("apps", "install", ios_app, "--user", "nobody")
    assert code == 1 and "register it with `mdm vpp users register nobody --account school`" in err
    registered = simulator.state.user_ids("Registered")[0]
    add_user(host, registered)
    code, out, err = mdm("apps", "install", ios_app, "--user", registered)  # not refused: it waits (test_install_notified.py)
    assert code == 0 and f"{registered}: waiting: waiting for the user to accept the invitation" in out, err
    code, _, err = mdm("apps", "install", ios_app, "--user", "ghost")
    assert code == 1 and "not an MDM user" in err
    book = app_id(host, assets[4]["adamId"])
    code, _, err = mdm("apps", "install", book, "--device", ipad)
    assert code == 1 and "is a book" in err

    scarce, _ = simulator.purchase(count=1)
    simulator.assign_in_portal(scarce, serial_number="ELSEWHERE001")
    sync(host)
    code, _, err = mdm("apps", "install", app_id(host, scarce), "--device", ipad)
    assert code == 1 and "not enough licenses: 0 available" in err
    assert commands(host) == []
    assert mac not in holders(simulator, ios["adamId"]) and ipad not in holders(simulator, scarce)


def test_apple_9709_is_reported_per_device_and_nothing_is_queued(host, simulator, mdm):
    adam, _ = simulator.purchase(count=2)
    sync(host)  # the mirror now says 2 available ...
    simulator.assign_in_portal(adam, serial_number="PORTAL000001")
    simulator.assign_in_portal(adam, serial_number="PORTAL000002")  # ... but Apple has none left
    first, second = free_serials(simulator, adam)[:2]
    add_device(host, first, "iOS")
    add_device(host, second, "iPadOS")
    code, out, err = mdm("apps", "install", app_id(host, adam), "--device", first, "--device", second)
    assert code == 1
    for serial in (first, second):
        assert f"{serial}: failed: Apple refused the license" in err and "(Apple error 9709)" in err
    assert err.count("9709") == 2
    assert commands(host) == []
    # the local refusal's advice, and why the counts were wrong: a sync refreshes them
    reclaim = f"(buy more, or reclaim unused ones with `mdm apps reclaim {adam} --unused`)"
    advice = f"{reclaim}; `mdm vpp assets --account school` shows the counts as of the last sync: `mdm vpp sync school` refreshes them"
    assert err.count(advice) == 2, err
    # each command as written runs (`mdm apps reclaim ADAMID` alone was a usage error: which licenses?)
    written = re.search(r"`mdm (apps reclaim [^`]*)`", err)
    assert written is not None and mdm(*shlex.split(written[1]))[0] == 0, err
    assert mdm("vpp", "sync", "school")[0] == 0  # now this host refuses before asking Apple
    code, out, err = mdm("apps", "install", app_id(host, adam), "--device", first)
    assert code == 1 and "not enough licenses: 0 available" in err and reclaim in err and "9709" not in err


def test_several_serials_after_one_device_as_the_synopsis_says(host, simulator, mdm):
    """`mdm apps install APP --device A B` (the README's `--device SERIAL ...`) was
    "unrecognized arguments: B": serials follow one --device, or --device is repeated, or both."""
    a = fixed_assets(simulator)[0]
    serials = free_serials(simulator, a["adamId"])[:3]
    for serial in serials:
        add_device(host, serial, "iOS")
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device", *serials[:2], "--device", serials[2], "--wait", "5")
    assert code == 0, err
    assert [line.split(":")[0] for line in out.splitlines()[:3]] == serials, out
    assert all(len(commands(host, s)) == 1 for s in serials) and set(serials) <= holders(simulator, a["adamId"])
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device")
    assert (code, out) == (2, "") and "--device: expected at least one argument" in err
    code, out, err = mdm("apps", "install", "--device", serials[0], app_id(host, a["adamId"]))  # APP taken for a serial: said, nothing done
    assert (code, out) == (2, "") and err.startswith("mdm: error: APP is missing: give it first") and len(err.splitlines()) == 1, err
    assert all(len(commands(host, s)) == 1 for s in serials)


def test_devices_file(host, simulator, mdm, project_dir):
    a = fixed_assets(simulator)[0]
    good = free_serials(simulator, a["adamId"])[:2]
    for serial in good:
        add_device(host, serial, "iOS")
    bad = project_dir / "bad.txt"
    bad.write_text(f"{good[0]}\nnot a serial!\n{good[0]}\n")
    code, _, err = mdm("apps", "install", app_id(host, a["adamId"]), "--devices-file", str(bad))
    assert code == 2 and "line 2:" in err and "line 3:" in err and "nothing was done" in err
    assert commands(host) == []
    bad_csv = project_dir / "bad.csv"  # read by the inventory's CSV reader: comments, column counts, duplicates
    bad_csv.write_text(f"# exported from the asset register\nroom,Serial_Number\nB12,{good[0]}\nB13\nB14,{good[0].lower()}\n")
    code, _, err = mdm("apps", "install", app_id(host, a["adamId"]), "--devices-file", str(bad_csv))
    assert code == 2 and f"{bad_csv}: line 4: expected 2 columns, got 1" in err
    assert f"{bad_csv}: line 5: '{good[0]}' already appears on line 3" in err and "nothing was done" in err
    csv_file = project_dir / "devices.csv"
    csv_file.write_text("serial_number,room\n" + "".join(f"{s.lower()},B12\n" for s in good))
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--devices-file", str(csv_file))
    assert code == 0, err
    assert all(len(commands(host, s)) == 1 for s in good)


def test_devices_is_not_taken_for_devices_file(host, simulator, mdm):
    """`--devices SERIAL` (plural) was read as `--devices-file SERIAL`: 'SERIAL: cannot be
    read (No such file or directory)'. It is an unknown option naming the two meant."""
    a = fixed_assets(simulator)[0]
    serial = free_serials(simulator, a["adamId"])[0]
    add_device(host, serial, "iOS")
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--devices", serial)
    assert (code, out) == (2, "")
    assert err == "mdm apps install: error: one of the arguments --device --user --devices-file is required (see mdm apps install --help)\n"
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device", serial, "--devices", serial)
    assert (code, out) == (2, "")
    meant = "did you mean --device or --devices-file? (see mdm apps install --help)"
    assert err == f"mdm apps install: error: unrecognized arguments: --devices {serial}: {meant}\n"
    assert commands(host) == []


def test_pending_confirmation_is_recorded_and_completed_later(make_apps_host, mdm, apps_events):
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=7, async_delay=60) as slow:
        host = make_apps_host(sim=slow)
        sync(host)
        a = fixed_assets(slow)[0]
        serial = free_serials(slow, a["adamId"])[0]
        add_device(host, serial, "iOS")
        code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device", serial, "--wait", "0")
        assert code == 0, err
        assert f"{serial}: pending: Apple has not confirmed the license" in out
        assert [r["target"] for r in list_installs(host, "pending")] == [serial] and commands(host) == []
        slow.state.process_due(now=time.monotonic() + 120)  # Apple completes the event
        sync(host)  # the license shows up: the pending install is queued
        [command] = commands(host, serial)
        assert list_installs(host, "pending") == []
        [queued] = apps_events.named("mobile_apps_install_queued")
        assert queued == {
            "account": "school",
            "adamId": a["adamId"],
            "pricingParam": "STDQ",
            "serialNumber": serial,
            "commandUuid": command["uuid"],
            "license": "device",
            "clientUserId": None,
            "source": "pending",
        }


def test_auto_install_on_a_portal_assignment(make_apps_host, simulator):
    from sqlalchemy import select

    from mdm_core.models import OutboxEvent

    host = make_apps_host("auto_install = true\n")
    sync(host)
    a = fixed_assets(simulator)
    ipad, mac = free_serials(simulator, a[0]["adamId"])[:2]
    add_device(host, ipad, "iPadOS")
    add_device(host, mac, "macOS")
    simulator.assign_in_portal(a[0]["adamId"], serial_number=ipad)
    simulator.assign_in_portal(a[0]["adamId"], serial_number=mac)  # iOS-only app: not installable on the Mac
    sync(host)
    [cmd] = commands(host, ipad)
    assert cmd["payload"]["iTunesStoreID"] == int(a[0]["adamId"]) and cmd["payload"]["Options"] == {"PurchaseMethod": 1}
    assert commands(host, mac) == []
    with host.db.session() as session:
        [event] = [
            e
            for e in session.execute(select(OutboxEvent).where(col(OutboxEvent.name) == "vpp_licenses_associated")).scalars()
            if ipad in e.payload["serialNumbers"] and e.payload["adamId"] == a[0]["adamId"]
        ]
    from mdm_core.events import Event

    host.events.dispatch(Event(name=event.name, payload=event.payload, id=event.id))  # delivered twice
    sync(host)
    assert len(commands(host, ipad)) == 1


def test_portal_assignment_without_auto_install_queues_nothing(host, simulator):
    a = fixed_assets(simulator)[0]
    serial = free_serials(simulator, a["adamId"])[0]
    add_device(host, serial, "iOS")
    simulator.assign_in_portal(a["adamId"], serial_number=serial)
    sync(host)
    assert commands(host, serial) == []


class FailedInstalls:
    """A subscriber to ``mobile_apps_install_failed``."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []

    @hookimpl(optionalhook=True)
    def mdm_mobile_apps_install_failed(self, host, event):
        self.payloads.append(event.payload)


def test_a_pending_install_that_apple_refuses_fails_with_an_event(make_apps_host, mdm):
    from plugins.mobile_apps.installs.pending import retry_pending
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=7, async_delay=60) as slow:
        host = make_apps_host(sim=slow)
        listener = FailedInstalls()
        host.pm.register(listener)
        adam, _ = slow.purchase(count=1)
        sync(host)
        serial = free_serials(slow, adam)[0]
        add_device(host, serial, "iOS")
        code, out, err = mdm("apps", "install", app_id(host, adam), "--device", serial, "--wait", "0")
        assert code == 0 and f"{serial}: pending" in out, err
        slow.assign_in_portal(adam, serial_number="ELSEWHERE001")  # the last license goes elsewhere meanwhile
        slow.state.process_due(now=time.monotonic() + 120)
        slow.state.async_delay = 0
        assert retry_pending(host)["failed"] == 1
        [row] = list_installs(host, "failed")
        assert row["target"] == serial and "9709" in row["error"]
        assert commands(host, serial) == []
        [payload] = listener.payloads
        assert payload == {
            "id": row["id"],
            "account": "school",
            "adamId": adam,
            "pricingParam": "STDQ",
            "license": "device",
            "serialNumber": serial,
            "clientUserId": None,
            "source": "request",
            "error": row["error"],
            "errorNumber": 9709,
        }
        assert retry_pending(host) == {"asked": 0, "queued": 0, "failed": 0, "pending": 0}
        assert len(listener.payloads) == 1  # failed once, announced once


def test_install_wait_must_be_finite_and_not_negative(host, simulator, mdm):
    import pytest

    from mdm_core.errors import UsageError
    from plugins.mobile_apps.installs.request import install

    a = fixed_assets(simulator)[1]
    for wait in ("nan", "inf", "-1"):
        code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device", "ABC", "--wait", wait)
        assert code == 2 and "--wait" in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(UsageError, match="--wait must be a finite number"):
        install(host, a["adamId"], serials=["ABC"], wait=float("nan"))


def test_a_redelivered_license_event_does_not_install_the_app_again(make_apps_host, simulator):
    """The duplicate-event guard: with auto_install, a ``vpp_licenses_associated`` delivered again
    (after a crash) once its InstallApplication was sent must not queue a second one."""
    from sqlalchemy import select

    from mdm_core.events import Event
    from mdm_core.inventory import set_command_status
    from mdm_core.models import OutboxEvent

    host = make_apps_host("auto_install = true\n")
    sync(host)
    a = fixed_assets(simulator)[0]
    ipad = free_serials(simulator, a["adamId"])[0]
    add_device(host, ipad, "iPadOS")
    simulator.assign_in_portal(a["adamId"], serial_number=ipad)
    sync(host)
    [command] = commands(host, ipad)
    set_command_status(host, command["uuid"], "acknowledged")  # the device installed it
    with host.db.session() as session:
        [event] = [
            e
            for e in session.execute(select(OutboxEvent).where(col(OutboxEvent.name) == "vpp_licenses_associated")).scalars()
            if ipad in e.payload["serialNumbers"] and e.payload["adamId"] == a["adamId"]
        ]
    host.events.dispatch(Event(name=event.name, payload=event.payload, id=event.id))  # delivered again
    host.deliver_events()
    assert [c["uuid"] for c in commands(host, ipad)] == [command["uuid"]]
    assert len([r for r in list_installs(host) if r["target"] == ipad]) == 1


def test_the_installs_job_queues_a_pending_install_once_apple_confirms(make_apps_host, mdm, apps_events):
    """The ``mobile_apps.installs`` job, run by the host's scheduler: while Apple cannot be reached
    the install stays pending (attempt and error recorded); once Apple confirms the license the
    job queues InstallApplication, without waiting for a sync."""
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=7, async_delay=60) as slow:
        host = make_apps_host(sim=slow)
        sync(host)
        job = host.build_scheduler(inline=True).jobs["mobile_apps.installs"]
        a = fixed_assets(slow)[0]
        serial = free_serials(slow, a["adamId"])[0]
        add_device(host, serial, "iOS")
        assert mdm("apps", "install", app_id(host, a["adamId"]), "--device", serial, "--wait", "0")[0] == 0
        [pending] = list_installs(host, "pending")

        slow.faults.add("drop", endpoint="assets/associate")  # Apple unreachable at the job's first run
        assert job.func() == {"asked": 1, "queued": 0, "failed": 0, "pending": 1}
        [still] = list_installs(host, "pending")
        assert still["id"] == pending["id"] and still["attempts"] == pending["attempts"] + 1 and "cannot reach Apple" in still["error"]
        assert commands(host, serial) == []

        slow.faults.clear()
        slow.state.process_due(now=time.monotonic() + 120)  # Apple completes the first association
        slow.state.async_delay = 0
        counts = job.func()
        # the command is queued by the license event the job's association delivers, before the
        # job's own bookkeeping: its count still says so (it said "queued 0")
        assert counts == {"asked": 1, "queued": 1, "failed": 0, "pending": 0}
        [command] = commands(host, serial)
        assert list_installs(host, "pending") == [] and [r["command_uuids"] for r in list_installs(host, "queued")] == [[command["uuid"]]]
        assert [r["error"] for r in list_installs(host, "queued")] == [None]  # not Apple's past "cannot reach" on a queued install
        assert [e["source"] for e in apps_events.named("mobile_apps_install_queued")] == ["pending"]
        assert job.func() == {"asked": 0, "queued": 0, "failed": 0, "pending": 0}  # nothing left to ask


def test_quiet_install_prints_only_what_went_wrong(host, simulator, mdm):
    """``mdm -q apps install``: nothing on success; a refused target still says why, on stderr."""
    a = fixed_assets(simulator)[1]
    serial = free_serials(simulator, a["adamId"])[0]
    add_device(host, serial, "iPadOS")
    assert mdm("-q", "apps", "install", app_id(host, a["adamId"]), "--device", serial, "--wait", "5") == (0, "", "")
    assert [c["payload"]["RequestType"] for c in commands(host, serial)] == ["InstallApplication"]
    code, out, err = mdm("-q", "apps", "install", app_id(host, a["adamId"]), "--device", "NOT-ENROLLED", "--wait", "5")
    assert code == 1 and "NOT-ENROLLED: refused:" in err
    assert "1 refused" in out  # the summary of a command that failed is not silenced


def test_a_pending_install_of_a_device_or_user_removed_meanwhile_is_canceled_not_licensed(host, simulator, mdm):
    """Apple down at the install, the device (or user) removed before the installs job asked
    again: the job used to license the removed device anyway (its removal's revoke was already
    done, so that license was never reclaimed) and call the install queued."""
    from mdm_core.inventory import remove_device, remove_user
    from plugins.mobile_apps.installs.pending import retry_pending

    a = fixed_assets(simulator)[0]
    serial = free_serials(simulator, a["adamId"])[0]
    user = "user-walk3"
    add_device(host, serial, "iOS")
    add_user(host, user)
    simulator.faults.add("server_error", endpoint="assets/associate")
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device", serial, "--wait", "0")
    assert code == 0 and f"{serial}: pending" in out, err
    host.db.run_write(
        lambda s: s.add(Install(account="school", adam_id=a["adamId"], pricing_param="STDQ", kind="user", target=user, source="request", status="pending"))
    )
    simulator.faults.clear()
    remove_device(host, serial)
    remove_user(host, user)
    assert retry_pending(host) == {"asked": 0, "queued": 0, "failed": 0, "pending": 0}
    assert serial not in holders(simulator, a["adamId"]) and user not in holders(simulator, a["adamId"])
    rows = {r["target"]: r for r in list_installs(host)}
    assert (rows[serial]["status"], rows[user]["status"]) == ("canceled", "canceled")
    assert "device was removed" in rows[serial]["error"] and "user was removed" in rows[user]["error"]
    code, out, _ = mdm("apps", "installs", "--status", "pending")
    assert serial not in out


def test_an_install_asked_again_after_it_was_interrupted_stays_one_install(on_both, simulator):
    """The first ``mdm apps install`` killed while Apple was asked (its ``associating`` record
    left), the admin asks again: one install, queued, that the installs job then leaves alone
    (it was two installs of one device, both ``queued``, sharing one command)."""
    from datetime import timedelta

    from sqlalchemy import update

    from mdm_core.models import utcnow
    from plugins.mobile_apps.installs.request import resolve_asset
    from plugins.mobile_apps.installs.reserve import reserve
    from plugins.mobile_apps.jobs import installs_job

    host, mdm = on_both
    a = fixed_assets(simulator)[0]
    serial = free_serials(simulator, a["adamId"])[0]
    add_device(host, serial, "iOS")
    app = app_id(host, a["adamId"])
    reserve(host, resolve_asset(host, app), [serial], [])  # the killed install's record

    code, out, err = mdm("apps", "install", app, "--device", serial)
    assert code == 0 and f"{serial}: queued: InstallApplication queued" in out, out + err
    host.db.run_write(lambda session: session.execute(update(Install).values(updated_at=utcnow() - timedelta(days=1))))  # long past interrupted_after
    installs_job(host)
    assert [(i["target"], i["status"], i["error"]) for i in list_installs(host)] == [(serial, "queued", None)]
    assert len(commands(host, serial)) == 1


def test_a_batch_of_30_devices_reads_their_licenses_once(on_both, simulator, monkeypatch):
    """``mdm apps install APP --device`` x 30 (or the API's batch) asked the mirror which
    devices held a license one serial at a time: 30 reads. Now one read, the same results."""
    host, _ = on_both
    adam, _ = simulator.purchase(count=40)
    serials = simulator.state.device_serials()[:30]
    for serial in serials[:3]:
        simulator.assign_in_portal(adam, serial_number=serial)  # held already: queued without asking Apple
    sync(host)
    for serial in serials:
        add_device(host, serial, "iOS")
    reads: list[dict[str, Any]] = []
    real = VppPort.licenses

    def counted(port: VppPort, *args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs)
        return real(port, *args, **kwargs)

    monkeypatch.setattr(VppPort, "licenses", counted)
    out = install(host, app_id(host, adam), serials=serials)

    assert len(reads) == 1, reads
    lines = out.as_dicts()
    assert [line["target"] for line in lines] == serials and {line["status"] for line in lines} == {"queued"}, lines
    assert [line["message"].endswith("license already held)") for line in lines] == [True] * 3 + [False] * 27
    assert holders(simulator, adam) == set(serials) and all(len(commands(host, s)) == 1 for s in serials)


def test_a_users_device_removed_while_apple_licenses_the_user_is_said_and_recorded(on_both, simulator, monkeypatch):
    """A user's device removed from this MDM while Apple licensed the user was skipped without a
    word; with no device left, the install was recorded ``queued`` with no command. Now the
    device's line says it was removed and nothing was queued on it; with none left, the user's
    install is ``licensed``, saying there is no enrolled device to install on."""
    from mdm_core.inventory import remove_device

    host, _ = on_both
    a = fixed_assets(simulator)[0]  # iOS only
    first, second = [u for u in simulator.state.user_ids("Associated") if u not in holders(simulator, a["adamId"])][:2]
    kept, gone, alone = free_serials(simulator, a["adamId"])[:3]
    add_user(host, first)
    add_user(host, second)
    add_device(host, kept, "iOS", owner=first)
    add_device(host, gone, "iPadOS", owner=first)
    add_device(host, alone, "iOS", owner=second)
    real = VppPort.associate
    removed: list[str] = []

    def associate(port, *args, **kwargs):  # the admin unenrols a device while Apple is asked
        result = real(port, *args, **kwargs)
        remove_device(host, removed.pop())
        return result

    monkeypatch.setattr(VppPort, "associate", associate)
    app = app_id(host, a["adamId"])
    removed.append(gone)
    lines = {line["target"]: (line["status"], line["message"]) for line in install(host, app, user=first).as_dicts()}
    assert {t: s for t, (s, _) in lines.items()} == {first: "licensed", kept: "queued", gone: "skipped"}, lines
    assert lines[gone][1] == "not enrolled any more: the device was removed from this MDM while Apple licensed the user; nothing was queued for it"
    removed.append(alone)
    alone_lines = [tuple(line.values()) for line in install(host, app, user=second).as_dicts()]
    assert alone_lines == [
        (second, "licensed", "user license associated"),
        (alone, "skipped", "not enrolled any more: the device was removed from this MDM while Apple licensed the user; nothing was queued for it"),
        (second, "note", "no enrolled device owned by this user: the license is ready; run the install again once a device is enrolled"),
    ], alone_lines
    installs = {i["target"]: (i["status"], i["command_uuids"], i["error"]) for i in list_installs(host)}
    assert installs[first][0] == "queued" and len(installs[first][1]) == 1
    assert installs[second] == ("licensed", [], "licensed, but no enrolled device of the user to install on")
    assert {first, second} <= holders(simulator, a["adamId"]) and commands(host, alone) == [] and commands(host, gone) == []


def test_the_admins_installs_job_run_while_a_users_install_asks_apple_leaves_the_request_its_outcome(on_both, simulator, monkeypatch):
    """`mdm jobs run mobile_apps.installs` asks Apple again for every ``associating`` install,
    one whose request is still asking too. For a user with no enrolled device, the job's answer
    recorded the install ``queued`` with no command (the request's ``licensed`` was then
    skipped). It now ends ``licensed`` with the reason, whichever answer comes first; a user
    with a device gets one install and one command."""
    from plugins.mobile_apps.installs.pending import retry_pending
    from plugins.mobile_apps.installs.request import NO_DEVICE

    host, _ = on_both
    a = fixed_assets(simulator)[0]  # iOS only
    lonely, owner = [u for u in simulator.state.user_ids("Associated") if u not in holders(simulator, a["adamId"])][:2]
    add_user(host, lonely)
    add_user(host, owner)
    [serial] = free_serials(simulator, a["adamId"])[:1]
    add_device(host, serial, "iOS", owner=owner)
    real = VppPort.associate
    job_runs: list[dict[str, int]] = []

    def associate(port, *args, **kwargs):  # the admin runs the job while the request asks Apple
        if not job_runs:
            job_runs.append({})
            job_runs[0] = retry_pending(host, resume_all=True)
        return real(port, *args, **kwargs)

    monkeypatch.setattr(VppPort, "associate", associate)
    app = app_id(host, a["adamId"])
    assert [line["status"] for line in install(host, app, user=lonely).as_dicts()] == ["licensed", "note"]
    assert job_runs[0]["asked"] == 1
    job_runs.clear()
    assert [line["status"] for line in install(host, app, user=owner).as_dicts()] == ["licensed", "queued"]
    installs = {i["target"]: (i["status"], i["command_uuids"], i["error"]) for i in list_installs(host)}
    assert installs[lonely] == ("licensed", [], NO_DEVICE), installs
    assert installs[owner][0] == "queued" and len(installs[owner][1]) == 1 and len(commands(host, serial)) == 1, installs
    assert len(list_installs(host)) == 2 and {lonely, owner} <= holders(simulator, a["adamId"])
