"""``mdm jobs``: the scheduled jobs, their next and last runs; ``mdm jobs run``: run some now.

``mdm jobs run NAME...`` (or ``--due``) is for hosts that do not run ``mdm run`` (cron, a
container running one command at a time): each job runs once, in the foreground, through the
host's scheduler exactly as ``mdm run`` runs it when it falls due. Its run is recorded in the
job history (``mdm jobs`` shows it, and ``mdm run`` on any host plans the next one from it),
the locks its work takes apply as usual, and the events it recorded are delivered afterwards.
A job already running in another process or on another host (its ``job.NAME`` lock) is not
run again at the same time: it is shown as skipped, with who runs it, and does not fail.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from mdm_core.errors import UsageError, one_line
from mdm_core.output import format_time, print_json, print_rows, say
from mdm_core.text import shown

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.models import JobRun
    from mdm_core.scheduler import HostScheduler, JobState

LIST_COLUMNS = ["name", "plugin", "every_seconds", "next_run", "running", "last_finished_at", "last_run_by", "last_result"]  # last_result last: free text


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``mdm jobs`` and ``mdm jobs run``."""
    jobs = sub.add_parser(
        "jobs",
        help="list scheduled jobs and their next runs; `mdm jobs run` runs some now",
        description="Each scheduled job: its interval, next run (UTC) as `mdm run` plans it, when its last run finished, which process on which host ran it, "
        "and its result (ok; attention: what a run that went well did not do, a sync waiting for a new token; or failed: why). "
        "`mdm jobs run` runs jobs now, for a host run from cron.",
    )
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.set_defaults(func=cmd_jobs)
    jobs_sub = jobs.add_subparsers(dest="jobs_command", metavar="COMMAND")
    run = jobs_sub.add_parser(
        "run",
        help="run jobs once now, in the foreground, as `mdm run` does when they fall due",
        description="Run the named jobs (or every due one) once now, through the host's scheduler as `mdm run` does: "
        "the run is recorded in the job history (`mdm jobs`), the events it recorded are delivered. "
        "A job already running in another process or on another host is skipped (shown with who runs it; exit 0). "
        "A failed job's line goes to stderr. Exit 1 if a job failed, 2 for an unknown name (nothing runs).",
    )
    run.add_argument("names", nargs="*", metavar="NAME", help="jobs to run, in this order (`mdm jobs` lists them)")
    run.add_argument("--due", action="store_true", help="every job whose next run has come (what one turn of `mdm run` starts)")
    run.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    run.set_defaults(func=cmd_run)


def cmd_jobs(host: Host, args: argparse.Namespace) -> int:
    """``mdm jobs``"""
    from mdm_core.job_lock import held_jobs
    from mdm_core.locks import describe_holder

    scheduler = host.scheduler
    runs = recorded_runs(host)
    held = held_jobs(host.db)
    rows = []
    for name, state in sorted(scheduler.jobs.items()):
        last = runs.get(name)
        lock = held.get(name)
        by: dict[str, Any] | None = None if lock is None else {"by": describe_holder(lock.holder), "holder": lock.holder, "since": lock.acquired_at}
        finished = last is not None and last.last_finished_at is not None
        note = last.last_note if last is not None and finished and not last.last_error else None
        rows.append(
            {
                "name": name,
                "plugin": state.plugin,
                "every_seconds": state.seconds,
                "next_run": scheduler.next_run(name),
                "last_finished_at": last.last_finished_at if last else None,
                # who ran the last run (`process 1234 on host-a`; JSON: last_holder too); None: not recorded (an older release)
                "last_run_by": describe_holder(last.last_holder) if last and last.last_holder else None,
                "last_holder": last.last_holder if last else None,  # JSON only (not a column)
                # text: `attention: not synced: token expired: ...`; JSON keeps `ok` and says it in last_note
                "last_result": (last_result(last.last_error, None if args.json else note) if last and finished else None),
                "last_error": last.last_error if last else None,
                "last_note": note,
                # who runs it now, on which host (`process 1234 on host-a since ...`)
                "running": by if args.json or by is None else f"{by['by']} since {format_time(by['since'])}",
            }
        )
    return print_rows(rows, args.json, LIST_COLUMNS, empty="no jobs")


def recorded_runs(host: Host) -> dict[str, JobRun]:
    """The last recorded run of each job on this database (by any process or host), by job name:
    what ``mdm jobs`` shows (``last_error`` None: it went well; ``last_finished_at`` None: never
    finished)."""
    from sqlalchemy import select

    from mdm_core.models import JobRun

    with host.db.session() as session:
        return {r.name: r for r in session.execute(select(JobRun)).scalars()}


def last_result(error: str | None, note: str | None = None) -> str:
    """A recorded run's result as ``mdm jobs`` shows it: ``ok``, ``attention: NOTE`` when it went
    well but did not do all its work (a sync its token keeps waiting: not a line starting with
    ``ok`` for an account that stopped syncing), or ``failed: ERROR`` (one line), as ``mdm jobs
    run`` says it."""
    if error:
        return f"failed: {one_line(error)}"
    return f"attention: {one_line(note)}" if note else "ok"


def cmd_run(host: Host, args: argparse.Namespace) -> int:
    """``mdm jobs run NAME... | --due``: exit 1 if a job failed."""
    if args.due and args.names:
        raise UsageError("give the names of the jobs to run or --due, not both: --due runs every due job")
    if not args.due and not args.names:
        raise UsageError("give the names of the jobs to run (`mdm jobs` lists them), or --due")
    scheduler = host.build_scheduler(inline=True)
    unknown = [name for name in dict.fromkeys(args.names) if name not in scheduler.jobs]
    if unknown:
        raise UsageError(f"no job named {', '.join(shown(n) for n in unknown)}: `mdm jobs` lists the names")
    if args.due:
        ran = scheduler.run_due()
        host.deliver_events()
        rows = [_outcome(scheduler, state) for state in ran]
    else:
        rows = []
        for name in dict.fromkeys(args.names):
            rows.append(_outcome(scheduler, scheduler.run_now(name)))
            host.deliver_events()  # as `mdm run` does after its jobs: before the next job starts
    if getattr(args, "json", False):
        print_json(rows)
    elif args.due and not rows:
        say("no job is due")
    for row in [] if getattr(args, "json", False) else rows:
        _print_outcome(row, named=not args.due)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def _print_outcome(row: dict[str, Any], *, named: bool) -> None:
    """``NAME: ok in 0.041s: done 1, pending 0`` (``-q`` silences it), ``NAME: failed in 0.2s: ERROR`` (stderr),
    or ``NAME: skipped: already running, held by process 12 on host-a since ...`` (``-q`` silences
    it under ``--due``, where a skip is routine; never for a job asked for by name)."""
    ints = [f"{k} {v}" for k, v in (row.get("result") or {}).items() if isinstance(v, int)]  # a Told's data is its line's
    counts = ", ".join(ints + ([row["note"]] if row.get("note") else []))
    if row["status"] == "skipped":
        line = f"{row['name']}: skipped: already running elsewhere, {row['held_by']}"
        (print if named else say)(line)
    elif row["status"] == "ok":
        say(f"{row['name']}: ok in {row['duration_s']}s" + (f": {counts}" if counts else ""))
    else:  # on stderr, as `mdm vpp sync` says an account's failure: stdout keeps what went well
        print(f"{row['name']}: failed in {row['duration_s']}s: {row['error']}", file=sys.stderr, flush=True)


def _outcome(scheduler: HostScheduler, state: JobState) -> dict[str, Any]:
    """One job's run as shown: its counts, the one line a job returns as a ``str`` (what it did
    not do and why: a sync skipped while its token waits for the admin), or a :class:`Told`'s
    line and data (an account's sync: its counts), never other values a job returns; its error
    on one line."""
    from mdm_core.scheduler import Told

    result = state.last_result
    told = result if isinstance(result, Told) and not state.last_error else None
    counts = result if isinstance(result, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in result.values()) else None
    if state.skipped is not None:
        return {"name": state.name, "plugin": state.plugin, "status": "skipped", "held_by": state.skipped, "next_run": scheduler.next_run(state.name)}
    return {
        "name": state.name,
        "plugin": state.plugin,
        "status": "failed" if state.last_error else "ok",
        "started_at": state.last_started_at,
        "duration_s": round(state.last_duration or 0.0, 3),
        "error": state.last_error,
        "result": told.data if told else {str(k): v for k, v in counts.items()} if counts else None,
        "note": one_line(told.line) if told else state.note(),
        "next_run": scheduler.next_run(state.name),
    }
