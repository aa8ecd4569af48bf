"""Running syncs: the account lock, the sync-run record, the fallback to a full sync,
failures, interruptions and token states, and the reports.

A sync reads Apple's state (:mod:`.read`), then applies it in one transaction (:mod:`.apply`).
Apple refusing a ``sinceVersionId`` (9721) or a page index (9650) restarts the read in full.
A token error (expired, revoked, invalid) or another MDM's claim pauses the account's
scheduled syncs until the user acts (a manual sync or a renewed token): no retry storm.

One writer per account: the sync holds the account's lock (``vpp.sync.<id>``), refreshed by a
heartbeat thread while it reads, and the apply transaction checks inside itself that this run
still holds it (holder and generation, :meth:`mdm_core.locks.DbLock.fence`): a sync that was
paused past the lock's expiry and lost it to another stops with nothing written. Staged rows
belong to their run; another run deletes them only once their holder is known to be gone.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlmodel import Session, col

from mdm_core import interrupts
from mdm_core.collector import fewer_collections
from mdm_core.db.errors import database_error, is_database_error
from mdm_core.db.typed import stored_id, table_of
from mdm_core.errors import MdmError, describe, one_line
from mdm_core.locks import DbLock, LockBusy, LockLost, holder_is_dead
from mdm_core.models import utcnow
from mdm_core.output import format_time

from .. import token_state
from ..accounts import account_lock, client_for, get_account, settings
from ..apple.errors import BadPageIndexError, InvalidVersionIdError, VppError
from ..apple.protocol import parse_apple_date
from ..jobs import SCHEDULED_AFTER
from ..models import VppAccount, VppStageLicense, VppStageUser, VppSyncRun
from ..payloads import SyncReport
from ..recording import record_event
from . import apply, progress, stored_progress
from .apply import apply_read, refresh_statistics
from .read import DirectFallback, SyncReader, clear_stage, drop_staged

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)
RUNS = table_of(VppSyncRun)

#: A run still ``running`` whose holder cannot be checked (another machine on SQLite) is taken
#: as abandoned after this long: its staged rows are deleted and it shows ``interrupted``.
ABANDONED_AFTER = timedelta(hours=6)
#: A last full sync this far in the future means the clock was set back: reconcile now.
CLOCK_SKEW = timedelta(minutes=5)


def sync_accounts(host: Host, account: str | None, *, full: bool = False, trigger: str = "manual", wait: float | None = None) -> list[SyncReport]:
    """Sync one account by name, or every account; one report each."""
    from mdm_core.argtypes import check_wait

    check_wait(wait, "the sync's wait")
    with host.db.session() as session:
        if account is not None:
            names = [get_account(session, account).name]
        else:
            names = list(session.execute(select(col(VppAccount.name)).order_by(col(VppAccount.name))).scalars())
    reports: list[SyncReport] = []
    for place, name in enumerate(names):
        try:
            reports.append(sync_account(host, name, full=full, trigger=trigger, wait=wait))
        except MdmError as exc:  # removed meanwhile: the other accounts still sync
            if account is not None:
                raise
            reports.append({"account": name, "trigger": trigger, "mode": None, "status": "skipped", "error": str(exc), "error_type": type(exc).__name__})
        except KeyboardInterrupt as exc:  # the syncs that finished go with it (this one's too, if only its events' delivery stopped)
            exc.vpp_reports = reports + finished_before(exc)  # type: ignore[attr-defined]
            began = interrupts.stopped(exc) != interrupts.ROLLED_BACK  # its sync said how it stopped; else it stopped before it began
            rest = names[place + 1 :] if began else names[place:]
            if rest and began:
                interrupts.note_more(exc, f"not started: {', '.join(rest)}")
            elif rest:
                interrupts.note(exc, f"not started: {', '.join(rest)}")
            raise
    return reports


def finished_before(exc: BaseException) -> list[SyncReport]:
    """The reports of the syncs that finished before the interruption ``exc`` (:func:`sync_accounts`)."""
    return list(getattr(exc, "vpp_reports", []))


def sync_account(host: Host, name: str, *, full: bool = False, trigger: str = "manual", wait: float | None = None) -> SyncReport:
    """Sync one account under its lock; never raises for a failed sync, reports it.

    An interruption (SIGINT/SIGTERM, :class:`mdm_core.interrupts.Interrupted`) rolls back,
    marks the run ``interrupted``, releases the lock and is raised again. The cyclic collector
    runs less often meanwhile (:func:`mdm_core.collector.fewer_collections`).
    """
    with fewer_collections():
        return _sync_account(host, name, full=full, trigger=trigger, wait=wait)


def _sync_account(host: Host, name: str, *, full: bool, trigger: str, wait: float | None) -> SyncReport:
    wall = time.monotonic()  # the report's duration: lock wait and event delivery included
    s = settings(host)
    with host.db.session() as session:
        account = get_account(session, name)
    if trigger == "schedule" and account.paused:
        return _not_run(name, trigger, "skipped", token_state.paused_note(account))
    lock = account_lock(host, account.id)
    wait = s.lock_wait if wait is None else wait
    # interrupted, the first try gives back a lock it took and leaves no note: there is no other
    # sync to wait for, and sync_accounts names the account not started
    taken = lock.try_acquire()
    try:
        if not taken:
            if wait > 0 and lock.busy is not None:
                log.info("account %s: waiting up to %gs for the running sync (%s)", name, wait, lock.busy.describe())
            lock.acquire(wait=wait)
    except LockBusy as exc:
        detail = exc.info.describe() if exc.info else "another process holds its lock"
        return _not_run(name, trigger, "already running", f"a sync of {name} is already running ({detail})")
    except KeyboardInterrupt as exc:
        interrupts.note(exc, f"stopped while waiting for the running sync of {name}: nothing was written by this command")
        raise
    try:
        # read the account again under the lock: a sync we waited for may have stored new
        # versionIds, paused the account, or the account may have been removed meanwhile
        with host.db.session() as session:
            account = get_account(session, name)
        if trigger == "schedule" and account.paused:
            return _not_run(name, trigger, "skipped", token_state.paused_note(account))
        seen = SCHEDULED_AFTER.get() if trigger == "schedule" else None
        if seen is not None and account.last_sync_at != seen[0]:  # another host synced it since it fell due
            return _not_run(name, trigger, "skipped", f"already synced at {format_time(account.last_sync_at)} (by another host)")
        try:
            report = _locked_sync(host, account, full, trigger, lock, s.full_reconcile_interval)
        except KeyboardInterrupt as exc:
            interrupts.note(exc, f"the sync of {name} stopped: what it was writing was rolled back (`mdm vpp runs` shows it interrupted)")
            raise
    finally:
        _release(lock)
    try:
        host.deliver_events()
    except KeyboardInterrupt as exc:  # the sync is written: its report goes with the interruption
        interrupts.note(exc, f"the sync of {name} finished, then the delivery of its events to plugins stopped (`mdm run` delivers them)")
        exc.vpp_reports = [report]  # type: ignore[attr-defined]
        raise
    finally:
        report["duration_s"] = round(time.monotonic() - wall, 3)
    return report


def _not_run(name: str, trigger: str, status: str, error: str) -> SyncReport:
    """The report of a sync that did not start (skipped, already running): the first six keys."""
    return {"account": name, "trigger": trigger, "mode": None, "status": status, "error": error, "error_type": None}


def _release(lock: DbLock) -> None:
    try:
        lock.release()
    except Exception as exc:  # an unwritable database: the lock expires (or dies with this process)
        log.error("could not release %s: %s", lock.name, describe(exc))


def _locked_sync(host: Host, account: VppAccount, full: bool, trigger: str, lock: DbLock, reconcile: int) -> SyncReport:
    account_id = stored_id(account)
    _cleanup_abandoned(host, account_id, lock)
    mode = choose_mode(account, full, reconcile)
    run_id = host.db.run_write(lambda s: _new_run(s, account_id, trigger, mode, lock.holder))
    progress.started(account.name, mode, run_id)
    started = utcnow()
    client = None
    readers: list[SyncReader] = []  # each closed at the end (licenses written straight into the mirror and not committed roll back)
    reports: list[SyncReport] = []  # the report the apply recorded in its transaction (the last try's)
    cleared: dict[str, int] = {}  # staging table -> rows the apply deleted (vacuumed after the heartbeat)

    def finished(counts: dict[str, Any]) -> SyncReport:
        reports.append(_report(account.name, trigger, read.mode, "ok", started, read.pages, counts, None, None))
        return reports[-1]

    def reader_for(direct: bool = True) -> SyncReader:
        assert client is not None
        reader = SyncReader(host, account, client, run_id, beat.check, direct=direct)
        readers.append(reader)
        _note_expiration(reader, config)
        return reader

    try:
        with stored_progress.recording(host, run_id, account.name) as recorder, lock.heartbeat(tick=recorder.tick, tick_every=stored_progress.TICK) as beat:
            client = client_for(host, account, read_now=True)  # read under the lock: its back-off is current
            config = client.get_client_config()  # the token works and mdmInfo is still ours
            try:
                try:
                    read = reader_for().read(mode)
                except (InvalidVersionIdError, BadPageIndexError) as exc:
                    log.warning("account %s: %s; falling back to a full sync", account.name, exc)
                    _close(readers, settle=True)
                    clear_stage(host, run_id)
                    mode = "full"
                    read = reader_for().read(mode)
                beat.check()
                recorder.writing()  # the apply reads nothing, and clears the progress
                apply_read(host, account, run_id, read, lock, finished, cleared)
            except DirectFallback as exc:  # rolled back: read again, staging the licenses
                log.info("account %s: %s; reading again, staging the licenses", account.name, exc)
                _close(readers, settle=True)
                clear_stage(host, run_id)
                recorder.reading()
                read = reader_for(direct=False).read(mode)
                beat.check()
                recorder.writing()
                apply_read(host, account, run_id, read, lock, finished, cleared)
            report = reports[-1]
            _best_effort("vacuum and analyze the mirror (its statistics, its visibility map)", lambda: refresh_statistics(host, report["counts"]))
        # committed; the heartbeat has stopped: none of its writes (the lock's, the progress's) is
        # open now, which would keep the deleted staged rows visible to the vacuum
        apply.vacuum_stage(host, cleared)
    except Exception as exc:  # recorded on the run; the mirror is unchanged
        _close(readers)  # rolled back first: its row locks would hold up the record of the failure
        message = _failure(account.name, trigger, exc, host)
        # the run ended first: a thread of the read still waiting for a page (not waited for)
        # finds it ended and stages nothing (read.check_running), or stages before the drop
        _best_effort(
            f"record the failure of run {run_id}", lambda exc=exc: host.db.run_write(lambda s: _record_failure(host, s, account_id, run_id, mode, exc, message))
        )
        _best_effort(f"drop the staged rows of run {run_id}", lambda: clear_stage(host, run_id))
        report = _report(account.name, trigger, mode, "error", started, 0, {}, type(exc).__name__, message)
    except BaseException as exc:  # interrupted (SIGINT/SIGTERM): roll back, record, release (the caller), re-raise
        why = str(exc) or type(exc).__name__
        _close(readers)
        log.warning("account %s: sync interrupted (%s); nothing written", account.name, why)
        _best_effort(f"mark run {run_id} interrupted and drop its staged rows", lambda: end_interrupted(host, run_id, f"interrupted ({why}): nothing written"))
        raise
    finally:
        _close(readers)
        progress.finished(account.name)
        if client is not None:
            client.close()
    if report["status"] != "ok":  # a sync's own report was recorded with what it wrote
        _best_effort("record the sync report", lambda: _record_report(host, account_id, report))
    return report


def _close(readers: list[SyncReader], *, settle: bool = False) -> None:
    """Close the readers; ``settle``: once their threads have ended (the run reads again: nothing
    of theirs may be staged into it afterwards)."""
    for reader in readers:
        if settle:
            reader.settle()
        reader.close()
    readers.clear()


def _note_expiration(reader: SyncReader, config: dict[str, Any]) -> None:
    expires = parse_apple_date(config.get("tokenExpirationDate"))
    if expires is not None:
        reader.expirations.append(expires)


def _failure(account: str, trigger: str, exc: BaseException, host: Host) -> str:
    """The one line that says why a sync failed (never SQL, parameters or the token).

    A manual sync's failure is the line the caller prints (logged at INFO, seen with -v); a
    scheduled one's is the job's failure, which the scheduler logs (``mdm run``) or ``mdm jobs
    run`` prints, with the account's name (logged here at DEBUG only): an error is said once."""
    unexpected = False
    if is_database_error(exc):
        message = str(database_error(exc, host.db))
    elif isinstance(exc, (VppError, MdmError)):
        message = one_line(exc)
    else:
        message, unexpected = describe(exc), True
    level = logging.DEBUG if trigger == "schedule" else logging.INFO  # scheduled: the scheduler's line says it, once
    log.log(level, "account %s: sync failed%s: %s", account, " unexpectedly" if unexpected else "", message)
    if unexpected:
        log.debug("account %s: the unexpected error", account, exc_info=True)
    return message


def _best_effort(what: str, work: Any) -> None:
    try:
        work()
    except Exception as exc:
        log.error("could not %s: %s", what, describe(exc))


def _record_report(host: Host, account_id: int, report: SyncReport) -> None:
    with host.db.write_session() as session:
        record_event(host, session, account_id, "vpp_sync_finished", report)
        session.commit()


def _new_run(session: Session, account_id: int, trigger: str, mode: str, holder: str) -> int:
    """Insert the run's record (one Core statement: no ORM object and flush); returns its id."""
    values = {"account_id": account_id, "trigger": trigger, "mode": mode, "status": "running", "started_at": utcnow(), "pages": 0, "counts": {}}
    return int(session.execute(insert(RUNS).values(**values, holder=holder).returning(RUNS.c.id)).scalar_one())


def _record_failure(host: Host, session: Session, account_id: int, run_id: int, mode: str, exc: BaseException, message: str) -> None:
    run = session.get(VppSyncRun, run_id)
    assert run is not None
    run.mode, run.status, run.finished_at, run.error_type, run.error, run.progress = mode, "error", utcnow(), type(exc).__name__, message, None
    session.add(run)
    if isinstance(exc, LockLost):  # the account belongs to the sync that took the lock: not a word on it
        return
    account = session.get(VppAccount, account_id)
    if account is None:
        return
    account.last_sync_at = utcnow()
    account.last_sync_result = f"error: {message}"
    session.add(account)
    token_state.apple_refused(host, session, account, exc)


def end_interrupted(host: Host, run_id: int, error: str) -> None:
    """Mark the run ``interrupted`` (if still running) and drop its staged rows, in one
    transaction, the run's row first: a thread of the run still staging pages (it had not seen
    the interruption yet) either commits before the rows are dropped or finds the run ended and
    writes nothing (:func:`.read.check_running`)."""

    def work(s: Session) -> None:
        s.execute(
            update(VppSyncRun)
            .where(col(VppSyncRun.id) == run_id, col(VppSyncRun.status) == "running")
            .values(status="interrupted", finished_at=utcnow(), error=error, progress=None)
        )
        drop_staged(s, run_id)

    host.db.run_write(work)


def _cleanup_abandoned(host: Host, account_id: int, lock: DbLock) -> None:
    """Runs left ``running`` by a holder that is gone (a crash): mark them interrupted and drop
    their staged rows. A run whose holder may still be alive (paused: it will find its lock
    lost and stop by itself) keeps its rows, until ``ABANDONED_AFTER``. Staged rows of runs
    that have ended are dropped too."""
    now = utcnow()
    with host.db.session() as session:  # one read: most syncs find nothing to drop and take no write lock for it
        found = session.execute(_abandoned_query(), {"account_id": account_id}).all()
    running = [(run_id, holder, started) for _, run_id, holder, started in found if run_id is not None]
    for run_id, holder, started in running:
        if holder == lock.holder:
            continue
        if holder is not None and not holder_is_dead(host.db, holder) and started > now - ABANDONED_AFTER:
            log.info("run %d of %s may still be alive (its lock was lost): its staged rows are left to it", run_id, holder)
            continue
        end_interrupted(host, run_id, "the process stopped during this sync")
    if found[0][0]:
        live = select(col(VppSyncRun.id)).where(col(VppSyncRun.status) == "running")
        host.db.run_write(lambda session: [session.execute(delete(t).where(t.c.run_id.not_in(live))) for t in _STAGING])


_STAGING = (table_of(VppStageLicense), table_of(VppStageUser))


@functools.cache
def _abandoned_query() -> Any:
    """:func:`_cleanup_abandoned`'s one read: whether either staging table holds rows of runs
    that are not running (``leftovers``), with the account's runs still ``running`` (one row
    each, or one row of NULLs): the preamble of every sync took two statements for it."""
    live = select(RUNS.c.id).where(RUNS.c.status == "running")
    leftovers = select(or_(*(exists().where(t.c.run_id.not_in(live)) for t in _STAGING)).label("leftovers")).subquery("leftovers")
    running = and_(RUNS.c.account_id == bindparam("account_id"), RUNS.c.status == "running")
    return select(leftovers.c.leftovers, RUNS.c.id, RUNS.c.holder, RUNS.c.started_at).select_from(leftovers.outerjoin(RUNS, running)).order_by(RUNS.c.id)


def _report(
    name: str, trigger: str, mode: str, status: str, started: Any, pages: int, counts: dict[str, Any], error_type: str | None, error: str | None
) -> SyncReport:
    finished = utcnow()
    return {
        "account": name,
        "trigger": trigger,
        "mode": mode,
        "status": status,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_s": round((finished - started).total_seconds(), 3),
        "pages": pages,
        "counts": counts,
        "error_type": error_type,
        "error": error,
    }


def recent_runs(host: Host, name: str | None = None, limit: int | None = 20, *, offset: int = 0) -> list[dict[str, Any]]:
    """The latest sync runs, newest first (``offset`` skips the newest ones); a run whose holder
    is gone shows ``interrupted``."""
    query = runs_query().order_by(col(VppSyncRun.id).desc()).offset(offset).limit(limit)
    if name:
        query = query.where(VppAccount.name == name)
    with host.db.session() as session:
        return run_rows(host, session.execute(query).all())


def get_run(host: Host, run_id: int) -> dict[str, Any] | None:
    """One sync run (as ``recent_runs`` shows it), or None."""
    with host.db.session() as session:
        rows = run_rows(host, session.execute(runs_query().where(VppSyncRun.id == run_id)).all())
    return rows[0] if rows else None


def latest_runs(host: Host) -> dict[str, dict[str, Any]]:
    """The latest sync run of each account, by account name."""
    latest = select(func.max(col(VppSyncRun.id))).group_by(col(VppSyncRun.account_id))
    with host.db.session() as session:
        rows = run_rows(host, session.execute(runs_query().where(col(VppSyncRun.id).in_(latest))).all())
    return {row["account"]: row for row in rows}


def runs_query() -> Any:
    """Rows ``(VppSyncRun, account name)`` for :func:`run_rows`."""
    return select(VppSyncRun, col(VppAccount.name)).join(VppAccount, col(VppAccount.id) == col(VppSyncRun.account_id))


def run_rows(host: Host, rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Sync runs as plain values (``mdm vpp runs --json``); a run still ``running`` whose holder
    is gone shows ``interrupted``. ``progress`` is that of a running run, from whichever process
    runs it (:func:`.stored_progress.shown`, aged by the database's clock), else None."""
    found = [run_row(r, n) for r, n in rows]
    for row in found:
        if row["status"] == "running" and (row["holder"] is None or holder_is_dead(host.db, row["holder"])):
            row["status"], row["error"] = "interrupted", "the process stopped during this sync"
    now = stored_progress.database_now(host) if any(row["status"] == "running" for row in found) else None
    for row in found:
        row["progress"] = stored_progress.shown(row, now)
    return found


def run_row(run: VppSyncRun, account: str) -> dict[str, Any]:
    """One run record as plain values, its keys always in this order (the JSON of ``mdm vpp
    runs`` and of ``GET /api/v1/vpp/runs``): who and how, when and how long (``duration_s``,
    None while it runs), what it did, how it failed, then its holder and progress."""
    finished = run.finished_at
    return {
        "id": run.id,
        "account": account,
        "trigger": run.trigger,
        "mode": run.mode,
        "status": run.status,
        "started_at": run.started_at,
        "finished_at": finished,
        "duration_s": None if finished is None else round((finished - run.started_at).total_seconds(), 3),
        "pages": run.pages,
        "counts": run.counts,
        "error_type": run.error_type,
        "error": run.error,
        "holder": run.holder,
        "progress": run.progress,
    }


def choose_mode(account: VppAccount, full: bool, reconcile_seconds: int, now: datetime | None = None) -> str:
    """``full`` when asked, on the first sync, when the last full sync is too old, or when it
    lies in the future (the clock was set back: a wrong date must not stop the reconcile)."""
    now = now or utcnow()
    if full or not account.assignments_version_id or not account.users_version_id or account.last_full_sync_at is None:
        return "full"
    age = now - account.last_full_sync_at
    if age.total_seconds() >= reconcile_seconds or age < -CLOCK_SKEW:
        return "full"
    return "incremental"
