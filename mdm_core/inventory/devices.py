"""Enrolled devices: enrol (one, or an import file), remove, list.

Enrolling or removing a device records ``device_enrolled`` / ``device_removed`` in the same
transaction; the hooks of the same names are delivered after commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlmodel import Session, col

from mdm_core.db.bulk import in_chunks
from mdm_core.db.stream import stream_rows
from mdm_core.db.typed import values_of
from mdm_core.errors import NotFound, UsageError
from mdm_core.models import Device, EnrollmentType, MdmUser, Platform
from mdm_core.payloads import DevicePayload

from .csvfile import read_csv
from .upsert import Counts, check_lengths, update_one, upsert

if TYPE_CHECKING:
    from mdm_core.host import Host

PLATFORMS = {p.value.lower(): p.value for p in Platform}
DEVICE_HEADER = ["serial_number", "platform", "udid", "model", "user", "enrollment_type"]
DEVICE_REQUIRED = ["serial_number", "platform"]
ENROLLMENT_TYPES = [t.value for t in EnrollmentType]


@dataclass(frozen=True)
class DeviceRow:
    """A device as given on the command line or in an import file."""

    serial_number: str
    platform: str
    udid: str | None = None
    model: str | None = None
    owner: str | None = None
    enrollment_type: str | None = None  # device, automated or user; None: not given (a new device is "device")

    def payload(self) -> DevicePayload:
        """The plain values carried by device events."""
        return {
            "serial_number": self.serial_number,
            "udid": self.udid,
            "platform": self.platform,
            "model": self.model,
            "owner": self.owner,
            "enrollment_type": self.enrollment_type or EnrollmentType.device.value,
        }


def normalize_enrollment_type(value: str | None) -> str | None:
    """``User`` → ``user``; empty → None (not given); anything else is a usage error listing the valid ones."""
    if value is None or not value.strip():
        return None
    kind = value.strip().lower()
    if kind not in ENROLLMENT_TYPES:
        raise UsageError(f"unknown enrollment type '{value}': use one of {', '.join(ENROLLMENT_TYPES)}")
    return kind


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


DEVICE_LABELS = {"owner": "user"}


def _device_from(serial: str, platform: str, udid: str | None, model: str | None, owner: str | None, enrollment_type: str | None = None) -> DeviceRow:
    check_lengths(Device, {"udid": udid, "model": model, "owner": owner}, DEVICE_LABELS)
    return DeviceRow(
        normalize_serial(serial), normalize_platform(platform), udid or None, model or None, owner or None, normalize_enrollment_type(enrollment_type)
    )


def add_devices(host: Host, devices: Iterable[DeviceRow]) -> Counts:
    """Enrol new devices and change the given fields (not ``None``) of enrolled ones, in one
    transaction; returns the counts of real changes."""
    devices = list(devices)
    return upsert(
        host,
        Device,
        devices,
        lambda d: d.serial_number,
        "device_enrolled",
        DeviceRow.payload,
        check=lambda session: _check_owners(session, [d.owner for d in devices if d.owner]),
    )


def add_device(
    host: Host, serial: str, platform: str, *, udid: str | None = None, model: str | None = None, owner: str | None = None, enrollment_type: str | None = None
) -> DeviceRow:
    """Enrol one new device (validated like an import row); an enrolled serial is refused."""
    row = _device_from(serial, platform, udid, model, owner, enrollment_type or EnrollmentType.device.value)
    upsert(
        host,
        Device,
        [row],
        lambda d: d.serial_number,
        "device_enrolled",
        DeviceRow.payload,
        check=lambda session: _check_owners(session, [row.owner] if row.owner else []),
        exists=lambda d: (
            f"device {d.serial_number} is already enrolled: change it with `mdm devices set {d.serial_number} "
            "[--platform P] [--udid U] [--model M] [--user MDM_USER] [--enrollment-type T]`"
        ),
    )
    return row


def set_device(
    host: Host,
    serial: str,
    *,
    platform: str | None = None,
    udid: str | None = None,
    model: str | None = None,
    owner: str | None = None,
    enrollment_type: str | None = None,
) -> tuple[DeviceRow, list[str]]:
    """Change only the given fields of an enrolled device (``""`` clears udid, model or owner);
    returns the device and the names of the fields that changed."""
    serial = normalize_serial(serial)
    given: dict[str, Any] = {}
    if platform is not None:
        given["platform"] = normalize_platform(platform)
    for name, value in (("udid", udid), ("model", model), ("owner", owner)):
        if value is not None:
            given[name] = value.strip() or None
    if enrollment_type is not None:
        given["enrollment_type"] = normalize_enrollment_type(enrollment_type) or EnrollmentType.device.value
    check_lengths(Device, given, DEVICE_LABELS)
    if not given:
        raise UsageError('nothing to change: give --platform, --udid, --model, --user and/or --enrollment-type ("" clears udid, model or user)')
    device, changed = update_one(
        host,
        Device,
        serial,
        given,
        f"device {serial} is not enrolled: enrol it with `mdm devices add {serial} --platform P`",
        check=lambda session: _check_owners(session, [given["owner"]] if given.get("owner") else []),
    )
    return DeviceRow(device.serial_number, device.platform, device.udid, device.model, device.owner, device.enrollment_type), changed


def remove_device(host: Host, serial: str) -> DeviceRow:
    """Remove a device; plugins hear of it through ``mdm_device_removed``."""
    return remove_device_with_event(host, serial)[0]


def remove_device_with_event(host: Host, serial: str) -> tuple[DeviceRow, str]:
    """:func:`remove_device`, and the id of its ``device_removed`` event (the removal's
    summary is this event's, not an earlier removal's of the same device)."""
    serial = serial.strip().upper()

    def work(session: Session) -> tuple[DeviceRow, str]:
        device = session.get(Device, serial)
        if device is None:
            raise NotFound(f"device {serial} is not enrolled: see `mdm devices list`")
        row = DeviceRow(device.serial_number, device.platform, device.udid, device.model, device.owner, device.enrollment_type)
        session.delete(device)
        return row, host.events.record(session, "device_removed", row.payload()).id

    removed = host.db.run_write(work)
    host.deliver_events()
    return removed


def devices_of(session: Session, *, serials: Iterable[str] = (), owners: Iterable[str] = ()) -> tuple[dict[str, Device], dict[str, list[Device]]]:
    """The enrolled devices of these serial numbers, and those each of these MDM users owns (in
    serial-number order), by one read: ``(by serial, by owner)``, the unknown ones left out."""
    wanted_serials, wanted_owners = set(serials), set(owners)
    if not wanted_serials and not wanted_owners:
        return {}, {}
    found = session.execute(
        select(Device)
        .where(or_(col(Device.serial_number).in_(sorted(wanted_serials)), col(Device.owner).in_(sorted(wanted_owners))))
        .order_by(col(Device.serial_number))
    ).scalars()
    by_serial: dict[str, Device] = {}
    by_owner: dict[str, list[Device]] = {}
    for device in found:
        if device.serial_number in wanted_serials:
            by_serial[device.serial_number] = device
        if device.owner in wanted_owners:
            by_owner.setdefault(str(device.owner), []).append(device)
    return by_serial, by_owner


def iter_devices(host: Host, *, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Enrolled devices as plain values, by serial number, streamed (constant memory)."""
    rows = stream_rows(host.db, select(Device).order_by(Device.serial_number), offset=offset, limit=limit)
    return (values_of(row[0]) for row in rows)


def list_devices(host: Host) -> list[dict[str, Any]]:
    """Every enrolled device as plain values."""
    return list(iter_devices(host))


def import_devices(host: Host, path: str | Path, ignored: list[str] | None = None) -> Counts:
    """Import devices from a CSV file whose header names its columns (``serial_number`` and
    ``platform`` required; ``udid``, ``model``, ``user``, ``enrollment_type`` optional; any
    order). An empty cell keeps the stored value (a new device without an enrollment type is
    ``device``). Any bad row means nothing is written."""
    lines: list[int] = []
    rows = read_csv(
        Path(path),
        DEVICE_HEADER,
        DEVICE_REQUIRED,
        lambda r: _device_from(r["serial_number"], r["platform"], r["udid"], r["model"], r["user"], r["enrollment_type"]),
        key=lambda d: d.serial_number,
        lines=lines,
        ignored=ignored,
    )
    with host.db.session() as session:
        missing = _missing_users(session, [d.owner for d in rows if d.owner])
    if missing:
        line, owner = next((n, d.owner) for n, d in zip(lines, rows, strict=True) if d.owner in missing)
        raise UsageError(f"{path}: line {line}: user '{owner}' is not an MDM user: import users first (mdm users import)")
    return add_devices(host, rows)


def _missing_users(session: Session, owners: list[str]) -> set[str]:
    """The ``owners`` that are not MDM users, read in ``IN`` lists of ``IN_CHUNK`` (an import
    naming 100,000 owners takes 200 statements, not one per owner)."""
    wanted = sorted(set(owners))
    known: set[str] = set()
    for chunk in in_chunks(wanted):
        known.update(session.execute(select(col(MdmUser.id)).where(col(MdmUser.id).in_(chunk))).scalars())
    return set(wanted) - known


def _check_owners(session: Session, owners: list[str]) -> None:
    missing = _missing_users(session, owners)
    if missing:
        owner = min(missing)
        raise UsageError(f"user '{owner}' is not an MDM user: add it first with `mdm users add {owner}`")
