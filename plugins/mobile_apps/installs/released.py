"""User licenses Apple granted and let go before the install was written: the user removed
from this MDM, its VPP user retired at Apple, or the license taken back, while the request
waited on Apple. Their installs queue nothing (:func:`.request._queue_for_users`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlmodel import Session, col

from mdm_core.models import MdmUser

from ..vpp_port import VppPort

if TYPE_CHECKING:
    from mdm_core.host import Host

LIVE = ("Registered", "Associated")


def let_go(host: Host, session: Session, account: str, adam_id: str, pricing: str, users: list[str]) -> dict[str, str]:
    """Of ``users``, those who hold no license of the asset any more, with why (``removed``,
    ``retired``, ``reclaimed``): the inventory as ``session`` reads it (the caller's write), the
    VPP mirror as it is now (the VPP plugin records a retirement and a reclaim there)."""
    if not users:
        return {}
    known = set(session.execute(select(col(MdmUser.id)).where(col(MdmUser.id).in_(users))).scalars())
    port = VppPort(host)
    why = {user: "removed" for user in users if user not in known}
    for user in users:
        if user in known and not any(lic["pricingParam"] == pricing for lic in port.licenses(account=account, adam_id=adam_id, client_user_id=user)):
            why[user] = "reclaimed"
    if "reclaimed" in why.values():  # the users are read only then (a retirement takes the licenses too)
        live = {u["clientUserId"] for u in port.users(account) if u["status"] in LIVE}
        why.update({user: "retired" for user, reason in why.items() if reason == "reclaimed" and user not in live})
    return why
