"""Running syncs: the account lock, the sync-run record, the fallback to a full sync,
failures and token states, and the reports.

A sync reads Apple's state (:mod:`.read`), then applies it in one transaction (:mod:`.apply`).
Apple refusing a ``sinceVersionId`` (9721) or a page index (9650) restarts the read in full.
A token error (expired, revoked, invalid) or another MDM's claim pauses the account's
scheduled syncs until the user acts (a manual sync or a renewed token): no retry storm.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import select, update
from sqlmodel import Session

from mdm_core.errors import MdmError, describe, one_line
from mdm_core.locks import LockBusy
from mdm_core.models import utcnow

from .. import token_state
from ..accounts import client_for, get_account, settings
from ..apple.errors import BadPageIndexError, InvalidVersionIdError, VppError
from ..models import VppAccount, VppSyncRun
from ..payloads import SyncReport
from . import progress
from .apply import apply_read
from .read import SyncReader, clear_stage

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)


def sync_accounts(host: "Host", account: str | None, *, full: bool = False, trigger: str = "manual", wait: float | None = None) -> list[SyncReport]:
    """Sync one account by name, or every account; one report each."""
    from mdm_core.argtypes import check_wait

    check_wait(wait, "the sync's wait")
    with host.db.session() as session:
        if account is not None:
            names = [get_account(session, account).name]
        else:
            names = list(session.execute(select(VppAccount.name).order_by(VppAccount.name)).scalars())
    reports = []
    for name in names:
        try:
            reports.append(sync_account(host, name, full=full, trigger=trigger, wait=wait))
        except MdmError as exc:  # removed meanwhile: the other accounts still sync
            if account is not None:
                raise
            reports.append({"account": name, "trigger": trigger, "mode": None, "status": "skipped", "error": str(exc), "error_type": type(exc).__name__})
    return reports


def sync_account(host: "Host", name: str, *, full: bool = False, trigger: str = "manual", wait: float | None = None) -> SyncReport:
    """Sync one account under its lock; never raises for a failed sync, reports it."""
    wall = time.monotonic()  # the report's duration: lock wait and event delivery included
    s = settings(host)
    with host.db.session() as session:
        account = get_account(session, name)
    report: dict[str, Any] = {"account": name, "trigger": trigger, "mode": None, "status": None, "error": None, "error_type": None}
    if trigger == "schedule" and account.paused:
        report.update(status="skipped", error=f"token {token_state.effective_state(account)}: waiting for the user to act")
        return report
    lock = host.lock(f"vpp.sync.{account.id}", ttl=s.lock_ttl)
    try:
        lock.acquire(wait=s.lock_wait if wait is None else wait)
    except LockBusy:
        report.update(status="already running", error=f"a sync of {name} is already running")
        return report
    try:
        # read the account again under the lock: a sync we waited for may have stored new
        # versionIds, paused the account, or the account may have been removed meanwhile
        with host.db.session() as session:
            account = get_account(session, name)
        if trigger == "schedule" and account.paused:
            report.update(status="skipped", error=f"token {token_state.effective_state(account)}: waiting for the user to act")
            return report
        report = _locked_sync(host, account, full, trigger, lock, s.full_reconcile_interval)
    finally:
        lock.release()
    host.deliver_events()
    report["duration_s"] = round(time.monotonic() - wall, 3)
    return report


def _locked_sync(host: "Host", account: VppAccount, full: bool, trigger: str, lock: Any, reconcile: int) -> dict[str, Any]:
    _cleanup_interrupted(host, account.id)
    mode = choose_mode(account, full, reconcile)
    run_id = host.db.run_write(lambda s: _new_run(s, account.id, trigger, mode))
    progress.started(account.name, mode)
    started = utcnow()
    heartbeat = monotonic_heartbeat(lock.refresh, max(1.0, lock.ttl / 3))
    client = None
    try:
        client = client_for(host, account)
        client.get_client_config()  # the token works and mdmInfo is still ours
        reader = SyncReader(host, account, client, run_id, heartbeat)
        try:
            read = reader.read(mode)
        except (InvalidVersionIdError, BadPageIndexError) as exc:
            log.warning("account %s: %s; falling back to a full sync", account.name, exc)
            clear_stage(host, run_id)
            mode = "full"
            reader = SyncReader(host, account, client, run_id, heartbeat)
            read = reader.read(mode)
        counts = apply_read(host, account, run_id, read)
        report = _report(account.name, trigger, mode, "ok", started, read.pages, counts, None, None)
    except Exception as exc:  # recorded on the run; the mirror is unchanged
        clear_stage(host, run_id)
        error_type = type(exc).__name__
        message = one_line(exc) if isinstance(exc, (VppError, MdmError)) else describe(exc)
        # a scheduled sync's failure is logged; a manual one's is the report line the caller
        # prints (logged at INFO, seen with -v): an error is shown once
        level = logging.ERROR if trigger == "schedule" else logging.INFO
        unexpected = not isinstance(exc, (VppError, MdmError))
        log.log(level, "account %s: sync failed%s: %s", account.name, " unexpectedly" if unexpected else "", message,
                exc_info=unexpected and (level == logging.ERROR or log.isEnabledFor(logging.DEBUG)))
        host.db.run_write(lambda s, exc=exc: _record_failure(host, s, account.id, run_id, mode, exc, message))
        report = _report(account.name, trigger, mode, "error", started, 0, {}, error_type, message)
    finally:
        progress.finished(account.name)
        if client is not None:
            client.close()
    with host.db.write_session() as session:
        host.events.record(session, "vpp_sync_finished", report)
        session.commit()
    return report


def _new_run(session: Session, account_id: int, trigger: str, mode: str) -> int:
    run = VppSyncRun(account_id=account_id, trigger=trigger, mode=mode)
    session.add(run)
    session.flush()
    assert run.id is not None
    return run.id


def _record_failure(host: "Host", session: Session, account_id: int, run_id: int, mode: str, exc: BaseException, message: str) -> None:
    account = session.get(VppAccount, account_id)
    run = session.get(VppSyncRun, run_id)
    assert account is not None and run is not None
    run.mode, run.status, run.finished_at, run.error_type, run.error = mode, "error", utcnow(), type(exc).__name__, message
    session.add(run)
    account.last_sync_at = utcnow()
    account.last_sync_result = f"error: {message}"
    session.add(account)
    token_state.apple_refused(host, session, account, exc)


def _cleanup_interrupted(host: "Host", account_id: int) -> None:
    """Runs left ``running`` by a crash: mark them and drop their staged pages."""
    with host.db.session() as session:
        stale = list(session.execute(select(VppSyncRun.id).where(VppSyncRun.account_id == account_id, VppSyncRun.status == "running")).scalars())
    for run_id in stale:
        clear_stage(host, run_id)
        host.db.run_write(lambda s: s.execute(
            update(VppSyncRun).where(VppSyncRun.id == run_id).values(status="interrupted", finished_at=utcnow(), error="the process stopped during this sync")
        ))


def _report(name: str, trigger: str, mode: str, status: str, started: Any, pages: int, counts: dict[str, Any], error_type: str | None, error: str | None) -> SyncReport:
    finished = utcnow()
    return {
        "account": name, "trigger": trigger, "mode": mode, "status": status, "started_at": started.isoformat(),
        "finished_at": finished.isoformat(), "duration_s": round((finished - started).total_seconds(), 3), "pages": pages,
        "counts": counts, "error_type": error_type, "error": error,
    }


def recent_runs(host: "Host", name: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The latest sync runs, newest first."""
    query = select(VppSyncRun, VppAccount.name).join(VppAccount, VppAccount.id == VppSyncRun.account_id).order_by(VppSyncRun.id.desc()).limit(limit)  # type: ignore[union-attr]
    if name:
        query = query.where(VppAccount.name == name)
    with host.db.session() as session:
        return [{"account": n, **r.model_dump(exclude={"account_id"})} for r, n in session.execute(query).all()]


def choose_mode(account: VppAccount, full: bool, reconcile_seconds: int, now: datetime | None = None) -> str:
    """``full`` when asked, on the first sync, or when the last full sync is too old."""
    now = now or utcnow()
    if full or not account.assignments_version_id or not account.users_version_id or account.last_full_sync_at is None:
        return "full"
    if (now - account.last_full_sync_at).total_seconds() >= reconcile_seconds:
        return "full"
    return "incremental"


def monotonic_heartbeat(refresh: Callable[[], None], every: float) -> Callable[[], None]:
    """A callable that runs ``refresh`` at most every ``every`` seconds."""
    last = [time.monotonic()]

    lock = threading.Lock()

    def beat() -> None:
        with lock:
            if time.monotonic() - last[0] < every:
                return
            last[0] = time.monotonic()
            refresh()

    return beat
