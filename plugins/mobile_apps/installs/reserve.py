"""Checking a request's licenses, and recording its installs before Apple is asked.

:func:`reserve` checks that the licenses of an asset suffice for a request and records its
installs ``associating`` in one write transaction, one request at a time per asset (SQLite
writes one at a time; PostgreSQL locks the asset's applications), counting the licenses other
installs are still asking Apple for: of two requests at once for the last license, the second
is refused here, before Apple is asked.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import uuid4

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col

from mdm_core.db.errors import database_error
from mdm_core.errors import MdmError
from mdm_core.models import utcnow

from ..accounts import check_account
from ..models import Install, MobileApp
from ..vpp_port import VppPort, VppUnavailable
from . import wording
from .wording import Said

if TYPE_CHECKING:
    from mdm_core.host import Host

    from .request import Asset


def fresh_counts(host: Host, asset: Asset) -> None:
    """Take the counts and flags from the VPP mirror (the events may lag behind)."""
    try:
        row = VppPort(host).asset(asset.account, asset.adam_id, asset.pricing_param)
    except VppUnavailable:
        raise
    except MdmError:
        check_account(host, [asset.account], asset.label)  # its account renamed, mobile_apps not told yet: says so
        raise
    if row is None:
        raise wording.Refused(wording.gone_from_account(asset.label, asset.account))
    asset.available_count = int(row.get("availableCount") or 0)
    asset.device_assignable = bool(row.get("deviceAssignable"))


#: up to this many targets, the mirror is asked about each; more, the asset's licenses are read once
FEW = 5


def holding(host: Host, asset: Asset, kind: str, targets: Collection[str]) -> set[str]:
    """The ``targets`` (serials, or users for ``kind`` ``user``) that hold a license of ``asset``
    in the mirror: a read per target when few, else one read of the asset's licenses."""
    port, key = VppPort(host), "serialNumber" if kind == "device" else "clientUserId"
    if len(targets) > FEW:
        rows = port.licenses(asset.account, asset.adam_id)
    else:
        by = "serial_number" if kind == "device" else "client_user_id"
        rows = [r for t in targets for r in port.licenses(asset.account, asset.adam_id, **{by: t})]
    return {str(r.get(key)) for r in rows if r["pricingParam"] == asset.pricing_param} & set(targets)


def short(asset: Asset, needed: int, *, taken: int = 0, counted: bool = True) -> Said | None:
    """The refusal of each target of a request whose ``needed`` new licenses outnumber the
    available ones (devices and users counted together; ``taken`` of them by installs still
    asking Apple), else ``None``; ``counted``: the line says how many were needed."""
    available = max(0, asset.available_count - taken)
    if needed and available < needed:
        return wording.not_enough_licenses(available, asset.account, asset.adam_id, needed if counted else None, taken=taken)
    return None


@dataclass
class Intents:
    """The installs a request recorded ``associating`` before asking Apple (ids by device and by
    user), or why it records none: ``refusal``, the request is short of licenses."""

    devices: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    refusal: Said | None = None


#: the installs that may be taking a license Apple has not confirmed to the mirror yet
IN_FLIGHT = ("associating", "pending")


def reserve(host: Host, asset: Asset, serials: list[str], users: list[str], *, counted: bool = True) -> Intents:
    """Check the licenses of ``asset`` and record the installs of ``serials`` and ``users`` as
    ``associating`` (committed) before Apple is asked, so that a process killed after Apple
    licensed them leaves a record the installs job completes.

    The check and the record are one write transaction, one at a time per asset (SQLite
    writes one at a time; PostgreSQL locks the asset's applications): the counts are read
    again in it, less the licenses of installs still asking Apple that the mirror does not
    hold yet. Two requests for the last license: the second is refused here, nothing recorded,
    instead of both asking Apple and the second failing with 9709. A database that cannot be
    written stops here, before Apple is called, with one line."""
    if not serials and not users:
        return Intents()
    refusal = short(asset, len(serials) + len(users), counted=counted)  # the counts read at the start say it already
    if refusal is not None:
        return Intents(refusal=refusal)

    def work(session: Session) -> Intents:
        session.execute(_asset_apps(asset).with_for_update())
        refused = short(asset, len(serials) + len(users), taken=_taken_with_counts(host, session, asset, serials, users), counted=counted)
        if refused is not None:
            return Intents(refusal=refused)
        return Intents(_record(session, asset, "device", serials), _record(session, asset, "user", users))

    try:
        return host.db.run_write(work)
    except DBAPIError as exc:  # in the host's words (never the SQL or its values), on SQLite as on PostgreSQL
        raise MdmError(
            f"cannot record the install: {database_error(exc, host.db)}; nothing was asked of Apple: run the install again once the database takes writes"
        ) from None


def _asset_apps(asset: Asset) -> Select[int | None]:
    """The ids of the asset's applications: the rows a request locks to check its licenses."""
    return select(col(MobileApp.id)).where(
        col(MobileApp.account) == asset.account, col(MobileApp.adam_id) == asset.adam_id, col(MobileApp.pricing_param) == asset.pricing_param
    )


def _of_asset(asset: Asset, kind: str) -> tuple[ColumnElement[bool], ...]:
    """The conditions of the installs of ``asset`` for one kind of target."""
    return (
        col(Install.account) == asset.account,
        col(Install.adam_id) == asset.adam_id,
        col(Install.pricing_param) == asset.pricing_param,
        col(Install.kind) == kind,
    )


def _taken_with_counts(host: Host, session: Session, asset: Asset, serials: list[str], users: list[str]) -> int:
    """:func:`_taken`, with the asset's counts read fresh around it until they did not move: the
    mirror is read apart from the installs, so an install that finished meanwhile (no longer in
    flight, its license now counted by the mirror) would otherwise be counted by neither."""
    for _ in range(5):  # the counts move only when an install or a sync commits: a few tries at most
        fresh_counts(host, asset)
        before = (asset.available_count, asset.device_assignable)
        taken = _taken(host, session, asset, serials, users)
        fresh_counts(host, asset)
        if (asset.available_count, asset.device_assignable) == before:
            break
    return taken


def _taken(host: Host, session: Session, asset: Asset, serials: list[str], users: list[str]) -> int:
    """Licenses of ``asset`` that other installs are asking Apple for (``associating``, or
    ``pending`` Apple's answer) and the mirror does not count yet: their targets hold none there."""
    taken = 0
    for kind, ours in (("device", serials), ("user", users)):
        others = session.execute(select(col(Install.target)).where(*_of_asset(asset, kind), col(Install.status).in_(IN_FLIGHT))).scalars()
        asking = set(others) - set(ours)  # few: the requests of this very moment
        taken += len(asking - holding(host, asset, kind, asking))
    return taken


def _record(session: Session, asset: Asset, kind: str, targets: list[str]) -> dict[str, int]:
    """Record the installs of ``targets`` ``associating`` in the caller's transaction; an install
    asked again while Apple was being asked (or the asking was killed) is the same install."""
    if not targets:
        return {}
    waiting = session.execute(select(Install).where(*_of_asset(asset, kind), col(Install.target).in_(targets), col(Install.status).in_(IN_FLIGHT))).scalars()
    rows: dict[str, Install] = {row.target: row for row in waiting}
    for t in (t for t in targets if t not in rows):
        rows[t] = Install(
            account=asset.account, adam_id=asset.adam_id, pricing_param=asset.pricing_param, kind=kind, target=t, source="request", status="associating"
        )
    token, now = uuid4().hex, utcnow()  # the request's mark (:mod:`.resume`)
    for row in rows.values():
        row.status, row.error, row.updated_at = "associating", None, now
        row.request_token, row.request_started_at = token, now
        session.add(row)
    session.flush()
    return {t: int(row.id) for t, row in rows.items()}  # type: ignore[arg-type]  # ids set by the flush above


def intent(session: Session, install_id: int | None) -> Install | None:
    """The install a request recorded (``install_id``), locked until the caller's transaction
    ends (PostgreSQL; SQLite writes one at a time): the installs job does not take it over
    between the request's read and its write (:mod:`.resume`)."""
    return session.get(Install, install_id, with_for_update=True) if install_id is not None else None
