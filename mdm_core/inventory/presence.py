"""Which devices and users are in the inventory now: for work decided while they were away
(a removal's reclaim or a pending install retried later) that must not act on one that is back,
or act for one that is gone."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlmodel import Session, col

from mdm_core.models import Device, MdmUser


def in_inventory(session: Session, targets: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of ``targets`` — ``("device", serial)`` or ``("user", MDM user id)`` pairs — that
    are enrolled devices or MDM users now (two queries at most)."""
    pairs = set(targets)
    serials = {target for kind, target in pairs if kind == "device"}
    users = {target for kind, target in pairs if kind == "user"}
    here: set[tuple[str, str]] = set()
    if serials:
        here |= {("device", s) for s in session.execute(select(col(Device.serial_number)).where(col(Device.serial_number).in_(serials))).scalars()}
    if users:
        here |= {("user", u) for u in session.execute(select(col(MdmUser.id)).where(col(MdmUser.id).in_(users))).scalars()}
    return here
