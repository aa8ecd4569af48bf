"""Read the mirror: assets, licenses and users with Apple's field names (plus ``account``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mdm_core.models import Device, MdmUser

from .accounts import get_account
from .apple.protocol import apple_asset, apple_user, invitation_url
from .models import VppAccount, VppAsset, VppLicense, VppUser
from .payloads import Asset, License, MirroredUser

if TYPE_CHECKING:
    from mdm_core.host import Host


def _account_filter(session: Any, query: Any, model: Any, account: str | None) -> Any:
    if account is None:
        return query
    return query.where(model.account_id == get_account(session, account).id)


def list_assets(host: "Host", account: str | None = None) -> list[Asset]:
    """Mirrored assets, by account then adamId."""
    with host.db.session() as session:
        query = select(VppAsset, VppAccount.name).join(VppAccount, VppAccount.id == VppAsset.account_id)
        query = _account_filter(session, query, VppAsset, account).order_by(VppAccount.name, VppAsset.adam_id, VppAsset.pricing_param)
        return [apple_asset(a.model_dump(), n) for a, n in session.execute(query).all()]


def list_licenses(host: "Host", account: str | None = None, adam_id: str | None = None, serial_number: str | None = None, client_user_id: str | None = None) -> list[License]:
    """Mirrored licenses, with the enrolled device or MDM user they are linked to."""
    with host.db.session() as session:
        query = (
            select(VppLicense, VppAccount.name, Device.serial_number, MdmUser.id)
            .join(VppAccount, VppAccount.id == VppLicense.account_id)
            .outerjoin(Device, (VppLicense.kind == "device") & (Device.serial_number == VppLicense.target))
            .outerjoin(MdmUser, (VppLicense.kind == "user") & (MdmUser.id == VppLicense.target))
        )
        query = _account_filter(session, query, VppLicense, account)
        if adam_id:
            query = query.where(VppLicense.adam_id == adam_id)
        if serial_number:
            query = query.where(VppLicense.kind == "device", VppLicense.target == serial_number.upper())
        if client_user_id:
            query = query.where(VppLicense.kind == "user", VppLicense.target == client_user_id)
        query = query.order_by(VppAccount.name, VppLicense.adam_id, VppLicense.kind, VppLicense.target)
        rows = []
        for lic, name, device, user in session.execute(query).all():
            row: dict[str, Any] = {"account": name, "adamId": lic.adam_id, "pricingParam": lic.pricing_param}
            if lic.kind == "device":
                row["serialNumber"] = lic.target
                row["enrolled"] = device is not None
            else:
                row["clientUserId"] = lic.target
                row["mdmUser"] = user
            rows.append(row)
        return rows


def list_users(host: "Host", account: str | None = None) -> list[MirroredUser]:
    """Mirrored VPP users, linked to MDM users by ``clientUserId``, with invitation URLs."""
    with host.db.session() as session:
        query = (
            select(VppUser, VppAccount.name, VppAccount.invitation_template, MdmUser.id)
            .join(VppAccount, VppAccount.id == VppUser.account_id)
            .outerjoin(MdmUser, MdmUser.id == VppUser.client_user_id)
        )
        query = _account_filter(session, query, VppUser, account).order_by(VppAccount.name, VppUser.client_user_id)
        return [
            {"account": name, **apple_user(u.model_dump(), {mdm_user} if mdm_user else set()),
             "invitationUrl": user_invitation_url(template, u.invite_code) if u.status == "Registered" else None}
            for u, name, template, mdm_user in session.execute(query).all()
        ]


def user_invitation_url(template: str | None, invite_code: str | None) -> str | None:
    """The invitation URL from the stored ``invitationEmail`` template, when both are known."""
    return invitation_url(template, invite_code) if template and invite_code else None
