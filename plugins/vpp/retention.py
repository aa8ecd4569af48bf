"""Sync runs past ``[vpp] sync_run_retention_days`` are deleted by the host's housekeeping
(``mdm_housekeeping``), but never what pages and commands show of an account: its latest run
(``mdm vpp accounts``, the console's account page and status), its latest ``ok`` run (when
Apple's notifications were last caught up with) and its latest full run (ok or not), nor a
run still under way."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from mdm_core.db.typed import table_of
from mdm_core.housekeeping import delete_in_chunks

from .accounts import settings
from .models import VppSyncRun

if TYPE_CHECKING:
    from mdm_core.host import Host


def prune_sync_runs(host: Host, now: datetime, chunk: int) -> int:
    """Delete the finished sync runs started before the retention, account by account (the
    ``(account_id, started_at)`` index finds them), keeping each account's latest, latest ok
    and latest full run; returns how many were deleted."""
    run = table_of(VppSyncRun)
    before = now - timedelta(days=settings(host).sync_run_retention_days)
    latest = select(run.c.account_id, func.max(run.c.id)).group_by(run.c.account_id)
    with host.db.session() as session:
        keep: dict[int, set[int]] = {}
        for query in (latest, latest.where(run.c.status == "ok"), latest.where(run.c.mode == "full")):
            for account_id, run_id in session.execute(query):
                keep.setdefault(account_id, set()).add(run_id)
    deleted = 0
    for account_id, kept in sorted(keep.items()):
        where = [run.c.account_id == account_id, run.c.started_at < before, run.c.status != "running", run.c.id.not_in(kept)]
        deleted += delete_in_chunks(host.db, run, run.c.id, where, chunk)
    return deleted
