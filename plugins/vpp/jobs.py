"""Scheduled syncs: one job per account at its "Account Synchronization Interval (sec)".

An account's next scheduled sync is one interval after its last sync (scheduled or manual),
at once if that is past: restarting ``mdm run`` delays nothing.
"""

from __future__ import annotations

import logging
import weakref
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from mdm_core.errors import describe

from .models import VppAccount

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.scheduler import HostScheduler

PREFIX = "vpp.sync."
log = logging.getLogger(__name__)
_told: "weakref.WeakKeyDictionary[HostScheduler, dict[str, str]]" = weakref.WeakKeyDictionary()  # problems already logged


def refresh_account_jobs(host: "Host", scheduler: "HostScheduler") -> None:
    """Add, re-time or remove per-account jobs to match the accounts table (no restart needed).

    An account whose job cannot be scheduled (an interval stored before it was validated) is
    logged and left out; the other accounts are scheduled as usual.
    """
    with host.db.session() as session:
        accounts = {name: interval for name, interval in session.execute(select(VppAccount.name, VppAccount.interval_seconds))}
    for name, interval in accounts.items():
        try:
            scheduler.ensure(PREFIX + name, interval, lambda name=name: _scheduled_sync(host, name), plugin="vpp",
                             last_done=lambda name=name: last_sync(host, name))
        except Exception as exc:
            scheduler.remove(PREFIX + name)
            message = f"account {name} is not scheduled: {describe(exc)}: fix it with `mdm vpp account set {name} --interval SECONDS`"
            told = _told.setdefault(scheduler, {})
            log.log(logging.DEBUG if told.get(name) == message else logging.ERROR, "%s", message)  # once, not every refresh
            told[name] = message
    for job in [j for j in scheduler.jobs if j.startswith(PREFIX) and j[len(PREFIX):] not in accounts]:
        scheduler.remove(job)


def last_sync(host: "Host", name: str) -> datetime | None:
    """When the account last synced (any trigger, ok or not), or ``None``."""
    with host.db.session() as session:
        return session.execute(select(VppAccount.last_sync_at).where(VppAccount.name == name)).scalar_one_or_none()


def _scheduled_sync(host: "Host", name: str) -> None:
    """A scheduled sync, through the same ``mdm_vpp_sync`` hook as ``mdm vpp sync``; a failed
    one raises so the scheduler logs and records it."""
    from mdm_core.errors import MdmError

    [report] = host.pm.hook.mdm_vpp_sync(host=host, account=name, full=False, trigger="schedule", wait=None)
    if report["status"] == "error":
        raise MdmError(f"sync of {name} failed: {report['error']}")
