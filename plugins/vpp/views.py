"""Read the mirror: assets, licenses and users with Apple's field names (plus ``account``).

The ``iter_*`` forms stream (:func:`mdm_core.db.stream.stream_rows`: constant memory, one read
transaction, ``offset``/``limit`` in SQL) and check their filters before the first row is read;
the ``list_*`` forms are their lists. Rows come in a stable order that follows the tables'
primary keys: account name, then the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import select
from sqlmodel import Session

from mdm_core.db.stream import stream_rows
from mdm_core.errors import MdmError
from mdm_core.models import Device, MdmUser

from .apple.protocol import apple_asset, apple_user, invitation_url
from .models import VppAccount, VppAsset, VppLicense, VppUser
from .payloads import Asset, License, MirroredUser

if TYPE_CHECKING:
    from mdm_core.host import Host


def get_account(session: Session, name: str) -> VppAccount:
    """The account called ``name``, or a one-line error listing the known ones."""
    account = session.execute(select(VppAccount).where(VppAccount.name == name)).scalar_one_or_none()
    if account is None:
        names = list(session.execute(select(VppAccount.name).order_by(VppAccount.name)).scalars())
        known = f"known accounts: {', '.join(names)}" if names else "add one with `mdm vpp account add`"
        raise MdmError(f"no VPP account named '{name}' ({known})")
    return account


def _account_filter(session: Any, query: Any, model: Any, account: str | None) -> Any:
    if account is None:
        return query
    return query.where(model.account_id == get_account(session, account).id)


def iter_assets(host: "Host", account: str | None = None, *, offset: int = 0, limit: int | None = None) -> Iterator[Asset]:
    """Mirrored assets, by account then adamId, streamed."""
    with host.db.session() as session:  # the account is checked now, before any row is read
        query = select(VppAsset, VppAccount.name).join(VppAccount, VppAccount.id == VppAsset.account_id)
        query = _account_filter(session, query, VppAsset, account).order_by(VppAccount.name, VppAsset.adam_id, VppAsset.pricing_param)
    return (apple_asset(a.model_dump(), n) for a, n in stream_rows(host.db, query, offset=offset, limit=limit))


def list_assets(host: "Host", account: str | None = None) -> list[Asset]:
    """Mirrored assets, by account then adamId."""
    return list(iter_assets(host, account))


class LicenseDetail(License, total=False):
    """A license as the console shows it: with the device's owner or the VPP user's email."""

    owner: str | None
    email: str | None


def _license_query(session: Any, account: str | None, adam_id: str | None, pricing_param: str | None, serial_number: str | None, client_user_id: str | None, kind: str | None = None) -> Any:
    query = (
        select(VppLicense, VppAccount.name, Device.serial_number, Device.owner, MdmUser.id, VppUser.email)
        .join(VppAccount, VppAccount.id == VppLicense.account_id)
        .outerjoin(Device, (VppLicense.kind == "device") & (Device.serial_number == VppLicense.target))
        .outerjoin(MdmUser, (VppLicense.kind == "user") & (MdmUser.id == VppLicense.target))
        .outerjoin(VppUser, (VppLicense.kind == "user") & (VppUser.account_id == VppLicense.account_id) & (VppUser.client_user_id == VppLicense.target))
    )
    query = _account_filter(session, query, VppLicense, account)
    if adam_id:
        query = query.where(VppLicense.adam_id == adam_id)
    if pricing_param:
        query = query.where(VppLicense.pricing_param == pricing_param)
    if kind:
        query = query.where(VppLicense.kind == kind)
    if serial_number:
        query = query.where(VppLicense.kind == "device", VppLicense.target == serial_number.upper())
    if client_user_id:
        query = query.where(VppLicense.kind == "user", VppLicense.target == client_user_id)
    return query


def _license_row(lic: VppLicense, name: str, device: str | None, owner: str | None, user: str | None, email: str | None, *, detail: bool = False) -> "LicenseDetail":
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


def iter_licenses(host: "Host", account: str | None = None, adam_id: str | None = None, serial_number: str | None = None,
                  client_user_id: str | None = None, *, offset: int = 0, limit: int | None = None) -> Iterator[License]:
    """Mirrored licenses with the enrolled device or MDM user each is linked to, by account,
    adamId, pricingParam, kind and holder; streamed."""
    with host.db.session() as session:  # the account is checked now, before any row is read
        query = _license_query(session, account, adam_id, None, serial_number, client_user_id)
    query = query.order_by(VppAccount.name, VppLicense.adam_id, VppLicense.pricing_param, VppLicense.kind, VppLicense.target)
    return (_license_row(*r) for r in stream_rows(host.db, query, offset=offset, limit=limit))  # type: ignore[misc]


def list_licenses(host: "Host", account: str | None = None, adam_id: str | None = None, serial_number: str | None = None, client_user_id: str | None = None) -> list[License]:
    """Mirrored licenses, with the enrolled device or MDM user they are linked to."""
    return list(iter_licenses(host, account, adam_id, serial_number, client_user_id))


LICENSE_KEY = ("account_id", "adam_id", "pricing_param", "kind", "target")


def licenses_page(host: "Host", *, account: str | None = None, adam_id: str | None = None, pricing_param: str | None = None,
                  serial_number: str | None = None, client_user_id: str | None = None, kind: str | None = None,
                  limit: int = 100, after: list[Any] | None = None) -> tuple[list[LicenseDetail], list[Any] | None]:
    """One page of licenses in primary-key order, from just after the key ``after``.

    Keyset paging on the primary key: every page costs the same, the 3,000th as the first.
    Returns the rows (with ``email`` / ``owner``) and the key to pass for the next page.
    """
    from sqlalchemy import tuple_

    columns = [getattr(VppLicense, k) for k in LICENSE_KEY]
    with host.db.session() as session:
        query = _license_query(session, account, adam_id, pricing_param, serial_number, client_user_id, kind)
        if after:
            query = query.where(tuple_(*columns) > tuple_(*after))
        rows = session.execute(query.order_by(*columns).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_key = [getattr(rows[-1][0], k) for k in LICENSE_KEY] if more else None
    return [_license_row(*r, detail=True) for r in rows], next_key


def count_licenses(host: "Host", account_id: int, adam_id: str, pricing_param: str, kind: str) -> int:
    """How many licenses of one kind an asset has in the mirror."""
    from sqlalchemy import func

    with host.db.session() as session:
        return int(session.execute(select(func.count()).select_from(VppLicense).where(
            VppLicense.account_id == account_id, VppLicense.adam_id == adam_id, VppLicense.pricing_param == pricing_param, VppLicense.kind == kind)).scalar_one())


def asset_history(host: "Host", account_id: int, adam_id: str, pricing_param: str, limit: int = 500) -> list[dict[str, Any]]:
    """The asset's recorded counts, oldest first (the latest ``limit``)."""
    from .models import VppAssetCount

    with host.db.session() as session:
        rows = list(session.execute(select(VppAssetCount).where(
            VppAssetCount.account_id == account_id, VppAssetCount.adam_id == adam_id, VppAssetCount.pricing_param == pricing_param,
        ).order_by(VppAssetCount.at.desc()).limit(limit)).scalars())  # type: ignore[union-attr]
    return [{"at": r.at, "assignedCount": r.assigned_count, "availableCount": r.available_count, "retiredCount": r.retired_count,
             "totalCount": r.total_count} for r in reversed(rows)]


def iter_users(host: "Host", account: str | None = None, *, offset: int = 0, limit: int | None = None) -> Iterator[MirroredUser]:
    """Mirrored VPP users, linked to MDM users by ``clientUserId``, with invitation URLs; streamed."""
    with host.db.session() as session:  # the account is checked now, before any row is read
        query = (
            select(VppUser, VppAccount.name, VppAccount.invitation_template, MdmUser.id)
            .join(VppAccount, VppAccount.id == VppUser.account_id)
            .outerjoin(MdmUser, MdmUser.id == VppUser.client_user_id)
        )
        query = _account_filter(session, query, VppUser, account).order_by(VppAccount.name, VppUser.client_user_id)
    return (
        {"account": name, **apple_user(u.model_dump(), {mdm_user} if mdm_user else set()),  # type: ignore[typeddict-item]
         "invitationUrl": user_invitation_url(template, u.invite_code) if u.status == "Registered" else None}
        for u, name, template, mdm_user in stream_rows(host.db, query, offset=offset, limit=limit)
    )


def list_users(host: "Host", account: str | None = None) -> list[MirroredUser]:
    """Mirrored VPP users, linked to MDM users by ``clientUserId``, with invitation URLs."""
    return list(iter_users(host, account))


def user_invitation_url(template: str | None, invite_code: str | None) -> str | None:
    """The invitation URL from the stored ``invitationEmail`` template, when both are known."""
    return invitation_url(template, invite_code) if template and invite_code else None
