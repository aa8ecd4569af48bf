"""Sync runs past ``[vpp] sync_run_retention_days`` are deleted by the host's housekeeping
(``mdm_housekeeping``), but never what pages and commands show of an account: its latest run
(``mdm vpp account list``, the console's account page and status), its latest ``ok`` run (when
Apple's notifications were last caught up with) and its latest full run (ok or not), nor a
run still under way. Assets' recorded counts (``vpp_asset_count``, the console's chart and the
``history`` API) go after ``[vpp] asset_count_retention_days``, but each asset's latest one
recorded before then stays: the counts that held when the kept history starts (for an asset
unchanged since, its current counts). Apple's notifications acted on go ``[vpp]
notification_retention`` seconds after that (their ids guard against acting on one twice); one
still waiting to be acted on stays. A removed account's sync job (``vpp.sync.NAME``, its last
run in ``core_job_run``) goes ``[vpp] sync_run_retention_days`` after that run, as its runs
would have: an account added and removed every week left one row a week for ever."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import exists, func, literal, select

from mdm_core.db.typed import table_of
from mdm_core.housekeeping import delete_in_chunks
from mdm_core.models import JobRun

from .accounts import settings
from .jobs import PREFIX
from .models import VppAccount, VppAssetCount, VppNotification, VppSyncRun

if TYPE_CHECKING:
    from mdm_core.host import Host


def prune_sync_runs(host: Host, now: datetime, chunk: int) -> int:
    """Delete the finished sync runs started before the retention, account by account (the
    ``(account_id, started_at)`` index finds them), keeping each account's latest, latest ok
    and latest full run; returns how many were deleted. Which runs those are is asked by each
    statement, not once before: a run may end, or a new one start, while the job deletes."""
    run = table_of(VppSyncRun)
    before = now - timedelta(days=settings(host).sync_run_retention_days)
    with host.db.session() as session:
        accounts = list(session.execute(select(run.c.account_id).where(run.c.started_at < before).distinct().order_by(run.c.account_id)).scalars())
    deleted = 0
    for account_id in accounts:
        # no row (not NULL) for an account without an ok or a full run: NOT IN (NULL) would keep every run
        latest = select(func.max(run.c.id)).where(run.c.account_id == account_id).group_by(run.c.account_id)
        kept = [run.c.id.not_in(q) for q in (latest, latest.where(run.c.status == "ok"), latest.where(run.c.mode == "full"))]
        where = [run.c.account_id == account_id, run.c.started_at < before, run.c.status != "running", *kept]
        deleted += delete_in_chunks(host.db, run, run.c.id, where, chunk)
    return deleted


def prune_asset_counts(host: Host, now: datetime, chunk: int) -> int:
    """Delete the counts recorded before the retention, asset by asset (the ``(account_id,
    adam_id, pricing_param, at)`` index finds them), keeping each asset's latest one recorded
    before it; returns how many were deleted. That one cannot change while the job deletes:
    counts are only added, recorded at the time they hold."""
    count = table_of(VppAssetCount)
    before = now - timedelta(days=settings(host).asset_count_retention_days)
    asset = (count.c.account_id, count.c.adam_id, count.c.pricing_param)
    latest = select(*asset, func.max(count.c.id)).where(count.c.at < before).group_by(*asset).having(func.count() > 1)
    with host.db.session() as session:
        assets = sorted(tuple(row) for row in session.execute(latest))
    deleted = 0
    for account_id, adam_id, pricing_param, kept in assets:
        where = [count.c.account_id == account_id, count.c.adam_id == adam_id, count.c.pricing_param == pricing_param, count.c.at < before, count.c.id < kept]
        deleted += delete_in_chunks(host.db, count, count.c.id, where, chunk)
    return deleted


def prune_notifications(host: Host, now: datetime, chunk: int) -> int:
    """Delete Apple's notifications acted on (``done``, ``skipped``, ``failed``) more than
    ``[vpp] notification_retention`` seconds before ``now``; returns how many were deleted."""
    notification = table_of(VppNotification)
    before = now - timedelta(seconds=settings(host).notification_retention)
    where = [notification.c.status != "received", notification.c.processed_at < before]
    return delete_in_chunks(host.db, notification, notification.c.id, where, chunk)


def prune_job_runs(host: Host, now: datetime, chunk: int) -> int:
    """Delete the last runs of the sync jobs (``vpp.sync.NAME``) of accounts removed, whose run
    finished more than ``[vpp] sync_run_retention_days`` before ``now``; an account of that
    name added again keeps its job's row. Returns how many were deleted."""
    job, account = table_of(JobRun), table_of(VppAccount)
    before = now - timedelta(days=settings(host).sync_run_retention_days)
    where = [
        job.c.name.startswith(PREFIX, autoescape=True),
        func.coalesce(job.c.last_finished_at, job.c.last_started_at) < before,
        ~exists().where(literal(PREFIX).concat(account.c.name) == job.c.name),
    ]
    return delete_in_chunks(host.db, job, job.c.name, where, chunk)
