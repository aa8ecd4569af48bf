"""Scheduled syncs: one job per account at its "Account Synchronization Interval (sec)"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from .models import VppAccount

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.scheduler import HostScheduler

PREFIX = "vpp.sync."


def refresh_account_jobs(host: "Host", scheduler: "HostScheduler") -> None:
    """Add, re-time or remove per-account jobs to match the accounts table (no restart needed)."""
    with host.db.session() as session:
        accounts = {name: interval for name, interval in session.execute(select(VppAccount.name, VppAccount.interval_seconds))}
    for name, interval in accounts.items():
        scheduler.ensure(PREFIX + name, interval, lambda name=name: _scheduled_sync(host, name), plugin="vpp")
    for job in [j for j in scheduler.jobs if j.startswith(PREFIX) and j[len(PREFIX):] not in accounts]:
        scheduler.remove(job)


def _scheduled_sync(host: "Host", name: str) -> None:
    """A scheduled sync, through the same ``mdm_vpp_sync`` hook as ``mdm vpp sync``; a failed
    one raises so the scheduler logs and records it."""
    from mdm_core.errors import MdmError

    [report] = host.pm.hook.mdm_vpp_sync(host=host, account=name, full=False, trigger="schedule", wait=None)
    if report["status"] == "error":
        raise MdmError(f"sync of {name} failed: {report['error']}")
