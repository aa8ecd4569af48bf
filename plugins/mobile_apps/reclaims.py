"""Reclaiming VPP licenses: when a device or a user leaves the inventory, on demand, and for
unused ones.

Each license to reclaim gets a ``mobile_apps_reclaim`` row first (committed), then the VPP plugin
is asked to give it back. Apple unreachable: the row stays ``pending`` and the
``mobile_apps.reclaim`` job retries it every ``reclaim_retry`` seconds. Irrevocable assets are
recorded ``irrevocable`` and never attempted.

- A removed device or user: Apple's ``assets/revoke`` for the serial number or the
  ``clientUserId`` (``mdm_vpp_revoke``), once per account, so that licenses granted since the
  last sync go back too. It is recorded as a row whose ``adam_id`` is ``*`` (every revocable
  license), next to one row per mirrored license; it is tried once at once (no long back-off:
  someone waits on ``mdm devices remove``) and otherwise left to the job. A removed user is then
  retired at Apple (``mdm_vpp_retire_users``).
- ``mdm apps reclaim``: Apple's ``assets/disassociate`` per asset (``mdm_vpp_disassociate``).
- ``--unused``: licenses held by a device or a user that was removed from this MDM (recorded
  here when it was removed, and not enrolled again), never those of targets this MDM never knew.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, ColumnElement, and_, bindparam, func, not_, or_, select, update
from sqlmodel import Session, col

from mdm_core.db.bulk import in_chunks
from mdm_core.db.stream import stream_rows
from mdm_core.db.typed import table_of, values_of
from mdm_core.errors import MdmError, UsageError, one_line
from mdm_core.inventory import in_inventory
from mdm_core.job_lock import check_held
from mdm_core.models import utcnow

from .accounts import check_account
from .catalog import find_apps, once
from .models import Reclaim, SeenEvent
from .payloads import REVOKE, ReclaimFinishedPayload
from .settings import settings
from .vpp_port import LIVE_USER_STATUSES, RELEASED_ERRORS, VppPort

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.host import Host
    from plugins.vpp.payloads import License

log = logging.getLogger(__name__)
FINAL = ("done", "failed", "irrevocable", "canceled")
#: reclaims an admin may have to act on: ``mdm apps reclaims`` lists them (the others with
#: ``--all``), but for a failed one reclaimed again since (``superseded_by``: :func:`is_open`)
OPEN = ("pending", "failed", "irrevocable")
#: ``adam_id`` / ``pricing_param`` of a revoke: every revocable license of the target
ALL = REVOKE
REMOVALS = ("device_removed", "user_removed")
#: reclaims asked for because the target left this MDM: void once it is back
LEFT = (*REMOVALS, "unused")
#: why such a reclaim is canceled, by kind of target
BACK = {
    "device": "not reclaimed: the device was enrolled again, so its licenses are kept",
    "user": "not reclaimed: the user was added again, so its licenses are kept (and its VPP user is not retired)",
}
#: how long a removal's one immediate attempt follows Apple's event before leaving it to the job
QUICK_WAIT = 2.0
#: a pending reclaim's ``last_error`` when Apple took the request but has not confirmed it yet
#: (such a reclaim is told by its ``unconfirmed`` column, never by this text)
NOT_CONFIRMED = "Apple has not confirmed yet; asking again later"
#: the outcome (:data:`Outcome`) of a reclaim Apple took but has not confirmed: pending, ``unconfirmed``
WAITING = "waiting"
#: what a reclaim Apple had released already says (``last_error`` of a ``done`` one)
ALREADY = "released already at Apple (error {number}): nothing was left to take back"
#: the same, known from the mirror without asking Apple again
ALREADY_MIRRORED = "released already at Apple (an earlier request of this reclaim): not asked again"
#: what a failed or irrevocable reclaim says once the mirror shows its license released
#: (``last_error`` of the ``done`` one :func:`close_released` ends)
RELEASED_ELSEWHERE = "released at Apple by other means (in Apple's portal, or by another MDM): nothing was left to take back"
#: the final statuses of a reclaim that stays open (:data:`OPEN`) until it is superseded or closed
ENDED = ("failed", "irrevocable")
#: a removed user's revoke whose licenses are released, its VPP user not retired yet
NOT_RETIRED = "its licenses are released at Apple; its VPP user could not be retired yet: asking again later"
#: the outcome (:data:`Outcome`) of a removed user's revoke whose licenses are released and whose
#: VPP user is not retired yet: pending, ``unretired`` (told by that column, never by :data:`NOT_RETIRED`)
UNRETIRED = "unretired"


#: an outcome of :func:`_update_many`: the reclaims, their new status (None: still pending,
#: asked again in ``retry`` seconds; :data:`WAITING`: the same, Apple has not confirmed yet;
#: :data:`UNRETIRED`: the same, only its VPP user is left to retire)
#: and the error they carry
Outcome = tuple[Sequence[Reclaim], str | None, str | None]


def irrevocable_assets(host: Host, licenses: Sequence[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """(account, adamId, pricingParam) of the assets the VPP mirror says are irrevocable (books,
    some apps) in the accounts of these licenses: Apple keeps their licenses, so a reclaim of one
    is recorded ``irrevocable`` and never attempted (an asset the mirror does not know is tried)."""
    out: set[tuple[str, str, str]] = set()
    for account in sorted({lic["account"] for lic in licenses}):
        out.update((account, a["adamId"], a["pricingParam"]) for a in VppPort(host).assets(account) if not a.get("revocable"))
    return out


def create_reclaims(
    host: Host,
    licenses: Sequence[Mapping[str, Any]],
    reason: str,
    event: Event | None = None,
    revokes: Sequence[tuple[str, str, str]] = (),
    irrevocable: set[tuple[str, str, str]] | None = None,
) -> list[int]:
    """Record a reclaim per license (``pending``, or ``irrevocable``) and a revoke per
    ``(account, kind, target)`` of ``revokes``; returns the pending ids.

    A license (or revoke) that already has a pending reclaim is not recorded twice; one whose
    reclaim failed is recorded again, the failed one ``superseded_by`` the new one. With
    ``event``, the rows are written once per event (a redelivered event adds nothing) and carry
    its id as their ``cause``. ``irrevocable``: :func:`irrevocable_assets` of these licenses,
    when the caller has read them already (a :class:`ReclaimPlan`).
    """
    kept = irrevocable_assets(host, licenses) if irrevocable is None else irrevocable
    cause = event.id if event is not None else None

    def work(session: Session) -> list[int]:
        ids = []
        wanted = [(acc, ALL, ALL, kind, target) for acc, kind, target in revokes]
        for lic in licenses:
            kind, target = ("device", lic["serialNumber"]) if lic.get("serialNumber") else ("user", lic["clientUserId"])
            wanted.append((lic["account"], lic["adamId"], lic["pricingParam"], kind, target))
        for account, adam_id, pricing, kind, target in wanted:
            found = session.execute(
                select(Reclaim)
                .where(
                    col(Reclaim.account) == account,
                    col(Reclaim.adam_id) == adam_id,
                    col(Reclaim.pricing_param) == pricing,
                    col(Reclaim.kind) == kind,
                    col(Reclaim.target) == target,
                    is_open(),
                )
                .order_by(col(Reclaim.id))
            ).scalars()
            existing, failed = None, []
            for found_row in found:
                if found_row.status == "failed":
                    failed.append(found_row)
                elif existing is None:
                    existing = found_row
            if existing is not None and (existing.status == "irrevocable" or adam_id != ALL or existing.reason == reason):
                if existing.status == "pending":  # already being reclaimed, or known to be irrevocable
                    ids.append(existing.id)
                if cause and adam_id != ALL:  # this removal's summary counts it
                    existing.cause = cause
                    session.add(existing)
                continue
            row = Reclaim(account=account, adam_id=adam_id, pricing_param=pricing, kind=kind, target=target, reason=reason, cause=cause)
            if adam_id != ALL and (account, adam_id, pricing) in kept:
                row.status = "irrevocable"
                row.last_error = "the asset is irrevocable: Apple does not allow reclaiming its licenses (error 9706)"
            session.add(row)
            session.flush()
            for earlier in failed:  # tried again: the failed one is history now (listed with --all, pruned)
                earlier.superseded_by, earlier.updated_at = row.id, utcnow()
                session.add(earlier)
            if row.status == "irrevocable":
                _finished(host, session, row)
            else:
                ids.append(row.id)
        return ids

    if event is not None:
        return once(host, event, work) or []
    ids = host.db.run_write(work)
    host.deliver_events()
    return ids


def _finished(host: Host, session: Session, row: Reclaim) -> None:
    host.events.record(session, "mobile_apps_reclaim_finished", _finished_payload(values_of(row)))


def _finished_payload(row: Mapping[str, Any]) -> ReclaimFinishedPayload:
    """The ``mobile_apps_reclaim_finished`` payload of a reclaim (its column values)."""
    payload: ReclaimFinishedPayload = {
        "id": row["id"],
        "account": row["account"],
        "adamId": row["adam_id"],
        "pricingParam": row["pricing_param"],
        "reason": row["reason"],
        "status": row["status"],
        "error": row["last_error"],
    }
    if row["kind"] == "device":
        payload["serialNumber"] = row["target"]
    else:
        payload["clientUserId"] = row["target"]
    return payload


def process(
    host: Host, ids: list[int] | None = None, *, deliver: bool = True, quick: bool = False, reported: bool = False, due_only: bool = True
) -> dict[str, int]:
    """Ask Apple to give back pending reclaims (``ids``, or every due one: every pending one
    without ``due_only``); returns counts of licenses. ``quick``: one attempt without back-off
    and a short wait (someone is waiting).
    ``reported``: the caller shows each outcome (a command's report line), so Apple's failure
    is logged at INFO (``-v``) instead of a second time as a warning."""
    s = settings(host)
    trouble = logging.INFO if reported else logging.WARNING
    now = utcnow()
    counts = {"done": 0, "failed": 0, "pending": 0, "irrevocable": 0}
    with host.db.session() as session:
        query = select(Reclaim).where(col(Reclaim.status) == "pending")
        if ids is not None:
            query = query.where(col(Reclaim.id).in_(ids or [-1]))
        elif due_only:
            query = query.where(or_(col(Reclaim.next_attempt_at).is_(None), col(Reclaim.next_attempt_at) <= now))
        rows = list(session.execute(query.order_by(col(Reclaim.id))).scalars())
        back = _back_in_inventory(session, rows)
    for kind in ("device", "user"):
        if gone := [r for r in rows if r.id in back and r.kind == kind]:
            host.db.run_write(partial(_update, host, rows=gone, status="canceled", error=BACK[kind], event_ids=[], retry=s.reclaim_retry))
    rows = [r for r in rows if r.id not in back]
    known = _known_released(host, rows)
    unretired = _retire_released(host, [r for r in rows if r.id in known and r.adam_id == ALL and r.kind == "user"], trouble)
    if unretired:  # its licenses are released: only its VPP user is left to retire, asked again later
        host.db.run_write(partial(_update, host, rows=unretired, status=UNRETIRED, error=NOT_RETIRED, event_ids=[], retry=s.reclaim_retry))
        counts["pending"] += len(unretired)
    if released := [r for r in rows if r.id in known and r not in unretired]:
        host.db.run_write(partial(_update, host, rows=released, status="done", error=ALREADY_MIRRORED, event_ids=[], retry=s.reclaim_retry))
        counts["done"] += sum(1 for r in released if r.adam_id != ALL)
    rows = [r for r in rows if r not in released and r not in unretired]
    revokes = [r for r in rows if r.adam_id == ALL]
    covered = {(r.account, r.kind, r.target) for r in revokes}
    groups: dict[tuple[str, str], list[Reclaim]] = {}
    for row in revokes:
        groups.setdefault((row.account, row.kind), []).append(row)
    for (account, kind), group in groups.items():
        check_held()  # a job that lost its lock leaves the rest pending for the lock's next holder
        _revoke(host, account, kind, group, counts, quick, trouble)
    licenses: dict[tuple[str, str, str, str], list[Reclaim]] = {}
    for row in rows:
        if row.adam_id != ALL and (row.reason not in REMOVALS or (row.account, row.kind, row.target) not in covered):
            licenses.setdefault((row.account, row.adam_id, row.pricing_param, row.kind), []).append(row)
    for (account, adam_id, pricing, kind), group in licenses.items():
        check_held()
        targets = [r.target for r in group]
        try:
            result = VppPort(host).disassociate(
                account,
                adam_id,
                pricing,
                serial_numbers=targets if kind == "device" else [],
                client_user_ids=targets if kind == "user" else [],
                wait=min(s.reclaim_wait, QUICK_WAIT) if quick else s.reclaim_wait,
            )
        except MdmError as exc:  # Apple unreachable or refusing, or the VPP plugin gone: kept pending
            message = one_line(exc)
            final = "irrevocable" if "irrevocable" in message or "9706" in message else None
            log.log(
                trouble,
                "reclaim of %d license(s) of %s in %s: %s%s",
                len(targets),
                adam_id,
                account,
                message,
                "" if final else f" (retrying in {s.reclaim_retry}s)",
            )
            host.db.run_write(partial(_update, host, rows=group, status=final, error=message, event_ids=[], retry=s.reclaim_retry))
            counts[final or "pending"] += len(targets)
            continue
        host.db.run_write(partial(_settle, host, group=group, result=result, retry=s.reclaim_retry, counts=counts))
    if deliver:
        host.deliver_events()
    return counts


def _target_filter(kind: str, target: str) -> dict[str, str]:
    """The ``mdm_vpp_licenses`` filter of a device's or a user's licenses."""
    return {"serial_number": target} if kind == "device" else {"client_user_id": target}


def _known_released(host: Host, rows: list[Reclaim]) -> set[int | None]:
    """Ids of the pending reclaims an earlier attempt asked Apple for (its events recorded) whose
    licenses the mirror no longer holds: Apple took them back after that attempt stopped
    following it (a notification or a sync told the mirror), and asking again would only be
    answered 9610. A removal's revoke is known done when every license it rode for is (a
    user's is then not asked again either: :func:`_retire_released` retires its VPP user)."""
    gone = _not_mirrored(host, [r for r in rows if r.adam_id != ALL and r.event_ids])
    riders: dict[tuple[str, str, str], list[Reclaim]] = {}
    for r in rows:
        if r.adam_id != ALL and r.reason in REMOVALS:
            riders.setdefault((r.account, r.kind, r.target), []).append(r)
    for row in rows:
        if row.adam_id == ALL and row.event_ids:
            mine = riders.get((row.account, row.kind, row.target), [])
            if (mine and all(r.id in gone for r in mine)) or row.unretired:  # (its riders done before)
                gone.add(row.id)
    return gone


def _not_mirrored(host: Host, rows: list[Reclaim]) -> set[int | None]:
    """Ids of these reclaims of one license each whose license the mirror no longer holds (one
    read per asset, of these targets' licenses)."""
    port = VppPort(host)
    held: set[tuple[str, str, str, str, str]] = set()  # (account, adamId, pricingParam, kind, target)
    per_asset: dict[tuple[str, str], list[Reclaim]] = {}
    for r in rows:
        per_asset.setdefault((r.account, r.adam_id), []).append(r)
    for (account, adam_id), group in sorted(per_asset.items()):  # these targets' licenses of the asset, by chunks of targets
        devices, users = [r.target for r in group if r.kind == "device"], [r.target for r in group if r.kind == "user"]
        for lic in port.licenses(account=account, adam_id=adam_id, serial_numbers=devices, client_user_ids=users):
            holder = ("device", lic["serialNumber"]) if "serialNumber" in lic else ("user", lic.get("clientUserId", ""))
            held.add((account, adam_id, lic["pricingParam"], *holder))
    return {r.id for r in rows if (r.account, r.adam_id, r.pricing_param, r.kind, r.target.upper() if r.kind == "device" else r.target) not in held}


def close_released(host: Host) -> int:
    """End ``done`` (:data:`RELEASED_ELSEWHERE`) the open failed or irrevocable reclaims of one
    license each whose license the mirror no longer holds: taken back at Apple by other means
    (Apple's portal, another MDM) after Apple refused this MDM, so nothing is left to reclaim and
    nothing would supersede them (a new reclaim finds no license). Those of an account the VPP
    plugin does not know (removed: :func:`.accounts.account_removed` cancels them; renamed, and
    mobile_apps not told yet) are left as they are. Each is announced finished; returns how many
    ended (the ``mobile_apps.reclaim`` job calls it)."""
    accounts = {a["name"] for a in VppPort(host).accounts()}
    with host.db.session() as session:
        query = select(Reclaim).where(open_ended(), col(Reclaim.adam_id) != ALL, col(Reclaim.account).in_(sorted(accounts)))
        rows = list(session.execute(query.order_by(col(Reclaim.id))).scalars())
    gone = _not_mirrored(host, rows)
    released = [r for r in rows if r.id in gone]
    if not released:
        return 0
    check_held()  # a job that lost its lock leaves them to the lock's next holder
    closed = host.db.run_write(partial(close_ended, host, rows=released, status="done", error=RELEASED_ELSEWHERE))
    host.deliver_events()
    return closed


def close_ended(host: Host, session: Session, rows: Sequence[Reclaim], status: str, error: str) -> int:
    """End these failed or irrevocable reclaims ``status`` with ``error``, each announced finished
    again, but those no longer open meanwhile (superseded by a new reclaim, ended by another
    process: locked first, in id order as :func:`lock_in_id_order` says); returns how many."""
    reclaims, now = table_of(Reclaim), utcnow()
    finished: list[tuple[str, Mapping[str, Any]]] = []
    values = {"status": status, "last_error": error[:1000], "updated_at": now, "next_attempt_at": None}
    for chunk in in_chunks(sorted(r.id for r in rows if r.id is not None)):
        locked = lock_in_id_order(session, reclaims.c.id.in_(chunk), open_ended())
        if locked:
            session.execute(update(reclaims).where(reclaims.c.id.in_([row["id"] for row in locked])).values(values))
        finished += [("mobile_apps_reclaim_finished", _finished_payload({**row, **values})) for row in locked]
    host.events.record_many(session, finished)
    return len(finished)


def _retire_released(host: Host, revokes: list[Reclaim], trouble: int) -> list[Reclaim]:
    """Retire the VPP users of these removed users' revokes, whose licenses the mirror shows
    released (:func:`_known_released`): the revoke is not sent again (it was, every attempt),
    only the retirement that follows it, unless the mirror shows the user retired already.
    Returns the revokes whose VPP user could not be retired yet."""
    left: list[Reclaim] = []
    for account in sorted({r.account for r in revokes}):
        check_held()
        group = [r for r in revokes if r.account == account]
        live = {u["clientUserId"] for u in VppPort(host).users(account, [r.target for r in group]) if u["status"] in LIVE_USER_STATUSES}
        failed = set(_retire(host, account, [r.target for r in group if r.target in live], trouble))
        left += [r for r in group if r.target in failed]
    return left


def _back_in_inventory(session: Session, rows: list[Reclaim]) -> set[int | None]:
    """Ids of the reclaims of a removed device or user (or an unused license) whose target is
    in the inventory again: re-enrolled, or added again, before Apple could be asked."""
    left = [r for r in rows if r.reason in LEFT]
    back = in_inventory(session, ((r.kind, r.target) for r in left))
    return {r.id for r in left if (r.kind, r.target) in back}


def _settle(
    host: Host,
    session: Session,
    group: list[Reclaim],
    result: Mapping[str, Any],
    retry: int,
    counts: dict[str, int],
    riders: dict[str, list[Reclaim]] | None = None,
) -> None:
    """Apply Apple's answer to these reclaims (and to the license rows riding on a revoke)."""
    failures = {f.get("serialNumber") or f.get("clientUserId"): f for f in result["failed"]}
    pending = {*result.get("pending", {}).get("serialNumbers", []), *result.get("pending", {}).get("clientUserIds", [])}
    outcomes: list[Outcome] = []
    for row in group:
        rows = [row, *(riders or {}).get(row.target, [])]
        if row.target in pending:
            outcomes.append((rows, WAITING, NOT_CONFIRMED))
        elif row.target in failures and failures[row.target].get("errorNumber") in RELEASED_ERRORS:  # released already at Apple
            outcomes.append((rows, "done", ALREADY.format(number=failures[row.target]["errorNumber"])))
        elif row.target in failures:
            f = failures[row.target]
            outcomes.append((rows, "failed", f"{f.get('errorMessage') or 'failed'} (Apple error {f.get('errorNumber')})"))
        else:
            outcomes.append((rows, "done", None))
        status = outcomes[-1][1]
        counts["pending" if status in (None, WAITING) else status] += max(1, len(rows) - 1) if riders is not None else 1
    _update_many(host, session, outcomes, result["event_ids"], retry)


def _revoke(host: Host, account: str, kind: str, group: list[Reclaim], counts: dict[str, int], quick: bool, trouble: int = logging.WARNING) -> None:
    """Apple's revoke for removed devices or users of one account, then retire removed users."""
    s = settings(host)
    targets = [r.target for r in group]
    with host.db.session() as session:  # the mirrored licenses of these targets ride on the revoke
        riders: dict[str, list[Reclaim]] = {}
        for row in session.execute(
            select(Reclaim).where(
                col(Reclaim.status) == "pending",
                col(Reclaim.account) == account,
                col(Reclaim.kind) == kind,
                col(Reclaim.adam_id) != ALL,
                col(Reclaim.reason).in_(REMOVALS),
                col(Reclaim.target).in_(targets),
            )
        ).scalars():
            riders.setdefault(row.target, []).append(row)
    try:
        result = VppPort(host).revoke(
            account,
            serial_numbers=targets if kind == "device" else [],
            client_user_ids=targets if kind == "user" else [],
            wait=min(s.reclaim_wait, QUICK_WAIT) if quick else s.reclaim_wait,
            quick=quick,
        )
    except MdmError as exc:  # Apple unreachable or refusing, or the VPP plugin gone: kept pending
        message = one_line(exc)
        log.log(trouble, "revoke of the licenses of %d %s(s) in %s: %s (retrying in %ss)", len(targets), kind, account, message, s.reclaim_retry)
        every = group + [r for rows in riders.values() for r in rows]
        host.db.run_write(lambda session: _update(host, session, every, None, message, [], s.reclaim_retry))
        counts["pending"] += sum(max(1, len(riders.get(t, []))) for t in targets)
        return
    if kind == "user":  # reclaimed: now retire the VPP users (a failure keeps the revoke pending)
        refused = {f.get("clientUserId") for f in result["failed"] if f.get("errorNumber") not in RELEASED_ERRORS}
        done = [t for t in targets if t not in result.get("pending", {}).get("clientUserIds", []) and t not in refused]
        retired_failed = _retire(host, account, done, trouble)
        if retired_failed:
            result = {**result, "pending": {"serialNumbers": [], "clientUserIds": [*result.get("pending", {}).get("clientUserIds", []), *retired_failed]}}
    host.db.run_write(lambda session: _settle(host, session, group, result, s.reclaim_retry, counts, riders))


def _retire(host: Host, account: str, users: list[str], trouble: int = logging.WARNING) -> list[str]:
    """Retire these VPP users at Apple; returns those that could not be retired yet."""
    if not users:
        return []
    try:
        rows = VppPort(host).retire_users(account, users, wait=settings(host).reclaim_wait)
    except MdmError as exc:
        log.log(trouble, "retiring %d VPP user(s) in %s: %s (retrying in %ss)", len(users), account, one_line(exc), settings(host).reclaim_retry)
        return list(users)
    return [r["clientUserId"] for r in rows if r["status"] not in ("Retired", "unknown")]


def _update(host: Host, session: Session, rows: Sequence[Reclaim], status: str | None, error: str | None, event_ids: list[str], retry: int) -> None:
    """Apply one outcome to these pending reclaims (:func:`_update_many`)."""
    _update_many(host, session, [(rows, status, error)], event_ids, retry)


def _update_many(host: Host, session: Session, outcomes: Sequence[Outcome], event_ids: list[str], retry: int) -> None:
    """Apply ``outcomes`` in order to those of their reclaims still pending (one that ended
    meanwhile is left as it is), each one that ends announced finished in that order: one read
    a chunk of ids, one update and one insert of events, whatever their number (a bulk reclaim
    of a school year's thousands of licenses made three statements a license).

    The read locks the pending ones (``SELECT ... FOR UPDATE``) in the order of their ids: on
    PostgreSQL it holds them until the commit, so a reclaim another process (a second ``mdm
    run`` host, ``mdm apps reclaim`` by hand) settles meanwhile is either settled there first,
    and left here as it is (not announced twice), or waits for this settle; a plain read let
    this update overwrite the other's outcome and announce it finished a second time. The order
    is the ids', whatever the plan: two processes settling overlapping reclaims both lock the
    lowest id first, so one waits for the other instead of each holding a row the other wants
    (a deadlock, one of them rolled back), as a lock taken by the update itself did, in the
    order its plan read the rows (an index's for a few ids, the table's for many, where a
    reclaim written again since sits after the others). Each reclaim is then written once.
    (SQLite's write transaction holds the database from its first statement: ``FOR UPDATE``
    is left out there.)"""
    now = utcnow()
    reclaims = table_of(Reclaim)
    wanted = sorted({row.id for rows, _, _ in outcomes for row in rows if row.id is not None})
    current: dict[int, dict[str, Any]] = {}
    for chunk in in_chunks(wanted):
        current.update((r["id"], r) for r in lock_in_id_order(session, reclaims.c.id.in_(chunk), reclaims.c.status == "pending"))
    changed: dict[int, dict[str, Any]] = {}
    finished: list[tuple[str, Mapping[str, Any]]] = []
    for rows, status, error in outcomes:
        ended: list[ReclaimFinishedPayload] = []  # this outcome's
        for stale in rows:
            row = current.get(stale.id or 0)
            if row is None or row["status"] != "pending":
                continue
            row["attempts"] += 1
            row["updated_at"] = now
            row["last_error"] = error[:1000] if error else None
            row["event_ids"] = [*row["event_ids"], *event_ids]
            row["unconfirmed"], row["unretired"] = status == WAITING, status == UNRETIRED
            if status in (None, WAITING, UNRETIRED):
                row["next_attempt_at"] = now + timedelta(seconds=retry)
            else:
                row["status"], row["next_attempt_at"] = status, None
                ended.append(_finished_payload(row))
            changed[row["id"]] = row
        _count_riders(ended)
        finished += [("mobile_apps_reclaim_finished", payload) for payload in ended]
    if changed:
        columns = ("status", "attempts", "last_error", "unconfirmed", "unretired", "event_ids", "updated_at", "next_attempt_at")
        statement = update(reclaims).where(reclaims.c.id == bindparam("u_id"), reclaims.c.status == "pending").values({c: bindparam(f"u_{c}") for c in columns})
        session.execute(statement, [{"u_id": i, **{f"u_{c}": row[c] for c in columns}} for i, row in changed.items()])
    host.events.record_many(session, finished)


def _count_riders(ended: list[ReclaimFinishedPayload]) -> None:
    """Tell each revoke among these reclaims that ended together (adamId ``*``) how many
    reclaims of its device's or user's mirrored licenses ended with it (``licenses``): a
    subscriber tells a refused revoke that none rode on (its licenses unknown to the mirror)
    where each refused license already tells its own."""
    riders = Counter((p["account"], p.get("serialNumber"), p.get("clientUserId")) for p in ended if p["adamId"] != ALL)
    for payload in ended:
        if payload["adamId"] == ALL:
            payload["licenses"] = riders[(payload["account"], payload.get("serialNumber"), payload.get("clientUserId"))]


def lock_in_id_order(session: Session, *where: ColumnElement[bool], only: Sequence[Column[Any]] = ()) -> list[dict[str, Any]]:
    """Lock the reclaims matching ``where`` in the order of their ids (``SELECT ... ORDER BY id
    FOR UPDATE``) and return them (their ``only`` columns, else every one). Every writer of
    reclaims a settle may hold locks them so before writing (:func:`_update_many`, an account's
    rename): each takes the lowest id first and waits for the other, where one writing them in
    its plan's order (the table's for many rows) could hold a row the other wants while waiting
    for one the other holds, a deadlock PostgreSQL rolls one of them back for (40P01, retried
    after about a second). SQLite's write transaction holds the database: no ``FOR UPDATE``."""
    reclaims = table_of(Reclaim)
    held = select(*(only or (reclaims,))).where(*where).order_by(reclaims.c.id).with_for_update()
    return [dict(r) for r in session.execute(held).mappings()]


def cancel_reclaims(host: Host, session: Session, rows: list[Reclaim], reason: str) -> None:
    """End these pending reclaims ``canceled`` with ``reason`` (each announced finished)."""
    _update(host, session, rows, "canceled", reason, [], retry=0)


# ---------------------------------------------------------------------- entry points


def on_device_removed(host: Host, event: Event) -> None:
    """Revoke every license the removed device held, in every account (one quick attempt)."""
    serial = str(event.payload.get("serial_number") or "").upper()
    if serial:
        accounts = [a["name"] for a in VppPort(host).accounts()]
        _reclaim_held(host, event, "device_removed", [(a, "device", serial) for a in accounts], serial_number=serial, client_user_id=None)


def on_user_removed(host: Host, event: Event) -> None:
    """Revoke every license of the removed MDM user where it is a VPP user, then retire it there."""
    user = str(event.payload.get("id") or "")
    if user:
        accounts = sorted({u["account"] for u in VppPort(host).users(None, [user]) if u["status"] in LIVE_USER_STATUSES})
        _reclaim_held(host, event, "user_removed", [(a, "user", user) for a in accounts], serial_number=None, client_user_id=user)


def _reclaim_held(host: Host, event: Event, reason: str, revokes: list[tuple[str, str, str]], *, serial_number: str | None, client_user_id: str | None) -> None:
    licenses = VppPort(host).licenses(serial_number=serial_number, client_user_id=client_user_id)
    if not licenses and not revokes:
        once(host, event, lambda session: None)
        return
    ids = create_reclaims(host, licenses, reason, event, revokes)
    if ids:
        process(host, ids, deliver=False, quick=True, reported=True)


def removal_summary(host: Host, kind: str, target: str, event_id: str | None = None) -> str | None:
    """What the removal whose event is ``event_id`` (default: the last recorded removal of this
    device or user) did to its licenses: ``N reclaimed, M pending``.

    Whichever process delivers the removal's event records its reclaims: until it has (another
    process took the event first, ``mdm run``), the licenses the mirror holds are counted as
    being reclaimed by it, and so are reclaims it recorded but has not tried yet. An earlier
    removal of the same device (removed, enrolled again, removed again) is not this one."""
    with host.db.session() as session:
        if event_id is None:
            latest = session.execute(
                select(col(Reclaim.cause))
                .where(col(Reclaim.kind) == kind, col(Reclaim.target) == target, col(Reclaim.reason).in_(REMOVALS), col(Reclaim.cause).is_not(None))
                .order_by(col(Reclaim.id).desc())
                .limit(1)
            ).scalar_one_or_none()
        else:  # applied (its reclaims recorded, if any) once the plugin's guard of the event is there
            latest = event_id if session.get(SeenEvent, event_id) is not None else None
        rows = [] if latest is None else list(session.execute(select(Reclaim).where(Reclaim.cause == latest)).scalars())
    if latest is None:
        return _not_recorded_yet(host, kind, target)
    if not rows and not VppPort(host).accounts():  # applied without a VPP account: nothing to say
        return None
    licenses = [r for r in rows if r.adam_id != ALL]
    revokes = [r for r in rows if r.adam_id == ALL]
    count = {status: sum(1 for r in licenses if r.status == status) for status in ("done", "pending", "failed", "irrevocable")}
    text = f"VPP licenses: {count['done']} reclaimed, {count['pending']} pending"
    if count["failed"]:
        text += f", {count['failed']} refused by Apple"
    if count["irrevocable"]:
        text += f", {count['irrevocable']} irrevocable (kept)"
    refused = [r for r in revokes if r.status == "failed"]
    if refused and not count["failed"]:  # its licenses unknown to the mirror: no license row tells it
        text += f"; Apple refused the revoke ({refused[0].last_error}): what it holds stays assigned, see `mdm apps reclaims`"
    if any(r.status == "pending" and not r.attempts for r in revokes):
        text += f" ({ELSEWHERE})"
    elif any(r.status == "pending" and r.unconfirmed for r in revokes):
        text += " (Apple was asked to take them back and has not confirmed yet: the mobile_apps.reclaim job asks again; see `mdm apps reclaims`)"
    elif any(r.status == "pending" for r in revokes):
        text += " (Apple could not be reached: the mobile_apps.reclaim job retries; see `mdm apps reclaims`)"
    return text


#: Reclaims of a removal another process delivers (it took the removal's event first)
ELSEWHERE = "being reclaimed by the process delivering the removal (`mdm run`): see `mdm apps reclaims`"


def _not_recorded_yet(host: Host, kind: str, target: str) -> str | None:
    """The summary of a removal whose reclaims are not recorded yet: the licenses the mirror
    holds, which the process delivering the removal reclaims (None without a VPP account)."""
    port = VppPort(host)
    if not port.available:  # the removal's event waits for the VPP plugin (mdm_device_removed)
        return "VPP licenses: reclaimed once the VPP plugin is enabled again (see `mdm plugins`)"
    if not port.accounts():
        return None
    held = port.licenses(**_target_filter(kind, target))
    return f"VPP licenses: {len(held)} held, {ELSEWHERE}"


def removed_targets(host: Host) -> dict[str, set[str]]:
    """Devices and users this MDM removed (recorded when they were), by kind."""
    with host.db.session() as session:
        rows = session.execute(select(col(Reclaim.kind), col(Reclaim.target)).where(col(Reclaim.reason).in_(REMOVALS)).distinct()).all()
    out: dict[str, set[str]] = {"device": set(), "user": set()}
    for kind, target in rows:
        out.setdefault(kind, set()).add(target)
    return out


def check_holder(*, serial: str | None = None, user: str | None = None) -> None:
    """Refuse a blank serial number or user (``UsageError``): it selects no holder, which is
    every license of the app."""
    for what, value in (("device serial number", serial), ("MDM user", user)):
        if value is not None and not value.strip():
            raise UsageError(f"the {what} is empty: give the one whose license to reclaim (an empty one would take back every license of the app)")


#: why a holder a reclaim names holds nothing when this MDM does not know it (no license, no
#: device or user of that name: a misspelt one, most often), by kind; the console and the API
#: say it in their words (``installs.wording.WORDING``)
UNKNOWN_HOLDER = {"device": "not enrolled (see `mdm devices list`)", "user": "not an MDM user (see `mdm users list`)"}


def unknown_holders(host: Host, targets: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of ``targets`` (``("device", SERIAL)``, upper-cased, or ``("user", MDM user id)``)
    this MDM does not know: not enrolled, not an MDM user (:data:`UNKNOWN_HOLDER`)."""
    with host.db.session() as session:
        return set(targets) - in_inventory(session, targets)


def reclaim_candidates(host: Host, selector: str | None, *, serial: str | None = None, user: str | None = None, unused: bool = False) -> list[License]:
    """The licenses ``mdm apps reclaim`` would free (nothing is changed)."""
    check_holder(serial=serial, user=user)
    keys: set[tuple[str, str, str]] | None = None
    if selector is not None:
        with host.db.session() as session:
            keys = {(a.account, a.adam_id, a.pricing_param) for a, _ in find_apps(session, selector)}
    elif not unused:
        raise UsageError("give APP, or --all with --unused")
    adam_ids = sorted({k[1] for k in keys}) if keys is not None else [None]
    licenses: list[License] = []
    for adam_id in adam_ids:
        licenses += VppPort(host).licenses(
            adam_id=adam_id, serial_number=serial.strip().upper() if serial else None, client_user_id=user.strip() if user else None
        )
    if keys is not None:
        licenses = [lic for lic in licenses if (lic["account"], lic["adamId"], lic["pricingParam"]) in keys]
        if not licenses:  # not "no license to reclaim" when its account was renamed
            check_account(host, (k[0] for k in keys), f"app {selector}", "reclaim")
    if unused:  # held by a device or user removed from this MDM, never by one it never knew
        removed = removed_targets(host)
        licenses = [
            lic
            for lic in licenses
            if (lic.get("serialNumber") and not lic.get("enrolled") and lic["serialNumber"] in removed["device"])
            or (lic.get("clientUserId") and not lic.get("mdmUser") and lic["clientUserId"] in removed["user"])
        ]
    return licenses


@dataclass(frozen=True)
class ReclaimPlan:
    """What a reclaim would do, read once (``mdm apps reclaim``, ``POST /api/v1/apps/.../reclaim``):
    the candidate ``licenses``, the ``irrevocable`` assets among them (kept, never attempted)
    and whether it is a bulk reclaim of ``unused`` licenses, which is confirmed first."""

    licenses: list[License]
    irrevocable: set[tuple[str, str, str]]
    unused: bool = False

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Each license with its ``status``: ``reclaimable`` or ``irrevocable`` (``--dry-run``)."""
        return [{**lic, "status": "irrevocable" if self._kept(lic) else "reclaimable"} for lic in self.licenses]

    def _kept(self, lic: License) -> bool:
        """Whether the license's asset is irrevocable."""
        return (lic["account"], lic["adamId"], lic["pricingParam"]) in self.irrevocable

    @property
    def kept(self) -> int:
        """How many licenses are irrevocable: listed, never reclaimed."""
        return sum(1 for lic in self.licenses if self._kept(lic))

    @property
    def question(self) -> str | None:
        """What a bulk reclaim (``unused``) is asked to confirm, as ``reclaim N license(s) ...``;
        None when nothing needs confirming (one holder's licenses, or none that would go back)."""
        reclaimable = len(self.licenses) - self.kept
        if not self.unused or not reclaimable:
            return None
        kept = f" ({self.kept} irrevocable: kept)" if self.kept else ""
        return f"reclaim {reclaimable} license(s) held by devices and users removed from this MDM{kept}"


def plan_reclaim(host: Host, selector: str | None, *, serial: str | None = None, user: str | None = None, unused: bool = False) -> ReclaimPlan:
    """The :class:`ReclaimPlan` of ``mdm apps reclaim`` (nothing is changed): its candidates
    (:func:`reclaim_candidates`) and their irrevocable assets, read once for the dry run, the
    confirmation and the reclaim itself."""
    licenses = reclaim_candidates(host, selector, serial=serial, user=user, unused=unused)
    return ReclaimPlan(licenses, irrevocable_assets(host, licenses), unused)


def plan_holders_reclaim(host: Host, selector: str, devices: Sequence[str], users: Sequence[str]) -> ReclaimPlan:
    """The :class:`ReclaimPlan` of one app's licenses held by these devices and users
    (``POST /api/v1/apps/APP/reclaim``, the console's form): the app's licenses and its accounts'
    assets are read once for the whole batch, not once per holder. A blank holder is refused
    (``UsageError``) before anything is read."""
    for serial in devices:
        check_holder(serial=serial)
    for user in users:
        check_holder(user=user)
    if len(devices) + len(users) == 1:  # one holder: its licenses only, as `mdm apps reclaim --device/--user`
        return plan_reclaim(host, selector, serial=next(iter(devices), None), user=next(iter(users), None))
    serials, ids = {s.strip().upper() for s in devices}, {u.strip() for u in users}
    licenses = [lic for lic in reclaim_candidates(host, selector) if lic.get("serialNumber") in serials or lic.get("clientUserId") in ids]
    return ReclaimPlan(licenses, irrevocable_assets(host, licenses))


def reclaim(
    host: Host,
    selector: str | None,
    *,
    serial: str | None = None,
    user: str | None = None,
    unused: bool = False,
    plan: ReclaimPlan | None = None,
) -> list[dict[str, Any]]:
    """``mdm apps reclaim``: free the licenses of one app (or every app with ``--unused``);
    ``plan``: what the caller listed (and had confirmed) already, carried out as it is."""
    if plan is None:
        plan = plan_reclaim(host, selector, serial=serial, user=user, unused=unused)
    licenses = plan.licenses
    if not licenses:
        return []
    ids = create_reclaims(host, licenses, "unused" if plan.unused else "manual", irrevocable=plan.irrevocable)
    process(host, ids, reported=True)
    wanted = {
        (
            lic["account"],
            lic["adamId"],
            lic["pricingParam"],
            "device" if lic.get("serialNumber") else "user",
            str(lic.get("serialNumber") or lic.get("clientUserId")),
        )
        for lic in licenses
    }
    with host.db.session() as session:
        targets = sorted({key[4] for key in wanted})  # these holders' rows only, not every reclaim ever recorded
        rows = session.execute(select(Reclaim).where(col(Reclaim.target).in_(targets)).order_by(col(Reclaim.id).desc())).scalars()
        latest: dict[tuple[str, str, str, str, str], Reclaim] = {}
        for row in rows:
            key = (row.account, row.adam_id, row.pricing_param, row.kind, row.target)
            if key in wanted and key not in latest:
                latest[key] = row
        return [reclaim_dict(r) for r in sorted(latest.values(), key=lambda r: r.id or 0)]


#: What each final status of a reclaim means, as ``mdm apps reclaim`` and the console say it.
RESULT_TEXT = {
    "done": "license reclaimed",
    "pending": "Apple could not be reached; kept pending, retried by the mobile_apps.reclaim job",
    "failed": "Apple refused",
    "irrevocable": "not reclaimed: the asset is irrevocable (the license is kept)",
    "canceled": "not reclaimed: enrolled or added again, so the license is kept",
}


def reclaim_result(row: dict[str, Any]) -> str:
    """One reclaim's outcome in words, with Apple's error when it failed or is pending (one Apple
    took but has not confirmed is not given back yet: it says so)."""
    if row["status"] == "pending" and row.get("unconfirmed"):
        return "asked Apple to take the license back; not confirmed yet, the mobile_apps.reclaim job asks again"
    detail = f" ({row['last_error']})" if row.get("last_error") and row["status"] in ("pending", "failed", "done") else ""
    return RESULT_TEXT[row["status"]] + detail


def reclaim_ok(rows: list[dict[str, Any]]) -> bool:
    """Every license was reclaimed, is pending (Apple unreachable) or is kept because its holder
    came back: nothing refused or irrevocable."""
    return all(r["status"] in ("done", "pending", "canceled") for r in rows)


def reclaim_dict(row: Reclaim) -> dict[str, Any]:
    """A reclaim as plain values."""
    data = values_of(row)
    data["serialNumber" if row.kind == "device" else "clientUserId"] = row.target
    return data


def is_open() -> ColumnElement[bool]:
    """SQL: the reclaim is open (:data:`OPEN`): pending, irrevocable, or failed and not
    superseded by a later reclaim of the same license. The others have ended: the history's
    retention prunes them (:func:`.retention.prune_history`)."""
    reclaim = table_of(Reclaim)
    return and_(reclaim.c.status.in_(OPEN), reclaim.c.superseded_by.is_(None))


def open_ended() -> ColumnElement[bool]:
    """SQL: the reclaim ended ``failed`` or ``irrevocable`` (:data:`ENDED`) and is still open
    (:func:`is_open`): nothing superseded or closed it yet."""
    return and_(is_open(), table_of(Reclaim).c.status.in_(ENDED))


def reclaims_query(everything: bool = False) -> Any:
    """Open reclaims (:func:`is_open`; every one recorded with ``everything``), unordered: ``mdm
    apps reclaims``, the console's Reclaims and ``GET /api/v1/apps/reclaims`` list them by id."""
    query = select(Reclaim)
    return query if everything else query.where(is_open())


def iter_reclaims(host: Host, everything: bool = False, *, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Open reclaims (:func:`is_open`; all of them with ``everything``), oldest first; streamed
    (constant memory)."""
    query = reclaims_query(everything).order_by(col(Reclaim.id))
    return (reclaim_dict(row[0]) for row in stream_rows(host.db, query, offset=offset, limit=limit))


def count_closed(host: Host) -> int:
    """How many reclaims are not open: ``done``, ``canceled``, or failed and superseded (those
    ``mdm apps reclaims`` lists only with ``--all``)."""
    with host.db.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(table_of(Reclaim)).where(not_(is_open()))).scalar_one())


def list_reclaims(host: Host, everything: bool = False) -> list[dict[str, Any]]:
    """Open reclaims (all of them with ``everything``), oldest first."""
    return list(iter_reclaims(host, everything))


__all__ = [
    "ALL",
    "FINAL",
    "OPEN",
    "RESULT_TEXT",
    "ReclaimPlan",
    "close_ended",
    "close_released",
    "count_closed",
    "create_reclaims",
    "is_open",
    "iter_reclaims",
    "list_reclaims",
    "on_device_removed",
    "on_user_removed",
    "open_ended",
    "plan_holders_reclaim",
    "plan_reclaim",
    "process",
    "reclaim",
    "reclaim_candidates",
    "reclaim_ok",
    "reclaim_result",
    "reclaims_query",
    "removal_summary",
    "removed_targets",
]
