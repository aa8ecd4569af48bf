"""Reclaiming VPP licenses: when a device leaves the inventory, on demand, and for unused ones.

Each license to reclaim gets a ``mobile_apps_reclaim`` row first (committed), then the VPP plugin
is asked to disassociate it (``mdm_vpp_disassociate``). Apple unreachable: the row stays
``pending`` and the ``mobile_apps.reclaim`` job retries it every ``reclaim_retry`` seconds.
Irrevocable assets are recorded ``irrevocable`` and never attempted.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import or_, select
from sqlmodel import Session

from mdm_core.db.stream import stream_rows
from mdm_core.errors import MdmError, UsageError, one_line
from mdm_core.models import utcnow

from .catalog import find_apps, once
from .models import Reclaim
from .payloads import ReclaimFinishedPayload
from .settings import settings
from .vpp_port import VppPort

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.host import Host

log = logging.getLogger(__name__)
FINAL = ("done", "failed", "irrevocable")


def _revocable_map(host: "Host", accounts: set[str]) -> dict[tuple[str, str, str], bool]:
    """(account, adamId, pricingParam) → revocable, from the VPP mirror."""
    out: dict[tuple[str, str, str], bool] = {}
    for account in sorted(accounts):
        for asset in VppPort(host).assets(account):
            out[(account, asset["adamId"], asset["pricingParam"])] = bool(asset.get("revocable"))
    return out


def create_reclaims(host: "Host", licenses: list[dict[str, Any]], reason: str, event: "Event | None" = None) -> list[int]:
    """Record a reclaim per license (``pending``, or ``irrevocable``); returns the pending ids.

    A license that already has a pending reclaim is not recorded twice. With ``event``, the
    rows are written once per event (a redelivered event adds nothing).
    """
    revocable = _revocable_map(host, {lic["account"] for lic in licenses})

    def work(session: Session) -> list[int]:
        ids = []
        for lic in licenses:
            kind, target = ("device", lic["serialNumber"]) if lic.get("serialNumber") else ("user", lic["clientUserId"])
            key = (lic["account"], lic["adamId"], lic["pricingParam"])
            existing = session.execute(select(Reclaim).where(
                Reclaim.account == key[0], Reclaim.adam_id == key[1], Reclaim.pricing_param == key[2], Reclaim.kind == kind,
                Reclaim.target == target, Reclaim.status.in_(("pending", "irrevocable")))).scalars().first()  # type: ignore[attr-defined]
            if existing is not None:  # already being reclaimed, or known to be irrevocable
                if existing.status == "pending":
                    ids.append(existing.id)
                continue
            row = Reclaim(account=key[0], adam_id=key[1], pricing_param=key[2], kind=kind, target=target, reason=reason)
            if not revocable.get(key, True):
                row.status = "irrevocable"
                row.last_error = "the asset is irrevocable: Apple does not allow reclaiming its licenses (error 9706)"
            session.add(row)
            session.flush()
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


def _finished(host: "Host", session: Session, row: Reclaim) -> None:
    assert row.id is not None
    payload: ReclaimFinishedPayload = {
        "id": row.id, "account": row.account, "adamId": row.adam_id, "pricingParam": row.pricing_param,
        "reason": row.reason, "status": row.status, "error": row.last_error,
    }
    if row.kind == "device":
        payload["serialNumber"] = row.target
    else:
        payload["clientUserId"] = row.target
    host.events.record(session, "mobile_apps_reclaim_finished", payload)


def process(host: "Host", ids: list[int] | None = None, *, deliver: bool = True) -> dict[str, int]:
    """Ask Apple to disassociate pending reclaims (``ids``, or every due one); returns counts."""
    s = settings(host)
    now = utcnow()
    with host.db.session() as session:
        query = select(Reclaim).where(Reclaim.status == "pending")
        if ids is not None:
            query = query.where(Reclaim.id.in_(ids or [-1]))  # type: ignore[union-attr]
        else:
            query = query.where(or_(Reclaim.next_attempt_at.is_(None), Reclaim.next_attempt_at <= now))
        rows = list(session.execute(query.order_by(Reclaim.id)).scalars())
    groups: dict[tuple[str, str, str, str], list[Reclaim]] = {}
    for row in rows:
        groups.setdefault((row.account, row.adam_id, row.pricing_param, row.kind), []).append(row)
    counts = {"done": 0, "failed": 0, "pending": 0, "irrevocable": 0}
    for (account, adam_id, pricing, kind), group in groups.items():
        targets = [r.target for r in group]
        try:
            result = VppPort(host).disassociate(account, adam_id, pricing, serial_numbers=targets if kind == "device" else [],
                                                client_user_ids=targets if kind == "user" else [], wait=s.reclaim_wait)
        except MdmError as exc:  # Apple unreachable or refusing, or the VPP plugin gone: kept pending
            message = one_line(exc)
            final = "irrevocable" if "irrevocable" in message or "9706" in message else None
            log.warning("reclaim of %d license(s) of %s in %s: %s%s", len(targets), adam_id, account, message,
                        "" if final else f" (retrying in {s.reclaim_retry}s)")
            host.db.run_write(lambda session, g=group, m=message, f=final: _update(host, session, g, f, m, [], s.reclaim_retry))
            counts[final or "pending"] += len(targets)
            continue
        failures = {f.get("serialNumber") or f.get("clientUserId"): f for f in result["failed"]}
        status = result["status"]

        def work(session: Session, group: list[Reclaim] = group, failures: dict[str, Any] = failures, status: str = status,
                 event_ids: list[str] = result["event_ids"]) -> None:
            for row in group:
                if status == "PENDING":
                    _update(host, session, [row], None, "Apple has not confirmed yet; asking again later", event_ids, s.reclaim_retry)
                elif row.target in failures:
                    f = failures[row.target]
                    _update(host, session, [row], "failed", f"{f.get('errorMessage') or 'failed'} (Apple error {f.get('errorNumber')})", event_ids, s.reclaim_retry)
                else:
                    _update(host, session, [row], "done", None, event_ids, s.reclaim_retry)

        host.db.run_write(work)
        for row in group:
            counts["pending" if status == "PENDING" else "failed" if row.target in failures else "done"] += 1
    if deliver:
        host.deliver_events()
    return counts


def _update(host: "Host", session: Session, rows: list[Reclaim], status: str | None, error: str | None, event_ids: list[str], retry: int) -> None:
    now = utcnow()
    for stale in rows:
        row = session.get(Reclaim, stale.id)
        if row is None or row.status != "pending":
            continue
        row.attempts += 1
        row.updated_at = now
        row.last_error = error[:1000] if error else None
        row.event_ids = [*row.event_ids, *event_ids]
        if status is None:
            row.next_attempt_at = now + timedelta(seconds=retry)
        else:
            row.status, row.next_attempt_at = status, None
            _finished(host, session, row)
        session.add(row)


# ---------------------------------------------------------------------- entry points


def on_device_removed(host: "Host", event: "Event") -> None:
    """Reclaim every license the removed device held (revocable ones at once)."""
    serial = str(event.payload.get("serial_number") or "").upper()
    _reclaim_held(host, event, "device_removed", serial_number=serial or None, client_user_id=None)


def on_user_removed(host: "Host", event: "Event") -> None:
    """Reclaim every user license of the removed MDM user (revocable ones at once)."""
    user = str(event.payload.get("id") or "")
    _reclaim_held(host, event, "user_removed", serial_number=None, client_user_id=user or None)


def _reclaim_held(host: "Host", event: "Event", reason: str, *, serial_number: str | None, client_user_id: str | None) -> None:
    if not serial_number and not client_user_id:
        return
    licenses = VppPort(host).licenses(serial_number=serial_number, client_user_id=client_user_id)
    if not licenses:
        once(host, event, lambda session: None)
        return
    ids = create_reclaims(host, licenses, reason, event)
    if ids:
        process(host, ids, deliver=False)


def reclaim(host: "Host", selector: str | None, *, serial: str | None = None, user: str | None = None, unused: bool = False) -> list[dict[str, Any]]:
    """``mdm apps reclaim``: free the licenses of one app (or every app with ``--unused``)."""
    keys: set[tuple[str, str, str]] | None = None
    if selector is not None:
        with host.db.session() as session:
            keys = {(a.account, a.adam_id, a.pricing_param) for a, _ in find_apps(session, selector)}
    elif not unused:
        raise UsageError("give APP, or --all with --unused")
    adam_ids = sorted({k[1] for k in keys}) if keys is not None else [None]
    licenses: list[dict[str, Any]] = []
    for adam_id in adam_ids:
        licenses += VppPort(host).licenses(adam_id=adam_id, serial_number=serial.strip().upper() if serial else None,
                                           client_user_id=user.strip() if user else None)
    if keys is not None:
        licenses = [lic for lic in licenses if (lic["account"], lic["adamId"], lic["pricingParam"]) in keys]
    if unused:
        licenses = [lic for lic in licenses if (lic.get("serialNumber") and not lic.get("enrolled")) or (lic.get("clientUserId") and not lic.get("mdmUser"))]
    if not licenses:
        return []
    ids = create_reclaims(host, licenses, "unused" if unused else "manual")
    process(host, ids)
    wanted = {(lic["account"], lic["adamId"], lic["pricingParam"], "device" if lic.get("serialNumber") else "user", lic.get("serialNumber") or lic.get("clientUserId")) for lic in licenses}
    with host.db.session() as session:
        rows = session.execute(select(Reclaim).order_by(Reclaim.id.desc())).scalars()
        latest: dict[tuple[str, str, str, str, str], Reclaim] = {}
        for row in rows:
            key = (row.account, row.adam_id, row.pricing_param, row.kind, row.target)
            if key in wanted and key not in latest:
                latest[key] = row
        return [reclaim_dict(r) for r in sorted(latest.values(), key=lambda r: r.id or 0)]


def reclaim_dict(row: Reclaim) -> dict[str, Any]:
    """A reclaim as plain values."""
    data = row.model_dump()
    data["serialNumber" if row.kind == "device" else "clientUserId"] = row.target
    return data


def iter_reclaims(host: "Host", everything: bool = False, *, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Pending, failed and irrevocable reclaims (all of them with ``everything``), oldest first;
    streamed (constant memory)."""
    query = select(Reclaim).order_by(Reclaim.id)
    if not everything:
        query = query.where(Reclaim.status.in_(("pending", "failed", "irrevocable")))  # type: ignore[attr-defined]
    return (reclaim_dict(row[0]) for row in stream_rows(host.db, query, offset=offset, limit=limit))


def list_reclaims(host: "Host", everything: bool = False) -> list[dict[str, Any]]:
    """Pending, failed and irrevocable reclaims (all of them with ``everything``), oldest first."""
    return list(iter_reclaims(host, everything))


__all__ = ["FINAL", "create_reclaims", "iter_reclaims", "list_reclaims", "on_device_removed", "on_user_removed", "process", "reclaim"]
