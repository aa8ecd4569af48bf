"""The host's scheduler: isolation of failing jobs, re-timing, no overlap, clean stop."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from sqlmodel import col

from mdm_core.errors import MdmError
from mdm_core.models import JobRun
from mdm_core.scheduler import HostScheduler

JOBS_PLUGIN = """
    calls = []

    def ok():
        calls.append("ok")

    def boom():
        calls.append("boom")
        raise ValueError("feed unreachable\\nretry later")

    @hookimpl
    def mdm_register_jobs(scheduler, host):
        scheduler.add("demo.boom", 60, boom, plugin="demo")
        scheduler.add("demo.ok", 60, ok, plugin="demo")
"""


def test_raising_job_is_logged_recorded_and_keeps_its_schedule(make_host, load_plugin, caplog):
    plug = load_plugin(JOBS_PLUGIN)
    host = make_host(plugins=[plug])
    with freeze_time("2024-05-01 12:00:00") as frozen:
        scheduler = host.build_scheduler(inline=True)
        assert scheduler.next_run("demo.ok").isoformat() == "2024-05-01T12:00:00+00:00"  # never ran here: at once
        with caplog.at_level(logging.ERROR):
            scheduler.run_pending()
        assert sorted(plug.calls) == ["boom", "ok"]  # the job after the failing one still ran
        boom = scheduler.jobs["demo.boom"]
        assert boom.failures == 1 and boom.runs == 1
        assert boom.last_error == "ValueError: feed unreachable retry later"
        assert any("demo.boom" in r.getMessage() and "feed unreachable" in r.getMessage() for r in caplog.records)
        # still scheduled, not re-fired on every tick
        assert scheduler.next_run("demo.boom") == scheduler.next_run("demo.ok")
        assert scheduler.next_run("demo.ok").isoformat() == "2024-05-01T12:01:00+00:00"
        frozen.tick(timedelta(seconds=30))
        scheduler.run_pending()
        assert len(plug.calls) == 2
        frozen.tick(timedelta(seconds=31))
        scheduler.run_pending()
        assert sorted(plug.calls) == ["boom", "boom", "ok", "ok"]
        assert scheduler.jobs["demo.ok"].last_error is None
    with host.db.session() as s:
        rows = {r.name: r for r in s.execute(select(JobRun)).scalars()}
    assert rows["demo.boom"].runs == 2 and rows["demo.boom"].failures == 2
    assert rows["demo.boom"].last_error == "ValueError: feed unreachable retry later"
    assert rows["demo.ok"].runs == 2 and rows["demo.ok"].failures == 0 and rows["demo.ok"].last_error is None
    assert rows["demo.ok"].plugin == "demo"
    assert rows["demo.ok"].last_started_at.replace(second=0) == rows["demo.ok"].last_finished_at.replace(second=0)
    assert str(rows["demo.ok"].last_started_at).startswith("2024-05-01 12:01:01")


def test_retime_remove_ensure():
    calls = []
    with freeze_time("2024-05-01 12:00:00") as frozen:
        s = HostScheduler(inline=True)
        s.add("a", 60, lambda: calls.append("a"), plugin="p")
        s.add("b", 60, lambda: calls.append("b"), plugin="p")
        s.run_pending()  # never ran: at once
        assert calls == ["a", "b"]
        frozen.tick(timedelta(seconds=5))
        s.retime("a", 10)  # counted from its last run
        assert s.next_run("a").isoformat() == "2024-05-01T12:00:10+00:00"
        frozen.tick(timedelta(seconds=25))
        s.retime("a", 20)  # overdue: at once
        assert s.next_run("a").isoformat() == "2024-05-01T12:00:30+00:00"
        s.run_pending()
        assert calls == ["a", "b", "a"]
        s.remove("b")
        s.remove("b")  # removing twice is harmless
        frozen.tick(timedelta(seconds=60))
        s.run_pending()
        assert calls == ["a", "b", "a", "a"]
        assert s.next_run("a").isoformat() == "2024-05-01T12:01:50+00:00"
        s.ensure("a", 20, lambda: None, plugin="p")  # same interval: unchanged
        assert s.next_run("a").isoformat() == "2024-05-01T12:01:50+00:00"
        s.ensure("a", 30, lambda: None, plugin="p")
        assert s.jobs["a"].seconds == 30
        s.ensure("c", 5, lambda: calls.append("c"), plugin="p")
        assert sorted(s.jobs) == ["a", "c"]
        assert s.idle_seconds() == 0  # c never ran
    with pytest.raises(MdmError, match="already scheduled"):
        s.add("a", 5, lambda: None, plugin="p")
    with pytest.raises(MdmError, match="interval must be positive"):
        s.add("z", 0, lambda: None, plugin="p")
    with pytest.raises(MdmError, match="interval must be positive"):
        s.retime("a", -1)
    with pytest.raises(MdmError, match="job nope is not scheduled"):
        s.retime("nope", 5)


def test_job_still_running_is_not_started_twice():
    release = threading.Event()
    started = []

    def slow():
        started.append(time.monotonic())
        release.wait(5)

    with freeze_time("2024-05-01 12:00:00", tick=False) as frozen:
        s = HostScheduler(workers=2)
        try:
            s.add("slow", 1, slow, plugin="p")
            frozen.tick(timedelta(seconds=2))
            s.run_pending()
            deadline = time.monotonic() + 5
            while not started and time.monotonic() < deadline:
                time.sleep(0.01)
            for _ in range(3):
                frozen.tick(timedelta(seconds=2))
                s.run_pending()
            assert len(started) == 1 and s.jobs["slow"].runs == 1
            release.set()
            s.jobs["slow"].running.result(timeout=5)
            frozen.tick(timedelta(seconds=2))
            s.run_pending()
            s.jobs["slow"].running.result(timeout=5)  # free again: started
        finally:
            release.set()
            s.shutdown(wait=True)
    assert len(started) == 2 and s.jobs["slow"].runs == 2


LIFECYCLE_PLUGIN = """
    import threading
    events = []
    job_started = threading.Event()
    release = threading.Event()

    def job():
        events.append("job-start")
        job_started.set()
        release.wait(5)
        events.append("job-end")

    @hookimpl
    def mdm_register_jobs(scheduler, host):
        scheduler.add("life.job", 0.05, job, plugin="life")

    @hookimpl
    def mdm_startup(host):
        events.append("startup")

    @hookimpl
    def mdm_shutdown(host):
        events.append("shutdown")
"""


def test_run_stops_cleanly_after_the_running_job(make_host, load_plugin):
    plug = load_plugin(LIFECYCLE_PLUGIN)
    host = make_host(plugins=[plug])
    thread = threading.Thread(target=host.run, kwargs={"install_signal_handlers": False, "max_sleep": 0.05})
    thread.start()
    try:
        assert plug.job_started.wait(5)
        host.stop_event.set()
        thread.join(0.3)
        assert thread.is_alive()  # waits for the running job
        plug.release.set()
        thread.join(5)
        assert not thread.is_alive()
    finally:
        host.stop_event.set()
        plug.release.set()
        thread.join(5)
    assert plug.events == ["startup", "job-start", "job-end", "shutdown"]
    with host.db.session() as s:
        assert s.get(JobRun, "life.job").runs == 1


def test_mdm_jobs_lists_jobs_and_next_runs(mdm, write_plugin):
    mod = write_plugin(JOBS_PLUGIN)
    code, out, err = mdm("jobs", "--json", config=f'[plugins]\nenabled = ["{mod}"]\n')
    assert code == 0, err
    rows = json.loads(out)
    listed = [(r["name"], r["plugin"], r["every_seconds"]) for r in rows]
    assert listed == [("core.housekeeping", "core", 86400), ("demo.boom", "demo", 60), ("demo.ok", "demo", 60)]
    assert all(r["next_run"] and r["last_finished_at"] is None for r in rows)
    code, out, _ = mdm("jobs")
    assert out.splitlines()[0].split() == ["name", "plugin", "every_seconds", "next_run", "running", "last_finished_at", "last_run_by", "last_result"]
    assert all(line.split()[-4:] == ["-", "-", "-", "-"] for line in out.splitlines()[1:])  # never run: no finish, by nobody, no result; not running
    assert [line.split()[0] for line in mdm("jobs", config="")[1].splitlines()[1:]] == ["core.housekeeping"]  # the host's own, without plugins


@pytest.mark.slow  # an mdm run process
def test_sigterm_stops_mdm_run_with_exit_0(project_dir):
    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text("")
    env = {
        **os.environ,
        "MDM_PLUGIN_AUTOLOAD": "0",
        "MDM_DATABASE_URL": f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}",
        "MDM_SECRET_KEY": "k",
    }
    env.pop("MDM_CONFIG", None)
    mdm_bin = Path(sys.executable).with_name("mdm")
    cmd = [str(mdm_bin)] if mdm_bin.exists() else [sys.executable, "-m", "mdm_core.cli"]
    # `mdm run` upgrades a site but never makes one: the site's database first, as an admin does
    subprocess.run([*cmd, "--config", str(conf), "db", "upgrade"], env=env, cwd=project_dir, check=True, capture_output=True)
    proc = subprocess.Popen([*cmd, "-v", "--config", str(conf), "run"], env=env, cwd=project_dir, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if " running on database " in line or not line:
                break
        assert "host running" in "".join(lines), "".join(lines)
        banner = lines[-1]  # one line: what this host runs on
        assert banner.startswith("mdm-host ") and f"running on database sqlite:///{project_dir / 'var' / 'mdm.sqlite3'} (from MDM_DATABASE_URL)" in banner
        assert "schema current" in banner and f"configuration {conf}" in banner
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        rest = proc.stderr.read()
        assert "stopping" in rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_mdm_jobs_shows_the_next_run_of_the_running_host(mdm, write_plugin, project_dir):
    """`mdm jobs` in another process counts the next run from the host's last start of the job."""
    from datetime import datetime, timedelta

    from sqlalchemy import create_engine
    from sqlmodel import Session

    mod = write_plugin(JOBS_PLUGIN)
    config = f'[plugins]\nenabled = ["{mod}"]\n'
    assert mdm("jobs", config=config)[0] == 0  # tables exist
    started = datetime.now(UTC) - timedelta(seconds=20)
    engine = create_engine(f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    with Session(engine) as session:
        session.add(JobRun(name="demo.ok", plugin="demo", last_started_at=started, last_finished_at=started, runs=1))
        session.commit()
    engine.dispose()
    rows = {r["name"]: r for r in json.loads(mdm("jobs", "--json")[1])}
    next_ok = datetime.fromisoformat(rows["demo.ok"]["next_run"])
    assert abs((next_ok - (started + timedelta(seconds=60))).total_seconds()) < 1  # 40 s from now, not 60
    next_boom = datetime.fromisoformat(rows["demo.boom"]["next_run"])
    assert abs(next_boom - datetime.now(UTC)) < timedelta(seconds=2)  # never ran on this database: due now


TOLD_PLUGIN = """
from mdm_core import hookimpl
from mdm_core.errors import MdmError


@hookimpl
def mdm_register_jobs(scheduler, host):
    def told():
        raise MdmError("the feed answered 503: checked again at the next run")

    scheduler.add("demo.told", 60, told, plugin="demo")
"""


def test_a_job_s_own_error_is_recorded_as_written_for_the_admin(make_host, load_plugin):
    """An MdmError is the host's one line for the admin: `mdm jobs` shows it without its class
    name ('failed: MdmError: ...' read as noise); an unexpected error keeps its type (above)."""
    host = make_host(plugins=[load_plugin(TOLD_PLUGIN)])
    scheduler = host.build_scheduler(inline=True)
    scheduler.run_pending()
    assert scheduler.jobs["demo.told"].last_error == "the feed answered 503: checked again at the next run"
    with host.db.session() as s:
        row = s.execute(select(JobRun).where(col(JobRun.name) == "demo.told")).scalar_one()
    assert row.last_error == "the feed answered 503: checked again at the next run"
