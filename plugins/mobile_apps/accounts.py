"""mobile_apps files its rows under a VPP account's name: a renamed account's rows follow it.

``vpp_account_renamed`` moves every application, metadata row, install and reclaim filed under
the old name to the new one, in one transaction with the event's guard (:func:`.catalog.once`):
delivered twice it changes nothing, and renames delivered in order end at the last name.

Until that event is applied (the rename's own command delivers it at once; another process may
ask in between, or a failed delivery waits for its retry) the old name is unknown to the VPP
plugin: an install says so in one line (:func:`check_account`), a reclaim too, and the
mobile_apps jobs keep their pending installs and reclaims pending, asked again once they follow.

``vpp_account_removed`` closes what still waits under the removed account's name (its installs
pending or invited ``canceled``, its pending reclaims ``canceled``, each with the reason): left
open, another account renamed or added to that name later would be asked for them. An install
still ``associating`` (Apple asked, or a process that died asking) is not touched under the
request's feet: it is marked with the reason, and the installs job, resuming it once
interrupted, ends it ``canceled`` instead of pending (:func:`.installs.pending.retry_pending`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlmodel import Session, col

from mdm_core.db.typed import table_of
from mdm_core.errors import MdmError
from mdm_core.models import utcnow

from .models import AppMetadata, Install, MobileApp, Reclaim
from .vpp_port import VppPort

if TYPE_CHECKING:
    from mdm_core.host import Host

#: the tables whose rows name their VPP account (``account``)
BY_ACCOUNT = (MobileApp, AppMetadata, Install, Reclaim)


def account_renamed(session: Session, previous: str, account: str) -> None:
    """File under ``account`` what is filed under ``previous``. An application already under
    ``account`` gives way to the renamed account's application of the same asset and platform
    (which keeps its id): one left by an account once so named (removed since: retired, kept as
    history), or one a sync of the new name published while this event waited."""
    from .reclaims import lock_in_id_order

    apps = table_of(MobileApp)
    moving = apps.alias("moving")
    same = select(moving.c.id).where(
        moving.c.account == previous,
        moving.c.adam_id == apps.c.adam_id,
        moving.c.pricing_param == apps.c.pricing_param,
        moving.c.platform == apps.c.platform,
    )
    session.execute(delete(apps).where(apps.c.account == account, same.exists()))
    for model in BY_ACCOUNT:
        table = table_of(model)
        if model is Reclaim:  # a settle may hold some: locked in its order first (no deadlock with it)
            lock_in_id_order(session, table.c.account == previous, only=(table.c.id,))
        session.execute(update(table).where(table.c.account == previous).values(account=account))


def removed_reason(account: str) -> str:
    """Why an install or reclaim of a removed account was closed."""
    return f"its VPP account {account} was removed"


def removed_meanwhile(row: Install) -> bool:
    """Whether the install's VPP account was removed while Apple was asked (its ``error`` is the
    mark :func:`account_removed` leaves on an install ``associating``)."""
    return row.error == removed_reason(row.account)


def wait_or_cancel(row: Install) -> bool:
    """An install whose license Apple has not confirmed ends ``pending`` (asked again later), or
    ``canceled`` when its account was removed meanwhile (:func:`removed_meanwhile`): another
    account may take the name, and must not be asked for it. Returns whether it was canceled."""
    canceled = removed_meanwhile(row)
    row.status, row.updated_at = "canceled" if canceled else "pending", utcnow()
    return canceled


def account_removed(host: Host, session: Session, account: str) -> None:
    """Close what waits under the removed ``account``: installs ``pending`` or ``invited``,
    pending reclaims, and failed or irrevocable ones still open (nothing can reclaim their
    licenses under that name any more) end ``canceled`` with :func:`removed_reason` (a
    redelivered event finds none left); installs ``associating`` keep their status and carry the reason, which the
    installs job's resume of an interrupted install turns into ``canceled``."""
    from .reclaims import cancel_reclaims, close_ended, open_ended

    reason, now = removed_reason(account), utcnow()
    waiting = select(Install).where(col(Install.account) == account, col(Install.status).in_(("pending", "invited")))
    for row in session.execute(waiting).scalars():
        row.status, row.error, row.updated_at = "canceled", reason, now
        session.add(row)
    asking = select(Install).where(col(Install.account) == account, col(Install.status) == "associating")
    for row in session.execute(asking).scalars():
        row.error = reason  # updated_at kept: its request may still be in flight (interrupted_after)
        session.add(row)
    pending = select(Reclaim).where(col(Reclaim.account) == account, col(Reclaim.status) == "pending")
    cancel_reclaims(host, session, list(session.execute(pending).scalars()), reason)
    ended = select(Reclaim).where(col(Reclaim.account) == account, open_ended())
    close_ended(host, session, list(session.execute(ended).scalars()), "canceled", reason)


#: what the admin does about an application whose VPP account was removed, by what was asked
REMOVED = {
    "install": "add it again to install its applications",
    "reclaim": "its licenses are taken back in Apple School Manager or Apple Business Manager (Apps and Books), or here once the account is added again",
}


def check_account(host: Host, accounts: Iterable[str], what: str, action: str = "install") -> None:
    """Raise a one-line ``MdmError`` when ``what`` is filed under ``accounts`` none of which the
    VPP plugin knows any more (renamed, and mobile_apps not told yet; or removed)."""
    names = sorted(a["name"] for a in VppPort(host).accounts())
    filed = sorted(set(accounts))
    if filed and not set(filed) & set(names):
        raise MdmError(unknown_account(filed[0], names, what, action))


def unknown_account(account: str, names: list[str], what: str, action: str = "install") -> str:
    """Why ``what``, filed under the unknown ``account``, cannot be asked of Apple now (to
    ``install`` or ``reclaim``): removed, or renamed and mobile_apps not told yet (the same line
    on every surface, the web's reworded)."""
    known = f"accounts: {', '.join(names)}" if names else "no account"
    return (
        f"{what} is filed under VPP account '{account}', which is not on this host any more ({known}): removed, {REMOVED[action]}; "
        "renamed, its applications follow the new name as soon as mobile_apps has heard of the rename "
        "(`mdm events failures` shows a delivery that failed): try again then"
    )
