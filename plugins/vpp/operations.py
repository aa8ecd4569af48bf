"""Requests other plugins make through hooks: associate and disassociate licenses, register
VPP users, look up content metadata. Each follows Apple's asynchronous events and writes
what succeeded to the mirror with its events, in one transaction.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, insert, select, update
from sqlmodel import Session

from mdm_core.errors import MdmError, TemporaryError, UsageError
from mdm_core.models import MdmUser, utcnow

from .accounts import client_for, get_account
from .apple.client import AppsBooksClient
from .apple.errors import EventTimeoutError, VppError, is_retryable
from .apple.protocol import apple_user, page_users
from .models import VppAccount, VppAsset, VppLicense, VppUser
from .payloads import AppMetadata, LicenseResult
from .sync.events import license_payload
from .views import user_invitation_url

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)
L = VppLicense.__table__  # type: ignore[attr-defined]


def failure(action: str, exc: VppError) -> MdmError:
    """A one-line error: ``TemporaryError`` when Apple is unreachable or busy (retry later)."""
    if is_retryable(exc):
        return TemporaryError(f"cannot reach Apple to {action} (try again later): {exc}")
    return MdmError(f"Apple refused to {action}: {exc}")


def _load(host: "Host", account: str, adam_id: str, pricing_param: str) -> tuple[VppAccount, VppAsset]:
    with host.db.session() as session:
        acc = get_account(session, account)
        asset = session.get(VppAsset, (acc.id, adam_id, pricing_param))
    if asset is None:
        raise MdmError(f"asset {adam_id} ({pricing_param}) is not in account '{account}': run `mdm vpp sync {account}` if it was just bought")
    return acc, asset


def manage_licenses(
    host: "Host", account: str, adam_id: str, pricing_param: str, serial_numbers: list[str], client_user_ids: list[str], *, wait: float, associate: bool
) -> LicenseResult:
    """Associate (or disassociate) one asset's licenses and follow Apple's events."""
    acc, asset = _load(host, account, adam_id, pricing_param)
    serials = sorted({s.strip().upper() for s in serial_numbers if s.strip()})
    users = sorted({u.strip() for u in client_user_ids if u.strip()})
    if not serials and not users:
        raise UsageError("no device serial number or user given")
    if associate and serials and not asset.device_assignable:
        raise MdmError(f"asset {adam_id} is not device-assignable (Apple error 9707): license it to users instead")
    if not associate and not asset.revocable:
        raise MdmError(f"asset {adam_id} is irrevocable (Apple error 9706): its licenses cannot be reclaimed")
    verb = "associate" if associate else "disassociate"
    with client_for(host, acc) as client:
        method = client.associate_assets if associate else client.disassociate_assets
        event_ids: list[str] = []
        try:
            if serials:
                event_ids += method([(adam_id, pricing_param)], serial_numbers=serials)
            if users:
                event_ids += method([(adam_id, pricing_param)], client_user_ids=users)
        except VppError as exc:
            raise failure(f"{verb} licenses of {adam_id}", exc) from None
        statuses = _follow(client, event_ids, wait)
    result = _outcome(event_ids, statuses, serials, users)
    if result["status"] != "PENDING":
        host.db.run_write(lambda s: _apply(host, s, acc, asset, result, associate))
        host.deliver_events()
    return result


def _follow(client: AppsBooksClient, event_ids: list[str], wait: float) -> list[dict[str, Any]]:
    statuses = []
    for event_id in event_ids:
        try:
            statuses.append(client.wait_for_event(event_id, timeout=wait, poll_interval=0.25) if wait > 0 else client.event_status(event_id))
        except EventTimeoutError:
            statuses.append({"eventStatus": "PENDING", "failures": []})
        except VppError as exc:
            raise failure(f"follow Apple's event {event_id}", exc) from None
    return statuses


def _outcome(event_ids: list[str], statuses: list[dict[str, Any]], serials: list[str], users: list[str]) -> LicenseResult:
    """Per-target success and Apple's reasons for failures."""
    failed: list[dict[str, Any]] = []
    failed_serials: set[str] = set()
    failed_users: set[str] = set()
    for status in statuses:
        for failure in status.get("failures") or []:
            info = failure.get("errorInfo") or {}
            for serial in info.get("serialNumbers") or []:
                failed_serials.add(serial)
                failed.append({"serialNumber": serial, "errorNumber": failure.get("errorNumber"), "errorMessage": failure.get("errorMessage")})
            for user in info.get("clientUserIds") or []:
                failed_users.add(user)
                failed.append({"clientUserId": user, "errorNumber": failure.get("errorNumber"), "errorMessage": failure.get("errorMessage")})
    states = {s.get("eventStatus") for s in statuses}
    status = "PENDING" if "PENDING" in states else "FAILED" if "FAILED" in states or failed else "COMPLETE"
    if status == "FAILED" and not failed:  # Apple failed without naming targets: treat every target as failed
        failed = [{"serialNumber": s, "errorNumber": None, "errorMessage": "failed"} for s in serials] + [
            {"clientUserId": u, "errorNumber": None, "errorMessage": "failed"} for u in users
        ]
        failed_serials, failed_users = set(serials), set(users)
    succeeded = {"serialNumbers": [s for s in serials if s not in failed_serials], "clientUserIds": [u for u in users if u not in failed_users]}
    if status == "PENDING":
        succeeded = {"serialNumbers": [], "clientUserIds": []}
    return {"event_ids": event_ids, "status": status, "succeeded": succeeded, "failed": failed}


def _apply(host: "Host", session: Session, acc: VppAccount, asset: VppAsset, result: dict[str, Any], associate: bool) -> None:
    """Write what Apple did to the mirror, with its events, in the caller's transaction."""
    changed = 0
    for kind, targets in (("device", result["succeeded"]["serialNumbers"]), ("user", result["succeeded"]["clientUserIds"])):
        if not targets:
            continue
        key = and_(L.c.account_id == acc.id, L.c.adam_id == asset.adam_id, L.c.pricing_param == asset.pricing_param, L.c.kind == kind)
        held = set(session.execute(select(L.c.target).where(key, L.c.target.in_(targets))).scalars())
        todo = [t for t in targets if (t not in held) == associate]
        if not todo:
            continue
        if associate:
            session.execute(insert(L), [{"account_id": acc.id, "adam_id": asset.adam_id, "pricing_param": asset.pricing_param, "kind": kind, "target": t} for t in todo])
        else:
            session.execute(delete(L).where(key, L.c.target.in_(todo)))
        changed += len(todo) if associate else -len(todo)
        event = "vpp_licenses_associated" if associate else "vpp_licenses_disassociated"
        host.events.record(session, event, license_payload(session, acc.name, asset.adam_id, asset.pricing_param, kind, todo, "request"))
    if changed:
        session.execute(
            update(VppAsset)
            .where(VppAsset.account_id == acc.id, VppAsset.adam_id == asset.adam_id, VppAsset.pricing_param == asset.pricing_param)
            .values(assigned_count=VppAsset.assigned_count + changed, available_count=VppAsset.available_count - changed, updated_at=utcnow())
        )


def register_users(host: "Host", account: str, mdm_user_ids: list[str], *, wait: float = 60.0) -> list[dict[str, Any]]:
    """Create VPP users for MDM users (``clientUserId`` = MDM user id); returns their records."""
    with host.db.session() as session:
        acc = get_account(session, account)
        users = []
        for user_id in mdm_user_ids:
            user = session.get(MdmUser, user_id)
            if user is None:
                raise UsageError(f"'{user_id}' is not an MDM user: add it with `mdm users add {user_id}`")
            users.append(user)
    body = [{"clientUserId": u.id, **({"email": u.email} if u.email else {}), **({"managedAppleId": u.managed_apple_id} if u.managed_apple_id else {})} for u in users]
    with client_for(host, acc) as client:
        try:
            event_ids = client.create_users(body)
            statuses = _follow(client, event_ids, wait)
            records = []
            for user in users:
                for page in client.iter_users(client_user_id=user.id, active_only=True):
                    records.extend(page_users(page))
            template = client.service_config().urls.get("invitationEmail")
        except VppError as exc:
            raise failure("register users", exc) from None
    failures = {uid: f for s in statuses for f in (s.get("failures") or []) for uid in ((f.get("errorInfo") or {}).get("clientUserIds") or [])}
    host.db.run_write(lambda s: _store_users(host, s, acc, records, template))
    host.deliver_events()
    out = []
    for user in users:
        record = next((r for r in records if r["client_user_id"] == user.id), None)
        refused = failures.get(user.id)  # (not `failure`: that names the error helper of this module)
        out.append({
            "clientUserId": user.id, "status": record["status"] if record else "FAILED", "idHash": record and record["id_hash"],
            "invitationUrl": user_invitation_url(template, record["invite_code"]) if record and record["status"] == "Registered" else None,
            "errorNumber": refused.get("errorNumber") if refused and not record else None,
            "errorMessage": refused.get("errorMessage") if refused and not record else None,
        })
    return out


def _store_users(host: "Host", session: Session, acc: VppAccount, records: list[dict[str, Any]], template: str | None) -> None:
    account = session.get(VppAccount, acc.id)
    assert account is not None
    account.invitation_template = template or account.invitation_template
    for record in records:
        row = session.get(VppUser, (acc.id, record["client_user_id"]))
        fields = {k: record[k] for k in ("email", "status", "id_hash", "invite_code")}
        event = "vpp_users_added" if row is None else "vpp_users_changed"
        if row is None:
            row = VppUser(account_id=acc.id, client_user_id=record["client_user_id"], **fields)
        else:
            for key, value in fields.items():
                setattr(row, key, value)
        session.add(row)
        host.events.record(session, event, {"account": acc.name, "users": [apple_user(record, {record["client_user_id"]})]})
        if record["status"] == "Registered":
            host.events.record(session, "vpp_user_invited", {
                "account": acc.name, "clientUserId": record["client_user_id"], "email": record["email"],
                "invitationUrl": user_invitation_url(template, record["invite_code"]),
            })


def lookup_metadata(host: "Host", account: str, adam_ids: list[str]) -> dict[str, AppMetadata]:
    """Names, bundle ids, versions and icons from Apple's content-metadata lookup."""
    with host.db.session() as session:
        acc = get_account(session, account)
    with client_for(host, acc) as client:
        try:
            results = client.lookup_metadata(adam_ids, platform=acc.default_platform or "volumestore", country=acc.country or "US")
        except VppError as exc:
            raise failure("look up content metadata", exc) from None
    return {adam_id: summarize_metadata(data) for adam_id, data in results.items()}


def summarize_metadata(data: dict[str, Any]) -> AppMetadata:
    """The fields an application needs from a lookup result."""
    artwork = data.get("artwork")
    if isinstance(artwork, list):  # older responses: sized entries
        artwork = artwork[-1] if artwork else None
    icon = None
    if isinstance(artwork, dict) and isinstance(artwork.get("url"), str):
        icon = artwork["url"].replace("{w}", "128").replace("{h}", "128").replace("{f}", "png")
    version = None
    for offer in data.get("offers") or []:
        if isinstance(offer, dict) and isinstance(offer.get("version"), dict):
            version = offer["version"].get("display") or version
    return {
        "name": data.get("name"), "bundleId": data.get("bundleId"), "version": version, "iconUrl": icon,
        "kind": data.get("kind"), "deviceFamilies": data.get("deviceFamilies") or [],
    }
