"""Automatic app updates: a new version of a published app is installed again where it was.

The check (the ``mobile_apps.updates`` job with ``auto_update``, or ``mdm apps check-updates``)
looks up every published app again with the metadata lookup (:func:`.catalog.look_up`) and
compares the version Apple answers with the application's ``known_version`` (the version devices
were last brought to). Only a higher version is new (:mod:`.versions`): a lower one (a stale
answer, which may last days) changes nothing and is logged once per app, platform and answered
version, by whichever process checks first (the metadata's ``warned_version``); an answer that is
no longer lower forgets it. "1.2" and "1.2.0" are the same. For each new version,
in one transaction: the application records it (only if no other check did meanwhile, so one
version is handled once), ``mobile_apps_app_updated`` is recorded, and ``InstallApplication``
is queued on each enrolled device whose ``InstallApplication`` of the app was acknowledged and
that still holds a license of it in the VPP mirror (a device license, or a user license of its
owner). No license is associated again: Apple is not asked anything but the lookup. A device
whose install of the app still waits gets nothing more. A failed lookup changes nothing; the
next check looks it up again. When every lookup failed, no app was checked: the report says so
(:attr:`UpdateReport.nothing_checked`), and the command and the job fail with one line
(:meth:`UpdateReport.nothing_checked_error`) rather than saying "no new version".
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlmodel import Session, col

from mdm_core.db.typed import rowcount, table_of
from mdm_core.errors import MdmError
from mdm_core.models import Command, Device, utcnow

from .catalog import DEVICE_TO_APP_PLATFORM, look_up, start_known_versions
from .installs.commands import REQUEST_TYPE, queue_install, queued_installs, with_commands
from .models import AppMetadata, MobileApp
from .payloads import AppUpdatedPayload
from .versions import compare_versions, is_newer
from .vpp_port import VppPort

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)


@dataclass
class AppUpdate:
    """A new version of one application, and what was done on each device that had it."""

    payload: AppUpdatedPayload
    name: str | None
    devices: list[dict[str, str]] = field(default_factory=list)  # serialNumber, status (queued, skipped), message
    waiting: int = 0  # devices whose first InstallApplication of the app still waits: they get the new version with it

    @property
    def label(self) -> str:
        p = self.payload
        return f"{self.name or 'adamId'} ({p['adamId']} {p['pricingParam']}) {p['platform']}: {p['oldVersion']} -> {p['newVersion']}"

    def as_dict(self) -> dict[str, Any]:
        return {**self.payload, "name": self.name, "devices": self.devices, "waiting": self.waiting}

    @property
    def waiting_line(self) -> str | None:
        """What becomes of the devices whose install still waits (none queued for them, none needed)."""
        if not self.waiting:
            return None
        return f"{self.waiting} device(s) whose install of the app still waits get {self.payload['newVersion']} with it: nothing more queued"


class NothingChecked(MdmError):
    """Every lookup of an update check failed: no app was checked (exit 3, not 1: some were)."""

    exit_code = 3


@dataclass
class UpdateReport:
    """What a check did: the lookup's counts (and errors), and the new versions found."""

    counts: dict[str, int]
    errors: list[str]
    updates: list[AppUpdate]

    @property
    def queued(self) -> int:
        return sum(1 for u in self.updates for d in u.devices if d["status"] == "queued")

    def totals(self) -> dict[str, int]:
        """The counts of the job's record."""
        return {**self.counts, "updated": len(self.updates), "queued": self.queued}

    @property
    def nothing_checked(self) -> bool:
        """Whether every lookup failed: no app was checked, which is not "no new version"."""
        return 0 < self.counts["failed"] == self.counts["looked_up"]

    def nothing_checked_error(self, then: str) -> NothingChecked:
        """The one line saying that no app was checked: how many lookups failed, the first
        reason, and ``then`` (what to do)."""
        reasons = list(dict.fromkeys(self.errors))
        first = ("first: " if len(reasons) > 1 else "") + (reasons[0] if reasons else "no reason given")
        return NothingChecked(f"no app was checked for a new version: the lookup of all {self.counts['looked_up']} app(s) failed ({first}); {then}")

    def outcome(self, how: str = "") -> str:
        """The check's last line: the apps updated (``how`` after their counts) or "no new
        version", and how many were not checked when some lookups failed."""
        failed = self.counts["failed"]
        unchecked = f"; {failed} not checked (their lookup failed)" if failed else ""
        if not self.updates:
            return f"no new version among the {self.counts['looked_up'] - failed} app(s) looked up{unchecked}" if failed else "no new version"
        skipped = sum(1 for u in self.updates for d in u.devices if d["status"] == "skipped")
        return f"{len(self.updates)} app(s) updated: {self.queued} InstallApplication queued, {skipped} skipped{how}{unchecked}"


def check_updates(host: Host, *, install: bool) -> UpdateReport:
    """Look up the published apps again; record each new version, fire its event and, with
    ``install``, queue its ``InstallApplication`` on the devices that had the app."""
    port = VppPort(host)
    port.require("app updates cannot be looked up")
    apps, meta = table_of(MobileApp), table_of(AppMetadata)
    host.db.run_write(lambda session: start_known_versions(session))
    query = (
        select(
            apps.c.id,
            apps.c.account,
            apps.c.adam_id,
            apps.c.pricing_param,
            apps.c.platform,
            apps.c.known_version,
            meta.c.version,
            meta.c.name,
            meta.c.warned_version,
        )
        .select_from(apps.outerjoin(meta, (meta.c.adam_id == apps.c.adam_id) & (meta.c.platform == apps.c.platform)))
        .where(apps.c.state == "published", apps.c.kind == "app")
        .order_by(apps.c.adam_id, apps.c.platform, apps.c.pricing_param)
    )
    with host.db.reading() as conn:
        rows = conn.execute(query).all()
    by_account: dict[tuple[str, str], list[str]] = {}
    for account, adam_id, platform in dict.fromkeys((r.account, r.adam_id, r.platform) for r in rows):
        if adam_id not in by_account.get((account, platform), []):
            by_account.setdefault((account, platform), []).append(adam_id)
    errors: list[str] = []
    counts = look_up(host, by_account, errors=errors)
    with host.db.reading() as conn:
        changed, lower = _newer(conn.execute(query).all())
    _warn_lower(host, lower)
    had_it, waits = _acknowledged(host, {r.adam_id for r in changed}) if install else ({}, {})
    holders = {(r.account, r.adam_id): port.licenses(r.account, r.adam_id) for r in changed} if install else {}
    updates = []
    told: set[tuple[str, str, str]] = set()  # (adamId, platform, serial) a skip was reported for: once, not under each pricing's application
    for row in changed:
        serials, licenses = had_it.get(row.adam_id, []), holders.get((row.account, row.adam_id), [])
        found = host.db.run_write(partial(_apply, host, row=row, serials=serials, licenses=licenses, told=told, waiting=waits.get(row.adam_id, set())))
        if found is not None:
            updates.append(found)
    if updates:
        host.deliver_events()
    return UpdateReport(counts, errors, updates)


def _newer(rows: Sequence[Any]) -> tuple[list[Any], dict[tuple[str, str], tuple[Any, str | None]]]:
    """The applications whose looked-up version is higher than their known one (:func:`.versions.is_newer`),
    and by (adamId, platform) one row whose looked-up version is lower (a stale answer) with that
    version, or one whose warning stands though it no longer is with None (the warning is forgotten)."""
    lower: dict[tuple[str, str], tuple[Any, str | None]] = {}
    newer = []
    for r in rows:
        if r.version and r.known_version and r.version != r.known_version and is_newer(r.version, r.known_version):
            newer.append(r)
        elif r.version and r.known_version and compare_versions(r.version, r.known_version) == -1:
            lower.setdefault((r.adam_id, r.platform), (r, r.version))
    for r in rows:
        if r.warned_version is not None and (r.adam_id, r.platform) not in lower:
            lower[(r.adam_id, r.platform)] = (r, None)
    return newer, lower


def _warn_lower(host: Host, lower: dict[tuple[str, str], tuple[Any, str | None]]) -> None:
    """Warn of each stale answer once: only the check that records it as ``warned_version``
    (a conditional ``UPDATE``: one process of several) logs it; a row no longer lower forgets it."""
    meta = table_of(AppMetadata)
    for (adam_id, platform), (r, version) in lower.items():
        if version == r.warned_version:
            continue
        same = (meta.c.adam_id == adam_id) & (meta.c.platform == platform)
        differs = meta.c.warned_version.is_not(None) if version is None else meta.c.warned_version.is_distinct_from(version)
        stmt = update(meta).where(same, differs).values(warned_version=version)
        moved = host.db.execute_write(stmt)
        if moved != 1 or version is None:
            continue
        log.warning(
            "update check: %s (%s) %s: the lookup answers version %s, lower than the known %s: not an update, nothing changed (said once per version)",
            r.name or "adamId",
            r.adam_id,
            r.platform,
            r.version,
            r.known_version,
        )


def _acknowledged(host: Host, adam_ids: set[str]) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """The devices whose ``InstallApplication`` of each app was acknowledged, by adamId; and
    those whose one still waits (queued or sent) and never acknowledged one."""
    commands = table_of(Command)
    found: dict[str, list[str]] = {}
    waiting: dict[str, set[str]] = {}
    if not adam_ids:
        return found, waiting
    query = select(commands.c.device_serial, commands.c.payload, commands.c.status).where(
        commands.c.request_type == REQUEST_TYPE, commands.c.status.in_(("acknowledged", "queued", "sent"))
    )
    with host.db.reading() as conn:
        for serial, payload, status in conn.execute(query):
            adam_id = str((payload or {}).get("iTunesStoreID"))
            if adam_id not in adam_ids:
                continue
            if status != "acknowledged":
                waiting.setdefault(adam_id, set()).add(serial)
            elif serial not in found.setdefault(adam_id, []):
                found[adam_id].append(serial)
    return found, {a: serials - set(found.get(a, [])) for a, serials in waiting.items()}


def _apply(
    host: Host, session: Session, *, row: Any, serials: list[str], licenses: list[Any], told: set[tuple[str, str, str]], waiting: Collection[str] = ()
) -> AppUpdate | None:
    """Record one new version (unless another check did) with its event and its commands."""
    apps = table_of(MobileApp)
    moved = session.execute(
        update(apps).where(apps.c.id == row.id, apps.c.known_version == row.known_version).values(known_version=row.version, updated_at=utcnow())
    )
    if rowcount(moved) != 1:
        return None  # another check recorded this version (and queued its updates)
    payload: AppUpdatedPayload = {
        "id": row.id,
        "account": row.account,
        "adamId": row.adam_id,
        "pricingParam": row.pricing_param,
        "platform": row.platform,
        "oldVersion": row.known_version,
        "newVersion": row.version,
    }
    host.events.record(session, "mobile_apps_app_updated", payload)
    found = AppUpdate(payload, row.name)
    mine = [lic for lic in licenses if lic["pricingParam"] == row.pricing_param]
    devices = {lic["serialNumber"] for lic in mine if lic.get("serialNumber")}
    users = {lic["clientUserId"] for lic in mine if lic.get("clientUserId")}
    if waiting:  # with a license of this application (this pricing), on its platform
        pending = session.execute(select(Device).where(col(Device.serial_number).in_(sorted(waiting)))).scalars()
        found.waiting = sum(
            1 for d in pending if DEVICE_TO_APP_PLATFORM.get(d.platform, d.platform) == row.platform and (d.serial_number in devices or d.owner in users)
        )
    others = {lic.get("serialNumber") or lic.get("clientUserId") for lic in licenses} - devices - users  # another pricing's licenses: its own application
    for serial in sorted(serials):
        device = session.get(Device, serial)
        if device is None or DEVICE_TO_APP_PLATFORM.get(device.platform, device.platform) != row.platform:
            continue  # removed, or its platform's application is updated on its own
        if serial in devices:
            kind, user = "device", None
        elif device.owner in users:
            kind, user = "user", device.owner
        else:
            if serial not in others and device.owner not in others and (row.adam_id, row.platform, serial) not in told:
                told.add((row.adam_id, row.platform, serial))
                found.devices.append({"serialNumber": serial, "status": "skipped", "message": "it holds no license of the app any more: nothing queued"})
            continue
        uuid, new = queue_install(host, session, row.account, row.adam_id, row.pricing_param, device, kind, user, "update")
        if new:
            _follow(session, row, kind, user or serial, uuid)
        holder = "device license" if user is None else f"user license of {user}"
        message = f"InstallApplication queued (command {uuid}, {holder})" if new else f"an install of the app still waits for the device (command {uuid})"
        found.devices.append({"serialNumber": serial, "status": "queued" if new else "skipped", "message": message})
    return found


def _follow(session: Session, row: Any, kind: str, target: str, uuid: str) -> None:
    """Add the update's command to the install it updates, so that a license taken back later
    cancels it while it waits, as it cancels the first one (:func:`.installs.removal.take_back`)."""
    install = next(iter(queued_installs(session, row.account, row.adam_id, row.pricing_param, kind, target)), None)
    if install is not None:
        install.command_uuids = with_commands(session, install.command_uuids, [uuid])  # bounded: not one more per update for ever
        install.updated_at = utcnow()
        session.add(install)
