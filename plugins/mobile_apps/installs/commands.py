"""``InstallApplication`` commands of VPP-licensed installs, and the install records.

One command per device and app at a time: an install already waiting in the device's queue is
reused, not queued twice. Each newly queued command is announced as
``mobile_apps_install_queued``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session, col

from mdm_core.db.stream import stream_rows
from mdm_core.db.typed import values_of
from mdm_core.errors import UsageError
from mdm_core.inventory import queue_command
from mdm_core.models import Command, Device

from ..catalog import DEVICE_TO_APP_PLATFORM
from ..models import Install
from ..payloads import InstallQueuedPayload
from ..settings import settings
from .wording import buy_or_reclaim, stale_counts

if TYPE_CHECKING:
    from mdm_core.host import Host

REQUEST_TYPE = "InstallApplication"
MEDIA_TYPE = "InstallMedia"


def install_payload(host: Host, adam_id: str, platform: str, enrollment_type: str = "device") -> dict[str, Any]:
    """The ``InstallApplication`` keys of a VPP-licensed install, as Apple's schema allows them
    for the platform and the enrollment type (docs/apple-api.md,
    "Installing an app with a license").

    User Enrollment forbids ``ChangeManagementState`` (iOS and macOS) and, on macOS,
    ``ManagementFlags`` and ``InstallAsManaged``; ``PurchaseMethod`` 1 is what lets an iOS app
    install under User Enrollment at all.
    """
    user_enrollment = enrollment_type == "user"
    payload: dict[str, Any] = {"iTunesStoreID": int(adam_id), "Options": {"PurchaseMethod": 1}}
    if not (user_enrollment and platform == "macOS"):
        payload["ManagementFlags"] = settings(host).management_flags()
    if not user_enrollment:
        payload["ChangeManagementState"] = "Managed"
        if platform == "macOS":
            payload["InstallAsManaged"] = True
    return payload


def media_payload(adam_id: str) -> dict[str, Any]:
    """The ``InstallMedia`` keys of a VPP-licensed book: its store id, and ``MediaType`` ``Book``
    (the only type Apple allows)."""
    return {"iTunesStoreID": int(adam_id), "MediaType": "Book"}


def _queued_command(session: Session, serial: str, adam_id: str, request_type: str = REQUEST_TYPE) -> str | None:
    """The uuid of an install command of this app (or book) already waiting for the device."""
    for command in session.execute(
        select(Command).where(col(Command.device_serial) == serial, col(Command.request_type) == request_type, col(Command.status) == "queued")
    ).scalars():
        if str(command.payload.get("iTunesStoreID")) == adam_id:
            return command.uuid
    return None


def queue_install(
    host: Host, session: Session, account: str, adam_id: str, pricing: str, device: Device, license_kind: str, user: str | None, source: str, kind: str = "app"
) -> tuple[str, bool]:
    """Queue InstallApplication (``InstallMedia`` for a book) for one device in the caller's
    transaction; (uuid, newly queued)."""
    request_type = MEDIA_TYPE if kind == "book" else REQUEST_TYPE
    existing = _queued_command(session, device.serial_number, adam_id, request_type)
    if existing:
        return existing, False
    platform = DEVICE_TO_APP_PLATFORM.get(device.platform, device.platform)
    command = queue_command(
        host,
        session,
        device.serial_number,
        request_type,
        media_payload(adam_id) if kind == "book" else install_payload(host, adam_id, platform, device.enrollment_type),
    )
    payload: InstallQueuedPayload = {
        "account": account,
        "adamId": adam_id,
        "pricingParam": pricing,
        "serialNumber": device.serial_number,
        "commandUuid": command.uuid,
        "license": license_kind,
        "clientUserId": user,
        "source": source,
    }
    host.events.record(session, "mobile_apps_install_queued", payload)
    return command.uuid, True


#: the statuses of a command the device has not answered yet
WAITING = ("queued", "sent")


def with_commands(session: Session, uuids: list[str], new: list[str]) -> list[str]:
    """An install's commands ``uuids`` with ``new`` added once, bounded (it grew by one per update
    of the app, for ever): kept are the new ones, those the device has not answered (a queued one
    is canceled when the license is taken back) and, per device, the last one it acknowledged
    (the app is there: RemoveApplication then; the last by acknowledgement, not by place in the
    list, as housekeeping keeps it: :func:`mdm_core.housekeeping.superseded`); the others match
    nothing any more."""
    merged = list(dict.fromkeys([*uuids, *new]))
    found = {c.uuid: c for c in session.execute(select(Command).where(col(Command.uuid).in_(merged))).scalars()}
    acked = sorted((c for c in found.values() if c.status == "acknowledged"), key=lambda c: (c.updated_at, c.uuid))
    last = {c.device_serial: c.uuid for c in acked}  # the latest acknowledged per device wins
    return [u for u in merged if u in new or (u in found and (found[u].status in WAITING or last.get(found[u].device_serial) == u))]


def apple_reason(failure: Mapping[str, Any], *, account: str, adam_id: str) -> str:
    """Apple's reason for refusing a license of ``adam_id`` in ``account`` (from an event's
    ``failures``), as one line."""
    number = failure.get("errorNumber")
    hints: dict[Any, str] = {9709: "not enough licenses", 9609: "the VPP user is not registered", 9707: "not device-assignable"}
    message = failure.get("errorMessage") or hints.get(number, "failed")
    hint = f" ({hints[number]})" if number in hints and hints[number].lower() not in message.lower() else ""
    advice = buy_or_reclaim(adam_id) + stale_counts(account) if number == 9709 else ""  # the mirror counted licenses Apple no longer had
    return f"Apple refused the license: {message}{hint}" + (f" (Apple error {number})" if number else "") + "; nothing queued" + advice


#: Every status an install can have (``mdm apps installs --status``).
INSTALL_STATUSES = ("associating", "invited", "pending", "queued", "licensed", "failed", "canceled", "removed")


def installs_query(status: str | None = None) -> Any:
    """Recorded installs (``Install`` rows), ``status`` only when given; an unknown status is a
    ``UsageError`` (it would match nothing, as if there were no such installs)."""
    if status and status not in INSTALL_STATUSES:
        raise UsageError(f"unknown install status '{status}': use one of {', '.join(INSTALL_STATUSES)}")
    query = select(Install)
    return query.where(col(Install.status) == status) if status else query


def queued_installs(session: Session, account: str, adam_id: str, pricing: str, kind: str, target: str) -> list[Install]:
    """The ``queued`` installs of one asset (``account``, adamId, pricingParam) for one device or
    user (``kind``, ``target``): the installs a later command of the app for it belongs to."""
    return list(
        session.execute(
            select(Install).where(
                col(Install.account) == account,
                col(Install.adam_id) == adam_id,
                col(Install.pricing_param) == pricing,
                col(Install.kind) == kind,
                col(Install.target) == target,
                col(Install.status) == "queued",
            )
        ).scalars()
    )


def iter_installs(host: Host, status: str | None = None, *, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Recorded installs, newest first; streamed (constant memory)."""
    query = installs_query(status).order_by(col(Install.id).desc())
    return (values_of(row[0]) for row in stream_rows(host.db, query, offset=offset, limit=limit))


def list_installs(host: Host, status: str | None = None) -> list[dict[str, Any]]:
    """Recorded installs, newest first."""
    return list(iter_installs(host, status))
