"""After a license is taken back: withdraw what this MDM did with it.

When licenses are disassociated (reclaimed here, revoked, retired, or removed in Apple's portal
and found by a sync), each install this MDM made with them is followed up:

- its ``InstallApplication`` still waiting in the device's queue is canceled (the device would
  otherwise install an app it has no license for);
- on a device that stays enrolled and was sent the command, ``RemoveApplication`` is queued with
  the app's bundle identifier from the metadata of the device's platform (without it the app
  keeps working for 30 days, then stops).

A command another queued install counts on (the device's own license and its owner's user
license, one command for both) is left to it. The install is then recorded ``canceled`` or ``removed``. Books are never taken back (Apple makes
their licenses irrevocable), and apps this MDM did not install are left alone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select
from sqlmodel import Session, col

from mdm_core.housekeeping import INSTALLED
from mdm_core.inventory import queue_command
from mdm_core.models import Command, Device, utcnow

from ..catalog import DEVICE_TO_APP_PLATFORM, once
from ..models import AppMetadata, Install
from .waiting import install_waits

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.host import Host

log = logging.getLogger(__name__)
REMOVE_TYPE = "RemoveApplication"


def on_licenses_disassociated(host: Host, event: Event) -> None:
    """Cancel queued installs and remove installed apps of the licenses taken back."""
    p = event.payload
    if not install_waits(host, "queued", event):
        return  # no install of this asset to follow up: no work, so nothing to guard against a repeat either

    def work(session: Session) -> None:
        for kind, targets in (("device", p.get("serialNumbers") or []), ("user", p.get("clientUserIds") or [])):
            if not targets:
                continue
            rows = session.execute(
                select(Install).where(
                    col(Install.account) == p["account"],
                    col(Install.adam_id) == str(p["adamId"]),
                    col(Install.pricing_param) == str(p["pricingParam"]),
                    col(Install.kind) == kind,
                    col(Install.status) == "queued",
                    col(Install.target).in_(targets),
                )
            ).scalars()
            for row in list(rows):
                take_back(host, session, row)

    once(host, event, work)


def bundle_id(session: Session, adam_id: str, platform: str) -> str | None:
    """The bundle identifier of an app on a platform (from its looked-up metadata)."""
    meta = session.get(AppMetadata, (adam_id, platform))
    return meta.bundle_id if meta is not None else None


def serves_another_install(session: Session, row: Install, command: Command) -> bool:
    """Whether another queued install of the app counts on ``command``'s device: the device's own
    license or its owner's user license, whose install holds this command (one found the other's
    already queued) or another of the app on that device (an install keeps only the last one the
    device acknowledged: :func:`.commands.with_commands`)."""
    device = session.get(Device, command.device_serial)
    targets = [and_(col(Install.kind) == "device", col(Install.target) == command.device_serial)]
    if device is not None and device.owner:
        targets.append(and_(col(Install.kind) == "user", col(Install.target) == device.owner))
    others = session.execute(
        select(Install).where(
            col(Install.account) == row.account,
            col(Install.adam_id) == row.adam_id,
            col(Install.pricing_param) == row.pricing_param,
            col(Install.status) == "queued",
            col(Install.id) != row.id,
            or_(*targets),
        )
    ).scalars()
    theirs = [u for other in others for u in other.command_uuids]
    if command.uuid in theirs:
        return True
    if set(theirs) - set(session.execute(select(col(Command.uuid)).where(col(Command.uuid).in_(theirs))).scalars()):
        return True  # housekeeping deleted one (an update installed over it): its license covers this device, it may have been here
    on_device = select(col(Command.uuid)).where(col(Command.uuid).in_(theirs), col(Command.device_serial) == command.device_serial).limit(1)
    return bool(theirs) and session.execute(on_device).first() is not None


def kept_installs(session: Session, row: Install, seen: set[str]) -> list[Command]:
    """The latest install of ``row``'s app each device it covers acknowledged (its serial, or its
    user's devices), but those in ``seen``: housekeeping keeps that one when it deletes the
    install's own command (:func:`mdm_core.housekeeping.superseded`)."""
    if row.kind == "device":
        serials = [row.target]
    else:
        serials = list(session.execute(select(col(Device.serial_number)).where(col(Device.owner) == row.target)).scalars())
    serials = [s for s in serials if s not in seen]
    if not serials:
        return []
    acked = session.execute(
        select(Command)
        .where(col(Command.device_serial).in_(serials), col(Command.status) == "acknowledged", col(Command.request_type).in_(INSTALLED))
        .order_by(col(Command.updated_at), col(Command.uuid))
    ).scalars()
    latest = {c.device_serial: c for c in acked if str(c.payload.get("iTunesStoreID")) == row.adam_id}
    return list(latest.values())


def take_back(host: Host, session: Session, row: Install) -> dict[str, Any]:
    """Cancel the install's queued commands, queue RemoveApplication where it was sent; returns counts.
    A device where another install's license still covers one of its commands is left alone
    (``kept``), its updates' commands too. A device sent several (the install, then updates:
    :mod:`..updates`) gets one RemoveApplication."""
    counts = {"canceled": 0, "removed": 0, "unknown": 0, "kept for another license": 0}
    now = utcnow()
    found = [session.get(Command, uuid) for uuid in row.command_uuids]
    commands = [c for c in found if c is not None and c.request_type in INSTALLED]
    if None in found:  # housekeeping deleted some: the app's latest install each device acknowledged, which it keeps, stands for them
        commands += kept_installs(session, row, {c.device_serial for c in commands})
    covered = {c.device_serial for c in commands if serves_another_install(session, row, c)}  # the app stays there, updates too
    counts["kept for another license"] = len(covered)
    removing: set[str] = set()  # the devices already seen to (RemoveApplication queued, or said why not)
    for command in commands:
        if command.device_serial in covered:
            continue
        if command.status == "queued":
            command.status, command.error, command.updated_at = "canceled", "its VPP license was taken back", now
            session.add(command)
            counts["canceled"] += 1
            continue
        device = session.get(Device, command.device_serial)
        if device is None or command.status not in ("sent", "acknowledged") or command.request_type != "InstallApplication":
            continue
        if device.serial_number in removing:
            continue  # an earlier command of this install (the app, or an update of it) removes it already
        removing.add(device.serial_number)
        platform = DEVICE_TO_APP_PLATFORM.get(device.platform, device.platform)
        identifier = bundle_id(session, row.adam_id, platform)
        if identifier is None:
            log.warning(
                "license of %s taken back from %s: no bundle id known for %s yet, so RemoveApplication was not queued "
                "(run `mdm apps refresh-metadata`); the app stops working 30 days after",
                row.adam_id,
                device.serial_number,
                platform,
            )
            counts["unknown"] += 1
            continue
        if platform == "macOS" and device.enrollment_type == "user":
            continue  # Apple forbids RemoveApplication under User Enrollment on macOS
        queue_command(host, session, device.serial_number, REMOVE_TYPE, {"Identifier": identifier})
        counts["removed"] += 1
    row.status = "removed" if counts["removed"] else "canceled"
    row.error = "license taken back: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n) if any(counts.values()) else "license taken back"
    row.updated_at = now
    session.add(row)
    return counts


def give_back(host: Host, account: str, adam_id: str, pricing: str, serials: list[str]) -> bool:
    """Reclaim the device licenses of ``adam_id`` Apple granted to ``serials`` after they were
    removed from this MDM (the removal's own reclaim came first): one quick attempt now, else
    the ``mobile_apps.reclaim`` job retries (``mdm apps reclaims``). A device enrolled again
    before then keeps its license. Returns whether Apple confirmed it took every one back."""
    from ..reclaims import create_reclaims, process

    licenses = [{"account": account, "adamId": adam_id, "pricingParam": pricing, "serialNumber": s} for s in serials]
    ids = create_reclaims(host, licenses, "device_removed")
    counts = process(host, ids, quick=True, reported=True) if ids else {}
    confirmed = not counts.get("pending") and not counts.get("failed")
    log.info(
        "%d device license(s) of %s %s (see `mdm apps reclaims`): the device was removed from this MDM while Apple licensed it",
        len(serials),
        adam_id,
        "given back" if confirmed else "asked back from Apple, not confirmed yet",
    )
    return confirmed
