"""``mdm devices``, ``mdm users`` and ``mdm commands``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from mdm_core import inventory
from mdm_core.output import add_list_options, output_format, print_rows, say

if TYPE_CHECKING:
    from mdm_core.host import Host


def register(subparsers: Any) -> None:
    """Add the inventory commands to the ``mdm`` parser."""
    devices = subparsers.add_parser("devices", help="enrolled devices", description="Enrolled devices: add, list, remove, import.")
    dsub = devices.add_subparsers(dest="devices_cmd", required=True, metavar="COMMAND")
    add = dsub.add_parser(
        "add",
        help="enrol a device",
        description="Enrol a new device (fires mdm_device_enrolled). An enrolled serial is refused: change it with `mdm devices set`.",
    )
    add.add_argument("serial", metavar="SERIAL", help="the device's serial number")
    add.add_argument("--platform", required=True, help="iOS, iPadOS, macOS or tvOS")
    add.add_argument("--udid", help="the device's UDID")
    add.add_argument("--model", help="the model, e.g. iPad13,1")
    add.add_argument("--user", dest="owner", metavar="MDM_USER", help="the MDM user who owns it")
    add.add_argument(
        "--enrollment-type",
        dest="enrollment_type",
        choices=inventory.ENROLLMENT_TYPES,
        default="device",
        help="device (default), automated (Automated Device Enrollment) or user (User Enrollment: a personal device)",
    )
    add.set_defaults(func=_devices_add)
    dset = dsub.add_parser("set", help="change an enrolled device", description='Change only the fields given; "" clears udid, model or user.')
    dset.add_argument("serial", metavar="SERIAL")
    dset.add_argument("--platform", help="iOS, iPadOS, macOS or tvOS")
    dset.add_argument("--udid")
    dset.add_argument("--model")
    dset.add_argument("--user", dest="owner", metavar="MDM_USER", help='the MDM user who owns it ("" for none)')
    dset.add_argument("--enrollment-type", dest="enrollment_type", choices=inventory.ENROLLMENT_TYPES, help="device, automated or user")
    dset.set_defaults(func=_devices_set)
    lst = dsub.add_parser("list", help="list enrolled devices")
    add_list_options(lst)
    lst.set_defaults(func=_devices_list)
    rm = dsub.add_parser("remove", help="remove a device", description="Remove a device (fires mdm_device_removed: its VPP licenses are reclaimed).")
    rm.add_argument("serial", metavar="SERIAL")
    rm.set_defaults(func=_devices_remove)
    imp = dsub.add_parser(
        "import",
        help="import devices from CSV",
        description="Import devices from a UTF-8 CSV file whose header names its columns, in any order: "
        "serial_number and platform required, udid, model, user and enrollment_type (device, automated or user) optional, "
        "others ignored. New devices are enrolled, "
        "enrolled ones get the values given (an empty cell keeps the stored value). A bad row is reported by line and nothing is written.",
    )
    imp.add_argument("file", metavar="FILE.csv")
    imp.set_defaults(func=_devices_import)

    users = subparsers.add_parser("users", help="MDM users", description="MDM users: their id is Apple's clientUserId.")
    usub = users.add_subparsers(dest="users_cmd", required=True, metavar="COMMAND")
    uadd = usub.add_parser(
        "add", help="add an MDM user", description="Add a new MDM user (fires mdm_user_added). An existing id is refused: change it with `mdm users set`."
    )
    uadd.add_argument("id", metavar="ID", help="the user's id (sent to Apple as clientUserId)")
    uadd.add_argument("--email")
    uadd.add_argument("--managed-apple-id", dest="managed_apple_id")
    uadd.add_argument("--name")
    uadd.set_defaults(func=_users_add)
    uset = usub.add_parser("set", help="change an MDM user", description='Change only the fields given; "" clears one.')
    uset.add_argument("id", metavar="ID")
    uset.add_argument("--email")
    uset.add_argument("--managed-apple-id", dest="managed_apple_id")
    uset.add_argument("--name")
    uset.set_defaults(func=_users_set)
    ulst = usub.add_parser("list", help="list MDM users")
    add_list_options(ulst)
    ulst.set_defaults(func=_users_list)
    urm = usub.add_parser(
        "remove",
        help="remove an MDM user",
        description="Remove an MDM user (fires mdm_user_removed: its VPP user licenses are reclaimed); its devices stay enrolled.",
    )
    urm.add_argument("id", metavar="ID")
    urm.set_defaults(func=_users_remove)
    uimp = usub.add_parser(
        "import",
        help="import users from CSV",
        description="Import users from a UTF-8 CSV file whose header names its columns, in any order: "
        "id and email required, managed_apple_id and name optional, others ignored. New users are added, existing ones "
        "get the values given (an empty cell keeps the stored value). A bad row is reported by line and nothing is written.",
    )
    uimp.add_argument("file", metavar="FILE.csv")
    uimp.set_defaults(func=_users_import)

    commands = subparsers.add_parser("commands", help="the MDM command queue")
    csub = commands.add_subparsers(dest="commands_cmd", required=True, metavar="COMMAND")
    clst = csub.add_parser("list", help="list queued and past commands")
    clst.add_argument("--device", metavar="SERIAL", help="only this device's commands")
    add_list_options(clst, json_help="print JSON (with each command's payload)")
    clst.set_defaults(func=_commands_list)


def _devices_add(host: Host, args: argparse.Namespace) -> int:
    row = inventory.add_device(host, args.serial, args.platform, udid=args.udid, model=args.model, owner=args.owner, enrollment_type=args.enrollment_type)
    say(f"enrolled {row.serial_number} ({row.platform}{', User Enrollment' if row.enrollment_type == 'user' else ''})")
    return 0


def _devices_set(host: Host, args: argparse.Namespace) -> int:
    row, changed = inventory.set_device(
        host, args.serial, platform=args.platform, udid=args.udid, model=args.model, owner=args.owner, enrollment_type=args.enrollment_type
    )
    say(f"updated {row.serial_number}: {', '.join(changed)}" if changed else f"{row.serial_number}: no change")
    return 0


def _devices_list(host: Host, args: argparse.Namespace) -> int:
    rows = inventory.iter_devices(host, offset=args.offset, limit=args.limit)
    return print_rows(
        rows, output_format(args), ["serial_number", "platform", "enrollment_type", "model", "owner", "udid", "enrolled_at"], empty="no devices enrolled"
    )


def _removal_lines(host: Host, kind: str, key: str, event_id: str) -> str:
    """``: line; line`` from the plugins' ``mdm_removal_summary`` about the removal whose event
    is ``event_id`` (none: empty)."""
    import logging

    try:
        lines = [line for line in host.pm.hook.mdm_removal_summary(host=host, kind=kind, key=key, event_id=event_id) if line]
    except Exception as exc:  # the removal is committed: never fail the command for its report
        logging.getLogger(__name__).warning("removal summary failed: %s", exc)
        return ""
    return f": {'; '.join(lines)}" if lines else ""


def _devices_remove(host: Host, args: argparse.Namespace) -> int:
    row, event_id = inventory.remove_device_with_event(host, args.serial)
    say(f"removed {row.serial_number}{_removal_lines(host, 'device', row.serial_number, event_id)}")
    return 0


def _devices_import(host: Host, args: argparse.Namespace) -> int:
    ignored: list[str] = []
    counts = inventory.import_devices(host, args.file, ignored=ignored)
    say(f"imported {args.file}: {counts.added} enrolled, {counts.updated} updated, {counts.unchanged} unchanged" + _ignored(ignored))
    return 0


def _users_add(host: Host, args: argparse.Namespace) -> int:
    row = inventory.add_user(host, args.id, email=args.email, managed_apple_id=args.managed_apple_id, name=args.name)
    say(f"added user {row.id}")
    return 0


def _users_set(host: Host, args: argparse.Namespace) -> int:
    row, changed = inventory.set_user(host, args.id, email=args.email, managed_apple_id=args.managed_apple_id, name=args.name)
    say(f"updated user {row.id}: {', '.join(changed)}" if changed else f"user {row.id}: no change")
    return 0


def _users_list(host: Host, args: argparse.Namespace) -> int:
    rows = inventory.iter_users(host, offset=args.offset, limit=args.limit)
    return print_rows(rows, output_format(args), ["id", "name", "email", "managed_apple_id"], empty="no MDM users")


def _users_remove(host: Host, args: argparse.Namespace) -> int:
    row, event_id = inventory.remove_user_with_event(host, args.id)
    say(f"removed user {row.id}{_removal_lines(host, 'user', row.id, event_id)}")
    return 0


def _users_import(host: Host, args: argparse.Namespace) -> int:
    ignored: list[str] = []
    counts = inventory.import_users(host, args.file, ignored=ignored)
    say(f"imported {args.file}: {counts.added} added, {counts.updated} updated, {counts.unchanged} unchanged" + _ignored(ignored))
    return 0


def _ignored(columns: list[str]) -> str:
    return f" (ignored columns: {', '.join(c or '(unnamed)' for c in columns)})" if columns else ""


def _commands_list(host: Host, args: argparse.Namespace) -> int:
    rows = inventory.iter_commands(host, args.device, offset=args.offset, limit=args.limit)
    return print_rows(rows, output_format(args), ["uuid", "device_serial", "request_type", "status", "created_at"], empty="no commands")
