"""Read the mirror: assets, licenses and users with Apple's field names (plus ``account``).

Each list is one query and one row converter. The ``iter_*`` forms stream them
(:func:`mdm_core.db.stream.stream_rows`: constant memory, one read transaction,
``offset``/``limit`` in SQL) and check their filters before the first row is read; the
``list_*`` forms are their lists; the console and the REST API page the same queries in the
database (``mdm_core.web.paging``). Rows come in a stable order that follows the tables'
primary keys: account name, then the key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import func, null, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from mdm_core.db.bulk import IN_CHUNK, in_chunks
from mdm_core.db.stream import snapshot, stream_in, stream_rows
from mdm_core.errors import NotFound, UsageError, describe
from mdm_core.models import Device, MdmUser

from .apple.protocol import apple_asset, apple_user, invitation_url
from .models import VppAccount, VppAsset, VppAssetCount, VppLicense, VppUser
from .payloads import Asset, License, MirroredUser, UserHold

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)
T = TypeVar("T")
K = TypeVar("K")
R = TypeVar("R")

#: The keyset of each list: NOT NULL columns ending with the primary key.
ASSET_KEY = (VppAsset.account_id, VppAsset.adam_id, VppAsset.pricing_param)
LICENSE_KEY = (VppLicense.account_id, VppLicense.adam_id, VppLicense.pricing_param, VppLicense.kind, VppLicense.target)
USER_KEY = (VppUser.account_id, VppUser.client_user_id)


def get_account(session: Session, name: str) -> VppAccount:
    """The account called ``name``, or a one-line error listing the known ones."""
    account = session.execute(select(VppAccount).where(col(VppAccount.name) == name)).scalar_one_or_none()
    if account is None:
        names = list(session.execute(select(col(VppAccount.name)).order_by(col(VppAccount.name))).scalars())
        known = f"known accounts: {', '.join(names)}" if names else "add one with `mdm vpp account add`"
        raise NotFound(f"no VPP account named '{name}' ({known})")
    return account


def account_id(session: Session, account: str | None) -> int | None:
    """The id of the account named ``account`` (an unknown name raises ``MdmError``), None for all."""
    return None if account is None else get_account(session, account).id


# ---------------------------------------------------------------------- assets


def assets_query(account_id: int | None = None, labels: Any = None) -> Any:
    """Rows ``(VppAsset, account name, name, icon URL)``; name and icon come from ``labels``
    (see :func:`label_source`), None without it."""
    if labels is None:
        query = select(VppAsset, col(VppAccount.name), null().label("name"), null().label("icon_url"))
    else:
        query = select(VppAsset, col(VppAccount.name), labels.c.name, labels.c.icon_url).outerjoin(labels, labels.c.adam_id == col(VppAsset.adam_id))
    query = query.join(VppAccount, col(VppAccount.id) == VppAsset.account_id)
    return query if account_id is None else query.where(col(VppAsset.account_id) == account_id)


def asset_row(asset: VppAsset, account: str, *_labels: Any) -> Asset:
    """An asset as Apple names its fields, with ``account``."""
    return apple_asset(asset.model_dump(), account)


def labelled_asset_row(asset: VppAsset, account: str, name: str | None, icon_url: str | None) -> dict[str, Any]:
    """An asset with the ``name`` and ``iconUrl`` the console shows."""
    return {**apple_asset(asset.model_dump(), account), "name": name, "iconUrl": icon_url}


def iter_assets(host: Host, account: str | None = None, *, offset: int = 0, limit: int | None = None) -> Iterator[Asset]:
    """Mirrored assets, by account then adamId, streamed."""
    with host.db.session() as session:  # the account is checked now, before any row is read
        query = assets_query(account_id(session, account)).order_by(VppAccount.name, VppAsset.adam_id, VppAsset.pricing_param)
    return (asset_row(*r) for r in stream_rows(host.db, query, offset=offset, limit=limit))


def list_assets(host: Host, account: str | None = None) -> list[Asset]:
    """Mirrored assets, by account then adamId."""
    return list(iter_assets(host, account))


def label_source(host: Host) -> Any:
    """The names and icons another plugin offers (``mdm_vpp_asset_labels``), or None."""
    try:
        return host.pm.hook.mdm_vpp_asset_labels(host=host)
    except Exception as exc:  # names are a nicety: the pages work without them
        log.warning("asset names are not available (mdm_vpp_asset_labels failed): %s", describe(exc))
        return None


def with_labels(host: Host, read: Callable[[Any], T]) -> T:
    """``read(labels)`` with the label source, or ``read(None)`` when there is none or the
    database refuses the plugin's selectable."""
    labels = label_source(host)
    if labels is None:
        return read(None)
    try:
        return read(labels)
    except SQLAlchemyError as exc:
        log.warning("asset names are not available (the mdm_vpp_asset_labels query failed): %s", describe(exc))
        return read(None)


#: Apple's pricingParam values: standard quality and high quality.
PRICING_PARAMS = ("STDQ", "PLUS")


def pricing_param(value: str) -> str:
    """A pricingParam as given (any case: ``stdq``) in Apple's spelling; another value is a
    ``UsageError`` naming the two (it used to answer as an asset missing from the account)."""
    pricing = value.strip().upper()
    if pricing not in PRICING_PARAMS:
        raise UsageError(f"unknown pricing '{value}': use {' or '.join(PRICING_PARAMS)} (any case)")
    return pricing


def asset_history_query(account_id: int | None, adam_id: str, pricing_param: str) -> Any:
    """The asset's recorded counts (``VppAssetCount`` rows)."""
    return select(VppAssetCount).where(
        col(VppAssetCount.account_id) == account_id, col(VppAssetCount.adam_id) == adam_id, col(VppAssetCount.pricing_param) == pricing_param
    )


def history_row(row: VppAssetCount) -> dict[str, Any]:
    """One recorded count, with Apple's field names."""
    return {
        "at": row.at,
        "assignedCount": row.assigned_count,
        "availableCount": row.available_count,
        "retiredCount": row.retired_count,
        "totalCount": row.total_count,
    }


def asset_history(host: Host, account_id: int, adam_id: str, pricing_param: str, limit: int = 500) -> list[dict[str, Any]]:
    """The asset's latest ``limit`` recorded counts, oldest first (the console's chart)."""
    with host.db.session() as session:
        rows = list(session.execute(asset_history_query(account_id, adam_id, pricing_param).order_by(col(VppAssetCount.id).desc()).limit(limit)).scalars())
    return [history_row(r) for r in reversed(rows)]


# ---------------------------------------------------------------------- licenses


class LicenseDetail(License, total=False):
    """A license as the console shows it: with the device's owner or the VPP user's email."""

    owner: str | None
    email: str | None


def licenses_query(
    account_id: int | None = None,
    adam_id: str | None = None,
    pricing_param: str | None = None,
    serial_number: str | None = None,
    client_user_id: str | None = None,
    kind: str | None = None,
) -> Any:
    """Rows for :func:`license_row`, filtered by whatever is given."""
    query = (
        select(VppLicense, col(VppAccount.name), col(Device.serial_number), col(Device.owner), col(MdmUser.id), col(VppUser.email))
        .join(VppAccount, col(VppAccount.id) == VppLicense.account_id)
        .outerjoin(Device, (col(VppLicense.kind) == "device") & (col(Device.serial_number) == VppLicense.target))
        .outerjoin(MdmUser, (col(VppLicense.kind) == "user") & (col(MdmUser.id) == VppLicense.target))
        .outerjoin(
            VppUser, (col(VppLicense.kind) == "user") & (col(VppUser.account_id) == VppLicense.account_id) & (col(VppUser.client_user_id) == VppLicense.target)
        )
    )
    if account_id is not None:
        query = query.where(col(VppLicense.account_id) == account_id)
    if adam_id:
        query = query.where(col(VppLicense.adam_id) == adam_id)
    if pricing_param:
        query = query.where(col(VppLicense.pricing_param) == pricing_param)
    if kind:
        query = query.where(col(VppLicense.kind) == kind)
    if serial_number:
        query = query.where(col(VppLicense.kind) == "device", col(VppLicense.target) == serial_number.upper())
    if client_user_id:
        query = query.where(col(VppLicense.kind) == "user", col(VppLicense.target) == client_user_id)
    return query


def license_row(
    lic: VppLicense, name: str, device: str | None, owner: str | None, user: str | None, email: str | None, *, detail: bool = False
) -> LicenseDetail:
    """A license with the enrolled device or MDM user it is linked to (and, with ``detail``,
    the device's owner or the VPP user's email)."""
    row: LicenseDetail = {"account": name, "adamId": lic.adam_id, "pricingParam": lic.pricing_param}
    if lic.kind == "device":
        row["serialNumber"] = lic.target
        row["enrolled"] = device is not None
        if detail:
            row["owner"] = owner
    else:
        row["clientUserId"] = lic.target
        row["mdmUser"] = user
        if detail:
            row["email"] = email
    return row


def iter_licenses(
    host: Host,
    account: str | None = None,
    adam_id: str | None = None,
    serial_number: str | None = None,
    client_user_id: str | None = None,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> Iterator[License]:
    """Mirrored licenses with the enrolled device or MDM user each is linked to, by account,
    adamId, pricingParam, kind and holder; streamed.

    Read one account at a time (accounts by name, the database's collation as before), each in its primary key's order, so
    the database walks its index and the first row comes at once instead of after a sort of
    every license; an offset skips whole accounts by their count. Every account is read in one
    :func:`~mdm_core.db.stream.snapshot`: a sync committing meanwhile is in the next listing,
    not in the accounts this one has yet to read."""
    with host.db.session() as session:  # the account is checked now, before any row is read
        wanted = account_id(session, account)
    return _licenses_by_account(host, wanted, adam_id, serial_number, client_user_id, offset, limit)


def _licenses_by_account(
    host: Host, wanted: int | None, adam_id: str | None, serial_number: str | None, client_user_id: str | None, offset: int, limit: int | None
) -> Iterator[License]:
    """The licenses of the account ``wanted`` (None: of every account, by name), ``offset`` and ``limit`` applied."""
    with snapshot(host.db) as session:
        ids = [wanted] if wanted is not None else list(session.execute(select(col(VppAccount.id)).order_by(VppAccount.name)).scalars())
        for acc in ids:
            if limit is not None and limit <= 0:
                return
            if offset:
                query = licenses_query(acc, adam_id, None, serial_number, client_user_id)
                held = session.execute(select(func.count()).select_from(query.with_only_columns(col(VppLicense.target)).subquery())).scalar_one()
                if held <= offset:
                    offset -= held
                    continue
            query = licenses_query(acc, adam_id, None, serial_number, client_user_id)
            query = query.order_by(VppLicense.adam_id, VppLicense.pricing_param, VppLicense.kind, VppLicense.target)
            read = 0
            for r in stream_in(session, query, offset=offset, limit=limit):
                read += 1
                yield license_row(*r)
            offset = 0
            if limit is not None:
                limit -= read


def check_license_filters(session: Session, account_id: int | None, adam_id: str | None, serial_number: str | None, client_user_id: str | None) -> None:
    """Refuse a licenses filter naming nothing here (:class:`NotFound`, naming the list of the
    valid ones), where it listed no license as if there were none: an adamId that is not an
    asset of the mirror (of the account, when given), a serial number neither enrolled nor
    holding a license, a clientUserId neither a VPP user nor holding a license. A known one
    that holds no license is an empty list."""
    where = " of that account" if account_id is not None else ""
    if adam_id is not None:
        if not (adam_id.isascii() and adam_id.isdigit()):
            raise UsageError(f"adamId '{adam_id[:50]}' is not valid: an adamId is a number (see `mdm vpp assets`)")
        assets = select(col(VppAsset.adam_id)).where(col(VppAsset.adam_id) == adam_id)
        if account_id is not None:
            assets = assets.where(col(VppAsset.account_id) == account_id)
        if session.execute(assets.limit(1)).first() is None:
            raise NotFound(f"no asset {adam_id} in the mirror{where} (see `mdm vpp assets`; `mdm vpp sync` brings in a purchase)")
    if serial_number is not None and not _holder_known(session, "device", serial_number.upper(), account_id):
        raise NotFound(f"device {serial_number[:50]} is neither enrolled nor holding a license{where} (`mdm devices list` lists the enrolled ones)")
    if client_user_id is not None and not _holder_known(session, "user", client_user_id, account_id):
        raise NotFound(f"'{client_user_id[:50]}' is not a VPP user{where} (see `mdm vpp users`)")


def _holder_known(session: Session, kind: str, target: str, account_id: int | None) -> bool:
    """Whether ``target`` is a device enrolled / a VPP user (of the account), or holds a license."""
    if kind == "device":
        known: Any = select(col(Device.serial_number)).where(col(Device.serial_number) == target)
    else:
        known = select(col(VppUser.client_user_id)).where(col(VppUser.client_user_id) == target)
        if account_id is not None:
            known = known.where(col(VppUser.account_id) == account_id)
    held = select(col(VppLicense.target)).where(col(VppLicense.kind) == kind, col(VppLicense.target) == target)
    if account_id is not None:
        held = held.where(col(VppLicense.account_id) == account_id)
    return any(session.execute(q.limit(1)).first() is not None for q in (known, held))


def list_licenses(
    host: Host, account: str | None = None, adam_id: str | None = None, serial_number: str | None = None, client_user_id: str | None = None
) -> list[License]:
    """Mirrored licenses, with the enrolled device or MDM user they are linked to."""
    return list(iter_licenses(host, account, adam_id, serial_number, client_user_id))


def list_licenses_held(host: Host, account: str | None, adam_id: str | None, serial_numbers: Iterable[str], client_user_ids: Iterable[str]) -> list[License]:
    """The mirrored licenses held by these devices or users (of ``account`` and ``adam_id`` when
    given), in :func:`list_licenses`' order: one statement per :data:`~mdm_core.db.bulk.IN_CHUNK`
    targets, whatever the kind, so that many retried reclaims read their targets' licenses only,
    not every license of an asset that may hold 100,000."""

    def held(chunk: list[tuple[str, str]]) -> Any:
        return or_(
            *(
                (col(VppLicense.kind) == kind) & col(VppLicense.target).in_(ids)
                for kind in ("device", "user")
                if (ids := [target for k, target in chunk if k == kind])
            )
        )

    targets = sorted({("device", s.upper()) for s in serial_numbers} | {("user", u) for u in client_user_ids})
    return _read_in_chunks(
        host,
        account,
        lambda acc: licenses_query(acc, adam_id),
        targets,
        held,
        license_row,
        lambda lic: (lic["account"], lic["adamId"], lic["pricingParam"], "serialNumber" not in lic, lic.get("serialNumber") or lic.get("clientUserId") or ""),
    )


def user_holds(session: Session, account: str, adam_id: str, pricing_param: str, client_user_ids: list[str]) -> dict[str, UserHold]:
    """Whether each of these users holds a license of the asset in the mirror, and its VPP
    user's status (``None``: no VPP user of that id in the account), read in ``session``: one
    statement per table for the whole batch (by ``IN`` lists of ``IN_CHUNK``). The rows read are
    held until the caller's transaction ends (PostgreSQL ``FOR SHARE``, the VPP users before
    their licenses, the order a retirement writes them in; SQLite's write transaction keeps
    every other writer out already): a retirement or a reclaim committed by another process
    waits for the caller's write instead of slipping in between the check and it."""
    acc = account_id(session, account)
    out: dict[str, UserHold] = {user: {"holds": False, "status": None} for user in client_user_ids}
    for chunk in in_chunks(sorted(out)):
        users = select(col(VppUser.client_user_id), col(VppUser.status)).where(col(VppUser.account_id) == acc, col(VppUser.client_user_id).in_(chunk))
        for user, status in session.execute(users.with_for_update(read=True)).all():
            out[user]["status"] = status
        held = select(col(VppLicense.target)).where(
            col(VppLicense.account_id) == acc,
            col(VppLicense.adam_id) == adam_id,
            col(VppLicense.pricing_param) == pricing_param,
            col(VppLicense.kind) == "user",
            col(VppLicense.target).in_(chunk),
        )
        for user in session.execute(held.with_for_update(read=True)).scalars():
            out[user]["holds"] = True
    return out


def count_licenses(host: Host, account_id: int, adam_id: str, pricing_param: str, kind: str) -> int:
    """How many licenses of one kind an asset has in the mirror."""
    with host.db.session() as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(VppLicense)
                .where(
                    col(VppLicense.account_id) == account_id,
                    col(VppLicense.adam_id) == adam_id,
                    col(VppLicense.pricing_param) == pricing_param,
                    col(VppLicense.kind) == kind,
                )
            ).scalar_one()
        )


# ---------------------------------------------------------------------- users


#: clientUserIds per statement of :func:`list_users` (bound parameters, within every database's limit)
USERS_CHUNK = 1000


def users_query(account_id: int | None = None) -> Any:
    """Rows for :func:`user_row`."""
    query = (
        select(VppUser, col(VppAccount.name), col(VppAccount.invitation_template), col(MdmUser.id))
        .join(VppAccount, col(VppAccount.id) == VppUser.account_id)
        .outerjoin(MdmUser, col(MdmUser.id) == VppUser.client_user_id)
    )
    return query if account_id is None else query.where(col(VppUser.account_id) == account_id)


def user_row(user: VppUser, account: str, template: str | None, mdm_user: str | None) -> MirroredUser:
    """A VPP user as Apple names its fields, with the linked MDM user and the invitation URL."""
    return {
        "account": account,
        **apple_user(user.model_dump(), {mdm_user} if mdm_user else set()),
        "invitationUrl": user_invitation_url(template, user.invite_code) if user.status == "Registered" else None,
    }


def iter_users(host: Host, account: str | None = None, *, offset: int = 0, limit: int | None = None) -> Iterator[MirroredUser]:
    """Mirrored VPP users, linked to MDM users by ``clientUserId``, with invitation URLs; streamed."""
    with host.db.session() as session:  # the account is checked now, before any row is read
        query = users_query(account_id(session, account)).order_by(VppAccount.name, VppUser.client_user_id)
    return (user_row(*r) for r in stream_rows(host.db, query, offset=offset, limit=limit))


def list_users(host: Host, account: str | None = None, client_user_ids: Iterable[str] | None = None) -> list[MirroredUser]:
    """Mirrored VPP users, linked to MDM users by ``clientUserId``, with invitation URLs; of
    ``client_user_ids`` only when given (read :data:`USERS_CHUNK` ids a statement), in the same
    order (by account, then clientUserId)."""
    if client_user_ids is None:
        return list(iter_users(host, account))
    return _read_in_chunks(
        host,
        account,
        users_query,
        sorted(set(client_user_ids)),
        lambda chunk: col(VppUser.client_user_id).in_(chunk),
        user_row,
        lambda u: (u["account"], u["clientUserId"]),
        USERS_CHUNK,
    )


def _read_in_chunks(
    host: Host,
    account: str | None,
    query: Callable[[int | None], Any],
    keys: list[K],
    where: Callable[[list[K]], Any],
    row: Callable[..., R],
    order: Callable[[R], Any],
    size: int = IN_CHUNK,
) -> list[R]:
    """The rows of ``query`` (of the account named ``account``, None: every account) matching
    ``keys``, read in one session by one statement per ``size`` keys (``where`` of each slice),
    each turned into ``row`` and all sorted by ``order``: a batch of many keys reads those
    rows only, in a bounded number of bound parameters a statement."""
    with host.db.session() as session:
        base = query(account_id(session, account))
        found = [row(*r) for chunk in in_chunks(keys, size) for r in session.execute(base.where(where(chunk))).all()]
    return sorted(found, key=order)


def user_invitation_url(template: str | None, invite_code: str | None) -> str | None:
    """The invitation URL from the stored ``invitationEmail`` template, when both are known."""
    return invitation_url(template, invite_code) if template and invite_code else None
