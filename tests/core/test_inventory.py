"""Inventory: devices, users, commands, through the API and `mdm`; imports are all or nothing."""

from __future__ import annotations

import json

import pytest

from mdm_core import inventory
from mdm_core.errors import MdmError, UsageError

RECORDER = """
    seen = []

    @hookimpl
    def mdm_device_enrolled(host, event):
        seen.append(("enrolled", dict(event.payload)))

    @hookimpl
    def mdm_device_removed(host, event):
        seen.append(("removed", dict(event.payload)))
"""


def test_add_and_remove_device_fire_hooks_with_payload(make_host, load_plugin):
    rec = load_plugin(RECORDER)
    host = make_host(plugins=[rec])
    inventory.add_user(host, "u1", email="u1@example.com")
    row = inventory.add_device(host, "c02abc", "ipados", udid="UDID-1", model="iPad13,1", owner="u1")
    payload = {"serial_number": "C02ABC", "udid": "UDID-1", "platform": "iPadOS", "model": "iPad13,1", "owner": "u1"}
    assert row.payload() == payload
    assert rec.seen == [("enrolled", payload)]
    inventory.add_device(host, "C02ABC", "iPadOS", model="iPad14,1", owner="u1")  # an update fires nothing
    assert len(rec.seen) == 1
    inventory.remove_device(host, " c02abc ")
    assert rec.seen[1] == ("removed", {**payload, "model": "iPad14,1", "udid": None})
    assert inventory.list_devices(host) == []
    with pytest.raises(MdmError, match="device C02ABC is not enrolled"):
        inventory.remove_device(host, "C02ABC")


USER_RECORDER = """
    seen = []

    @hookimpl
    def mdm_user_added(host, event):
        seen.append(("added", dict(event.payload)))

    @hookimpl
    def mdm_user_removed(host, event):
        seen.append(("removed", dict(event.payload)))
"""


def test_add_and_remove_user_fire_hooks_and_keep_its_devices(make_host, load_plugin, tmp_path):

    rec = load_plugin(USER_RECORDER)
    host = make_host(plugins=[rec])
    inventory.add_user(host, "u1", email="u1@example.com", managed_apple_id="u1@school.example", name="Una")
    payload = {"id": "u1", "email": "u1@example.com", "managed_apple_id": "u1@school.example", "name": "Una"}
    assert rec.seen == [("added", payload)]
    inventory.add_user(host, "u1", email="una@example.com")  # an update fires nothing
    assert len(rec.seen) == 1
    inventory.add_device(host, "S1", "ios", owner="u1")
    inventory.remove_user(host, "u1")
    assert rec.seen[1] == ("removed", {**payload, "email": "una@example.com", "managed_apple_id": None, "name": None})
    assert inventory.list_users(host) == []
    assert [(d["serial_number"], d["owner"]) for d in inventory.list_devices(host)] == [("S1", None)]
    with pytest.raises(MdmError, match="'u1' is not an MDM user"):
        inventory.remove_user(host, "u1")


def test_device_validation(make_host):
    host = make_host(plugins=[])
    with pytest.raises(UsageError, match="unknown platform 'android': use one of iOS, iPadOS, macOS, tvOS"):
        inventory.add_device(host, "S1", "android")
    with pytest.raises(UsageError, match="user 'ghost' is not an MDM user"):
        inventory.add_device(host, "S1", "ios", owner="ghost")
    with pytest.raises(UsageError, match="not valid"):
        inventory.add_device(host, "S 1", "ios")
    assert inventory.list_devices(host) == []


def test_commands_queue_and_list(make_host, load_plugin):
    queued = load_plugin("""
        seen = []

        @hookimpl
        def mdm_command_queued(host, event):
            seen.append(event.payload)
    """)
    host = make_host(plugins=[queued])
    inventory.add_device(host, "S1", "ios")
    inventory.add_device(host, "S2", "macos")

    def work(session):
        a = inventory.queue_command(host, session, "S1", "InstallApplication", {"iTunesStoreID": 1})
        b = inventory.queue_command(host, session, "S2", "DeviceInformation", {})
        return a.uuid, b.uuid

    first, second = host.db.run_write(work)
    host.deliver_events()
    assert queued.seen == [{"command_uuid": first, "device_serial": "S1", "request_type": "InstallApplication"},
                           {"command_uuid": second, "device_serial": "S2", "request_type": "DeviceInformation"}]
    inventory.set_command_status(host, first, "acknowledged")
    rows = inventory.list_commands(host)
    assert [r["uuid"] for r in rows] == [first, second]
    assert rows[0]["payload"] == {"RequestType": "InstallApplication", "iTunesStoreID": 1}
    assert rows[0]["status"] == "acknowledged"
    assert [r["uuid"] for r in inventory.list_commands(host, " s2")] == [second]
    with pytest.raises(MdmError, match="does not exist"):
        inventory.set_command_status(host, "nope", "sent")


# ---------------------------------------------------------------------- the command line


def test_devices_and_users_commands(mdm):
    assert mdm("users", "add", "u1", "--email", "u1@example.com", "--name", "Ann")[:2] == (0, "added user u1\n")
    assert mdm("devices", "add", "s1", "--platform", "ios", "--user", "u1")[:2] == (0, "enrolled S1 (iOS)\n")
    code, out, _ = mdm("devices", "list", "--json")
    assert code == 0
    [device] = json.loads(out)
    assert device["serial_number"] == "S1" and device["owner"] == "u1" and device["platform"] == "iOS"
    code, out, _ = mdm("devices", "list")
    assert out.splitlines()[0].split() == ["serial_number", "platform", "model", "owner", "udid", "enrolled_at"]
    assert out.splitlines()[1].startswith("S1")
    code, out, _ = mdm("users", "list", "--json")
    assert [u["id"] for u in json.loads(out)] == ["u1"]
    assert "Ann" in mdm("users", "list")[1]
    assert mdm("devices", "remove", "s1")[:2] == (0, "removed S1\n")
    assert mdm("devices", "list")[1] == "no devices enrolled\n"
    code, _, err = mdm("devices", "remove", "s1")
    assert code == 1 and err == "mdm: error: device S1 is not enrolled: see `mdm devices list`\n"
    code, _, err = mdm("devices", "add", "s2", "--platform", "android")
    assert code == 2 and "unknown platform 'android'" in err
    code, _, err = mdm("users", "add", "u2", "--email", "nope")
    assert code == 2 and "email 'nope' is not an address" in err


def test_commands_list(mdm, make_host):
    assert mdm("commands", "list")[:2] == (0, "no commands\n")
    host = make_host(plugins=[])  # the same database file as `mdm`
    inventory.add_device(host, "S1", "ios")
    host.db.run_write(lambda s: inventory.queue_command(host, s, "S1", "InstallApplication", {"x": 1}))
    host.db.run_write(lambda s: inventory.queue_command(host, s, "S2", "DeviceLock", {}))
    host.close()
    code, out, _ = mdm("commands", "list", "--json")
    assert code == 0 and [c["request_type"] for c in json.loads(out)] == ["InstallApplication", "DeviceLock"]
    code, out, _ = mdm("commands", "list", "--device", "s1", "--json")
    [command] = json.loads(out)
    assert command["payload"] == {"RequestType": "InstallApplication", "x": 1} and command["status"] == "queued"
    code, out, _ = mdm("commands", "list", "--device", "s2")
    assert "DeviceLock" in out and "InstallApplication" not in out


def write(path, text):
    path.write_text(text)
    return str(path)


def test_imports_ok(mdm, project_dir):
    users = write(project_dir / "users.csv", "id,email,managed_apple_id,name\nu1,u1@example.com,,Ann\nu2,,u2@appleid.example.com,Bob\n")
    assert mdm("users", "import", users)[:2] == (0, f"imported {users}: 2 added, 0 updated\n")
    devices = write(project_dir / "devices.csv", "serial_number,platform,udid,model,user\nS1,ios,U1,iPhone15,2,u1\n\nS2,macOS,,,\n".replace("iPhone15,2", '"iPhone15,2"'))
    code, out, err = mdm("devices", "import", devices)
    assert (code, out) == (0, f"imported {devices}: 2 enrolled, 0 updated\n"), err
    code, out, _ = mdm("devices", "list", "--json")
    assert [(d["serial_number"], d["model"], d["owner"]) for d in json.loads(out)] == [("S1", "iPhone15,2", "u1"), ("S2", None, None)]
    assert mdm("devices", "import", devices)[1] == f"imported {devices}: 0 enrolled, 2 updated\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("serial,platform\nS1,ios\n", "line 1: the header must be exactly serial_number,platform,udid,model,user"),
        ("serial_number,platform,udid,model,user\nS1,ios,,,\nS2,ios,,\n", "line 3: expected 5 columns, got 4"),
        ("serial_number,platform,udid,model,user\nS1,ios,,,\n\nS2,android,,,\n", "line 4: unknown platform 'android'"),
        ("serial_number,platform,udid,model,user\nS1,ios,,,\nS2,ios,,,\ns1,macos,,,\n", "line 4: 'S1' already appears on line 2"),
        ("serial_number,platform,udid,model,user\nS1,ios,,,u1\n\n\nS2,ios,,,ghost\n", "line 5: user 'ghost' is not an MDM user"),
        ('serial_number,platform,udid,model,user\nS1,ios,,"multi\nline",\nS2,ios,,,ghost\n', "line 4: user 'ghost' is not an MDM user"),
    ],
    ids=["bad-header", "column-count", "unknown-platform", "duplicate-serial", "unknown-owner", "multiline-field"],
)
def test_bad_device_import_is_reported_by_line_and_writes_nothing(mdm, project_dir, load_plugin, text, message):
    mdm("users", "add", "u1")
    path = write(project_dir / "devices.csv", text)
    code, out, err = mdm("devices", "import", path)
    assert code == 2 and out == ""
    assert err == f"mdm: error: {path}: {message}" + err[len(f"mdm: error: {path}: {message}"):]
    assert err.count("\n") == 1
    assert mdm("devices", "list")[1] == "no devices enrolled\n"


def test_bad_user_import_writes_nothing(mdm, project_dir):
    path = write(project_dir / "users.csv", "id,email,managed_apple_id,name\nu1,u1@example.com,,\nu2,not-an-email,,\n")
    code, _, err = mdm("users", "import", path)
    assert code == 2 and f"{path}: line 3: email 'not-an-email' is not an address" in err
    path = write(project_dir / "users2.csv", "id,email,managed_apple_id,name\nu1,,,\nu1,,,\n")
    code, _, err = mdm("users", "import", path)
    assert code == 2 and "line 3: 'u1' already appears on line 2" in err
    code, _, err = mdm("users", "import", str(project_dir / "missing.csv"))
    assert code == 2 and "missing.csv: cannot be read" in err
    assert mdm("users", "list")[1] == "no MDM users\n"


def test_import_fires_one_event_per_new_device(make_host, load_plugin, project_dir):
    rec = load_plugin(RECORDER)
    host = make_host(plugins=[rec])
    path = write(project_dir / "devices.csv", "serial_number,platform,udid,model,user\nA1,ios,,,\nA2,tvos,,,\n")
    assert inventory.import_devices(host, path) == (2, 0)
    assert [(k, p["serial_number"], p["platform"]) for k, p in rec.seen] == [("enrolled", "A1", "iOS"), ("enrolled", "A2", "tvOS")]
