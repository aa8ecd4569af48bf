"""``mdm jobs run``: jobs run once now through the scheduler's wrapper, recorded in the job
history as a scheduled run is, events delivered; an unknown name runs nothing."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from mdm_core.models import JobRun

JOBS = """
    calls = []
    delivered = []

    def ok():
        calls.append("ok")
        return {"done": 2, "pending": 0}

    def boom():
        calls.append("boom")
        raise ValueError("feed unreachable\\nretry later")

    def enrol(host):
        from mdm_core.inventory import add_device

        calls.append("enrol")
        add_device(host, f"SJOB{len(calls)}", "iOS")

    @hookimpl
    def mdm_register_jobs(scheduler, host):
        scheduler.add("demo.boom", 60, boom, plugin="demo")
        scheduler.add("demo.ok", 60, ok, plugin="demo")
        scheduler.add("demo.enrol", 3600, lambda: enrol(host), plugin="demo")

    @hookimpl
    def mdm_device_enrolled(host, event):
        delivered.append(event.payload["serial_number"])
"""


def _setup(mdm, write_plugin):
    name = write_plugin(JOBS)
    config = f'[plugins]\nenabled = ["inventory", "{name}"]\n'
    assert mdm("db", "upgrade", config=config)[0] == 0
    return importlib.import_module(name)


def _history(mdm) -> dict[str, JobRun]:
    from sqlalchemy import create_engine
    from sqlmodel import Session

    engine = create_engine(f"sqlite:///{mdm.db}")
    try:
        with Session(engine) as session:
            return {r.name: r for r in session.execute(select(JobRun)).scalars()}
    finally:
        engine.dispose()


def test_named_job_runs_now_and_mdm_jobs_shows_the_run(mdm, write_plugin):
    plug = _setup(mdm, write_plugin)
    code, out, err = mdm("jobs", "run", "demo.ok")
    assert code == 0, err
    assert plug.calls == ["ok"]  # that job only, though the others are due too
    assert out.startswith("demo.ok: ok in ") and out.endswith("s: done 2, pending 0\n")
    rows = {r["name"]: r for r in json.loads(mdm("jobs", "--json")[1])}
    finished = datetime.fromisoformat(rows["demo.ok"]["last_finished_at"])
    assert abs(finished - datetime.now(UTC)) < timedelta(seconds=5) and rows["demo.ok"]["last_error"] is None
    assert datetime.fromisoformat(rows["demo.ok"]["next_run"]) > datetime.now(UTC) + timedelta(seconds=50)  # one interval on
    assert rows["demo.boom"]["last_finished_at"] is None
    assert (rows["demo.ok"]["last_result"], rows["demo.boom"]["last_result"]) == ("ok", None)  # never run: no result
    history = _history(mdm)
    assert history["demo.ok"].runs == 1 and history["demo.ok"].failures == 0 and set(history) == {"demo.ok"}


def test_failing_job_is_one_line_exit_1_and_recorded_as_a_failure(mdm, write_plugin):
    plug = _setup(mdm, write_plugin)
    code, out, err = mdm("jobs", "run", "demo.boom", "demo.ok")
    assert code == 1
    [failed] = err.splitlines()  # told once, on stderr (was: stdout, where a script reads what went well)
    assert failed.startswith("demo.boom: failed in ") and failed.endswith("s: ValueError: feed unreachable retry later")
    [ok] = out.splitlines()  # the next job still ran, as the scheduler does
    assert ok.startswith("demo.ok: ok in ") and "feed unreachable" not in out
    assert plug.calls == ["boom", "ok"]
    history = _history(mdm)
    assert (history["demo.boom"].runs, history["demo.boom"].failures) == (1, 1)
    assert history["demo.boom"].last_error == "ValueError: feed unreachable retry later"
    code, out, _ = mdm("jobs")  # each job's last result, as the run said it: the list read it from the job history
    header, *lines = out.splitlines()
    assert header.split()[-2:] == ["last_run_by", "last_result"]
    said = {line.split()[0]: line[header.index("last_result") :].rstrip() for line in lines}
    assert said["demo.boom"] == "failed: ValueError: feed unreachable retry later" and said["demo.ok"] == "ok"
    rows = {r["name"]: r for r in json.loads(mdm("jobs", "--json")[1])}
    assert rows["demo.boom"]["last_result"] == "failed: ValueError: feed unreachable retry later" and rows["demo.ok"]["last_result"] == "ok"
    code, out, err = mdm("-q", "jobs", "run", "demo.boom", "demo.ok")  # from cron: only the failure is printed
    assert code == 1 and out == "" and len(err.splitlines()) == 1 and err.startswith("demo.boom: failed")
    assert (_history(mdm)["demo.boom"].runs, _history(mdm)["demo.boom"].failures) == (2, 2)


def test_unknown_name_runs_nothing_exit_2(mdm, write_plugin):
    plug = _setup(mdm, write_plugin)
    code, out, err = mdm("jobs", "run", "demo.ok", "demo.okk")
    assert code == 2 and out == ""
    assert err == "mdm: error: no job named 'demo.okk': `mdm jobs` lists the names\n"
    assert plug.calls == [] and _history(mdm) == {}
    code, _, err = mdm("jobs", "run")
    assert code == 2 and "--due" in err and len(err.splitlines()) == 1
    assert mdm("jobs", "run", "--due", "demo.ok")[0] == 2 and plug.calls == []


def test_names_with_due_say_they_do_not_go_together(mdm, write_plugin):
    plug = _setup(mdm, write_plugin)
    code, out, err = mdm("jobs", "run", "--due", "demo.ok")
    assert code == 2 and out == "" and plug.calls == [] and _history(mdm) == {}
    assert err == "mdm: error: give the names of the jobs to run or --due, not both: --due runs every due job\n"


def test_events_of_the_job_are_delivered(mdm, write_plugin):
    plug = _setup(mdm, write_plugin)
    code, out, err = mdm("jobs", "run", "demo.enrol")
    assert code == 0, err
    assert plug.delivered == ["SJOB1"]  # by the command, not left for `mdm run`


def test_due_runs_what_is_due_and_json(mdm, write_plugin):
    plug = _setup(mdm, write_plugin)
    assert mdm("jobs", "run", "demo.ok")[0] == 0
    code, out, err = mdm("jobs", "run", "--due", "--json")
    assert code == 1  # demo.boom failed
    rows = json.loads(out)
    demo = [(r["name"], r["status"]) for r in rows if r["plugin"] == "demo"]
    assert demo == [("demo.boom", "failed"), ("demo.enrol", "ok")]  # demo.ok ran a moment ago
    assert ("core.housekeeping", "ok") in [(r["name"], r["status"]) for r in rows]  # the host's own job, never run here
    assert set(rows[0]) == {"name", "plugin", "status", "started_at", "duration_s", "error", "result", "note", "next_run"}
    assert rows[0]["error"] == "ValueError: feed unreachable retry later" and rows[0]["plugin"] == "demo"
    assert sorted(plug.calls) == ["boom", "enrol", "ok"]
    code, out, _ = mdm("jobs", "--json", "run", "demo.ok")  # --json before the subcommand too
    assert code == 0 and json.loads(out)[0]["result"] == {"done": 2, "pending": 0}
    code, out, _ = mdm("jobs", "run", "--due", config='[plugins]\nenabled = ["inventory"]\n')
    assert (code, out) == (0, "no job is due\n")


def test_core_0007_keeps_the_job_history_and_adds_its_note(project_dir, monkeypatch, capsys, database_url):
    """core 0007 adds ``core_job_run.last_note`` (what a run that went well did not do): the runs
    recorded before stay, with no note, and `mdm jobs` lists them as before."""
    from ..test_apple_migrations import _database_at, _upgrade_then_query

    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"core": "0006"},
        [
            "INSERT INTO core_job_run (name, plugin, last_started_at, last_finished_at, last_error, runs, failures)"
            " VALUES ('core.housekeeping', 'core', '2026-01-02 03:04:05+00', '2026-01-02 03:04:06+00', NULL, 7, 1)",
        ],
        url=database_url,
    )
    [rows] = _upgrade_then_query(
        mdm, "core: applied 0007 (job run note", "SELECT name, runs, failures, last_error, last_note FROM core_job_run", url=database_url
    )
    assert rows == [("core.housekeeping", 7, 1, None, None)]
    code, out, err = mdm("jobs", "--json")
    [row] = [r for r in json.loads(out) if r["name"] == "core.housekeeping"]
    assert code == 0 and (row["last_result"], row["last_note"]) == ("ok", None), err


def test_mdm_jobs_says_which_process_on_which_host_ran_the_last_run(mdm, write_plugin, monkeypatch, database_url):
    """With several hosts on one database, `mdm jobs` showed a job's last result but not which
    host ran it (core_job_run had no holder): the failure was looked for in every host's log.
    Now the run records its job lock's holder; `mdm jobs` shows `process PID on HOST` before the
    result (still the last column), --json the holder too."""
    import os
    import socket

    if database_url:
        monkeypatch.setenv("MDM_DATABASE_URL", database_url)
    _setup(mdm, write_plugin)
    assert mdm("jobs", "run", "demo.boom", "demo.ok")[0] == 1
    ran_by = f"process {os.getpid()} on {socket.gethostname()}"
    code, out, err = mdm("jobs")
    header, *lines = out.splitlines()
    assert code == 0 and header.split()[-3:] == ["last_finished_at", "last_run_by", "last_result"], out
    said = {line.split()[0]: line[header.index("last_run_by") :].rstrip() for line in lines}
    assert said["demo.boom"] == f"{ran_by}  failed: ValueError: feed unreachable retry later", said
    assert said["demo.ok"] == f"{ran_by}  ok" and said["demo.enrol"].split() == ["-", "-"], said  # never run
    rows = {r["name"]: r for r in json.loads(mdm("jobs", "--json")[1])}
    assert rows["demo.ok"]["last_run_by"] == ran_by and rows["demo.ok"]["last_holder"].startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert (rows["demo.enrol"]["last_run_by"], rows["demo.enrol"]["last_holder"]) == (None, None)


def test_core_0010_keeps_the_job_history_and_adds_who_ran_it(project_dir, monkeypatch, capsys, database_url):
    """core 0010 adds ``core_job_run.last_holder``: the runs recorded before stay, with no holder
    (`mdm jobs` shows `-`), and the next run records it."""
    from ..test_apple_migrations import _database_at, _upgrade_then_query

    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"core": "0009"},
        [
            "INSERT INTO core_job_run (name, plugin, last_started_at, last_finished_at, last_error, last_note, runs, failures)"
            " VALUES ('core.housekeeping', 'core', '2026-01-02 03:04:05+00', '2026-01-02 03:04:06+00', NULL, NULL, 7, 1)",
        ],
        url=database_url,
    )
    [rows] = _upgrade_then_query(
        mdm, "core: applied 0010 (job run holder", "SELECT name, runs, failures, last_error, last_holder FROM core_job_run", url=database_url
    )
    assert rows == [("core.housekeeping", 7, 1, None, None)]
    code, out, err = mdm("jobs", "--json")
    [row] = [r for r in json.loads(out) if r["name"] == "core.housekeeping"]
    assert code == 0 and (row["last_result"], row["last_run_by"], row["last_holder"]) == ("ok", None, None), err
    assert mdm("jobs", "run", "core.housekeeping")[0] == 0
    [row] = [r for r in json.loads(mdm("jobs", "--json")[1]) if r["name"] == "core.housekeeping"]
    assert row["last_run_by"] and row["last_run_by"].startswith("process "), row
