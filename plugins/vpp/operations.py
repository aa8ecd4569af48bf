"""Requests other plugins make through hooks: associate and disassociate licenses, register
VPP users, look up content metadata. Each follows Apple's asynchronous events and writes
what succeeded to the mirror with its events, in one transaction.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, select
from sqlmodel import Session, col

from mdm_core.db.typed import stored_id, table_of
from mdm_core.errors import MdmError, TemporaryError, UsageError
from mdm_core.models import MdmUser, utcnow

from .accounts import client_for, get_account
from .apple.client import AppsBooksClient
from .apple.errors import EventTimeoutError, VppError, is_retryable
from .apple.protocol import apple_user, page_users
from .apple.transport import backoff_delay
from .license_counts import add_license_counts
from .models import VppAccount, VppAsset, VppLicense, VppUser
from .payloads import LIVE_USER_STATUSES, RELEASED_ERRORS, AppMetadata, LicenseResult, Targets, UserResult
from .recording import record_event
from .sync.apply import insert_ignoring_duplicates, move_counts
from .sync.events import known_ids, license_payload, record_chunks
from .views import user_invitation_url

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)
L = table_of(VppLicense)


def failure(action: str, exc: VppError) -> MdmError:
    """A one-line error: ``TemporaryError`` when Apple is unreachable or busy (retry later)."""
    if is_retryable(exc):
        return TemporaryError(f"cannot reach Apple to {action} (try again later): {exc}")
    return MdmError(f"Apple refused to {action}: {exc}")


def _load(host: Host, account: str, adam_id: str, pricing_param: str) -> tuple[VppAccount, VppAsset]:
    with host.db.session() as session:
        acc = get_account(session, account)
        asset = session.get(VppAsset, (acc.id, adam_id, pricing_param))
    if asset is None:
        raise MdmError(f"asset {adam_id} ({pricing_param}) is not in account '{account}': run `mdm vpp sync {account}` if it was just bought")
    return acc, asset


#: errors in an event's ``failures`` that are Apple's own trouble: the same request is sent again.
TRANSIENT_EVENT_ERRORS = {9603}
#: rounds of re-sending the targets an event failed with a transient error, then left pending
EVENT_ROUNDS = 3
#: polling an event: first after 0.25 s, then twice as long each time, at most this
MAX_POLL_INTERVAL = 5.0
#: the same while Apple's notifications tell when the event ended (polling is the fallback)
MAX_POLL_INTERVAL_NOTIFIED = 30.0

Notified = Callable[[str, float], None]


def event_waiter(host: Host, acc: VppAccount) -> Notified | None:
    """What :func:`follow` waits on between two status requests: Apple's notifications about
    the event, recorded by ``mdm run`` (in any process), when the account has them on."""
    from .notifications.inbox import waiter

    return waiter(host, acc.id) if acc.notifications == "on" and acc.id is not None else None


def manage_licenses(
    host: Host, account: str, adam_id: str, pricing_param: str, serial_numbers: list[str], client_user_ids: list[str], *, wait: float, associate: bool
) -> LicenseResult:
    """Associate (or disassociate) one asset's licenses and follow Apple's events.

    A target Apple failed with a transient error (9603) is sent again with back-off; one whose
    event completed without naming it is confirmed from ``numCompleted`` or else by reading its
    assignment; what is still unknown after that is returned ``pending`` (asked again later).
    """
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

        def submit(todo_serials: list[str], todo_users: list[str]) -> list[str]:
            event_ids: list[str] = []
            try:
                if todo_serials:
                    event_ids += method([(adam_id, pricing_param)], serial_numbers=todo_serials)
                if todo_users:
                    event_ids += method([(adam_id, pricing_param)], client_user_ids=todo_users)
            except VppError as exc:
                raise failure(f"{verb} licenses of {adam_id}", exc) from None
            return event_ids

        def holds(kind: str, targets: list[str]) -> set[str]:
            return _holders(client, adam_id, pricing_param, kind, targets)

        result = follow_rounds(client, submit, serials, users, wait, confirm=holds, present=associate, notified=event_waiter(host, acc))
    done = result["succeeded"] if associate else released_too(result)
    if done["serialNumbers"] or done["clientUserIds"]:
        host.db.run_write(lambda s: apply_licenses(host, s, acc, asset, {**result, "succeeded": done}, associate))
        host.deliver_events()
    return result


def released_too(result: LicenseResult) -> Targets:
    """The targets a take-back left without the license at Apple: those it took it from, and
    those Apple answered it had none (:data:`RELEASED_ERRORS`), which the mirror drops at once
    instead of showing (and counting) until the next sync. The result still reports those as
    failed with Apple's error."""
    serials, users = set(result["succeeded"]["serialNumbers"]), set(result["succeeded"]["clientUserIds"])
    for failed in result["failed"]:
        if failed.get("errorNumber") in RELEASED_ERRORS:
            if serial := failed.get("serialNumber"):
                serials.add(serial)
            elif user := failed.get("clientUserId"):
                users.add(user)
    return {"serialNumbers": sorted(serials), "clientUserIds": sorted(users)}


def follow_rounds(
    client: AppsBooksClient,
    submit: Callable[[list[str], list[str]], list[str]],
    serials: list[str],
    users: list[str],
    wait: float,
    *,
    confirm: Callable[[str, list[str]], set[str]] | None,
    present: bool,
    notified: Notified | None = None,
) -> LicenseResult:
    """Submit, follow the events, re-send what failed transiently (with back-off), confirm the
    rest; returns ``event_ids``, ``status``, ``succeeded``, ``failed`` and ``pending``."""
    event_ids: list[str] = []
    succeeded: dict[str, list[str]] = {"serialNumbers": [], "clientUserIds": []}
    failed: list[dict[str, Any]] = []
    todo_serials, todo_users = list(serials), list(users)
    pending: dict[str, list[str]] = {"serialNumbers": [], "clientUserIds": []}
    for round_index in range(EVENT_ROUNDS):
        ids = submit(todo_serials, todo_users)
        event_ids += ids
        statuses = follow(client, ids, wait, notified)
        outcome = _outcome(statuses, todo_serials, todo_users)
        failed += outcome["failed"]
        unconfirmed = outcome["unconfirmed"]
        if confirm is not None and any(unconfirmed.values()):
            for key, kind in (("serialNumbers", "device"), ("clientUserIds", "user")):
                if unconfirmed[key]:
                    try:
                        holding = confirm(kind, unconfirmed[key])
                    except VppError as exc:
                        raise failure("confirm Apple's event", exc) from None
                    done = [t for t in unconfirmed[key] if (t in holding) == present]
                    outcome["succeeded"][key] += done
                    outcome["pending"][key] += [t for t in unconfirmed[key] if t not in done]
        elif any(unconfirmed.values()):
            for key in unconfirmed:
                outcome["succeeded"][key] += unconfirmed[key]
        for key in succeeded:
            succeeded[key] += outcome["succeeded"][key]
        pending = outcome["pending"]
        todo_serials, todo_users = outcome["transient"]["serialNumbers"], outcome["transient"]["clientUserIds"]
        if not todo_serials and not todo_users:
            break
        if round_index + 1 < EVENT_ROUNDS:
            delay = backoff_delay(client.retry, round_index, random.Random())
            log.info("Apple failed %d target(s) with a transient error; sending them again in %.1fs", len(todo_serials) + len(todo_users), delay)
            client._sleep(delay)
    for key, values in (("serialNumbers", todo_serials), ("clientUserIds", todo_users)):
        pending[key] = sorted({*pending[key], *values})  # still failing transiently: asked again later
    status = "PENDING" if any(pending.values()) else "FAILED" if failed else "COMPLETE"
    result: LicenseResult = {"event_ids": event_ids, "status": status, "succeeded": succeeded, "failed": failed, "pending": pending}  # type: ignore[typeddict-item]  # both hold exactly the two keys of Targets
    return result


def follow(client: AppsBooksClient, event_ids: list[str], wait: float, notified: Notified | None = None) -> list[dict[str, Any]]:
    """Each event's final status, or a PENDING stand-in when ``wait`` ran out. Polls with back-off
    (0.25 s, doubling to 5 s). With ``notified`` (the account's notifications are on: see
    :func:`event_waiter`) it waits for Apple's notification about the event between polls and
    asks for the status as soon as one arrives; the polls then back off to 30 s, a fallback for
    a notification that is late or lost."""
    statuses = []
    for event_id in event_ids:
        try:
            if wait > 0:
                statuses.append(
                    client.wait_for_event(
                        event_id,
                        timeout=wait,
                        poll_interval=0.25,
                        notified=notified,
                        max_poll_interval=MAX_POLL_INTERVAL if notified is None else MAX_POLL_INTERVAL_NOTIFIED,
                    )
                )
            else:
                statuses.append(client.event_status(event_id))
        except EventTimeoutError:
            statuses.append({"eventStatus": "PENDING", "failures": []})
        except VppError as exc:
            raise failure(f"follow Apple's event {event_id}", exc) from None
    return statuses


def _holders(client: AppsBooksClient, adam_id: str, pricing: str, kind: str, targets: list[str]) -> set[str]:
    """The targets that hold a license of the asset at Apple now (one read per target when few,
    else one traversal of the asset's assignments)."""
    field = "serialNumber" if kind == "device" else "clientUserId"
    found: set[str] = set()
    if len(targets) <= 5:
        for target in targets:
            serial, user = (target, None) if kind == "device" else (None, target)
            for page in client.iter_assignments(adam_id=adam_id, pricing_param=pricing, serial_number=serial, client_user_id=user):
                found.update(a.get(field) for a in page.get("assignments") or [] if a.get("pricingParam", pricing) == pricing)
        return found & set(targets)
    for page in client.iter_assignments(adam_id=adam_id, pricing_param=pricing):
        found.update(a.get(field) for a in page.get("assignments") or [] if a.get("pricingParam", pricing) == pricing)
    return found & set(targets)


def _outcome(statuses: list[dict[str, Any]], serials: list[str], users: list[str]) -> dict[str, Any]:
    """Sort the targets of finished events: ``succeeded`` (the events did all they were asked),
    ``failed`` (named with a final error), ``transient`` (named with 9603), ``unconfirmed``
    (not named, but the events did less than asked) and ``pending`` (Apple is not done)."""

    def empty() -> dict[str, list[str]]:
        return {"serialNumbers": [], "clientUserIds": []}

    out: dict[str, Any] = {"succeeded": empty(), "failed": [], "transient": empty(), "unconfirmed": empty(), "pending": empty()}
    if any(s.get("eventStatus") == "PENDING" for s in statuses):
        out["pending"] = {"serialNumbers": list(serials), "clientUserIds": list(users)}
        return out
    named: dict[tuple[str, str], dict[str, Any]] = {}
    for status in statuses:
        for item in status.get("failures") or []:
            info = item.get("errorInfo") or {}
            for key in ("serialNumbers", "clientUserIds"):
                for target in info.get(key) or []:
                    named.setdefault((key, target), item)
    complete = all(
        s.get("eventStatus") == "COMPLETE"
        and not s.get("failures")
        and (not isinstance(s.get("numRequested"), int) or s.get("numCompleted") == s.get("numRequested"))
        for s in statuses
    )
    for key, targets in (("serialNumbers", serials), ("clientUserIds", users)):
        single = "serialNumber" if key == "serialNumbers" else "clientUserId"
        for target in targets:
            item = named.get((key, target))
            if item is not None and item.get("errorNumber") in TRANSIENT_EVENT_ERRORS:
                out["transient"][key].append(target)
            elif item is not None:
                out["failed"].append({single: target, "errorNumber": item.get("errorNumber"), "errorMessage": item.get("errorMessage")})
            elif complete:
                out["succeeded"][key].append(target)
            else:  # Apple did less than asked without naming this one: look before believing it
                out["unconfirmed"][key].append(target)
    return out


def apply_licenses(host: Host, session: Session, acc: VppAccount, asset: VppAsset, result: Mapping[str, Any], associate: bool) -> None:
    """Write what Apple did (``result["succeeded"]``) to the mirror, with its events, in the
    caller's transaction. Only the licenses this transaction itself adds or removes count and
    are announced: the request that asked Apple and the notification that told of it may both
    write them at the same moment, and the second finds nothing left to do."""
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
            rows = [{"account_id": acc.id, "adam_id": asset.adam_id, "pricing_param": asset.pricing_param, "kind": kind, "target": t} for t in todo]
            done = set(session.execute(insert_ignoring_duplicates(session, L).returning(L.c.target), rows).scalars())
        else:
            done = set(session.execute(delete(L).where(key, L.c.target.in_(todo)).returning(L.c.target)).scalars())
        todo = [t for t in todo if t in done]
        if not todo:
            continue
        changed += len(todo) if associate else -len(todo)
        event = "vpp_licenses_associated" if associate else "vpp_licenses_disassociated"
        record_event(host, session, stored_id(acc), event, license_payload(session, acc.name, asset.adam_id, asset.pricing_param, kind, todo, "request"))
    if changed:  # the counts follow, announced as a sync would (vpp_assets_changed)
        add_license_counts(session, acc.id, {(asset.adam_id, asset.pricing_param): changed})
        move_counts(host, session, acc, (asset.adam_id, asset.pricing_param), assigned=changed)


def revoke_licenses(host: Host, account: str, serial_numbers: list[str], client_user_ids: list[str], *, wait: float, quick: bool = False) -> LicenseResult:
    """Apple's ``assets/revoke``: every revocable license of these devices or users, including
    those granted since the last sync (a disassociation would only free the mirrored ones).

    Followed like :func:`manage_licenses`; a target counts as done once Apple shows it holding
    no revocable license. The mirror drops the target's revocable licenses, announced as
    ``vpp_licenses_disassociated`` (one event per asset).
    """
    with host.db.session() as session:
        acc = get_account(session, account)
        irrevocable = {
            (a.adam_id, a.pricing_param)
            for a in session.execute(select(VppAsset).where(col(VppAsset.account_id) == acc.id, col(VppAsset.revocable).is_(False))).scalars()
        }
    serials = sorted({s.strip().upper() for s in serial_numbers if s.strip()})
    users = sorted({u.strip() for u in client_user_ids if u.strip()})
    if not serials and not users:
        raise UsageError("no device serial number or user given")
    with client_for(host, acc, interactive=quick) as client:

        def submit(todo_serials: list[str], todo_users: list[str]) -> list[str]:
            try:
                return client.revoke_assets(serial_numbers=todo_serials, client_user_ids=todo_users)
            except VppError as exc:
                raise failure("revoke licenses", exc) from None

        def still_holding(kind: str, targets: list[str]) -> set[str]:
            holding = set()
            for target in targets:
                serial, user = (target, None) if kind == "device" else (None, target)
                for page in client.iter_assignments(serial_number=serial, client_user_id=user):
                    if any((a.get("adamId"), a.get("pricingParam")) not in irrevocable for a in page.get("assignments") or []):
                        holding.add(target)
            return holding

        result = follow_rounds(client, submit, serials, users, wait, confirm=still_holding, present=False, notified=event_waiter(host, acc))
    done = released_too(result)
    if done["serialNumbers"] or done["clientUserIds"]:
        host.db.run_write(lambda session: drop_revoked(host, session, acc, done, irrevocable))
        host.deliver_events()
    return result


def drop_revoked(host: Host, session: Session, acc: VppAccount, succeeded: Targets, irrevocable: set[tuple[str, str]]) -> None:
    """The mirror after a revoke: the targets' revocable licenses are gone, with their events."""
    for kind, targets in (("device", succeeded["serialNumbers"]), ("user", succeeded["clientUserIds"])):
        if not targets:
            continue
        rows = session.execute(
            select(L.c.adam_id, L.c.pricing_param, L.c.target).where(L.c.account_id == acc.id, L.c.kind == kind, L.c.target.in_(targets))
        ).all()
        by_asset: dict[tuple[str, str], list[str]] = {}
        for adam_id, pricing, target in rows:
            if (adam_id, pricing) not in irrevocable:
                by_asset.setdefault((adam_id, pricing), []).append(target)
        for (adam_id, pricing), gone in sorted(by_asset.items()):
            deleted = set(
                session.execute(
                    delete(L)
                    .where(L.c.account_id == acc.id, L.c.adam_id == adam_id, L.c.pricing_param == pricing, L.c.kind == kind, L.c.target.in_(gone))
                    .returning(L.c.target)
                ).scalars()
            )
            gone = [t for t in gone if t in deleted]  # another writer may have removed some meanwhile
            if not gone:
                continue
            add_license_counts(session, acc.id, {(adam_id, pricing): -len(gone)})
            move_counts(host, session, acc, (adam_id, pricing), assigned=-len(gone))
            record_event(
                host, session, stored_id(acc), "vpp_licenses_disassociated", license_payload(session, acc.name, adam_id, pricing, kind, sorted(gone), "request")
            )


def register_users(host: Host, account: str, mdm_user_ids: list[str], *, wait: float = 60.0) -> list[dict[str, Any]]:
    """Create VPP users for MDM users (``clientUserId`` = MDM user id); returns their records."""
    with host.db.session() as session:
        acc = get_account(session, account)
        users = []
        for user_id in mdm_user_ids:
            user = session.get(MdmUser, user_id)
            if user is None:
                raise UsageError(f"'{user_id}' is not an MDM user: add it with `mdm users add {user_id}`")
            users.append(user)
    body = [
        {"clientUserId": u.id, **({"email": u.email} if u.email else {}), **({"managedAppleId": u.managed_apple_id} if u.managed_apple_id else {})}
        for u in users
    ]
    with client_for(host, acc) as client:
        try:
            event_ids = client.create_users(body)
            statuses = follow(client, event_ids, wait, event_waiter(host, acc))
            records = []
            for user in users:
                for page in client.iter_users(client_user_id=user.id, active_only=True):
                    records.extend(page_users(page))
            template = client.service_config().urls.get("invitationEmail")
        except VppError as exc:
            raise failure("register users", exc) from None
    failures = {uid: f for s in statuses for f in (s.get("failures") or []) for uid in ((f.get("errorInfo") or {}).get("clientUserIds") or [])}
    host.db.run_write(lambda s: store_users(host, s, acc, records, template))
    host.deliver_events()
    out = []
    for user in users:
        record = next((r for r in records if r["client_user_id"] == user.id), None)
        refused = failures.get(user.id)  # (not `failure`: that names the error helper of this module)
        out.append(
            {
                "clientUserId": user.id,
                "status": record["status"] if record else "FAILED",
                "idHash": record and record["id_hash"],
                "invitationUrl": user_invitation_url(template, record["invite_code"]) if record and record["status"] == "Registered" else None,
                "errorNumber": refused.get("errorNumber") if refused and not record else None,
                "errorMessage": refused.get("errorMessage") if refused and not record else None,
            }
        )
    return out


RETIRED = ("Retired", "Deleted")


def store_users(host: Host, session: Session, acc: VppAccount, records: list[dict[str, Any]], template: str | None = None) -> dict[str, int]:
    """Apple's user records (``page_users`` values) over the mirrored ones, in the caller's
    transaction, announcing only what changed, as a sync does (``vpp_users_added``,
    ``_changed``, ``_retired``); a user newly waiting for its invitation is announced
    ``vpp_user_invited``, and a user newly retired loses its licenses of revocable assets
    (Apple released them). ``template``: Service Config's invitation URL, kept on the account.
    Used by the requests here and by Apple's notifications; returns the counts."""
    account = session.get(VppAccount, acc.id)
    assert account is not None
    if template:
        account.invitation_template = template
        session.add(account)
    fields = ("email", "status", "id_hash", "invite_code")
    added: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    retired: list[dict[str, Any]] = []
    invited: list[dict[str, Any]] = []
    now = utcnow()
    for record in records:
        if record["status"] != "Registered":  # as GET /users gives it: the code only while it is of use
            record = {**record, "invite_code": None}
        values = {f: record[f] for f in fields}
        row = session.get(VppUser, (acc.id, record["client_user_id"]))
        if row is None:
            session.add(VppUser(account_id=stored_id(acc), client_user_id=record["client_user_id"], updated_at=now, **values))
            added.append(record)
            was = None
        elif any(getattr(row, f) != values[f] for f in fields):
            was = row.status
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = now
            session.add(row)
            (retired if record["status"] in RETIRED and was not in RETIRED else changed).append(record)
        else:
            continue
        if record["status"] == "Registered" and was != "Registered":
            invited.append(record)
    session.flush()
    linked = known_ids(session, table_of(MdmUser).c.id, [r["client_user_id"] for r in records])
    for event, rows in (("vpp_users_added", added), ("vpp_users_changed", changed), ("vpp_users_retired", retired)):
        record_chunks(host, session, acc, event, [apple_user(r, linked) for r in rows])
    for record in invited:
        record_event(
            host,
            session,
            stored_id(acc),
            "vpp_user_invited",
            {
                "account": acc.name,
                "clientUserId": record["client_user_id"],
                "email": record["email"],
                "invitationUrl": user_invitation_url(account.invitation_template, record["invite_code"]),
            },
        )
    if retired:
        with session.no_autoflush:
            irrevocable = {
                (a.adam_id, a.pricing_param)
                for a in session.execute(select(VppAsset).where(col(VppAsset.account_id) == acc.id, col(VppAsset.revocable).is_(False))).scalars()
            }
        drop_revoked(host, session, acc, {"serialNumbers": [], "clientUserIds": [r["client_user_id"] for r in retired]}, irrevocable)
    return {"added": len(added), "changed": len(changed), "retired": len(retired)}


def _active_vpp_accounts(host: Host, client_user_id: str, account: str | None) -> list[VppAccount]:
    """The accounts where this clientUserId is a live VPP user (or ``account`` alone)."""
    with host.db.session() as session:
        if account is not None:
            return [get_account(session, account)]
        return list(
            session.execute(
                select(VppAccount)
                .join(VppUser, col(VppUser.account_id) == col(VppAccount.id))
                .where(col(VppUser.client_user_id) == client_user_id, col(VppUser.status).in_(LIVE_USER_STATUSES))
            ).scalars()
        )


def _users_request(
    host: Host, acc: VppAccount, client_user_ids: list[str], action: str, wait: float, send: Callable[[AppsBooksClient], list[str]]
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """Send a users/update or users/retire, follow its events, then read the users' records back."""
    with client_for(host, acc) as client:
        try:
            event_ids = send(client)
            statuses = follow(client, event_ids, wait, event_waiter(host, acc))
            records = []
            for user_id in client_user_ids:
                for page in client.iter_users(client_user_id=user_id):
                    records.extend(page_users(page))
            template = client.service_config().urls.get("invitationEmail")
        except VppError as exc:
            raise failure(f"{action} users", exc) from None
    outcome = _outcome(statuses, [], client_user_ids)
    by_id: dict[str, dict[str, Any]] = {}
    for record in records:  # a clientUserId has retired records and at most one live one
        if record["client_user_id"] not in by_id or record["status"] != "Retired":
            by_id[record["client_user_id"]] = record
    return outcome, list(by_id.values()), template


def update_users(host: Host, mdm_user_ids: list[str], *, account: str | None = None, wait: float = 60.0) -> list[UserResult]:
    """Send Apple the MDM users' current e-mail and Managed Apple ID (``users/update``) in every
    account where they are VPP users; returns one result per (account, user)."""
    with host.db.session() as session:
        users = [u for u in (session.get(MdmUser, i) for i in mdm_user_ids) if u is not None]
    out: list[UserResult] = []
    for user in users:
        for acc in _active_vpp_accounts(host, user.id, account):
            body = {
                "clientUserId": user.id,
                **({"email": user.email} if user.email else {}),
                **({"managedAppleId": user.managed_apple_id} if user.managed_apple_id else {}),
            }
            outcome, records, template = _users_request(host, acc, [user.id], "update", wait, partial(_update_users, body=body))
            host.db.run_write(partial(store_users, host, acc=acc, records=records, template=template))
            out.append(_user_result(acc, user.id, outcome, records))
    host.deliver_events()
    return out


def retire_users(host: Host, client_user_ids: list[str], *, account: str | None = None, wait: float = 60.0) -> list[UserResult]:
    """Retire VPP users at Apple (``users/retire``): Apple frees their revocable licenses, and so
    does the mirror; the records become ``Retired`` (``vpp_users_retired``)."""
    ids = sorted({u.strip() for u in client_user_ids if u.strip()})
    if not ids:
        raise UsageError("no clientUserId given")
    out: list[UserResult] = []
    for user_id in ids:
        accounts = _active_vpp_accounts(host, user_id, account)
        if not accounts:
            out.append(
                {
                    "account": account,
                    "clientUserId": user_id,
                    "status": "unknown",
                    "errorNumber": None,
                    "errorMessage": "not a live VPP user in any account (see `mdm vpp users`)",
                }
            )
            continue
        for acc in accounts:
            outcome, records, template = _users_request(host, acc, [user_id], "retire", wait, partial(_retire_users, client_user_id=user_id))
            result = _user_result(acc, user_id, outcome, records)

            def work(
                session: Session, acc: VppAccount = acc, records: list[dict[str, Any]] = records, result: UserResult = result, template: str | None = template
            ) -> None:
                store_users(host, session, acc, records, template)
                if result["status"] == "Retired":
                    with session.no_autoflush:
                        irrevocable = {
                            (a.adam_id, a.pricing_param)
                            for a in session.execute(select(VppAsset).where(col(VppAsset.account_id) == acc.id, col(VppAsset.revocable).is_(False))).scalars()
                        }
                    drop_revoked(host, session, acc, {"serialNumbers": [], "clientUserIds": [result["clientUserId"]]}, irrevocable)

            host.db.run_write(work)
            out.append(result)
    host.deliver_events()
    return out


def _update_users(client: AppsBooksClient, body: dict[str, Any]) -> list[str]:
    return client.update_users([body])


def _retire_users(client: AppsBooksClient, client_user_id: str) -> list[str]:
    return client.retire_users([client_user_id])


def _user_result(acc: VppAccount, user_id: str, outcome: dict[str, Any], records: list[dict[str, Any]]) -> UserResult:
    record = next((r for r in records if r["client_user_id"] == user_id), None)
    refused = next((f for f in outcome["failed"] if f.get("clientUserId") == user_id), None)
    pending = user_id in outcome["pending"]["clientUserIds"] or user_id in outcome["transient"]["clientUserIds"]
    status = "pending" if pending and not refused else (record["status"] if record else "FAILED")
    return {
        "account": acc.name,
        "clientUserId": user_id,
        "status": status,
        "email": record["email"] if record else None,
        "errorNumber": refused.get("errorNumber") if refused else None,
        "errorMessage": refused.get("errorMessage") if refused else None,
    }


#: application platform -> the lookup's ``platform`` (others: the account's ``defaultPlatform``)
LOOKUP_PLATFORMS = {"macOS": "macappstore"}


def lookup_metadata(host: Host, account: str, adam_ids: list[str], platform: str | None = None) -> dict[str, AppMetadata]:
    """Names, bundle ids, versions and icons from Apple's content-metadata lookup, for one
    application platform (macOS apps from the Mac App Store, others the location's default)."""
    with host.db.session() as session:
        acc = get_account(session, account)
    store = LOOKUP_PLATFORMS.get(platform or "") or acc.default_platform or "volumestore"
    with client_for(host, acc) as client:
        try:
            results = client.lookup_metadata(adam_ids, platform=store, country=acc.country or "US")
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
        "name": data.get("name"),
        "bundleId": data.get("bundleId"),
        "version": version,
        "iconUrl": icon,
        "kind": data.get("kind"),
        "deviceFamilies": data.get("deviceFamilies") or [],
    }
