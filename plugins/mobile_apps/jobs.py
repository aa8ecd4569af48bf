"""Scheduled jobs: ``mobile_apps.metadata``, ``mobile_apps.reclaim``, ``mobile_apps.installs``, ``mobile_apps.updates``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mdm_core.errors import MdmError
from mdm_core.scheduler import Told, run_is_forced

from .settings import settings
from .vpp_port import VppPort

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.scheduler import HostScheduler

log = logging.getLogger(__name__)
PLUGIN = "mobile_apps"


def register(host: Host, scheduler: HostScheduler) -> None:
    """Add the plugin's jobs at their configured intervals."""
    s = settings(host)
    scheduler.add("mobile_apps.metadata", s.metadata_retry, lambda: metadata_job(host), plugin=PLUGIN)
    scheduler.add("mobile_apps.reclaim", s.reclaim_retry, lambda: reclaim_job(host), plugin=PLUGIN)
    scheduler.add("mobile_apps.installs", s.install_retry, lambda: installs_job(host), plugin=PLUGIN)
    scheduler.add("mobile_apps.updates", s.update_check, lambda: updates_job(host), plugin=PLUGIN)


def metadata_job(host: Host) -> dict[str, int]:
    """Look up pending, failed (when due) and stale metadata; a failure is recorded on the job."""
    from .catalog import refresh_metadata

    if not VppPort(host).available:
        return {}
    counts = refresh_metadata(host)
    if counts["failed"]:
        raise MdmError(f"metadata lookup failed for {counts['failed']} app(s); retrying in {settings(host).metadata_retry}s")
    return counts


def reclaim_job(host: Host) -> dict[str, int]:
    """Retry the pending reclaims that are due; every pending one when the admin runs the job
    (``mdm jobs run mobile_apps.reclaim``: Apple is back, do not wait for the back-off). Then
    end ``done`` the failed or irrevocable ones whose license the mirror no longer holds
    (``released``: :func:`.reclaims.close_released`)."""
    from .reclaims import close_released, process

    if not VppPort(host).available:
        return {}
    counts = process(host, due_only=not run_is_forced())
    counts["released"] = close_released(host)  # failed or irrevocable ones whose license was taken back by other means
    if counts["pending"]:
        log.warning("%d reclaim(s) still pending; retrying in %ss", counts["pending"], settings(host).reclaim_retry)
    return counts


def installs_job(host: Host) -> dict[str, int]:
    """Ask Apple again about installs whose licenses were still pending, and those a request
    left ``associating`` ``interrupted_after`` ago; every ``associating`` one when the admin
    runs the job (``mdm jobs run mobile_apps.installs``, which a refusal for want of licenses
    names: a request that died a minute ago holds its license until then)."""
    from .installs.pending import retry_pending

    if not VppPort(host).available:
        return {}
    return retry_pending(host, resume_all=run_is_forced())


def updates_job(host: Host) -> Told | dict[str, int]:
    """With ``auto_update``: look for new versions of the published apps and queue their updates.
    When every lookup failed, no app was checked: the run fails with the check's one line
    (``mdm jobs`` shows ``failed: ...``). A failed lookup among others is logged, counted as not
    checked in what the run did, and looked up again at the next check."""
    from .updates import check_updates

    if not settings(host).auto_update or not VppPort(host).available:
        return {}
    report = check_updates(host, install=True)
    retry = settings(host).update_check
    if report.nothing_checked:
        raise report.nothing_checked_error(f"fix what it says; checked again in {retry}s, or now: mdm apps check-updates")
    for error in dict.fromkeys(report.errors):
        log.warning("update check: metadata lookup failed (%s); looked up again in %ss", error, retry)
    failed = report.counts["failed"]
    unchecked = f"{failed} app(s) not checked: their lookup failed; looked up again in {retry}s, or now: mdm apps check-updates" if failed else None
    return Told(report.outcome(), report.totals(), unchecked)
