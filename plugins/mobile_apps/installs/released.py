"""User licenses Apple granted and let go before the install was written: the user removed
from this MDM, its VPP user retired at Apple, or the license taken back, while the request
waited on Apple. Their installs queue nothing (:func:`.request._queue_for_users`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlmodel import Session, col

from mdm_core.db.bulk import in_chunks
from mdm_core.models import MdmUser

from ..vpp_port import LIVE_USER_STATUSES, VppPort

if TYPE_CHECKING:
    from mdm_core.host import Host


def let_go(host: Host, session: Session, account: str, adam_id: str, pricing: str, users: list[str]) -> dict[str, str]:
    """Of ``users``, those who hold no license of the asset any more, with why (``removed``,
    ``retired``, ``reclaimed``): the inventory and the VPP mirror (where the VPP plugin records
    a retirement and a reclaim) as ``session`` reads them (the caller's write), for the whole
    batch at once, and held so until it commits: a removal, retirement or reclaim another
    process commits meanwhile waits for the caller's write (check and write agree)."""
    if not users:
        return {}
    known: set[str] = set()
    for chunk in in_chunks(sorted(set(users))):
        known.update(session.execute(select(col(MdmUser.id)).where(col(MdmUser.id).in_(chunk)).with_for_update(read=True)).scalars())
    why = {user: "removed" for user in users if user not in known}
    for user, hold in VppPort(host).user_holds(session, account, adam_id, pricing, sorted(known)).items():
        if not hold["holds"]:  # a retirement takes the licenses too
            why[user] = "reclaimed" if hold["status"] in LIVE_USER_STATUSES else "retired"
    return why
