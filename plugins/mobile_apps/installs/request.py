"""Interactive installs (``mdm apps install``): check, associate, wait, queue (docs/apple-api.md,
"Installing an app with a license").

1. Check each target: device enrolled, platform supported (iPadOS devices take iOS apps),
   asset device-assignable (device licenses), licenses available for the batch; a VPP user
   that is Associated (user licenses).
2. Ask the VPP plugin to associate the licenses (``mdm_vpp_associate``), unless the target
   already holds one (``mdm_vpp_licenses``).
3. Queue ``InstallApplication`` (``PurchaseMethod`` 1) for each device whose license Apple
   confirmed; report Apple's reason for the others and queue nothing for them.
4. When Apple has not answered within ``--wait``, the install is recorded ``pending``:
   :mod:`.pending` queues its command later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlmodel import Session, col

from mdm_core.errors import MdmError, TemporaryError, UsageError, one_line
from mdm_core.inventory import devices_of, normalize_serial
from mdm_core.inventory.csvfile import csv_rows, duplicate, read_text
from mdm_core.models import Device, MdmUser, utcnow
from plugins.vpp.payloads import LicenseResult, MirroredUser

from ..accounts import removed_reason, wait_or_cancel
from ..catalog import DEVICE_TO_APP_PLATFORM, find_apps, label
from ..models import AppMetadata, Install, MobileApp
from ..settings import settings
from ..vpp_port import VppPort, VppUnavailable
from . import wording
from .commands import apple_reason, queue_install, queued_installs, with_commands
from .released import let_go
from .removal import give_back
from .reserve import Intents, fresh_counts, holding, intent, reserve
from .wording import NO_DEVICE, Said

if TYPE_CHECKING:
    from mdm_core.host import Host


@dataclass
class Asset:
    """One VPP asset (account, adamId, pricingParam) and its published applications (or book) by platform."""

    account: str
    adam_id: str
    pricing_param: str
    apps: dict[str, MobileApp]
    meta: AppMetadata | None
    device_assignable: bool
    available_count: int
    kind: str = "app"  # or "book": licensed to users, installed with InstallMedia

    @property
    def label(self) -> str:
        return label(next(iter(self.apps.values())), self.meta)

    @property
    def platforms(self) -> list[str]:
        return sorted(self.apps)


#: the statuses of a line whose target gets nothing: the command exits 1 (and prints it on stderr),
#: the console and the API answer 409. ``canceled``: the account was removed while Apple was asked.
NOT_DONE = ("refused", "failed", "canceled")


@dataclass
class Outcome:
    """What an install did, one line per device or user, in the command line's words (the
    console's through :mod:`.wording`)."""

    asset: Asset | None = None
    lines: list[tuple[str, str, Said]] = field(default_factory=list)  # (target, status, what happened)

    def add(self, target: str, status: str, said: str | Said) -> None:
        """A line; a plain ``str`` is worded the same for both."""
        self.lines.append((target, status, said if isinstance(said, Said) else Said(said)))

    @property
    def ok(self) -> bool:
        return not any(status in NOT_DONE for _, status, _ in self.lines)

    def as_dicts(self) -> list[dict[str, str]]:
        """The lines in the command line's words (``mdm apps install --json``; the REST API
        rewords each ``message``)."""
        return [{"target": t, "status": s, "message": said.cli} for t, s, said in self.lines]

    def for_console(self) -> list[dict[str, object]]:
        """The lines with their links to what to do next in the console, if any (the console
        rewords the command line's advice: ``wording.WORDING``)."""
        return [{"target": t, "status": s, "message": said.cli, "next": said.next} for t, s, said in self.lines]


# ---------------------------------------------------------------------- resolving


def resolve_asset(host: Host, selector: str) -> Asset:
    """The one installable asset that ``selector`` names (or a one-line reason why not)."""
    with host.db.session() as session:
        rows = find_apps(session, selector)
    apps = [(a, m) for a, m in rows if a.kind == "app"] or rows  # an adamId that is only a book: the book
    published = [(a, m) for a, m in apps if a.state == "published"]
    if not published:
        a, m = apps[0]
        raise MdmError(f"{label(a, m)} is retired (no longer in VPP account '{a.account}'): it cannot be installed")
    groups: dict[tuple[str, str, str], list[tuple[MobileApp, AppMetadata | None]]] = {}
    for a, m in published:
        groups.setdefault((a.account, a.adam_id, a.pricing_param), []).append((a, m))
    if len(groups) > 1:
        choices = "; ".join(f"{', '.join(str(a.id) for a, _ in g)} = account {k[0]} {k[1]} {k[2]}" for k, g in sorted(groups.items()))
        raise UsageError(f"'{selector}' matches several VPP assets: give an application id ({choices})")
    (account, adam_id, pricing), group = next(iter(groups.items()))
    kind = group[0][0].kind
    with host.db.session() as session:  # every platform of the asset, whichever application was named
        siblings = list(
            session.execute(
                select(MobileApp).where(
                    col(MobileApp.account) == account,
                    col(MobileApp.adam_id) == adam_id,
                    col(MobileApp.pricing_param) == pricing,
                    col(MobileApp.state) == "published",
                    col(MobileApp.kind) == kind,
                )
            ).scalars()
        )
    group = [(a, group[0][1]) for a in siblings] or group
    first = group[0][0]
    return Asset(account, adam_id, pricing, {a.platform: a for a, _ in group}, group[0][1], first.device_assignable, first.available_count, kind)


def read_devices_file(path: str) -> list[str]:
    """Serials from a file: one per line, or CSV with a ``serial_number`` column (read by the
    inventory's CSV reader). Any bad line is reported by line number and nothing is returned."""
    lines = read_text(Path(path)).splitlines()
    first = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    entries: list[tuple[int, str]] = []
    errors: list[str] = []
    if "serial_number" in [c.strip().lower() for c in first.split(",")]:
        for number, values in csv_rows(Path(path), ["serial_number"], ["serial_number"], comments=True):
            if isinstance(values, str):
                errors.append(f"{path}: line {number}: {values}")
            else:
                entries.append((number, values["serial_number"]))
    else:
        entries = [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip() and not line.strip().startswith("#")]
    seen: dict[str, int] = {}
    serials = []
    for number, value in entries:
        try:
            serial = normalize_serial(value)
        except UsageError as exc:
            errors.append(f"{path}: line {number}: {exc}")
            continue
        if serial in seen:
            errors.append(f"{path}: line {number}: {duplicate(serial, seen[serial])}")
        else:
            seen[serial] = number
            serials.append(serial)
    if errors:
        raise UsageError("; ".join(errors) + " (nothing was done)")
    if not serials:
        raise UsageError(f"{path}: no serial numbers (one per line, or CSV with a serial_number column)")
    return serials


# ---------------------------------------------------------------------- installing


def install(host: Host, selector: str, *, serials: list[str] | None = None, user: str | None = None, wait: float | None = None) -> Outcome:
    """``mdm apps install``: device licenses for ``serials``, or a user license for ``user``."""
    asset, wait_for = _prepare(host, selector, wait)
    if user is not None:
        return _install_for_user(host, asset, user.strip(), wait_for)
    return _install_on_devices(host, asset, _serials(asset, serials), wait_for)


def install_batch(host: Host, selector: str, serials: list[str], users: list[str], wait: float | None = None) -> Outcome:
    """``POST /api/v1/apps/APP/install`` with ``"devices"`` and/or ``"users"``: one plan for the
    request, the app and its counts read once, all or nothing as a whole: when the devices and
    users who need a new license together outnumber the available ones, each of them is refused
    (one line, :func:`short`) and Apple is asked nothing, for the devices as for the users."""
    asset, wait_for = _prepare(host, selector, wait)
    out = Outcome(asset)
    devices = _plan_devices(host, asset, _serials(asset, serials), out) if serials else None
    people = _plan_users(host, asset, list(dict.fromkeys(u.strip() for u in users))) if users else None
    intents = reserve(host, asset, devices.needed if devices else [], people.needed if people else [])
    if devices:
        _license_devices(host, asset, devices, wait_for, out, intents)
    if people:
        out.lines += _license_users_planned(host, asset, people, wait_for, intents).lines
    return out


def _serials(asset: Asset, serials: list[str] | None) -> list[str]:
    """The serials asked for, normalized; a book is refused for devices (one line)."""
    if asset.kind == "book":
        raise wording.Refused(wording.book_for_devices(asset.label))
    found = [s.strip().upper() for s in serials or [] if s.strip()]
    if not found:
        raise UsageError("no device given")
    return found


def _prepare(host: Host, selector: str, wait: float | None) -> tuple[Asset, float]:
    """The asset ``selector`` names with its counts read now, and the seconds to wait for Apple."""
    VppPort(host).require("VPP apps cannot be installed")
    asset = resolve_asset(host, selector)
    fresh_counts(host, asset)
    from mdm_core.argtypes import check_wait

    return asset, settings(host).install_wait if wait is None else check_wait(wait, "--wait")


def _check_device(asset: Asset, serial: str, device: Device | None) -> str | Said | None:
    if device is None:
        return wording.not_enrolled()
    platform = DEVICE_TO_APP_PLATFORM.get(device.platform, device.platform)
    if platform not in asset.apps:
        return wording.platform_mismatch(device.platform, platform, asset.label, asset.platforms)
    if asset.kind == "book" and platform == "macOS" and device.enrollment_type == "user":
        return "Apple does not allow InstallMedia (books) on a Mac under User Enrollment"
    return None


@dataclass
class _DevicePlan:
    """The devices of a request, checked: their order, those holding a license, those needing one."""

    serials: list[str]
    held: list[str]
    needed: list[str]


def _install_on_devices(host: Host, asset: Asset, serials: list[str], wait: float) -> Outcome:
    out = Outcome(asset)
    plan = _plan_devices(host, asset, serials, out)
    _license_devices(host, asset, plan, wait, out, reserve(host, asset, plan.needed, []))
    return out


def _plan_devices(host: Host, asset: Asset, serials: list[str], out: Outcome) -> _DevicePlan:
    """Check each device (refusals said in ``out``) and read which hold a license already."""
    with host.db.session() as session:
        devices = {s: session.get(Device, s) for s in serials}
    checked: list[str] = []
    for serial in dict.fromkeys(serials):
        reason = _check_device(asset, serial, devices[serial])
        if reason is None and not asset.device_assignable:
            reason = wording.users_only(asset.label)
        if reason:
            out.add(serial, "refused", reason)
        else:
            checked.append(serial)
    licensed = holding(host, asset, "device", checked) if checked else set()
    held = [s for s in checked if s in licensed]
    return _DevicePlan(serials, held, [s for s in checked if s not in held])


def _license_devices(host: Host, asset: Asset, plan: _DevicePlan, wait: float, out: Outcome, reserved: Intents) -> None:
    """License the devices that need one (each refused when the request is short of licenses:
    ``reserved.refusal``), then queue the install on the licensed ones; lines in ``out``."""
    serials, held, needed = plan.serials, plan.held, plan.needed
    if needed and reserved.refusal is not None:
        for serial in needed:
            out.add(serial, "refused", reserved.refusal)
        needed = []
    succeeded: list[str] = list(held)
    intents = reserved.devices
    if needed:
        result = _associate(host, asset, needed, [], wait, out, intents)
        if result is not None:
            succeeded += [s for s in result["succeeded"]["serialNumbers"] if s in needed]
            for failure in result["failed"]:
                if failure.get("serialNumber") in needed:
                    out.add(failure["serialNumber"], "failed", apple_reason(failure, account=asset.account, adam_id=asset.adam_id))
            _settle_failed(
                host,
                intents,
                {f["serialNumber"]: apple_reason(f, account=asset.account, adam_id=asset.adam_id) for f in result["failed"] if f.get("serialNumber") in needed},
            )
            pending = [s for s in result.get("pending", {}).get("serialNumbers", []) if s in needed]
            if pending:
                _record_pending(host, asset, pending, result["event_ids"], wait, out, intents)

    removed: list[str] = []

    def work(session: Session) -> None:
        removed.clear()  # a retried transaction says it once
        for serial in succeeded:
            device = session.get(Device, serial)
            if device is None:  # removed meanwhile: its removal's reclaim may have come before Apple's license
                removed.append(serial)
                row = intent(session, intents.get(serial))
                if row is not None:
                    row.status, row.error, row.updated_at = "failed", wording.REMOVED_ASKED_BACK, utcnow()
                    session.add(row)
                continue
            uuid, new = queue_install(host, session, asset.account, asset.adam_id, asset.pricing_param, device, "device", None, "request")
            how = "license already held" if serial in held else "license associated"
            out.add(
                serial, "queued", f"InstallApplication queued (command {uuid}, {how})" if new else f"InstallApplication already queued (command {uuid}, {how})"
            )
            _mark_queued(session, asset, "device", serial, intents.get(serial), [uuid], new)

    if succeeded:
        host.db.run_write(work)
        host.deliver_events()
    if removed:
        _given_back(host, asset, removed, [intents[s] for s in removed if s in intents], out)
    order = {s: i for i, s in enumerate(serials)}
    out.lines.sort(key=lambda line: order.get(line[0], len(order)))


def _given_back(host: Host, asset: Asset, serials: list[str], install_ids: list[int], out: Outcome) -> None:
    """Give back the licenses Apple granted to devices removed meanwhile, and say it (their
    lines, their installs' errors): "given back" once Apple confirmed, else "asked back"."""
    confirmed = give_back(host, asset.account, asset.adam_id, asset.pricing_param, serials)
    said = wording.REMOVED_WHILE_LICENSED if confirmed else wording.REMOVED_ASKED_BACK
    for serial in serials:
        out.add(serial, "refused", f"not enrolled any more: {said}")
    if confirmed and install_ids:
        host.db.execute_write(update(Install).where(col(Install.id).in_(install_ids), col(Install.error) == wording.REMOVED_ASKED_BACK).values(error=said))


@dataclass
class _UserPlan:
    """The users of a request, checked: a block of lines per user (in their order), the users
    to license or holding a license with their devices to install on, those needing one."""

    users: list[str]
    blocks: dict[str, Outcome]
    targets: dict[str, list[Device]]
    devices: dict[str, list[Device]]
    needed: list[str]


def _install_for_user(host: Host, asset: Asset, user: str, wait: float) -> Outcome:
    """``mdm apps install --user``: a shortage of licenses is said without the number needed,
    in the user's block after its skipped devices (the API's batch: :func:`install_batch`)."""
    plan = _plan_users(host, asset, [user])
    return _license_users_planned(host, asset, plan, wait, reserve(host, asset, [], plan.needed, counted=False), counted=False)


def _plan_users(host: Host, asset: Asset, users: list[str]) -> _UserPlan:
    """Check each user (refusals and invitations said in their block; the invited recorded):
    the MDM users, their devices, the VPP users and the app's licenses read once."""
    port = VppPort(host)
    with host.db.session() as session:
        known = set(session.execute(select(col(MdmUser.id)).where(col(MdmUser.id).in_(users))).scalars())
        _, devices = devices_of(session, owners=users)
    vpp_users: dict[str, MirroredUser] = {}
    for mirrored in port.users(asset.account, known) if known else []:
        vpp_users.setdefault(mirrored["clientUserId"], mirrored)  # the first, as Apple lists them
    held = holding(host, asset, "user", known)
    blocks: dict[str, Outcome] = {u: Outcome(asset) for u in users}
    invited: list[str] = []
    targets: dict[str, list[Device]] = {}  # the users to license (or holding one): their devices to install on
    for user in users:
        vpp_user, block = vpp_users.get(user), blocks[user]
        if user not in known:
            block.add(user, "refused", wording.not_an_mdm_user(user))
        elif vpp_user is None or vpp_user["status"] in ("Retired", "Deleted"):
            block.add(user, "refused", wording.no_vpp_user(asset.account, user) if vpp_user is None else wording.retired_vpp_user(asset.account, user))
        elif vpp_user["status"] != "Associated":
            invited.append(user)
            block.add(user, "waiting", wording.invited(f" ({vpp_user['invitationUrl']})" if vpp_user.get("invitationUrl") else ""))
        else:
            targets[user] = []
            for device in devices.get(user, []):
                reason = _check_device(asset, device.serial_number, device)
                if reason:
                    block.add(device.serial_number, "skipped", reason)
                else:
                    targets[user].append(device)
    if invited:
        _record_invited(host, asset, invited)
    return _UserPlan(users, blocks, targets, devices, [u for u in targets if u not in held])


def _license_users_planned(host: Host, asset: Asset, plan: _UserPlan, wait: float, reserved: Intents, *, counted: bool = True) -> Outcome:
    """License the planned users that need one (each refused when the request is short of
    licenses, ``reserved.refusal``: first, or in the user's block unless ``counted``), then
    queue the install on their devices; the lines in the users' order."""
    blocks, targets, needed, refusal = plan.blocks, plan.targets, plan.needed, reserved.refusal
    first = Outcome(asset)  # a batch's refusals for want of licenses
    if needed and refusal is not None:
        for user in needed:
            if counted:
                first.add(user, "refused", refusal)  # its skipped devices still said in its block
            else:
                blocks[user].add(user, "refused", refusal)
            del targets[user]
        needed = []
    intents = reserved.users
    if needed:
        not_licensed = _license_users(host, asset, needed, wait, blocks, intents)
        for user in not_licensed:
            del targets[user]
    _queue_for_users(host, asset, targets, plan.devices, intents, blocks, set(needed))
    out = first
    for user in plan.users:
        out.lines += blocks[user].lines
    return out


def _license_users(host: Host, asset: Asset, needed: list[str], wait: float, blocks: dict[str, Outcome], intents: dict[str, int]) -> list[str]:
    """Ask Apple once (chunked by its limits) for the users' licenses (their installs recorded
    before, ``intents``); says in each user's block why one is not licensed (failed, pending,
    canceled); returns those users."""
    said = Outcome(asset)
    result = _associate(host, asset, [], needed, wait, said, intents)
    if result is None:
        not_licensed = list(needed)
    else:
        pending = [u for u in needed if u in result.get("pending", {}).get("clientUserIds", [])]
        if pending:
            _record_pending(host, asset, pending, result["event_ids"], wait, said, intents)
        failures = {f["clientUserId"]: f for f in result["failed"] if f.get("clientUserId") in needed}
        reasons: dict[str, str] = {}
        for user in needed:
            if user not in pending and (user in failures or user not in result["succeeded"]["clientUserIds"]):
                failure = failures.get(user) or {"errorMessage": "Apple did not confirm the license"}
                reasons[user] = apple_reason(failure, account=asset.account, adam_id=asset.adam_id)
                said.add(user, "failed", reasons[user])
        _settle_failed(host, intents, reasons)
        not_licensed = [*pending, *reasons]
    for line in said.lines:
        blocks[line[0]].lines.append(line)
    return not_licensed


def _queue_for_users(
    host: Host,
    asset: Asset,
    targets: dict[str, list[Device]],
    devices: dict[str, list[Device]],
    intents: dict[str, int],
    blocks: dict[str, Outcome],
    licensed_now: set[str],
) -> None:
    """Queue the install on each device of the licensed users (one write) and record their
    installs; a user licensed now with no device to install on is recorded ``licensed``. A user
    whose license Apple let go meanwhile (:func:`.released.let_go`) is recorded ``failed``."""
    said: dict[str, list[tuple[str, str, Said]]] = {}

    def work(session: Session) -> None:
        said.clear()  # a retried transaction says it once
        gone = let_go(host, session, asset.account, asset.adam_id, asset.pricing_param, list(targets))
        for user, targets_of_user in targets.items():
            lines = said.setdefault(user, [])
            if user in gone:
                reason = wording.license_let_go(asset.account, user, gone[user])
                lines.append((user, "failed", reason))
                _end_intent(session, intents.get(user), "failed", reason.cli)
                continue
            lines.append((user, "licensed", Said("user license associated" if user in licensed_now else "user license already held")))
            if not targets_of_user:  # its devices each said skipped, if it has any
                lines.append((user, "note", wording.no_device_of_user(asset.platforms if devices.get(user) else None)))
                _end_intent(session, intents.get(user), "licensed", NO_DEVICE)
                continue
            uuids: list[str] = []
            fresh = False  # a command newly queued (else every device had one waiting already)
            for device in targets_of_user:
                enrolled = session.get(Device, device.serial_number)
                if enrolled is None:  # removed from this MDM while Apple licensed the user
                    lines.append((device.serial_number, "skipped", wording.removed_while_licensed()))
                    continue
                uuid, new = queue_install(host, session, asset.account, asset.adam_id, asset.pricing_param, enrolled, "user", user, "request", asset.kind)
                command = "InstallMedia" if asset.kind == "book" else "InstallApplication"
                lines.append(
                    (
                        device.serial_number,
                        "queued",
                        Said(f"{command} queued (command {uuid}, user license of {user})" if new else f"{command} already queued (command {uuid})"),
                    )
                )
                uuids.append(uuid)
                fresh = fresh or new
            if uuids:
                _mark_queued(session, asset, "user", user, intents.get(user), uuids, fresh)
            else:  # every device removed meanwhile: licensed, nothing queued (not "queued" with no command)
                lines.append((user, "note", wording.no_device_of_user()))
                _end_intent(session, intents.get(user), "licensed", NO_DEVICE)

    if targets:
        host.db.run_write(work)
        for user, lines in said.items():
            blocks[user].lines += lines
        host.deliver_events()


def _mark_queued(session: Session, asset: Asset, kind: str, target: str, install_id: int | None, uuids: list[str], fresh: bool) -> None:
    """Record ``target``'s install ``queued`` with the commands ``uuids`` (``fresh``: one was
    newly queued): the install recorded before Apple was asked (``install_id``), else the queued one
    that holds these commands (asked again while they wait), else a new one."""
    row = intent(session, install_id)
    row = row or (None if fresh else _install_of(session, asset, kind, target, uuids))
    row = row or Install(
        account=asset.account, adam_id=asset.adam_id, pricing_param=asset.pricing_param, kind=kind, target=target, source="request", status="queued"
    )
    row.status, row.command_uuids, row.updated_at = "queued", with_commands(session, row.command_uuids, uuids), utcnow()
    row.error = None  # licensed after all: not the installs job's "asking again", nor an account's removal meanwhile
    session.add(row)


def _install_of(session: Session, asset: Asset, kind: str, target: str, uuids: list[str]) -> Install | None:
    """The queued install of ``asset`` for ``target`` that holds one of these commands, if any:
    an install asked again while its command still waits is that install, not a second one."""
    if not uuids:
        return None
    rows = queued_installs(session, asset.account, asset.adam_id, asset.pricing_param, kind, target)
    return next((row for row in rows if set(uuids) & set(row.command_uuids)), None)


def _settle_failed(host: Host, intents: dict[str, int], reasons: dict[str, str], status: str = "failed") -> set[str]:
    """Record the end of installs that queue nothing (Apple refused, or nothing to install on);
    ``pending`` ones whose account was removed meanwhile end ``canceled`` instead (returned)."""
    todo = {t: (intents[t], r) for t, r in reasons.items() if t in intents}
    if not todo:
        return set()

    def work(session: Session) -> set[str]:
        canceled = set()
        for target, (install_id, reason) in todo.items():
            row = intent(session, install_id)
            if row is not None and row.status == "associating":
                if status == "pending" and wait_or_cancel(row):
                    canceled.add(target)
                else:
                    row.status, row.error, row.updated_at = status, reason[:1000], utcnow()
                session.add(row)
        return canceled

    return host.db.run_write(work)


def _end_intent(session: Session, install_id: int | None, status: str, reason: str) -> None:
    """The install recorded ``associating`` before Apple was asked (``install_id``) ends
    ``status`` with ``reason``, in the caller's transaction; one already past that is left."""
    row = intent(session, install_id)
    if row is not None and row.status == "associating":
        row.status, row.error, row.updated_at = status, reason[:1000], utcnow()
        session.add(row)


def _say_waiting(out: Outcome, asset: Asset, targets: list[str], canceled: set[str], said: Said) -> None:
    """The lines of installs Apple has not confirmed: ``pending`` (``said``), or ``canceled``
    when their account was removed meanwhile (:func:`..accounts.wait_or_cancel`)."""
    gone = Said(f"not licensed: {removed_reason(asset.account)} before Apple confirmed the license: it is not asked again")
    for target in targets:
        out.add(target, "canceled" if target in canceled else "pending", gone if target in canceled else said)


def _associate(host: Host, asset: Asset, serials: list[str], users: list[str], wait: float, out: Outcome, intents: dict[str, int]) -> LicenseResult | None:
    try:
        return VppPort(host).associate(asset.account, asset.adam_id, asset.pricing_param, serial_numbers=serials, client_user_ids=users, wait=wait)
    except VppUnavailable as exc:
        _settle_failed(host, intents, {t: one_line(exc) for t in serials + users})
        raise
    except MdmError as exc:
        # Apple refused, or could not be reached: then it may have accepted the request first,
        # so the installs job asks again (a license it finds is installed, none is refused): the
        # target is pending, as its install is recorded, not failed
        pending = isinstance(exc, TemporaryError)
        canceled = _settle_failed(host, intents, {t: one_line(exc) for t in serials + users}, status="pending" if pending else "failed")
        said = wording.not_licensed(str(exc), asked_again=pending)
        if pending:
            _say_waiting(out, asset, serials + users, canceled, said)
        else:
            for target in serials + users:
                out.add(target, "failed", said)
        return None


def _record_invited(host: Host, asset: Asset, users: list[str]) -> None:
    """Installs for VPP users who have not accepted the invitation yet: ``invited`` until the
    user is Associated (:func:`..pending.on_users_changed`), once per app and user (one write)."""

    def work(session: Session) -> None:
        waiting = set(
            session.execute(
                select(col(Install.target)).where(
                    col(Install.status) == "invited",
                    col(Install.account) == asset.account,
                    col(Install.adam_id) == asset.adam_id,
                    col(Install.pricing_param) == asset.pricing_param,
                    col(Install.kind) == "user",
                    col(Install.target).in_(users),
                )
            ).scalars()
        )
        for user in users:
            if user not in waiting:
                session.add(
                    Install(
                        account=asset.account,
                        adam_id=asset.adam_id,
                        pricing_param=asset.pricing_param,
                        kind="user",
                        target=user,
                        source="request",
                        status="invited",
                    )
                )

    host.db.run_write(work)


def _record_pending(host: Host, asset: Asset, targets: list[str], event_ids: list[str], wait: float, out: Outcome, intents: dict[str, int]) -> None:
    """Apple has not confirmed these licenses yet: their installs wait ``pending`` (those whose
    account was removed meanwhile end ``canceled``)."""

    def work(session: Session) -> set[str]:
        canceled = set()
        for target in targets:
            row = intent(session, intents[target])
            if row is None or row.status != "associating":  # the installs job took it over meanwhile
                continue
            if wait_or_cancel(row):
                canceled.add(target)
            else:
                row.event_ids = list(event_ids)
            session.add(row)
        return canceled

    _say_waiting(out, asset, targets, host.db.run_write(work), wording.unconfirmed(wait, event_ids))
