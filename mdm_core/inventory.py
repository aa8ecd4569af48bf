"""The MDM inventory (built-in plugin): enrolled devices, MDM users and the command queue.

Adding or removing a device records ``device_enrolled`` / ``device_removed`` in the same
transaction; the hooks of the same names are delivered after commit.
"""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from sqlalchemy import select
from sqlmodel import Session

from mdm_core import hookimpl
from mdm_core.errors import MdmError, UsageError
from mdm_core.models import CORE_TABLES, Command, Device, MdmUser, Platform, utcnow

if TYPE_CHECKING:
    from mdm_core.host import Host

PLATFORMS = {p.value.lower(): p.value for p in Platform}
DEVICE_HEADER = ["serial_number", "platform", "udid", "model", "user"]
USER_HEADER = ["id", "email", "managed_apple_id", "name"]


@hookimpl
def mdm_register_tables() -> list[type]:
    """The core's own tables."""
    return list(CORE_TABLES)


@hookimpl
def mdm_register_cli(subparsers: Any, host: "Host") -> None:
    """``mdm devices``, ``mdm users``, ``mdm commands``."""
    from mdm_core import inventory_cli

    inventory_cli.register(subparsers)


# ---------------------------------------------------------------------- values


@dataclass(frozen=True)
class DeviceRow:
    """A device as given on the command line or in an import file."""

    serial_number: str
    platform: str
    udid: str | None = None
    model: str | None = None
    owner: str | None = None

    def payload(self) -> dict[str, Any]:
        """The plain values carried by device events."""
        return {"serial_number": self.serial_number, "udid": self.udid, "platform": self.platform, "model": self.model, "owner": self.owner}


@dataclass(frozen=True)
class UserRow:
    """An MDM user as given on the command line or in an import file."""

    id: str
    email: str | None = None
    managed_apple_id: str | None = None
    name: str | None = None


def normalize_platform(value: str) -> str:
    """``ios`` → ``iOS``; an unknown platform is a usage error listing the valid ones."""
    platform = PLATFORMS.get(value.strip().lower())
    if platform is None:
        raise UsageError(f"unknown platform '{value}': use one of {', '.join(p.value for p in Platform)}")
    return platform


def normalize_serial(value: str) -> str:
    """A device serial number in upper case; anything else is a usage error saying why."""
    serial = value.strip()
    if not serial:
        raise UsageError("serial number is empty")
    if len(serial) > 64 or not serial.replace("-", "").isalnum():
        raise UsageError(f"serial number '{serial}' is not valid: letters and digits only, at most 64")
    return serial.upper()


def _device_from(serial: str, platform: str, udid: str | None, model: str | None, owner: str | None) -> DeviceRow:
    return DeviceRow(normalize_serial(serial), normalize_platform(platform), udid or None, model or None, owner or None)


def _user_from(user_id: str, email: str | None, managed_apple_id: str | None, name: str | None) -> UserRow:
    user_id = user_id.strip()
    if not user_id:
        raise UsageError("user id is empty")
    for label, value in (("email", email), ("managed Apple ID", managed_apple_id)):
        if value and "@" not in value:
            raise UsageError(f"{label} '{value}' is not an address like name@example.com")
    return UserRow(user_id, email or None, managed_apple_id or None, name or None)


# ---------------------------------------------------------------------- devices


def add_devices(host: "Host", devices: Iterable[DeviceRow]) -> tuple[int, int]:
    """Enrol or update devices in one transaction; returns (added, updated)."""
    devices = list(devices)
    return _upsert(host, Device, devices, lambda d: d.serial_number, "device_enrolled", DeviceRow.payload,
                   check=lambda session: _check_owners(session, [d.owner for d in devices if d.owner]))


def _upsert(host: "Host", model: type, rows: list[Any], key: Any, event: str, payload: Any, check: Any = None) -> tuple[int, int]:
    """Insert new rows (recording ``event`` for each) and update existing ones, in one transaction."""

    def work(session: Session) -> tuple[int, int]:
        if check is not None:
            check(session)
        added = updated = 0
        for row in rows:
            values = dataclasses.asdict(row)
            existing = session.get(model, key(row))
            if existing is None:
                session.add(model(**values))
                host.events.record(session, event, payload(row))
                added += 1
            else:
                for name, value in values.items():
                    setattr(existing, name, value)
                session.add(existing)
                updated += 1
        return added, updated

    result = host.db.run_write(work)
    host.deliver_events()
    return result


def add_device(host: "Host", serial: str, platform: str, *, udid: str | None = None, model: str | None = None, owner: str | None = None) -> DeviceRow:
    """Enrol one device (validated like an import row)."""
    row = _device_from(serial, platform, udid, model, owner)
    add_devices(host, [row])
    return row


def remove_device(host: "Host", serial: str) -> DeviceRow:
    """Remove a device; plugins hear of it through ``mdm_device_removed``."""
    serial = serial.strip().upper()

    def work(session: Session) -> DeviceRow:
        device = session.get(Device, serial)
        if device is None:
            raise MdmError(f"device {serial} is not enrolled: see `mdm devices list`")
        row = DeviceRow(device.serial_number, device.platform, device.udid, device.model, device.owner)
        session.delete(device)
        host.events.record(session, "device_removed", row.payload())
        return row

    row = host.db.run_write(work)
    host.deliver_events()
    return row


def list_devices(host: "Host") -> list[dict[str, Any]]:
    """Every enrolled device as plain values."""
    with host.db.session() as session:
        return [d.model_dump() for d in session.execute(select(Device).order_by(Device.serial_number)).scalars()]


def import_devices(host: "Host", path: str | Path) -> tuple[int, int]:
    """Import ``serial_number,platform,udid,model,user`` rows; any bad row means nothing is written."""
    lines: list[int] = []
    rows = _read_csv(Path(path), DEVICE_HEADER, lambda r: _device_from(r["serial_number"], r["platform"], r["udid"], r["model"], r["user"]), key=lambda d: d.serial_number, lines=lines)
    with host.db.session() as session:
        owners = {d.owner for d in rows if d.owner}
        known = set(session.execute(select(MdmUser.id).where(MdmUser.id.in_(owners))).scalars()) if owners else set()
    missing = sorted(owners - known)
    if missing:
        line, owner = next((n, d.owner) for n, d in zip(lines, rows) if d.owner in missing)
        raise UsageError(f"{path}: line {line}: user '{owner}' is not an MDM user: import users first (mdm users import)")
    return add_devices(host, rows)


def _check_owners(session: Session, owners: list[str]) -> None:
    for owner in set(owners):
        if session.get(MdmUser, owner) is None:
            raise UsageError(f"user '{owner}' is not an MDM user: add it first with `mdm users add {owner}`")


# ---------------------------------------------------------------------- users


def add_users(host: "Host", users: Iterable[UserRow]) -> tuple[int, int]:
    """Add or update MDM users in one transaction; returns (added, updated)."""
    return _upsert(host, MdmUser, list(users), lambda u: u.id, "user_added", dataclasses.asdict)


def add_user(host: "Host", user_id: str, *, email: str | None = None, managed_apple_id: str | None = None, name: str | None = None) -> UserRow:
    """Add one MDM user."""
    row = _user_from(user_id, email, managed_apple_id, name)
    add_users(host, [row])
    return row


def remove_user(host: "Host", user_id: str) -> UserRow:
    """Remove an MDM user (its devices lose their owner); plugins hear of it through ``mdm_user_removed``."""

    def work(session: Session) -> UserRow:
        user = session.get(MdmUser, user_id.strip())
        if user is None:
            raise MdmError(f"'{user_id}' is not an MDM user: see `mdm users list`")
        row = UserRow(user.id, user.email, user.managed_apple_id, user.name)
        for device in session.execute(select(Device).where(Device.owner == user.id)).scalars():
            device.owner = None
            session.add(device)
        session.delete(user)
        host.events.record(session, "user_removed", dataclasses.asdict(row))
        return row

    row = host.db.run_write(work)
    host.deliver_events()
    return row


def import_users(host: "Host", path: str | Path) -> tuple[int, int]:
    """Import ``id,email,managed_apple_id,name`` rows; any bad row means nothing is written."""
    rows = _read_csv(Path(path), USER_HEADER, lambda r: _user_from(r["id"], r["email"], r["managed_apple_id"], r["name"]), key=lambda u: u.id)
    return add_users(host, rows)


def list_users(host: "Host") -> list[dict[str, Any]]:
    """Every MDM user as plain values."""
    with host.db.session() as session:
        return [u.model_dump() for u in session.execute(select(MdmUser).order_by(MdmUser.id)).scalars()]


# ---------------------------------------------------------------------- commands


def queue_command(host: "Host", session: Session, device_serial: str, request_type: str, payload: dict[str, Any]) -> Command:
    """Queue an MDM command for a device in the caller's transaction."""
    command = Command(device_serial=device_serial, request_type=request_type, payload={"RequestType": request_type, **payload})
    session.add(command)
    host.events.record(session, "command_queued", {"command_uuid": command.uuid, "device_serial": device_serial, "request_type": request_type})
    return command


def list_commands(host: "Host", device: str | None = None) -> list[dict[str, Any]]:
    """Queued and past commands, oldest first, optionally for one device."""
    query = select(Command).order_by(Command.created_at, Command.uuid)
    if device:
        query = query.where(Command.device_serial == device.strip().upper())
    with host.db.session() as session:
        return [c.model_dump() for c in session.execute(query).scalars()]


def set_command_status(host: "Host", command_uuid: str, status: str, error: str | None = None) -> None:
    """Move a command along queued → sent → acknowledged / error."""
    def work(session: Session) -> None:
        command = session.get(Command, command_uuid)
        if command is None:
            raise MdmError(f"command {command_uuid} does not exist")
        command.status, command.error, command.updated_at = status, error, utcnow()
        session.add(command)

    host.db.run_write(work)


# ---------------------------------------------------------------------- files


def _read_csv(path: Path, header: list[str], parse: Any, key: Any, lines: list[int] | None = None) -> list[Any]:
    """Parse every row or fail on the first bad one, naming the file and the line.

    ``lines``, when given, receives the file line of each returned row.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            first = next(reader, None)
            if first is None or [c.strip() for c in first] != header:
                raise UsageError(f"{path}: line 1: the header must be exactly {','.join(header)}")
            rows, seen = [], {}
            for cells in reader:
                number = reader.line_num  # the file line where this row ends (quoted fields span lines)
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise UsageError(f"{path}: line {number}: expected {len(header)} columns, got {len(cells)}")
                try:
                    row = parse({h: c.strip() for h, c in zip(header, cells)})
                except UsageError as exc:
                    raise UsageError(f"{path}: line {number}: {exc}") from None
                if key(row) in seen:
                    raise UsageError(f"{path}: line {number}: '{key(row)}' already appears on line {seen[key(row)]}")
                seen[key(row)] = number
                rows.append(row)
                if lines is not None:
                    lines.append(number)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    return rows
