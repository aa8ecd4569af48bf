"""Installs a request left ``associating``: the ``mobile_apps.installs`` job takes them over.

A request records its installs ``associating`` with its mark (``request_token``,
``request_started_at``) before asking Apple (:func:`.reserve.reserve`). One still so
``interrupted_after`` later was left by a process that died; the admin's run of the job
(``mdm jobs run mobile_apps.installs``) takes over younger ones too, whose request may still be
under way elsewhere. Either way the switch to ``pending`` is a compare-and-set on the status and
the mark the job read: a request that recorded its outcome in between keeps it (the job asks
Apple nothing for it), and one asked again since (a new mark) is left to its new request; an
account removed in between still ends it ``canceled``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import case, select, update
from sqlmodel import Session, col

from mdm_core.db.typed import rowcount
from mdm_core.models import utcnow

from ..accounts import removed_reason
from ..models import Install
from ..settings import settings

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)

#: an install's error once the job took it over, by what its request was doing
INTERRUPTED = "interrupted while Apple was asked; asking again"
IN_FLIGHT = "its request was still asking Apple when the installs job was run; asked again by the job"


def resume_associating(host: Host, *, resume_all: bool) -> dict[str, int]:
    """Take over the installs left ``associating`` ``interrupted_after`` ago (any age with
    ``resume_all``); returns how many were interrupted, still in flight (canceled ones, their
    account removed, among them), and kept by their request (it recorded an outcome, or asked
    again, after the job read them)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=settings(host).interrupted_after)
    with host.db.session() as session:
        read = list(
            session.execute(select(Install).where(col(Install.status) == "associating", col(Install.updated_at) <= (now if resume_all else cutoff))).scalars()
        )
    if not read:
        return {}
    in_flight = {int(r.id) for r in read if r.id is not None and _started(r) > cutoff}
    taken = host.db.run_write(lambda session: [r for r in read if _take_over(session, r, IN_FLIGHT if r.id in in_flight else INTERRUPTED, now)])
    counts = {
        "interrupted": sum(1 for r in taken if r.id not in in_flight),
        "in_flight": sum(1 for r in taken if r.id in in_flight),
        "kept": len(read) - len(taken),
    }
    if counts["interrupted"]:
        log.warning("%d install(s) were interrupted while Apple was asked for their licenses; asking again", counts["interrupted"])
    if counts["in_flight"]:
        log.warning(
            "%d install(s) still being asked for by their request (started less than %gs ago, maybe in another process); the job asks Apple too,"
            " and the install takes whichever answer is recorded first",
            counts["in_flight"],
            settings(host).interrupted_after,
        )
    if counts["kept"]:
        log.info("%d install(s) left to their request: it recorded an outcome, or was asked again, after the job read them", counts["kept"])
    return counts


def _started(row: Install) -> datetime:
    """When the request asking Apple for ``row`` started (installs recorded before the mark: their last update)."""
    return row.request_started_at or row.updated_at


def _take_over(session: Session, row: Install, said: str, now: datetime) -> bool:
    """Switch ``row`` to ``pending`` if its status and mark are still those read, or to
    ``canceled`` if its account was removed meanwhile (:func:`..accounts.account_removed` marks
    its error, even between the job's read and this write); whether it was switched."""
    removed = col(Install.error) == removed_reason(row.account)
    switched = session.execute(
        update(Install)
        .where(col(Install.id) == row.id, col(Install.status) == "associating", col(Install.request_token).is_not_distinct_from(row.request_token))
        .values(status=case((removed, "canceled"), else_="pending"), error=case((removed, col(Install.error)), else_=said), updated_at=now, request_token=None)
        .execution_options(synchronize_session=False)
    )
    return rowcount(switched) == 1
