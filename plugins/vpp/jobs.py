"""Scheduled syncs: one job per account at its "Account Synchronization Interval (sec)".

An account's next scheduled sync is one interval after its last sync (scheduled or manual),
at once if that is past: restarting ``mdm run`` delays nothing.

Several ``mdm run`` hosts on one database share the accounts (:mod:`mdm_core.cluster`): each
account has an owner among the live hosts, which syncs it when it is due; the others plan it
:func:`grace` later, and step in only if it was not synced by then (its owner stuck, or gone
and not yet known to be). A scheduled sync remembers the last sync its plan saw when it fell
due (not when a worker got to it: jobs due together wait for a free worker, and another host
may sync the account meanwhile) and, under the account's lock, does nothing if the account
was synced since: an account is synced once per interval across the hosts, never twice at a
time. A job made due on purpose (:meth:`~mdm_core.scheduler.HostScheduler.make_due`) looks
at the last sync when it starts instead.
"""

from __future__ import annotations

import logging
import weakref
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlmodel import col

from mdm_core.errors import describe
from mdm_core.models import utcnow
from mdm_core.scheduler import Told, run_is_forced

from .models import VppAccount

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.scheduler import HostScheduler

PREFIX = "vpp.sync."
MAX_GRACE = 300.0  # seconds: the longest a host waits past an account's due time before stepping in for its owner
log = logging.getLogger(__name__)
#: the account's last sync as the scheduled sync running in this context saw it when it fell due
#: (read by :func:`plugins.vpp.sync.run.sync_account` under the account's lock)
SCHEDULED_AFTER: ContextVar[tuple[datetime | None] | None] = ContextVar("vpp_scheduled_after", default=None)
_told: weakref.WeakKeyDictionary[HostScheduler, dict[str, str]] = weakref.WeakKeyDictionary()  # problems already logged
_names: weakref.WeakKeyDictionary[HostScheduler, frozenset[str]] = weakref.WeakKeyDictionary()  # the accounts its plans were made with


def refresh_account_jobs(host: Host, scheduler: HostScheduler) -> None:
    """Add, re-time or remove per-account jobs to match the accounts table (no restart needed).

    An account whose job cannot be scheduled (an interval stored before it was validated) is
    logged and left out; the other accounts are scheduled as usual. When accounts came or went
    (added, removed, renamed), every job is planned again: the accounts' shares over the hosts
    follow their names' order, so the accounts after that name may have changed owner.
    """
    with host.db.session() as session:
        accounts = {name: interval for name, interval in session.execute(select(col(VppAccount.name), col(VppAccount.interval_seconds)))}
    for name, interval in accounts.items():
        try:
            account_job = AccountJob(host, name)  # (kept only if the account has no job yet)
            scheduler.ensure(PREFIX + name, interval, account_job.run, plugin="vpp", last_done=account_job.plan_basis)
        except Exception as exc:
            scheduler.remove(PREFIX + name)
            message = f"account {name} is not scheduled: {describe(exc)}: fix it with `mdm vpp account set {name} --interval SECONDS`"
            told = _told.setdefault(scheduler, {})
            log.log(logging.DEBUG if told.get(name) == message else logging.ERROR, "%s", message)  # once, not every refresh
            told[name] = message
    for job in [j for j in scheduler.jobs if j.startswith(PREFIX) and j[len(PREFIX) :] not in accounts]:
        scheduler.remove(job)
    names, before = frozenset(accounts), _names.get(scheduler)
    _names[scheduler] = names
    if before is not None and names != before:  # a new owner plans it when due, not a grace later
        scheduler.replan()


def last_sync(host: Host, name: str) -> tuple[datetime | None] | None:
    """When the account last synced (any trigger, ok or not; ``None`` never) as a 1-tuple, or
    ``None`` when there is no account of that name (any more)."""
    with host.db.session() as session:
        row = session.execute(select(col(VppAccount.last_sync_at)).where(col(VppAccount.name) == name)).first()
    return None if row is None else (row[0],)


def grace(interval: float) -> float:
    """How long after an account falls due the hosts that do not own it wait for its owner."""
    return min(interval / 2, MAX_GRACE)


def _plan(host: Host, name: str) -> tuple[tuple[datetime | None] | None, datetime | None]:
    """One read of the accounts: the account's last sync (``None`` if the account is gone,
    else a 1-tuple), and when its work was last done for the scheduler (the next run is one
    interval later): that last sync, or for a host that does not own it, :func:`grace` later."""
    with host.db.session() as session:
        rows = session.execute(
            select(col(VppAccount.name), col(VppAccount.last_sync_at), col(VppAccount.interval_seconds)).order_by(col(VppAccount.name))
        ).all()
    mine = next((r for r in rows if r.name == name), None)
    if mine is None:
        return None, None
    seen = (mine.last_sync_at,)
    if host.cluster.owns(name, [r.name for r in rows]):
        return seen, mine.last_sync_at
    delay = timedelta(seconds=grace(mine.interval_seconds))
    if mine.last_sync_at is None:  # never synced: its owner goes now, the others a grace later
        return seen, utcnow() - timedelta(seconds=mine.interval_seconds) + delay
    return seen, mine.last_sync_at + delay


class AccountJob:
    """One account's scheduled sync in one scheduler, and the last sync its latest plan saw."""

    def __init__(self, host: Host, name: str):
        self.host = host
        self.name = name
        self.seen: tuple[datetime | None] | None = None

    def plan_basis(self) -> datetime | None:
        """When the account's work was last done, for the scheduler (see :func:`_plan`),
        remembering the last sync it read (the scheduler plans a job again when it falls due,
        and not while it runs)."""
        self.seen, basis = _plan(self.host, self.name)
        return basis

    def run(self) -> Told | str | None:
        """The scheduled sync, skipped if the account was synced since the plan that made it due
        (the line saying why, when it was skipped; what it did, when it synced)."""
        return _scheduled_sync(self.host, self.name, None if run_is_forced() else self.seen)


def _scheduled_sync(host: Host, name: str, seen: tuple[datetime | None] | None = None) -> Told | str | None:
    """A scheduled sync, through the same ``mdm_vpp_sync`` hook as ``mdm vpp sync``; a failed
    one raises so the scheduler logs and records it. Nothing happens if the account's last sync
    is no longer ``seen`` (by default, the last sync now): another host synced it since it fell
    due (:data:`SCHEDULED_AFTER`); nor if the account is no longer named ``name`` (renamed or
    removed before :func:`refresh_account_jobs` dropped its job). A sync's counts are told in
    ``mdm vpp sync``'s words."""
    from mdm_core.errors import MdmError

    from .changes import format_sync_counts

    now = last_sync(host, name)
    if now is None:  # renamed or removed since this process scheduled it: its job goes at the next refresh
        return f"not synced: there is no account {name} any more (renamed or removed)"
    token = SCHEDULED_AFTER.set(seen or now)
    try:
        [report] = host.pm.hook.mdm_vpp_sync(host=host, account=name, full=False, trigger="schedule", wait=None)
    finally:
        SCHEDULED_AFTER.reset(token)
    if report["status"] == "error":
        raise MdmError(f"sync of {name} failed: {report['error']}")
    if report["status"] == "skipped":  # `mdm jobs run` says so rather than a bare "ok"
        return f"not synced: {report['error']} (`mdm vpp sync {name}` syncs it anyway)"
    if report["status"] == "ok":
        return Told(f"{report['mode']} sync, {report['pages']} pages: {format_sync_counts(report['counts'])}", report["counts"])
    return None
