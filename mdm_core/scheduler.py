"""The host's one ``schedule.Scheduler``: jobs tagged per plugin, run off the loop thread, on a
UTC clock.

``schedule`` plans in the naive local time of the host, so a job jumps with the clock at a
daylight-saving change (a 60-second job stalls an hour in autumn, an hourly one runs half an
hour early in spring). Here its jobs plan and compare in UTC (:func:`utc_now`): the local
zone never matters.

A job's next run is one interval after the last time its work was done, as recorded in the
database (the job's last start, or what the plugin says with ``last_done``, e.g. an account's
last sync): a restarted host does not delay every job by a full interval, a job never run
on this database runs at once, and ``mdm jobs`` in another process computes the same time.

``schedule`` itself does not catch exceptions (a raising job stays due and re-fires, and the
jobs after it in that tick do not run) and runs jobs serially. Here every job runs through a
wrapper that hands it to a bounded worker pool, logs and records a failure, keeps the job on
its schedule, and never starts a job again while its previous run is still going. With a
``guard`` (the host's: a database lock per job name), a job already running in another
process or on another host is skipped for this turn rather than run twice at once. With a
``plans_depend_on`` (the host's: the live hosts of its database, whose shares decide who runs
which account first), every job is planned again as soon as that changes: a host that sees
another one gone runs its share when ``mdm jobs`` says, not at the plan it made before.
``run_now`` and ``run_due`` run jobs through that same wrapper for ``mdm jobs run`` (a host
run from cron), which tells their failures itself.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import schedule

from mdm_core.errors import MdmError, describe, one_line, told

log = logging.getLogger(__name__)

MAX_INTERVAL = 365 * 24 * 3600  # a year: the longest interval a job (or an account) accepts
LastDone = Callable[[], _dt.datetime | None]
#: enters while a job runs: yields ``None`` when the job may run, or who runs it elsewhere
Guard = Callable[["JobState"], AbstractContextManager[str | None]]
_FORCED: ContextVar[bool] = ContextVar("mdm_job_forced", default=False)
#: set while :meth:`HostScheduler.run_now` runs a job whose caller reports its failure itself
_CALLER_TELLS: ContextVar[bool] = ContextVar("mdm_job_caller_tells", default=False)


@dataclass(frozen=True)
class Told:
    """What a job returns to say what it did: ``line`` for people (``mdm jobs run`` shows it after
    ``ok in 0.2s:``, and as ``note`` in ``--json``), ``data`` as ``--json``'s ``result``;
    ``note``: what the run, which went well, did not do and why (some apps not checked), which
    ``mdm jobs`` shows as its last result (``ok: NOTE``) until the next run."""

    line: str
    data: dict[str, Any]
    note: str | None = None


def run_is_forced() -> bool:
    """Whether the job running in this context was made due by :meth:`HostScheduler.make_due`
    (a test, a "run now") rather than by its plan."""
    return _FORCED.get()


@contextmanager
def _caller_tells() -> Iterator[None]:
    """Jobs run on this thread meanwhile log their failure at info level: the caller tells it."""
    token = _CALLER_TELLS.set(True)
    try:
        yield
    finally:
        _CALLER_TELLS.reset(token)


def utc_now() -> _dt.datetime:
    """The scheduler's clock: aware UTC, immune to the local zone and its DST changes."""
    return _dt.datetime.now(_dt.UTC)


def check_interval(seconds: Any, what: str = "interval") -> float:
    """A job interval: a finite number of seconds, more than 0 and at most a year."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise MdmError(f"{what} must be a number of seconds, got {seconds!r}")
    if seconds <= 0:
        raise MdmError(f"{what} must be positive, got {seconds}")
    if seconds > MAX_INTERVAL:
        raise MdmError(f"{what} {seconds} is longer than a year ({MAX_INTERVAL} seconds)")
    return seconds


class _UtcJob(schedule.Job):
    """A ``schedule`` interval job whose ``next_run`` is aware UTC, planned by the host.

    When it falls due, it asks its planner again: work done meanwhile by another process (a
    manual sync) moves the run later, exactly as ``mdm jobs`` shows it.
    """

    planner: Callable[[], _dt.datetime] | None = None
    forced = False

    def _plan(self) -> _dt.datetime:
        fallback = utc_now() + _dt.timedelta(seconds=self.interval)
        if self.planner is None:
            return fallback
        try:
            return self.planner()
        except Exception as exc:  # (a database read failed) the loop goes on, one interval from now
            log.error("cannot plan the next run of %s, running it in %ss: %s", ",".join(map(str, self.tags)), self.interval, describe(exc))
            return fallback

    def _schedule_next_run(self) -> None:
        self.forced = False
        self.next_run = self._plan()

    @property
    def should_run(self) -> bool:
        assert self.next_run is not None, "a scheduled job has its next run planned"
        if utc_now() < self.next_run:
            return False
        if self.forced or self.planner is None:
            return True
        planned = self._plan()
        if planned > utc_now():
            self.next_run = planned
            return False
        return True


class _UtcScheduler(schedule.Scheduler):
    def every(self, interval: Any = 1) -> _UtcJob:
        return _UtcJob(interval, self)

    @property
    def idle_seconds(self) -> float | None:
        nxt = self.get_next_run()
        return None if nxt is None else (nxt - utc_now()).total_seconds()


@dataclass
class JobState:
    """What the scheduler knows of one job in this process."""

    name: str
    plugin: str
    seconds: float
    func: Callable[[], Any]
    job: _UtcJob
    last_done: LastDone | None = None
    running: Future[Any] | None = None
    runs: int = 0
    failures: int = 0
    last_error: str | None = None
    last_result: Any = None  # what ``func`` returned at its last run (counts, say); None if it failed
    last_duration: float | None = None  # seconds its last run took
    last_started_at: _dt.datetime | None = None  # UTC, for the core_job_run row
    local: bool = False  # work on this process alone (its own scheduler): never guarded
    skips: int = 0  # turns skipped because the job was running elsewhere
    skipped: str | None = None  # who ran it elsewhere, if its last turn was skipped

    def note(self) -> str | None:
        """What its last run, which went well, did not do and why: the one line a job returns as
        a ``str`` (a sync skipped while its token waits for the admin); ``None`` otherwise."""
        if self.last_error is None and isinstance(self.last_result, str):
            return one_line(self.last_result)
        if self.last_error is None and isinstance(self.last_result, Told) and self.last_result.note:
            return one_line(self.last_result.note)
        return None


class HostScheduler:
    """Add, re-time and remove named jobs; ``run_pending`` starts what is due.

    ``history(name)`` tells when a job last started on this database (the host reads its
    ``core_job_run`` row); without it only this process's runs count.
    """

    def __init__(
        self,
        *,
        workers: int = 4,
        inline: bool = False,
        on_finish: Callable[[JobState, BaseException | None], None] | None = None,
        history: Callable[[str], _dt.datetime | None] | None = None,
        guard: Guard | None = None,
        plans_depend_on: Callable[[], object] | None = None,
    ):
        self.scheduler = _UtcScheduler()
        self.jobs: dict[str, JobState] = {}
        self.pool = None if inline else ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mdm-job")
        self.on_finish = on_finish
        self.history = history
        self.guard = guard
        self.plans_depend_on = plans_depend_on
        self._plans_made_with: object = None

    def add(self, name: str, seconds: float, func: Callable[[], Any], *, plugin: str, last_done: LastDone | None = None, local: bool = False) -> JobState:
        """Run ``func`` every ``seconds``.

        The first run is one interval after the job's work was last done (its last start on
        this database, or ``last_done()`` if later, e.g. an account's last sync), at once if
        that is past or never happened. A ``local`` job works on this process alone (its own
        scheduler): the guard never skips it because another process runs it.
        """
        if name in self.jobs:
            raise MdmError(f"job {name} is already scheduled")
        check_interval(seconds, f"job {name}: interval")
        state = JobState(name=name, plugin=plugin, seconds=seconds, func=func, job=None, last_done=last_done, local=local)  # type: ignore[arg-type]  # _schedule sets the job just below
        self._schedule(state, seconds)
        self.jobs[name] = state
        return state

    def retime(self, name: str, seconds: float) -> None:
        """Change a job's interval: its next run is the new interval after its last run."""
        state = self.jobs.get(name)
        if state is None:
            raise MdmError(f"job {name} is not scheduled")
        check_interval(seconds, f"job {name}: interval")
        self._schedule(state, seconds)

    def _schedule(self, state: JobState, seconds: float) -> None:
        """(Re)place the job in ``schedule`` at this interval."""
        if state.job is not None:
            self.scheduler.cancel_job(state.job)
        state.seconds = seconds
        job = self.scheduler.every(seconds)
        job.planner = lambda: self.plan(state)
        state.job = job.seconds.do(self._start, state).tag(state.plugin, state.name)

    def plan(self, state: JobState, *, finished: bool = False) -> _dt.datetime:
        """When the job runs next: one interval after its work was last done, now if overdue."""
        now = utc_now()
        if not finished and state.running is not None and not state.running.done():
            return now + _dt.timedelta(seconds=state.seconds)  # planned again when it finishes
        done = [state.last_started_at]
        if self.history is not None:
            done.append(self.history(state.name))
        if state.last_done is not None:
            done.append(state.last_done())
        known = [d for d in done if d is not None]
        if not known:
            return now
        return max(now, max(known) + _dt.timedelta(seconds=state.seconds))

    def remove(self, name: str) -> None:
        """Stop scheduling a job (a run in progress finishes)."""
        state = self.jobs.pop(name, None)
        if state is not None:
            self.scheduler.cancel_job(state.job)

    def ensure(self, name: str, seconds: float, func: Callable[[], Any], *, plugin: str, last_done: LastDone | None = None) -> None:
        """Add the job, or re-time it if its interval changed."""
        if name not in self.jobs:
            self.add(name, seconds, func, plugin=plugin, last_done=last_done)
        elif self.jobs[name].seconds != seconds:
            self.retime(name, seconds)

    def run_pending(self) -> None:
        """Start every due job (each in the pool, or inline when built with ``inline=True``),
        after planning them all again if what their plans depend on changed (:meth:`replan`)."""
        self._replan_if_changed()
        self.scheduler.run_pending()

    def _replan_if_changed(self) -> None:
        if self.plans_depend_on is None:
            return
        try:
            basis = self.plans_depend_on()
        except Exception as exc:  # (a database read failed) the plans stand; next turn (its planners log the outage)
            log.debug("cannot tell whether the jobs' plans changed: %s", describe(exc))
            return
        if basis != self._plans_made_with:
            if self._plans_made_with is not None:
                self.replan()
            self._plans_made_with = basis

    def replan(self) -> None:
        """Plan every job again now (those running or made due on purpose keep theirs)."""
        for state in self.jobs.values():
            if state.job.forced or (state.running is not None and not state.running.done()):
                continue
            state.job.next_run = state.job._plan()

    def make_due(self, name: str) -> None:
        """Let the job run at the next ``run_pending`` (tests, and `run now` commands)."""
        state = self.jobs.get(name)
        if state is None:
            raise MdmError(f"job {name} is not scheduled")
        state.job.next_run = utc_now() - _dt.timedelta(microseconds=1)
        state.job.forced = True

    def run_now(self, name: str) -> JobState:
        """Run the job once now, as a due run (:func:`run_is_forced`), through the same wrapper as
        its scheduled runs: recorded by ``on_finish``, a failure caught and kept in
        ``last_error`` (an inline run logs it at info level only: the caller tells it), then
        planned again. An inline scheduler runs it on this thread; otherwise this waits for it."""
        self.make_due(name)
        state = self.jobs[name]
        with _caller_tells():
            state.job.run()
        if state.running is not None:
            state.running.result()
        return state

    def run_due(self) -> list[JobState]:
        """``run_pending`` for a caller that tells failures itself (``mdm jobs run --due``): the
        jobs that ran or were skipped (:attr:`JobState.skipped`), in the order they started (all of
        them finished on an inline scheduler)."""
        before = {name: state.runs + state.skips for name, state in self.jobs.items()}
        with _caller_tells():
            self.run_pending()
        ran = [state for name, state in self.jobs.items() if state.runs + state.skips > before.get(name, 0)]
        return sorted(ran, key=lambda state: state.last_started_at or utc_now())

    def idle_seconds(self) -> float | None:
        """Seconds until the next job is due, ``None`` without jobs."""
        return self.scheduler.idle_seconds

    def next_run(self, name: str) -> _dt.datetime:
        """When the job runs next, in UTC."""
        state = self.jobs.get(name)
        if state is None:
            raise MdmError(f"job {name} is not scheduled")
        assert state.job.next_run is not None, "a scheduled job has its next run planned"
        return state.job.next_run

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool, letting running jobs finish when ``wait``."""
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)

    def _start(self, state: JobState) -> None:
        if state.running is not None and not state.running.done():
            log.info("job %s is still running; skipping this turn", state.name)
            return
        state.last_started_at = utc_now()
        forced = state.job.forced  # read now: ``schedule`` plans the next run (and clears it) as soon as this returns
        if self.pool is None:
            self._run(state, forced)
            return
        try:
            state.running = self.pool.submit(self._run, state, forced)
        except RuntimeError:  # the pool is shutting down
            log.info("job %s not started: the host is stopping", state.name)

    def _run(self, state: JobState, forced: bool = False) -> None:
        guard = nullcontext(None) if self.guard is None or state.local else self.guard(state)
        elsewhere: str | None = None
        try:
            with guard as elsewhere:
                state.skipped = elsewhere
                if elsewhere is None:
                    self._execute(state, forced)
        except Exception as exc:  # the guard itself failed (its database is unreachable): a failed turn
            state.runs += 1
            state.failures += 1
            state.last_result, state.last_duration = None, 0.0
            state.last_error = f"not run: cannot tell whether it runs elsewhere: {describe(exc)}"
            log.log(logging.INFO if _CALLER_TELLS.get() else logging.ERROR, "job %s (%s) %s", state.name, state.plugin, state.last_error)
        if elsewhere is not None:
            state.skips += 1
            log.info("job %s is already running elsewhere (%s); skipping this turn", state.name, elsewhere)
        if self.pool is not None:  # inline: Job.run plans the next run right after this
            try:
                state.job.next_run = self.plan(state, finished=True)
            except Exception as exc:
                log.error("job %s: cannot plan its next run: %s", state.name, describe(exc))

    def _execute(self, state: JobState, forced: bool) -> None:
        """Run the job's function: its failure caught, logged and kept; ``on_finish`` told."""
        state.runs += 1
        error: BaseException | None = None
        token = _FORCED.set(forced)
        started = time.monotonic()
        try:
            state.last_result = None
            state.last_result = state.func()
        except Exception as exc:
            error = exc
            state.failures += 1
            state.last_error = told(exc)
            level = logging.INFO if _CALLER_TELLS.get() else logging.ERROR
            log.log(level, "job %s (%s) failed: %s", state.name, state.plugin, state.last_error, exc_info=log.isEnabledFor(logging.DEBUG))
        else:
            state.last_error = None
        finally:
            _FORCED.reset(token)
            state.last_duration = time.monotonic() - started
        if self.on_finish is not None:
            try:
                self.on_finish(state, error)
            except Exception as exc:
                log.error("could not record the run of job %s: %s", state.name, exc)
