"""Acting on recorded notifications: once each, in order, under the account's sync lock.

Each notification recorded by :mod:`.inbox` is acted on in one transaction that also marks
it done, so a crash before that commit leaves it to be acted on again and one after it never
repeats it. The account's sync lock (``vpp.sync.<id>``) is held meanwhile: a sync never runs
at the same time, so the mirror is never the mix of a sync's read and a notification. While a
sync holds the lock the notifications wait; one received before the start of the last
successful sync is already in the mirror and is skipped.

What each type does (the same mirror changes and events as a sync would make):

- ``ASSET_MANAGEMENT``: ``SUCCESS`` of an associate adds the licenses, of a disassociate or a
  revoke removes them (counts follow; ``vpp_licenses_associated``/``_disassociated``, source
  ``request``: this host asked); an asset the mirror does not know is re-read. ``FAILURE``
  changes nothing in the mirror: the request following that event reports Apple's error per
  target, and ``vpp_licenses_refused`` tells the ones that stopped following it (a pending install).
- ``ASSET_COUNT``: the asset is re-read from Apple (:mod:`..sync.asset`): a purchase shows in
  ``mdm vpp assets`` and is published at once. If Apple cannot be reached, ``countDelta`` is
  added to the total and available counts when that stays consistent; otherwise the
  notification is tried again later.
- ``USER_MANAGEMENT`` (``SUCCESS``) and ``USER_ASSOCIATED``: the users' records replace the
  mirrored ones (``vpp_users_added``/``_changed``/``_retired``; ``vpp_user_invited`` for a
  user newly waiting for an invitation).

A notification that cannot be acted on (Apple unreachable) is tried again by the next
round, up to :data:`MAX_ATTEMPTS`; then it is marked failed and left to the scheduled sync.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select, update
from sqlmodel import Session, col

from mdm_core.db.typed import stored_id
from mdm_core.errors import MdmError, describe
from mdm_core.locks import LockLost
from mdm_core.models import utcnow

from ..accounts import account_lock, client_for
from ..apple.errors import VppError
from ..apple.protocol import page_assignments, page_users
from ..models import VppAccount, VppAsset, VppNotification, VppSyncRun
from ..operations import apply_licenses, store_users
from ..recording import record_event
from ..sync.apply import move_counts
from ..sync.asset import apply_asset, read_asset

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.locks import DbLock

    from ..payloads import LicensesRefusedPayload

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 200
MAX_ATTEMPTS = 5


def process_pending(host: Host, account_id: int | None = None) -> Counter[str]:
    """Act on every notification waiting (of one account, or of all); returns how many ended
    ``done``, ``skipped``, ``failed`` or were ``retried``, and ``busy`` accounts (a sync holds
    their lock: they wait for the next round)."""
    totals: Counter[str] = Counter()
    for _ in range(3):  # again if one arrived while the lock was being given back
        ids = _waiting_accounts(host, account_id)
        if not ids:
            break
        for acc_id in ids:
            _process_account(host, acc_id, totals)
        if totals["busy"]:
            break
    host.deliver_events()
    return totals


def _waiting_accounts(host: Host, account_id: int | None) -> list[int]:
    query = select(col(VppNotification.account_id)).where(col(VppNotification.status) == "received").distinct()
    if account_id is not None:
        query = query.where(col(VppNotification.account_id) == account_id)
    with host.db.session() as session:
        return sorted(session.execute(query).scalars())


def _process_account(host: Host, account_id: int, totals: Counter[str]) -> None:
    lock = account_lock(host, account_id)
    if not lock.try_acquire():
        totals["busy"] += 1
        return
    try:
        with lock.heartbeat():
            last = 0
            while True:
                with host.db.session() as session:
                    account = session.get(VppAccount, account_id)
                    rows = list(
                        session.execute(
                            select(VppNotification)
                            .where(
                                col(VppNotification.account_id) == account_id,
                                col(VppNotification.status) == "received",
                                col(VppNotification.id) > last,
                            )
                            .order_by(col(VppNotification.id))
                            .limit(BATCH)
                        ).scalars()
                    )
                    synced = _last_sync_start(session, account_id)
                if account is None or not rows:
                    return
                for row in rows:
                    assert row.id is not None
                    last = row.id
                    totals[_act(Notice(host, account, row, lock), synced)] += 1
    except LockLost:
        log.warning("account %d: its lock was taken while notifications were acted on; the rest wait for the next round", account_id)
        totals["busy"] += 1
    finally:
        lock.release()


def _last_sync_start(session: Session, account_id: int) -> datetime | None:
    """When the last successful sync of the account started reading Apple's data."""
    return session.execute(
        select(col(VppSyncRun.started_at))
        .where(col(VppSyncRun.account_id) == account_id, col(VppSyncRun.status) == "ok")
        .order_by(col(VppSyncRun.id).desc())
        .limit(1)
    ).scalar_one_or_none()


@dataclass
class Notice:
    """One recorded notification being acted on, and what acting on it needs."""

    host: Host
    account: VppAccount
    row: VppNotification
    lock: DbLock

    @property
    def payload(self) -> dict[str, Any]:
        """The ``notification`` object of the envelope."""
        return self.row.body["notification"]

    def write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a write transaction, only while we still hold the account's lock."""

        def fenced(session: Session) -> T:
            self.lock.fence(session)
            return work(session)

        return self.host.db.run_write(fenced)

    def finish(self, session: Session, status: str, detail: str) -> None:
        """Mark the notification acted on, in the transaction of what it changed."""
        session.execute(
            update(VppNotification)
            .where(col(VppNotification.id) == self.row.id)
            .values(status=status, detail=detail[:1000], processed_at=utcnow(), attempts=self.row.attempts + 1)
        )

    def done(self, detail: str, status: str = "done") -> None:
        """Mark it acted on when it changed nothing in the mirror."""
        self.write(lambda session: self.finish(session, status, detail))


def _act(notice: Notice, synced: datetime | None) -> str:
    """Act on one notification; returns how it ended."""
    account, row = notice.account, notice.row
    if synced is not None and row.received_at <= synced:
        notice.done("already in the mirror: received before the last sync started", "skipped")
        return "skipped"
    try:
        HANDLERS[row.notification_type](notice)
        return "done"
    except LockLost:
        raise
    except (VppError, MdmError) as exc:
        message = str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug must not stop the other notifications
        log.exception("account %s: acting on notification %s failed", account.name, row.notification_id)
        message = describe(exc)
    attempts = row.attempts + 1
    final = attempts >= MAX_ATTEMPTS
    detail = f"{message}; left to the next sync" if final else message
    notice.write(
        lambda s: s.execute(
            update(VppNotification)
            .where(col(VppNotification.id) == row.id)
            .values(attempts=attempts, detail=detail[:1000], status="failed" if final else "received", processed_at=utcnow() if final else None)
        )
    )
    log.warning("account %s: %s notification %s: %s", account.name, row.notification_type, row.notification_id, detail)
    return "failed" if final else "retried"


# --------------------------------------------------------------------------- the types


def _asset_management(notice: Notice) -> None:
    host, account, p = notice.host, notice.account, notice.payload
    kind, event_id = p["type"].lower(), p["eventId"]
    if p["result"] == "FAILURE":
        error = p.get("error") or {}
        targets = [a.get("serialNumber") or a.get("clientUserId") for a in p.get("assignments") or []]
        refused = _refused(account.name, p, error)

        def failed(session: Session) -> None:
            for payload in refused:
                record_event(host, session, stored_id(account), "vpp_licenses_refused", payload)
            notice.finish(
                session,
                "done",
                f"{kind} event {event_id} failed for {len(targets)} target(s): "
                f"{error.get('errorMessage') or 'no reason given'} (Apple error {error.get('errorNumber')})",
            )

        notice.write(failed)
        return
    groups: dict[tuple[str, str], dict[str, list[str]]] = {}
    for adam_id, pricing, target_kind, target in page_assignments({"assignments": p.get("assignments") or []}):
        group = groups.setdefault((adam_id, pricing), {"serialNumbers": [], "clientUserIds": []})
        group["serialNumbers" if target_kind == "device" else "clientUserIds"].append(target)
    with host.db.session() as session:
        known = {
            (a.adam_id, a.pricing_param): a
            for a in session.execute(select(VppAsset).where(col(VppAsset.account_id) == account.id)).scalars()
            if (a.adam_id, a.pricing_param) in groups
        }
    associate = kind == "associate"
    unknown = [key for key in groups if key not in known] if associate else []
    reads = []
    if unknown:  # bought since the last sync: read it, licenses included
        with client_for(host, account) as client:
            reads = [read_asset(host, account, client, key) for key in unknown]

    def work(session: Session) -> None:
        for key, asset in known.items():
            apply_licenses(host, session, account, asset, {"succeeded": groups[key]}, associate)
        for read in reads:
            apply_asset(host, session, account, read)
        count = sum(len(g["serialNumbers"]) + len(g["clientUserIds"]) for g in groups.values())
        notice.finish(
            session,
            "done",
            f"{kind} event {event_id}: {count} license(s) of {len(groups)} asset(s)" + (f", {len(reads)} asset(s) read from Apple" if reads else ""),
        )

    notice.write(work)


def _refused(account: str, p: dict[str, Any], error: dict[str, Any]) -> list[LicensesRefusedPayload]:
    """The ``vpp_licenses_refused`` payloads of a failed event's notification: per asset named,
    at most 1000 targets each (a revoke's failures name no asset: none)."""
    number = error.get("errorNumber")
    number = number if isinstance(number, int) and not isinstance(number, bool) else None
    message = str(error["errorMessage"])[:1000] if error.get("errorMessage") is not None else None
    groups: dict[tuple[str, str], dict[str, list[str]]] = {}
    for item in p.get("assignments") or []:
        if not isinstance(item, dict) or item.get("adamId") is None or not isinstance(item.get("pricingParam"), str):
            continue
        group = groups.setdefault((str(item["adamId"]), item["pricingParam"]), {"serialNumbers": [], "clientUserIds": []})
        for field in ("serialNumbers", "clientUserIds"):
            value = item.get(field[:-1])
            if isinstance(value, str):
                group[field].append(value)
    payloads: list[LicensesRefusedPayload] = []
    for (adam_id, pricing), group in sorted(groups.items()):
        for field, values in group.items():
            for start in range(0, len(values), 1000):
                payloads.append(
                    {
                        "account": account,
                        "type": p["type"],
                        "eventId": p["eventId"],
                        "adamId": adam_id,
                        "pricingParam": pricing,
                        "serialNumbers": values[start : start + 1000] if field == "serialNumbers" else [],
                        "clientUserIds": values[start : start + 1000] if field == "clientUserIds" else [],
                        "errorNumber": number,
                        "errorMessage": message,
                    }
                )
    return payloads


def _asset_count(notice: Notice) -> None:
    host, account, p = notice.host, notice.account, notice.payload
    key, delta = (str(p["adamId"]), str(p["pricingParam"])), int(p["countDelta"])
    try:
        with client_for(host, account) as client:
            read = read_asset(host, account, client, key)
    except VppError as exc:
        error = exc
        if notice.write(lambda session: _add_delta(notice, session, key, delta, error)):
            return
        raise

    def work(session: Session) -> None:
        changed = apply_asset(host, session, account, read)
        what = "added" if changed["added"] else "removed" if changed["removed"] else "changed" if changed["changed"] else "unchanged"
        notice.finish(
            session,
            "done",
            f"asset {key[0]} ({key[1]}) read again after a count change of {delta:+d}: {what}"
            + (f", licenses +{changed['licenses_added']} -{changed['licenses_removed']}" if read.assignments is not None else ""),
        )

    notice.write(work)


def _add_delta(notice: Notice, session: Session, key: tuple[str, str], delta: int, exc: VppError) -> bool:
    """Apple cannot be reached to read the asset again: move its counts by ``delta`` when that
    is consistent (a known asset, no count below zero); True if done."""
    asset = session.get(VppAsset, (notice.account.id, key[0], key[1]))
    if asset is None or asset.total_count + delta < asset.assigned_count + asset.retired_count or asset.available_count + delta < 0:
        return False
    move_counts(notice.host, session, notice.account, key, total=delta)
    notice.finish(
        session, "done", f"counts of asset {key[0]} moved by {delta:+d}; Apple could not be reached to read them again ({exc}): the next sync checks them"
    )
    return True


def _user_management(notice: Notice) -> None:
    p = notice.payload
    if p["result"] == "FAILURE":
        refused = [str(u.get("clientUserId")) for u in p.get("users") or []]
        notice.done(f"users {p['type'].lower()} event {p['eventId']} refused for {', '.join(refused[:5])}" + (" ..." if len(refused) > 5 else ""))
        return
    _store_records(notice, page_users({"users": p.get("users") or []}), f"users {p['type'].lower()} event {p['eventId']}")


def _user_associated(notice: Notice) -> None:
    _store_records(notice, page_users({"users": notice.payload.get("associatedUsers") or []}), "invitation accepted")


def _store_records(notice: Notice, records: list[dict[str, Any]], what: str) -> None:
    def work(session: Session) -> None:
        counts = store_users(notice.host, session, notice.account, records)
        notice.finish(session, "done", f"{what}: users +{counts['added']} ~{counts['changed']} retired {counts['retired']}")

    notice.write(work)


def _nothing(notice: Notice) -> None:
    notice.done("Apple reaches this host")


HANDLERS: dict[str, Callable[[Notice], None]] = {
    "TEST_NOTIFICATION": _nothing,
    "ASSET_MANAGEMENT": _asset_management,
    "ASSET_COUNT": _asset_count,
    "USER_MANAGEMENT": _user_management,
    "USER_ASSOCIATED": _user_associated,
}


def notifications_job(host: Host) -> None:
    """The ``vpp.notifications`` job of ``mdm run``: act on notifications left waiting (a sync
    held the lock, the process stopped after answering Apple). Those acted on are deleted by the
    host's housekeeping (``plugins.vpp.retention``)."""
    totals = process_pending(host)
    if totals:
        log.info("notifications acted on: %s", dict(totals))
