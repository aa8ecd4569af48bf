"""One run of a job at a time across processes and hosts on one database: a job already running
elsewhere (`mdm run`, another `mdm jobs run`, another host) is skipped and says who runs it;
once that run ends it runs again, and a lock left by a dead holder is taken over."""

from __future__ import annotations

import importlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from mdm_core.host import create_host
from mdm_core.models import Lock, utcnow
from mdm_core.testing import TEST_SECRET_KEY

JOBS = """
    import threading

    calls = []
    started = threading.Event()
    release = threading.Event()

    def slow():
        calls.append("slow")
        started.set()
        release.wait(30)
        return {"done": 1}

    @hookimpl
    def mdm_register_jobs(scheduler, host):
        scheduler.add("demo.slow", 60, slow, plugin="demo")
        scheduler.add("demo.fast", 60, lambda: calls.append("fast"), plugin="demo")
"""


def _setup(mdm, write_plugin):
    name = write_plugin(JOBS)
    config = f'[plugins]\nenabled = ["{name}"]\n'
    assert mdm("db", "upgrade", config=config)[0] == 0
    return importlib.import_module(name)


def _run_elsewhere(host, plug, name: str = "demo.slow") -> threading.Thread:
    """Another process's run (``mdm run``'s wrapper, a host object of its own), left waiting."""
    thread = threading.Thread(target=lambda: host.build_scheduler().run_now(name), daemon=True)
    thread.start()
    assert plug.started.wait(10)
    return thread


def _other_host(mdm):
    return create_host(mdm.conf, environ={"MDM_SECRET_KEY": TEST_SECRET_KEY, "MDM_PLUGIN_AUTOLOAD": "0"}, database_url=f"sqlite:///{mdm.db}")


def _put_lock(mdm, holder: str, expires_in: float) -> None:
    engine = create_engine(f"sqlite:///{mdm.db}")
    try:
        with Session(engine) as session:
            session.merge(Lock(name="job.demo.slow", holder=holder, acquired_at=utcnow(), expires_at=utcnow() + timedelta(seconds=expires_in), generation=7))
            session.commit()
    finally:
        engine.dispose()


def test_a_job_running_elsewhere_is_skipped_then_runs_again(mdm, write_plugin):
    plug = _setup(mdm, write_plugin)
    other = _other_host(mdm)
    try:
        thread = _run_elsewhere(other, plug)
        code, out, err = mdm("jobs", "run", "demo.slow")
        assert code == 0, err
        assert out.startswith(f"demo.slow: skipped: already running elsewhere, held by process {os.getpid()} on {socket.gethostname()} since ")
        assert plug.calls == ["slow"]  # not run twice
        code, out, _ = mdm("jobs", "run", "--due", "--json")
        rows = {r["name"]: r for r in json.loads(out)}
        assert code == 0 and rows["demo.slow"]["status"] == "skipped" and rows["demo.fast"]["status"] == "ok"
        assert rows["demo.slow"]["held_by"].startswith("held by process ")
        code, out, _ = mdm("-q", "jobs", "run", "--due")  # from cron: a skip is routine, nothing printed
        assert (code, out) == (0, "")
        assert mdm("-q", "jobs", "run", "demo.slow")[1].startswith("demo.slow: skipped: ")  # asked for by name: always told
        assert plug.calls == ["slow", "fast"]
    finally:
        plug.release.set()
        thread.join(10)
        other.close()
    code, out, _ = mdm("jobs", "run", "demo.slow")
    assert code == 0 and out.startswith("demo.slow: ok in ")
    assert plug.calls == ["slow", "fast", "slow"]


def test_the_lock_of_a_dead_holder_is_taken_over(mdm, write_plugin):
    plug = _setup(mdm, write_plugin)
    plug.release.set()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _put_lock(mdm, f"{socket.gethostname()}:{gone.pid}:deadbeef", expires_in=3600)  # crashed mid-run, lock not yet expired
    code, out, _ = mdm("jobs", "run", "demo.slow")
    assert code == 0 and out.startswith("demo.slow: ok in ") and plug.calls == ["slow"]
    _put_lock(mdm, "host-b:4242:cafecafe", expires_in=-1)  # another machine's holder, expired: no heartbeat came
    assert mdm("jobs", "run", "demo.slow")[1].startswith("demo.slow: ok in ")
    _put_lock(mdm, "host-b:4242:cafecafe", expires_in=600)  # alive on another machine
    code, out, _ = mdm("jobs", "run", "demo.slow")
    assert code == 0 and out.startswith("demo.slow: skipped: already running elsewhere, held by process 4242 on host-b since ")
    assert plug.calls == ["slow", "slow"]


def test_a_job_interrupted_as_it_took_its_lock_gives_the_lock_back(project_dir, monkeypatch, capsys, database_url, write_plugin):
    """Ctrl-C (or SIGTERM) during `mdm jobs run demo.fast` while the commit that took the job's
    lock ended: the command stopped, but the lock stayed held by its holder. On SQLite the next
    `mdm jobs run demo.fast` said "skipped: already running elsewhere, held by process <this
    one>" until the lock expired (5 minutes); on PostgreSQL the row stayed held and the next run
    took it over with a warning that its holder was gone. The interrupted try gives it back."""
    from mdm_core.locks import DbLock
    from mdm_core.testing import MdmRunner

    from ..lock_signals import ctrl_c_once_taken

    environ = {"MDM_PLUGIN_AUTOLOAD": "0", **({"MDM_DATABASE_URL": database_url} if database_url else {})}
    mdm = MdmRunner(project_dir, monkeypatch, capsys, config="", environ=environ, unset=("MDM_DISABLED_PLUGINS",), chdir=True)
    plug = _setup(mdm, write_plugin)
    ctrl_c_once_taken(monkeypatch, "job.demo.fast")
    code, out, err = mdm("jobs", "run", "demo.fast")
    assert code == 130 and plug.calls == [], (out, err)
    host = create_host(mdm.conf, environ={"MDM_SECRET_KEY": TEST_SECRET_KEY, "MDM_PLUGIN_AUTOLOAD": "0"}, database_url=database_url or f"sqlite:///{mdm.db}")
    try:
        row = DbLock(host.db, "job.demo.fast").info()
        assert row is not None and row.expires_at <= utcnow(), row  # given back at once
    finally:
        host.close()
    code, out, err = mdm("jobs", "run", "demo.fast")
    assert code == 0 and out.startswith("demo.fast: ok in ") and "is gone" not in err, (out, err)
    assert plug.calls == ["fast"]


@pytest.mark.slow
def test_two_hosts_on_postgresql_never_run_a_job_at_once(make_host, pg_url, load_plugin):
    plug = load_plugin(JOBS)
    first, second = make_host(database_url=pg_url, plugins=[plug]), make_host(database_url=pg_url, plugins=[plug])
    thread = _run_elsewhere(first, plug)
    try:
        state = second.build_scheduler(inline=True).run_now("demo.slow")
        assert state.skipped is not None and state.skipped.startswith("held by process ") and state.runs == 0
    finally:
        plug.release.set()
        thread.join(10)
    assert second.build_scheduler(inline=True).run_now("demo.slow").skipped is None
    assert plug.calls == ["slow", "slow"]


def test_a_local_job_is_never_skipped_and_run_due_lists_the_skipped_ones():
    from contextlib import nullcontext

    from mdm_core.scheduler import HostScheduler

    calls: list[str] = []
    scheduler = HostScheduler(inline=True, guard=lambda state: nullcontext("held by process 1 on host-b since 10:00:00 UTC"))
    scheduler.add("shared", 60, lambda: calls.append("shared"), plugin="demo")
    scheduler.add("mine", 60, lambda: calls.append("mine"), plugin="demo", local=True)  # e.g. vpp.accounts: this process's own scheduler
    done = scheduler.run_due()
    assert calls == ["mine"]
    assert {s.name: s.skipped for s in done} == {"shared": "held by process 1 on host-b since 10:00:00 UTC", "mine": None}


@contextmanager
def _busy(host, database_url):
    """Another connection holds the database's write lock (SQLite) or the job lock's row
    (PostgreSQL) until the block ends: a renewal fails as busy, a plain read still answers."""
    if database_url is None:
        writer = sqlite3.connect(host.db.url.database)
        writer.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            writer.rollback()
            writer.close()
        return
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT name FROM core_lock WHERE name = 'job.demo' FOR UPDATE"))
            yield
            conn.rollback()
    finally:
        engine.dispose()


def test_a_busy_database_lets_a_job_go_on_only_while_its_lock_is_known_to_be_held(make_host, database_url, monkeypatch, caplog):
    """check_held() meeting a busy database: with half the time to live left since the last
    renewal the job goes on (a warning says until when); with less than a third left, or
    past the expiry, it stops with LockLost instead of acting on a lock nobody renewed."""
    from mdm_core import locks
    from mdm_core.job_lock import JOB_LOCK_TTL, LOST, check_held, running_alone
    from mdm_core.locks import LockLost

    from ..job_fence import Clock

    url = None if database_url is None else database_url + "?options=-c%20lock_timeout%3D100"  # a row lock waited 0.1 s
    host = make_host(config="[core]\nsqlite_busy_timeout = 0.1\n", database_url=url)
    clock = Clock()
    monkeypatch.setattr(locks, "utcnow", clock)
    with running_alone(host.db, "demo") as busy:
        assert busy is None
        check_held()  # renewed: held until now + 300 s
        with _busy(host, database_url):
            clock.offset = JOB_LOCK_TTL / 2
            check_held()  # 150 s left: a transient busy, the job goes on
            assert "lock job.demo: cannot " in caplog.text and "going on" in caplog.text
            for offset, state in ((JOB_LOCK_TTL * 0.8, "expires"), (JOB_LOCK_TTL + 1, "expired")):
                clock.offset = offset
                with pytest.raises(LockLost) as lost:
                    check_held()
                assert str(lost.value).startswith("cannot renew the lock job.demo (") and f") and it {state} at " in str(lost.value)
                assert str(lost.value).endswith(f" UTC: {LOST}") and "\n" not in str(lost.value)
        clock.offset = JOB_LOCK_TTL * 0.8
        check_held()  # the database answers again, nobody took the lock: renewed
        with _busy(host, database_url):
            clock.offset = JOB_LOCK_TTL * 1.3
            check_held()  # the last renewal (at 240 s) holds it until 540 s


def test_a_lock_read_as_its_holder_gives_it_back_says_so_rather_than_an_expiry_at_midnight() -> None:
    """The walk's case: three `mdm run` hosts logged `job vpp.notifications is already running
    elsewhere (held by process 10463 on vm since 15:50:28 UTC; its lock expires at 00:00:00 UTC
    unless renewed)`: on PostgreSQL a try finds the row busy while its holder's release commits,
    then reads it released (its expiry set to 1970)."""
    from datetime import UTC, datetime, timedelta

    from mdm_core.locks import _RELEASED, LockInfo

    since = datetime(2026, 12, 2, 15, 50, 28, tzinfo=UTC)
    released = LockInfo("job.x", "vm:10463:abcdef01", 3, since, _RELEASED)
    assert released.describe() == "held by process 10463 on vm since 15:50:28 UTC, which was giving it back just then"
    expired = LockInfo("job.x", "vm:10463:abcdef01", 3, since, since + timedelta(seconds=300))
    assert expired.describe() == "held by process 10463 on vm since 15:50:28 UTC; its lock expired at 15:55:28 UTC"
