"""The host's one ``schedule.Scheduler``: jobs tagged per plugin, run off the loop thread.

``schedule`` itself does not catch exceptions (a raising job stays due and re-fires, and the
jobs after it in that tick do not run) and runs jobs serially. Here every job runs through a
wrapper that hands it to a bounded worker pool, logs and records a failure, keeps the job on
its schedule, and never starts a job again while its previous run is still going.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import schedule

from mdm_core.errors import MdmError, describe

log = logging.getLogger(__name__)


@dataclass
class JobState:
    """What the scheduler knows of one job in this process."""

    name: str
    plugin: str
    seconds: float
    func: Callable[[], Any]
    job: schedule.Job
    running: Future[Any] | None = None
    runs: int = 0
    failures: int = 0
    last_error: str | None = None
    last_started_at: datetime | None = None  # UTC, for the core_job_run row


class HostScheduler:
    """Add, re-time and remove named jobs; ``run_pending`` starts what is due."""

    def __init__(self, *, workers: int = 4, inline: bool = False, on_finish: Callable[[JobState, BaseException | None], None] | None = None):
        self.scheduler = schedule.Scheduler()
        self.jobs: dict[str, JobState] = {}
        self.pool = None if inline else ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mdm-job")
        self.on_finish = on_finish

    def add(self, name: str, seconds: float, func: Callable[[], Any], *, plugin: str) -> JobState:
        """Run ``func`` every ``seconds``; the first run is one interval from now."""
        if name in self.jobs:
            raise MdmError(f"job {name} is already scheduled")
        state = JobState(name=name, plugin=plugin, seconds=seconds, func=func, job=None)  # type: ignore[arg-type]
        self._schedule(state, seconds)
        self.jobs[name] = state
        return state

    def retime(self, name: str, seconds: float) -> None:
        """Change a job's interval; it takes effect from now."""
        state = self.jobs.get(name)
        if state is None:
            raise MdmError(f"job {name} is not scheduled")
        self._schedule(state, seconds)

    def _schedule(self, state: JobState, seconds: float) -> None:
        """(Re)place the job in ``schedule`` at this interval, counted from now."""
        if seconds <= 0:
            raise MdmError(f"job {state.name}: interval must be positive, got {seconds}")
        if state.job is not None:
            self.scheduler.cancel_job(state.job)
        state.seconds = seconds
        state.job = self.scheduler.every(seconds).seconds.do(self._start, state).tag(state.plugin, state.name)

    def remove(self, name: str) -> None:
        """Stop scheduling a job (a run in progress finishes)."""
        state = self.jobs.pop(name, None)
        if state is not None:
            self.scheduler.cancel_job(state.job)

    def ensure(self, name: str, seconds: float, func: Callable[[], Any], *, plugin: str) -> None:
        """Add the job, or re-time it if its interval changed."""
        if name not in self.jobs:
            self.add(name, seconds, func, plugin=plugin)
        elif self.jobs[name].seconds != seconds:
            self.retime(name, seconds)

    def run_pending(self) -> None:
        """Start every due job (each in the pool, or inline when built with ``inline=True``)."""
        self.scheduler.run_pending()

    def idle_seconds(self) -> float | None:
        """Seconds until the next job is due, ``None`` without jobs."""
        return self.scheduler.idle_seconds

    def next_run(self, name: str) -> datetime | None:
        """When the job runs next."""
        state = self.jobs.get(name)
        if state is None:
            raise MdmError(f"job {name} is not scheduled")
        return state.job.next_run

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool, letting running jobs finish when ``wait``."""
        if self.pool is not None:
            self.pool.shutdown(wait=wait, cancel_futures=True)

    def _start(self, state: JobState) -> None:
        if state.running is not None and not state.running.done():
            log.info("job %s is still running; skipping this turn", state.name)
            return
        if self.pool is None:
            self._run(state)
            return
        try:
            state.running = self.pool.submit(self._run, state)
        except RuntimeError:  # the pool is shutting down
            log.info("job %s not started: the host is stopping", state.name)

    def _run(self, state: JobState) -> None:
        state.last_started_at = datetime.now(timezone.utc)
        state.runs += 1
        error: BaseException | None = None
        try:
            state.func()
        except Exception as exc:
            error = exc
            state.failures += 1
            state.last_error = describe(exc)
            log.error("job %s (%s) failed: %s", state.name, state.plugin, state.last_error, exc_info=log.isEnabledFor(logging.DEBUG))
        else:
            state.last_error = None
        if self.on_finish is not None:
            try:
                self.on_finish(state, error)
            except Exception as exc:
                log.error("could not record the run of job %s: %s", state.name, exc)
