"""Installs waiting for a license, and licenses that arrive on their own.

A ``pending`` install (Apple had not confirmed its license within ``--wait``) gets its
``InstallApplication`` queued when the license shows up: in a ``vpp_licenses_associated``
event (a sync's, or this host's), or when the ``mobile_apps.installs`` job asks Apple again
(:func:`retry_pending`). With ``[mobile_apps] auto_install``, licenses a sync found assigned
outside this host (Apple's portal) are installed on the enrolled devices too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import func, select
from sqlmodel import Session, col

from mdm_core.errors import MdmError
from mdm_core.inventory import devices_of, in_inventory
from mdm_core.job_lock import check_held
from mdm_core.models import Device, utcnow
from plugins.vpp.payloads import LicensesPayload, LicensesRefusedPayload, UsersPayload

from ..catalog import DEVICE_TO_APP_PLATFORM
from ..models import Install, MobileApp
from ..payloads import InstallFailedPayload
from ..settings import settings
from ..vpp_port import VppPort
from .commands import apple_reason, queue_install, with_commands
from .released import let_go
from .resume import resume_associating
from .waiting import install_waits
from .wording import DEVICE_GONE, NO_DEVICE, license_let_go

if TYPE_CHECKING:
    from sqlalchemy import Select

    from mdm_core.events import Event
    from mdm_core.host import Host

log = logging.getLogger(__name__)


def complete_pending(host: Host, session: Session, account: str, adam_id: str, pricing: str, serials: Iterable[str], users: Iterable[str]) -> int:
    """Queue the commands of pending installs whose licenses are now held; returns how many. One
    left with no command (no enrolled device of its user to install on) ends ``licensed``; a
    user's whose license Apple let go meanwhile (:func:`.released.let_go`) fails, announced."""
    serials, users = set(serials), set(users)
    if not serials and not users:
        return 0
    rows = list(
        session.execute(
            select(Install).where(
                col(Install.status) == "pending", col(Install.account) == account, col(Install.adam_id) == adam_id, col(Install.pricing_param) == pricing
            )
        ).scalars()
    )
    rows = [r for r in rows if (r.kind == "device" and r.target in serials) or (r.kind == "user" and r.target in users)]
    gone = let_go(host, session, account, adam_id, pricing, sorted({r.target for r in rows if r.kind == "user"}))
    queued = 0
    for row in rows:
        if row.kind == "user" and row.target in gone:
            _fail(host, session, row, (account, adam_id, pricing, "user"), license_let_go(account, row.target, gone[row.target]).cli, None)
            continue
        devices = (
            [session.get(Device, row.target)] if row.kind == "device" else list(session.execute(select(Device).where(Device.owner == row.target)).scalars())
        )
        published = list(
            session.execute(
                select(col(MobileApp.platform), col(MobileApp.kind)).where(
                    col(MobileApp.account) == account,
                    col(MobileApp.adam_id) == adam_id,
                    col(MobileApp.pricing_param) == pricing,
                    col(MobileApp.state) == "published",
                )
            ).all()
        )
        kind = "app" if any(k == "app" for _, k in published) or not published else "book"
        platforms = {p for p, k in published if k == kind}
        for device in devices:
            if device is None or DEVICE_TO_APP_PLATFORM.get(device.platform, device.platform) not in platforms:
                continue
            uuid, new = queue_install(host, session, account, adam_id, pricing, device, row.kind, row.target if row.kind == "user" else None, "pending", kind)
            row.command_uuids = with_commands(session, row.command_uuids, [uuid])  # its request may have queued it already
            queued += int(new)
        if row.command_uuids:
            row.status, row.error, row.updated_at = "queued", None, utcnow()  # not "asking again" any more
        else:  # nothing to install on (not "queued" with no command)
            row.status, row.error, row.updated_at = "licensed", NO_DEVICE if row.kind == "user" else DEVICE_GONE, utcnow()
        session.add(row)
    return queued


def on_licenses_associated(host: Host, event: Event) -> None:
    """Complete pending installs; with ``auto_install``, install what was licensed in Apple's portal."""
    from ..catalog import once

    p = cast(LicensesPayload, event.payload)
    auto = settings(host).auto_install and p.get("source") == "sync"
    if not auto and not install_waits(host, "pending", event):
        return  # nothing waits for these licenses: no work, so nothing to guard against a repeat either

    def work(session: Session) -> None:
        account, adam_id, pricing = p["account"], str(p["adamId"]), str(p["pricingParam"])
        complete_pending(host, session, account, adam_id, pricing, p.get("serialNumbers") or [], p.get("clientUserIds") or [])
        if not auto:
            return
        platforms = set(
            session.execute(
                select(col(MobileApp.platform)).where(
                    col(MobileApp.account) == account,
                    col(MobileApp.adam_id) == adam_id,
                    col(MobileApp.pricing_param) == pricing,
                    col(MobileApp.state) == "published",
                    col(MobileApp.kind) == "app",
                )
            ).scalars()
        )
        if not platforms:
            return
        targets: list[tuple[Device, str, str | None]] = []
        serials = list(p.get("enrolledSerialNumbers") or [])
        owners = list(p.get("mdmUserIds") or [])
        by_serial, by_owner = devices_of(session, serials=serials, owners=owners)
        targets.extend((by_serial[serial], "device", None) for serial in serials if serial in by_serial)
        gone = let_go(host, session, account, adam_id, pricing, owners)  # retired or reclaimed since the sync saw them
        for owner in owners:
            devices = by_owner.get(owner, [])
            if owner in gone:  # its license is not there any more: nothing to install with (with a device or not: said)
                _fail_auto(host, session, (account, adam_id, pricing), owner, gone[owner], event.id)
                continue
            targets.extend((device, "user", owner) for device in devices)
        for device, kind, user in targets:
            if DEVICE_TO_APP_PLATFORM.get(device.platform, device.platform) not in platforms:
                log.info("auto-install of %s skipped on %s: platform %s not supported", adam_id, device.serial_number, device.platform)
                continue
            uuid, new = queue_install(host, session, account, adam_id, pricing, device, kind, user, "auto")
            if new:
                session.add(
                    Install(
                        account=account,
                        adam_id=adam_id,
                        pricing_param=pricing,
                        kind=kind,
                        target=user or device.serial_number,
                        source="auto",
                        status="queued",
                        event_ids=[event.id],
                        command_uuids=[uuid],
                    )
                )

    once(host, event, work)


def _fail_auto(host: Host, session: Session, asset: tuple[str, str, str], user: str, why: str, event_id: str) -> None:
    """The automatic install for ``user``, whose license Apple let go (``why``) after the sync
    that found it, is recorded failed and announced, as a pending one is (:func:`complete_pending`)."""
    account, adam_id, pricing = asset
    row = Install(account=account, adam_id=adam_id, pricing_param=pricing, kind="user", target=user, source="auto", status="pending", event_ids=[event_id])
    session.add(row)
    session.flush()  # its id, for the announcement
    _fail(host, session, row, (account, adam_id, pricing, "user"), license_let_go(account, user, why).cli, None)


def on_users_changed(host: Host, event: Event) -> None:
    """VPP users who accepted the invitation (``Associated``, found by a sync or told by Apple's
    notification): the installs waiting for them (``invited``) go ahead at once."""
    p = cast(UsersPayload, event.payload)
    associated = [u["clientUserId"] for u in p["users"] if u.get("status") == "Associated"]
    if not associated:
        return
    waiting = (col(Install.status) == "invited", col(Install.account) == p["account"], col(Install.kind) == "user")
    invited = (*waiting, col(Install.target).in_(associated))
    with host.db.reading() as conn:  # almost always none: no write transaction then, nor the event's users bound
        if conn.execute(select(col(Install.id)).where(*waiting).limit(1)).first() is None:
            return

    def work(session: Session) -> list[int]:
        rows = list(session.execute(select(Install).where(*invited)).scalars())
        for row in rows:
            row.status, row.error, row.updated_at = "pending", None, utcnow()
            session.add(row)
        return [int(row.id) for row in rows]

    ids = host.db.run_write(work)  # a redelivered event finds nothing left invited
    if ids:
        log.info("%d install(s) waiting for an invitation go ahead: %s accepted", len(ids), ", ".join(associated[:5]))
        retry_pending(host, ids)


def retry_pending(host: Host, ids: list[int] | None = None, *, resume_all: bool = False) -> dict[str, int]:
    """The ``mobile_apps.installs`` job: ask Apple again about pending installs (``ids``: only
    these, at once), and about those left ``associating`` ``interrupted_after`` ago (any age
    with ``resume_all``: one whose request still runs is then asked twice, which Apple answers
    alike, and its command is queued once), unless their request recorded an outcome meanwhile
    (:mod:`.resume`)."""
    s = settings(host)
    if ids is None:
        resume_associating(host, resume_all=resume_all)
    query = select(Install).where(col(Install.status) == "pending")
    if ids is not None:
        query = query.where(col(Install.id).in_(ids))
    with host.db.session() as session:
        rows = list(session.execute(query).scalars())
        gone = _gone(session, rows)
    if gone:  # removed while Apple was not answering: a license now would never be reclaimed
        host.db.run_write(partial(_cancel_gone, ids=sorted(gone)))
        rows = [r for r in rows if r.id not in gone]
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for row in rows:
        groups.setdefault((row.account, row.adam_id, row.pricing_param, row.kind), []).append(row.target)
    counts = {"asked": 0, "queued": 0, "failed": 0, "pending": 0}
    for (account, adam_id, pricing, kind), targets in groups.items():
        check_held()  # a job that lost its lock leaves the rest pending for the lock's next holder
        counts["asked"] += len(targets)
        serials, users = (targets, []) if kind == "device" else ([], targets)
        try:
            result = VppPort(host).associate(account, adam_id, pricing, serial_numbers=serials, client_user_ids=users, wait=min(s.install_wait, 10.0))
        except MdmError as exc:
            log.warning("pending installs of %s: Apple could not be asked: %s", adam_id, exc)
            host.db.run_write(partial(_bump, key=(account, adam_id, pricing, kind), targets=targets, error=str(exc)))
            counts["pending"] += len(targets)
            continue
        still = result.get("pending", {})
        counts["pending"] += len(still.get("serialNumbers", [])) + len(still.get("clientUserIds", []))
        ok_serials, ok_users = result["succeeded"]["serialNumbers"], result["succeeded"]["clientUserIds"]
        failures = {str(f.get("serialNumber") or f.get("clientUserId")): f for f in result["failed"]}

        def work(
            session: Session,
            account: str = account,
            adam_id: str = adam_id,
            pricing: str = pricing,
            kind: str = kind,
            ok_serials: list[str] = ok_serials,
            ok_users: list[str] = ok_users,
            failures: dict[str, Any] = failures,
        ) -> int:
            fail_pending(host, session, (account, adam_id, pricing, kind), failures)
            return complete_pending(host, session, account, adam_id, pricing, ok_serials, ok_users)

        host.db.run_write(work)
        counts["failed"] += len(failures)
    host.deliver_events()
    counts["queued"] = _now_queued(host, [int(r.id) for r in rows if r.id is not None])
    return counts


def _now_queued(host: Host, ids: list[int]) -> int:
    """How many of these installs are queued now: those whose license Apple confirmed in this
    run, whether the run queued their commands itself or the license event it delivered did
    (which comes first, and used to leave the run saying ``queued 0``)."""
    if not ids:
        return 0
    with host.db.session() as session:
        return int(session.execute(select(func.count()).select_from(Install).where(col(Install.id).in_(ids), col(Install.status) == "queued")).scalar_one())


#: why a pending install of a target that left the inventory is canceled, by kind of license
GONE = {
    "device": "the device was removed from this MDM before Apple licensed it: Apple was not asked again",
    "user": "the user was removed from this MDM before the install went ahead: Apple was not asked again",
}


def _gone(session: Session, rows: list[Install]) -> set[int]:
    """Ids of these installs whose device or user is no longer in the inventory."""
    here = in_inventory(session, ((r.kind, r.target) for r in rows))
    return {int(r.id) for r in rows if r.id is not None and (r.kind, r.target) not in here}


def cancel_removed(host: Host, kind: str, target: str) -> int:
    """A device or user removed from this MDM: its installs still waiting for Apple (``pending``)
    or for the user's invitation (``invited``) end ``canceled``, unless it is back already;
    returns how many. Idempotent (a redelivered removal finds nothing left to cancel)."""

    def work(session: Session) -> int:
        rows = list(
            session.execute(
                select(Install).where(col(Install.kind) == kind, col(Install.target) == target, col(Install.status).in_(("pending", "invited")))
            ).scalars()
        )
        gone = _gone(session, rows)
        for row in rows:
            if row.id in gone:
                row.status, row.error, row.updated_at = "canceled", GONE[kind], utcnow()
                session.add(row)
        return len(gone)

    return host.db.run_write(work)


def _cancel_gone(session: Session, ids: list[int]) -> None:
    for row in session.execute(select(Install).where(col(Install.id).in_(ids), col(Install.status) == "pending")).scalars():
        row.status, row.error, row.updated_at = "canceled", GONE[row.kind], utcnow()
        session.add(row)
    log.info("%d pending install(s) canceled: their device or user was removed", len(ids))


def fail_pending(host: Host, session: Session, key: tuple[str, str, str, str], failures: dict[str, dict[str, Any]], event_id: str | None = None) -> int:
    """Pending installs of ``key`` (account, adamId, pricingParam, license kind) whose target
    Apple refused (``failures``: target -> Apple's failure, ``errorNumber``/``errorMessage``)
    fail with Apple's reason, each announced (``mobile_apps_install_failed``); ``event_id``:
    only those waiting for that Apple event. Returns how many."""
    account, _, _, _ = key
    failed = 0
    for row in session.execute(_pending_of(key, failures)).scalars():
        if event_id is not None and event_id not in row.event_ids:
            continue
        failure = failures[row.target]
        _fail(host, session, row, key, apple_reason(failure, account=account, adam_id=row.adam_id), failure.get("errorNumber"))
        failed += 1
    return failed


def _fail(host: Host, session: Session, row: Install, key: tuple[str, str, str, str], error: str, number: int | None) -> None:
    """The pending install ``row`` of ``key`` fails with ``error`` (Apple's ``number``), announced
    (``mobile_apps_install_failed``): nobody waits on a pending install to be told otherwise."""
    account, adam_id, pricing, kind = key
    assert row.id is not None  # read from the table
    row.status, row.error, row.updated_at = "failed", error, utcnow()
    session.add(row)
    payload: InstallFailedPayload = {
        "id": row.id,
        "account": account,
        "adamId": adam_id,
        "pricingParam": pricing,
        "license": kind,
        "serialNumber": row.target if kind == "device" else None,
        "clientUserId": row.target if kind == "user" else None,
        "source": row.source,
        "error": row.error,
        "errorNumber": number,
    }
    host.events.record(session, "mobile_apps_install_failed", payload)


def on_licenses_refused(host: Host, event: Event) -> None:
    """Apple refused the licenses of an associate that pending installs wait for (its
    ``ASSET_MANAGEMENT`` notification): they fail at once with Apple's reason, as when the
    ``mobile_apps.installs`` job asks again, instead of waiting for it."""
    p = cast(LicensesRefusedPayload, event.payload)
    if p["type"] != "ASSOCIATE" or not install_waits(host, "pending", event):
        return
    failure = {"errorNumber": p["errorNumber"], "errorMessage": p["errorMessage"]}

    def work(session: Session) -> int:  # a redelivered event finds them failed already
        return sum(
            fail_pending(host, session, (p["account"], p["adamId"], p["pricingParam"], kind), dict.fromkeys(targets, failure), p["eventId"])
            for kind, targets in (("device", p["serialNumbers"]), ("user", p["clientUserIds"]))
            if targets
        )

    failed = host.db.run_write(work)
    if failed:
        log.info("%d pending install(s) of %s failed: Apple refused their licenses (event %s)", failed, p["adamId"], p["eventId"])


def _pending_of(key: tuple[str, str, str, str], targets: Iterable[str]) -> Select[Install]:
    """The pending installs of ``key`` (account, adamId, pricingParam, license kind) for ``targets``."""
    account, adam_id, pricing, kind = key
    return select(Install).where(
        col(Install.status) == "pending",
        col(Install.account) == account,
        col(Install.adam_id) == adam_id,
        col(Install.pricing_param) == pricing,
        col(Install.kind) == kind,
        col(Install.target).in_(list(targets)),
    )


def _bump(session: Session, key: tuple[str, str, str, str], targets: list[str], error: str) -> None:
    for row in session.execute(_pending_of(key, targets)).scalars():
        row.attempts += 1
        row.error, row.updated_at = error[:1000], utcnow()
        session.add(row)
