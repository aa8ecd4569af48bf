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
    payload = {"serial_number": "C02ABC", "udid": "UDID-1", "platform": "iPadOS", "model": "iPad13,1", "owner": "u1", "enrollment_type": "device"}
    assert row.payload() == payload
    assert rec.seen == [("enrolled", payload)]
    assert inventory.set_device(host, "C02ABC", model="iPad14,1")[1] == ["model"]  # an update fires nothing
    assert len(rec.seen) == 1
    inventory.remove_device(host, " c02abc ")
    assert rec.seen[1] == ("removed", {**payload, "model": "iPad14,1"})  # the other fields kept
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
    inventory.set_user(host, "u1", email="una@example.com")  # an update fires nothing
    assert len(rec.seen) == 1
    inventory.add_device(host, "S1", "ios", owner="u1")
    inventory.remove_user(host, "u1")
    assert rec.seen[1] == ("removed", {**payload, "email": "una@example.com"})  # the other fields kept
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
    assert queued.seen == [
        {"command_uuid": first, "device_serial": "S1", "request_type": "InstallApplication"},
        {"command_uuid": second, "device_serial": "S2", "request_type": "DeviceInformation"},
    ]
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
    assert out.splitlines()[0].split() == ["serial_number", "platform", "enrollment_type", "model", "owner", "udid", "enrolled_at"]
    assert out.splitlines()[1].startswith("S1")
    code, out, _ = mdm("users", "list", "--json")
    assert [u["id"] for u in json.loads(out)] == ["u1"]
    assert "Ann" in mdm("users", "list")[1]
    assert mdm("devices", "remove", "s1")[:2] == (0, "removed S1\n")
    assert mdm("devices", "list")[1] == "no devices enrolled\n"
    code, _, err = mdm("devices", "remove", "s1")
    assert code == 2 and err == "mdm: error: device S1 is not enrolled: see `mdm devices list`\n"
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


def test_commands_list_for_a_device_naming_nothing_is_exit_2_naming_the_list(mdm, make_host):
    """`mdm commands list --device TYPO` printed "no commands", exit 0, as if the device had none."""
    host = make_host(plugins=[])
    inventory.add_device(host, "S1", "ios")
    host.close()
    code, out, err = mdm("commands", "list", "--device", "nope9", "--json")
    assert (code, out) == (2, "")
    assert err == "mdm: error: device nope9 is neither enrolled nor has commands (`mdm devices list` lists the enrolled ones)\n"
    assert mdm("commands", "list", "--device", "s1")[:2] == (0, "no commands\n")  # known, no command: an empty list


@pytest.mark.parametrize("empty", ["", "  "])
def test_commands_list_for_an_empty_device_is_exit_2(mdm, make_host, empty):
    """`--device ""` listed every device's commands (the filter dropped), and `--device " "` said
    "device  is neither..." (an empty name between two spaces): both are one line asking for a serial."""
    host = make_host(plugins=[])
    inventory.add_device(host, "S1", "ios")
    host.db.run_write(lambda s: inventory.queue_command(host, s, "S1", "DeviceLock", {}))
    host.close()
    said = "mdm: error: --device is empty: give a device's serial number (`mdm devices list` lists the enrolled ones)\n"
    assert mdm("commands", "list", "--device", empty) == (2, "", said)


def write(path, text):
    path.write_text(text)
    return str(path)


def test_imports_ok(mdm, project_dir):
    users = write(project_dir / "users.csv", "id,email,managed_apple_id,name\nu1,u1@example.com,,Ann\nu2,,u2@appleid.example.com,Bob\n")
    assert mdm("users", "import", users)[:2] == (0, f"imported {users}: 2 added, 0 updated, 0 unchanged\n")
    devices = write(
        project_dir / "devices.csv", "serial_number,platform,udid,model,user\nS1,ios,U1,iPhone15,2,u1\n\nS2,macOS,,,\n".replace("iPhone15,2", '"iPhone15,2"')
    )
    code, out, err = mdm("devices", "import", devices)
    assert (code, out) == (0, f"imported {devices}: 2 enrolled, 0 updated, 0 unchanged\n"), err
    code, out, _ = mdm("devices", "list", "--json")
    assert [(d["serial_number"], d["model"], d["owner"]) for d in json.loads(out)] == [("S1", "iPhone15,2", "u1"), ("S2", None, None)]
    assert mdm("devices", "import", devices)[1] == f"imported {devices}: 0 enrolled, 0 updated, 2 unchanged\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "serial,platform\nS1,ios\n",
            "line 1: the header lacks serial_number: it needs serial_number,platform (optional: udid,model,user,enrollment_type), in any order",
        ),
        (
            "serial_number,platform,udid,model,user\nS1,ios,,,\nS2,ios,,\n",
            "line 3: expected 5 columns, got 4: give each row every column of the header (an empty value: nothing between two commas)",
        ),
        (
            "serial_number,platform,model\nS1,ios,iPad13,1\n",
            'line 2: expected 3 columns, got 4: put a value that holds a comma in double quotes ("iPad13,1")',
        ),
        (
            "serial_number;platform;model\nS1;ios;a;b\n",
            'line 2: expected 3 columns, got 4: put a value that holds a semicolon in double quotes ("iPad13;1")',
        ),
        ("serial_number,platform,udid,model,user\nS1,ios,,,\n\nS2,android,,,\n", "line 4: unknown platform 'android'"),
        ("serial_number,platform,udid,model,user\nS1,ios,,,\nS2,ios,,,\ns1,macos,,,\n", "line 4: 'S1' already appears on line 2"),
        ("serial_number,platform,udid,model,user\nS1,ios,,,u1\n\n\nS2,ios,,,ghost\n", "line 5: user 'ghost' is not an MDM user"),
        ('serial_number,platform,udid,model,user\nS1,ios,,"multi\nline",\nS2,ios,,,ghost\n', "line 4: user 'ghost' is not an MDM user"),
    ],
    ids=["bad-header", "column-count", "unquoted-comma", "unquoted-semicolon", "unknown-platform", "duplicate-serial", "unknown-owner", "multiline-field"],
)
def test_bad_device_import_is_reported_by_line_and_writes_nothing(mdm, project_dir, load_plugin, text, message):
    mdm("users", "add", "u1")
    path = write(project_dir / "devices.csv", text)
    code, out, err = mdm("devices", "import", path)
    assert code == 2 and out == ""
    assert err == f"mdm: error: {path}: {message}" + err[len(f"mdm: error: {path}: {message}") :]
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
    assert inventory.import_devices(host, path) == (2, 0, 0)
    assert [(k, p["serial_number"], p["platform"]) for k, p in rec.seen] == [("enrolled", "A1", "iOS"), ("enrolled", "A2", "tvOS")]


def test_add_refuses_an_existing_record_and_set_changes_only_what_is_given(mdm):
    assert mdm("users", "add", "u1", "--email", "u1@example.com", "--managed-apple-id", "u1@appleid.example.com")[0] == 0
    assert mdm("users", "add", "u2")[0] == 0
    assert mdm("devices", "add", "S1", "--platform", "ios", "--user", "u1", "--model", "iPhone15,2")[0] == 0
    code, out, err = mdm("users", "add", "u1", "--name", "Ann")  # was: e-mail and Managed Apple ID wiped, "added"
    assert (code, out) == (1, "") and err == "mdm: error: user u1 exists: change it with `mdm users set u1 [--email E] [--managed-apple-id A] [--name N]`\n"
    code, out, err = mdm("devices", "add", "s1", "--platform", "ipados")  # was: owner and model wiped, "enrolled"
    assert (code, out) == (1, "") and "device S1 is already enrolled: change it with `mdm devices set S1" in err
    assert mdm("users", "set", "u1", "--name", "Ann")[:2] == (0, "updated user u1: name\n")
    assert mdm("users", "set", "u1", "--name", "Ann")[:2] == (0, "user u1: no change\n")
    assert mdm("devices", "set", "s1", "--platform", "ipados")[:2] == (0, "updated S1: platform\n")
    assert mdm("devices", "set", "s1", "--user", "u2", "--model", "")[:2] == (0, "updated S1: model, owner\n")
    users = {u["id"]: u for u in json.loads(mdm("users", "list", "--json")[1])}
    assert (users["u1"]["email"], users["u1"]["managed_apple_id"], users["u1"]["name"]) == ("u1@example.com", "u1@appleid.example.com", "Ann")
    [device] = json.loads(mdm("devices", "list", "--json")[1])
    assert (device["platform"], device["owner"], device["model"]) == ("iPadOS", "u2", None)
    code, _, err = mdm("devices", "set", "s1", "--user", "ghost")
    assert code == 2 and "user 'ghost' is not an MDM user" in err
    code, _, err = mdm("devices", "set", "nope1")
    assert code == 2 and "nothing to change" in err
    code, _, err = mdm("devices", "set", "nope1", "--model", "x")
    assert code == 2 and "device NOPE1 is not enrolled" in err
    code, _, err = mdm("users", "set", "ghost", "--name", "x")
    assert code == 2 and "'ghost' is not an MDM user" in err
    code, _, err = mdm("users", "set", "u1", "--email", "nope")
    assert code == 2 and "email 'nope' is not an address" in err


def test_import_keeps_stored_values_for_empty_cells_and_counts_real_changes(mdm, project_dir):
    users = write(project_dir / "users.csv", "id,email,managed_apple_id,name\nu1,u1@example.com,u1@appleid.example.com,Ann\nu2,u2@example.com,,Bob\n")
    assert mdm("users", "import", users)[1] == f"imported {users}: 2 added, 0 updated, 0 unchanged\n"
    assert mdm("users", "import", users)[1] == f"imported {users}: 0 added, 0 updated, 2 unchanged\n"
    sparse = write(project_dir / "sparse.csv", "id,email,managed_apple_id,name\nu1,,,\nu2,bob@example.com,,\n")
    assert mdm("users", "import", sparse)[1] == f"imported {sparse}: 0 added, 1 updated, 1 unchanged\n"
    stored = {u["id"]: u for u in json.loads(mdm("users", "list", "--json")[1])}
    assert stored["u1"]["managed_apple_id"] == "u1@appleid.example.com" and stored["u1"]["email"] == "u1@example.com"
    assert stored["u2"]["email"] == "bob@example.com" and stored["u2"]["name"] == "Bob"
    devices = write(project_dir / "devices.csv", "serial_number,platform,udid,model,user\nS1,ios,U1,iPhone15,u1\n")
    assert mdm("devices", "import", devices)[1] == f"imported {devices}: 1 enrolled, 0 updated, 0 unchanged\n"
    again = write(project_dir / "again.csv", "serial_number,platform,udid,model,user\nS1,ios,,,\n")
    assert mdm("devices", "import", again)[1] == f"imported {again}: 0 enrolled, 0 updated, 1 unchanged\n"
    [device] = json.loads(mdm("devices", "list", "--json")[1])
    assert (device["udid"], device["model"], device["owner"]) == ("U1", "iPhone15", "u1")


def test_import_columns_in_any_order_with_extra_ones(mdm, project_dir):
    users = write(project_dir / "users.csv", "Name, Email ,department,ID\nAnn,ann@example.com,Science,u1\n")
    assert mdm("users", "import", users)[1] == f"imported {users}: 1 added, 0 updated, 0 unchanged (ignored columns: department)\n"
    devices = write(project_dir / "devices.csv", "room,user,platform,serial_number\n12,u1,macos,m1\n")
    assert mdm("devices", "import", devices)[1] == f"imported {devices}: 1 enrolled, 0 updated, 0 unchanged (ignored columns: room)\n"
    [device] = json.loads(mdm("devices", "list", "--json")[1])
    assert (device["serial_number"], device["platform"], device["owner"]) == ("M1", "macOS", "u1")
    [user] = json.loads(mdm("users", "list", "--json")[1])
    assert (user["id"], user["email"], user["name"]) == ("u1", "ann@example.com", "Ann")
    code, _, err = mdm("users", "import", write(project_dir / "u2.csv", "id,name\nu2,Bob\n"))
    assert code == 2 and "line 1: the header lacks email: it needs id,email (optional: managed_apple_id,name), in any order" in err
    code, _, err = mdm("users", "import", write(project_dir / "u3.csv", "id,email,id\nu2,,u3\n"))
    assert code == 2 and "line 1: column id appears twice in the header" in err


def test_a_file_that_is_not_utf8_is_reported_at_its_real_line(mdm, project_dir):
    path = project_dir / "users.csv"
    rows = "".join(f"u{i},u{i}@example.com,,User {i}\n" for i in range(1, 3000))
    path.write_bytes(("id,email,managed_apple_id,name\n" + rows).encode() + "u3000,z@example.com,,Zoë\n".encode("latin-1"))
    code, out, err = mdm("users", "import", str(path))
    assert code == 2 and out == ""
    assert f"{path}: line 3001: not UTF-8 (byte 0xeb at column 24): save it as UTF-8" in err and err.count("\n") == 1
    assert mdm("users", "list")[1] == "no MDM users\n"


def test_inventory_lists_page_and_print_json_lines(mdm, make_host):
    host = make_host(plugins=[])  # the same database file as `mdm`
    for i in range(5):
        inventory.add_user(host, f"u{i}", email=f"u{i}@example.org")
        inventory.add_device(host, f"S{i}", "ios", owner=f"u{i}")
    host.close()
    for command, key in ((("devices", "list"), "serial_number"), (("users", "list"), "id")):
        code, out, _ = mdm(*command, "--jsonl")
        everything = [json.loads(line) for line in out.splitlines()]
        keys = [row[key] for row in everything]
        assert code == 0 and len(keys) == 5 and keys == sorted(keys)
        code, out, _ = mdm(*command, "--json", "--offset", "3", "--limit", "10")
        assert code == 0 and json.loads(out) == everything[3:]
        code, out, _ = mdm(*command, "--offset", "5")
        assert code == 0 and out.startswith("nothing at --offset 5: the list ends before it;")
        code, _, err = mdm(*command, "--limit", "0")
        assert code == 2 and "--limit" in err


USER_WATCHER = """
    seen = []

    @hookimpl
    def mdm_user_changed(host, event):
        seen.append(dict(event.payload))

    @hookimpl
    def mdm_removal_summary(host, kind, key):
        return f"watcher saw {kind} {key} go"
"""


def test_a_user_whose_email_or_managed_apple_id_changes_fires_user_changed(make_host, load_plugin):
    watcher = load_plugin(USER_WATCHER)
    host = make_host(plugins=[watcher])
    inventory.add_user(host, "u1", email="a@example.com", name="Ann")
    inventory.set_user(host, "u1", name="Ann B.")  # the name alone: nothing for Apple
    assert watcher.seen == []
    inventory.set_user(host, "u1", email="b@example.com", managed_apple_id="ann@school.example.com")
    assert watcher.seen == [
        {
            "id": "u1",
            "email": "b@example.com",
            "managed_apple_id": "ann@school.example.com",
            "name": "Ann B.",
            "previous": {"email": "a@example.com", "managed_apple_id": None},
        }
    ]
    inventory.add_users(host, [inventory.UserRow("u1", email="c@example.com")])  # an import with a new e-mail
    assert watcher.seen[-1]["email"] == "c@example.com" and watcher.seen[-1]["previous"]["email"] == "b@example.com"


def test_removals_print_what_plugins_did_about_them(mdm, write_plugin):
    config = f'[plugins]\nenabled = ["{write_plugin(USER_WATCHER)}"]\n'
    assert mdm("users", "add", "u1", config=config)[0] == 0
    assert mdm("devices", "add", "s1", "--platform", "ios")[0] == 0
    assert mdm("devices", "remove", "s1")[1] == "removed S1: watcher saw device S1 go\n"
    assert mdm("users", "remove", "u1")[1] == "removed user u1: watcher saw user u1 go\n"


@pytest.mark.parametrize("sep", [";", "\t"], ids=["semicolon", "tab"])
def test_an_excel_export_separated_by_semicolons_or_tabs_imports(mdm, project_dir, sep):
    """Excel in a locale whose decimal mark is a comma saves "CSV" with `;`; a tab-separated
    export is as common: both used to be refused as a header lacking every column."""
    text = '\ufeffid;email;name;department\r\nu1;ann@example.com;"Doe; Ann";Science\r\n\r\nu2;bob@example.com;Bob, Jr;\r\n'
    path = project_dir / "users.csv"
    path.write_bytes(text.replace(";", sep).encode())
    code, out, err = mdm("users", "import", str(path))
    assert (code, out) == (0, f"imported {path}: 2 added, 0 updated, 0 unchanged (ignored columns: department)\n"), err
    users = json.loads(mdm("users", "list", "--json")[1])
    assert [(u["id"], u["email"], u["name"]) for u in users] == [("u1", "ann@example.com", f"Doe{sep} Ann"), ("u2", "bob@example.com", "Bob, Jr")]
    devices = write(project_dir / "devices.csv", f"serial_number{sep}platform{sep}model{sep}user\nS1{sep}ios{sep}iPhone15,2{sep}u1\n")
    code, out, err = mdm("devices", "import", devices)
    assert (code, out) == (0, f"imported {devices}: 1 enrolled, 0 updated, 0 unchanged\n"), err
    [device] = json.loads(mdm("devices", "list", "--json")[1])
    assert (device["serial_number"], device["model"], device["owner"]) == ("S1", "iPhone15,2", "u1")
