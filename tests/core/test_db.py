"""Database: SQLite file created on first use in WAL mode, concurrent writers, DbLock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from mdm_core.db import Database
from mdm_core.errors import ConfigError
from mdm_core.locks import DbLock, LockBusy, LockLost
from mdm_core.models import Lock, MdmUser


def test_sqlite_file_created_on_first_use_in_wal_mode(make_host, project_dir):
    db_file = project_dir / "var" / "sub" / "mdm.sqlite3"
    host = make_host(plugins=[], database_url=f"sqlite:///{db_file}")
    assert not db_file.exists()  # nothing at create_host
    with host.db.session() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert s.execute(text("PRAGMA temp_store")).scalar() == 2  # MEMORY: statement journals in memory, not in temporary files
    assert db_file.exists()


def test_default_database_is_under_var(make_host, project_dir):
    from mdm_core.host import create_host

    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text("")
    host = create_host(conf, environ={}, plugins=[])
    try:
        host.db
        assert (project_dir / "var" / "mdm.sqlite3").exists()
    finally:
        host.close()


def test_tables_of_enabled_plugins_are_created(make_host):
    from plugins.examples import device_notes

    host = make_host(plugins=[device_notes])
    names = set(inspect(host.db.engine).get_table_names())
    assert {"core_device", "core_user", "core_command", "core_event", "core_subscriber_failure", "core_lock", "core_job_run", "device_notes_note"} <= names


def test_bad_database_url():
    with pytest.raises(ConfigError, match="database URL is not valid"):
        Database("not a url")


@pytest.mark.parametrize("url", ["mysql+pymysql://mdm:secret-pw@db.example.org/mdm", "oracle+oracledb://mdm:secret-pw@db.example.org/mdm"])
def test_a_database_other_than_sqlite_or_postgresql_is_refused_in_one_line(mdm: Any, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The host's SQL is SQLite's and PostgreSQL's (upserts, COPY, PRAGMAs): another database
    is refused before anything connects, naming the URLs it takes (was: a missing driver's
    error, or a host that ran until its first upsert)."""
    monkeypatch.setenv("MDM_DATABASE_URL", url)
    code, out, err = mdm("devices", "list")
    shown = url.replace("secret-pw", "***")
    assert (code, out) == (2, "")  # a configuration error
    assert err == (
        f"mdm: error: database {shown} is not supported: use SQLite (sqlite:///PATH) or PostgreSQL "
        "(postgresql+psycopg://USER:PASSWORD@HOST/DATABASE) in [core] database_url or MDM_DATABASE_URL\n"
    )


@pytest.mark.parametrize("source", ["env", "conf"])
def test_an_sqlite_url_with_two_slashes_is_a_configuration_error_naming_the_forms(
    mdm: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """``sqlite://var/mdm.sqlite3`` (two slashes: ``var`` read as a host) was reported as
    ``database the database refused the change (ArgumentError: Invalid SQLite URL: ...)``, exit
    1, as if a database had been reached. It is a configuration error: the URL, the two forms of
    an SQLite file's URL and where to fix it, exit 2, nothing created."""
    config = ""
    if source == "env":
        monkeypatch.setenv("MDM_DATABASE_URL", "sqlite://var/mdm.sqlite3")
    else:
        monkeypatch.delenv("MDM_DATABASE_URL")  # the runner's own: the configuration's is used
        config = '[core]\ndatabase_url = "sqlite://var/mdm.sqlite3"\n'
    for command in (("devices", "list"), ("db", "upgrade"), ("status",)):
        code, out, err = mdm(*command, config=config)
        assert (code, out) == (2, "")
        assert err == (
            "mdm: error: database URL sqlite://var/mdm.sqlite3 is not valid: an SQLite file is sqlite:///PATH "
            "(relative to the project folder) or sqlite:////ABSOLUTE/PATH: fix [core] database_url or MDM_DATABASE_URL\n"
        )
    assert not (project_dir / "var" / "mdm.sqlite3").exists()


@pytest.mark.parametrize("mounted", ["read-only", "read-write"])
def test_an_sqlite_file_on_a_read_only_mount_says_so(mdm: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, mounted: str) -> None:
    """A database on a disk mounted read-only (a container's read-only root, a volume mounted
    ro) cannot even be read in WAL mode, and SQLite says only "unable to open database file":
    every command said `cannot be opened: check the path ..., that its folder exists and is
    writable`, sending the admin to the path. It now names the read-only mount and the fix. (The
    mount is simulated: the file cannot be opened, and the file system reports ST_RDONLY.)"""
    (project_dir / "var" / "mdm.sqlite3").mkdir()  # SQLite cannot open it: "unable to open database file"
    statvfs = os.statvfs

    def read_only(path: Any) -> Any:
        real = statvfs(path)
        return SimpleNamespace(f_flag=real.f_flag | os.ST_RDONLY)

    if mounted == "read-only":
        monkeypatch.setattr(os, "statvfs", read_only)
    for command in (("devices", "list"), ("db", "status")):
        code, out, err = mdm(*command)
        assert (code, out) == (1, "")
        shown = f"database sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"
        if mounted == "read-only":
            assert err == (
                f"mdm: error: {shown} is on a file system mounted read-only, where SQLite cannot open it (even to read, it writes "
                "its -shm file beside it): remount it read-write, or move the database to a writable disk and change [core] "
                "database_url or MDM_DATABASE_URL\n"
            )
        else:  # as before
            assert err.startswith(f"mdm: error: {shown} cannot be opened: check the path in [core] database_url or MDM_DATABASE_URL")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_plain_postgresql_url_is_taken_through_psycopg(scheme: str) -> None:
    """``postgresql://`` (and ``postgres://``, as hosting services give it) is the PostgreSQL
    the host ships a driver for: to SQLAlchemy alone it would mean psycopg2, which is not
    installed (was: "cannot be used: No module named 'psycopg2'")."""
    db = Database(f"{scheme}://mdm:secret-pw@db.example.org:5433/mdm?sslmode=require")
    try:
        assert db.url.drivername == "postgresql+psycopg"
        assert db.describe() == "postgresql+psycopg://mdm:***@db.example.org:5433/mdm?sslmode=require"
    finally:
        db.engine.dispose()


@pytest.mark.parametrize("driver", ["psycopg2", "asyncpg", "pg8000"])
def test_another_postgresql_driver_is_refused_in_one_line(mdm: Any, monkeypatch: pytest.MonkeyPatch, driver: str) -> None:
    """The bulk statements (COPY, arrays) are psycopg's: another driver is refused before
    anything connects, saying how to write the URL."""
    monkeypatch.setenv("MDM_DATABASE_URL", f"postgresql+{driver}://mdm:secret-pw@db.example.org/mdm")
    code, out, err = mdm("devices", "list")
    assert (code, out) == (2, "")
    assert err == (
        f"mdm: error: database postgresql+{driver}://mdm:***@db.example.org/mdm: the host reaches PostgreSQL through psycopg "
        f"(pip install '.[postgres]'), not {driver}: write the URL as postgresql+psycopg://USER:PASSWORD@HOST/DATABASE\n"
    )


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, a folder nobody may create files in")
def test_a_database_file_that_cannot_be_created_is_a_one_line_error(mdm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder the user running mdm cannot write in (here /proc, refused even to root) is named
    with the reason and what to check (was: a bare FileNotFoundError/PermissionError)."""
    monkeypatch.setenv("MDM_DATABASE_URL", "sqlite:////proc/mdm.sqlite3")
    code, out, err = mdm("db", "upgrade")  # the command that creates the file
    assert (code, out) == (2, "")
    assert err == (
        "mdm: error: database sqlite:////proc/mdm.sqlite3: the file /proc/mdm.sqlite3 cannot be created (No such file or directory): "
        "check [core] database_url or MDM_DATABASE_URL, and that the user running mdm may write in its folder\n"
    )


def _writer(db: Database, prefix: str, n: int, errors: list[BaseException]) -> None:
    for i in range(n):
        try:

            def work(session, i=i):
                # read then write in one transaction: the pattern that fails without BEGIN IMMEDIATE
                count = session.execute(select(func.count()).select_from(MdmUser)).scalar_one()
                session.add(MdmUser(id=f"{prefix}-{i}", name=str(count)))

            db.run_write(work, attempts=1)  # no retry: the lock itself must queue writers
            with db.write_session() as session:
                session.get(MdmUser, f"{prefix}-{i}").email = f"{i}@example.com"
                session.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)


def test_concurrent_thread_writers_never_see_database_is_locked(make_host):
    host = make_host(plugins=[])
    db = host.db
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_writer, args=(db, f"t{k}", 25, errors)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(MdmUser)).scalar_one() == 100


WRITER = """
import sys
from mdm_core.db import Database
from mdm_core.models import MdmUser
db = Database(sys.argv[1])
for i in range(int(sys.argv[3])):
    def work(session, i=i):
        session.add(MdmUser(id=f"{sys.argv[2]}-{i}"))
    db.run_write(work, attempts=1)
db.dispose()
"""


@pytest.mark.slow  # writer processes
def test_concurrent_process_writers_never_see_database_is_locked(make_host, project_dir):
    host = make_host(plugins=[])
    url = str(host.db.url)
    host.close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, f"p{k}", "40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(3)]
    results = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
    db = Database(url)
    try:
        with db.session() as s:
            assert s.execute(select(func.count()).select_from(MdmUser)).scalar_one() == 120
    finally:
        db.dispose()


# ---------------------------------------------------------------------- locks


def test_second_acquirer_gets_lock_busy(make_host):
    host = make_host(plugins=[])
    first = DbLock(host.db, "vpp-sync:acct1")
    second = DbLock(host.db, "vpp-sync:acct1")
    first.acquire()
    with pytest.raises(LockBusy, match="vpp-sync:acct1 is already running"):
        second.acquire()
    assert DbLock(host.db, "vpp-sync:acct2").try_acquire()  # other names are independent
    first.release()
    second.acquire()
    second.release()


def test_a_renewal_under_way_at_the_release_does_not_hold_the_lock_again(make_host):
    """The heartbeat's renewal may wait for a write lock while its holder releases the lock:
    it then finds the lock released and lost, and never holds it again for a time to live."""
    host = make_host(plugins=[])
    holder = DbLock(host.db, "vpp-sync:acct1")
    holder.acquire()
    generation = holder.generation
    holder.release()
    holder.generation = generation  # the renewal built its statement before the release
    with pytest.raises(LockLost):
        holder.refresh()
    nxt = DbLock(host.db, "vpp-sync:acct1")
    assert nxt.try_acquire(), "a released lock was held again by its old holder's renewal"
    nxt.release()


def test_acquire_waits_for_a_release(make_host):
    host = make_host(plugins=[])
    first, second = host.lock("job"), host.lock("job")
    first.acquire()
    timer = threading.Timer(0.2, first.release)
    timer.start()
    started = time.monotonic()
    second.acquire(wait=60, poll=0.05)  # LockBusy if the release were never seen
    assert time.monotonic() - started < 30, "acquire waited out its whole wait instead of taking the released lock"
    timer.join()
    second.release()


def test_a_waiter_tries_again_soon_then_less_and_less_often(make_host, monkeypatch):
    """A lock held for a moment is taken 50 ms after its release, not half a second later (a
    sync queued behind a short one, every test that waits for a lock); a long hold is asked
    about at most every ``poll`` seconds."""
    import types

    from mdm_core import locks

    host = make_host(plugins=[])
    first, second = host.lock("job"), host.lock("job")
    first.acquire()
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the holder lets go during the sixth wait
        slept.append(round(seconds, 3))
        if len(slept) == 6:
            first.release()

    monkeypatch.setattr(locks, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    second.acquire(wait=60)
    assert slept == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    second.release()


def test_expired_lock_can_be_taken_over_and_refresh_extends(make_host):
    from freezegun import freeze_time

    host = make_host(plugins=[])
    _ = host.db
    with freeze_time("2026-03-01 08:00:00") as clock:  # expiry is compared with the current time: move it instead of sleeping
        crashed = DbLock(host.db, "job", ttl=0.2)
        crashed.acquire()
        other = DbLock(host.db, "job")
        assert not other.try_acquire()
        clock.tick(0.19)
        assert not other.try_acquire()  # not yet expired
        clock.tick(0.02)
        assert other.try_acquire()  # taken over
        with host.db.session() as s:
            assert s.get(Lock, "job").holder == other.holder
        crashed.release()  # the old holder's release does not free someone else's lock
        assert not crashed.try_acquire()
        other.release()

        keeper = DbLock(host.db, "job2", ttl=0.3)
        keeper.acquire()
        with host.db.session() as s:
            before = s.get(Lock, "job2").expires_at
        keeper.ttl = 60
        keeper.refresh()
        with host.db.session() as s:
            assert s.get(Lock, "job2").expires_at > before
        clock.tick(0.35)  # past the first time to live
        assert not DbLock(host.db, "job2").try_acquire()  # refreshed: still held
        with keeper.held():  # re-entrant for its holder
            pass
        assert DbLock(host.db, "job2").try_acquire()


def test_a_heartbeat_runs_its_holders_periodic_work_between_refreshes(make_host):
    """The heartbeat's thread also ticks its holder's periodic work (a sync records its progress
    there), more often than it refreshes the lock; a failing tick stops neither."""
    host = make_host(plugins=[])
    lock = DbLock(host.db, "ticking", ttl=0.9)  # refreshed every 0.3 s
    lock.acquire()
    with host.db.session() as s:
        first = s.get(Lock, "ticking").expires_at
    ticks = []

    def tick():
        ticks.append(time.monotonic())
        if len(ticks) == 2:
            raise RuntimeError("a busy database")

    with lock.heartbeat(tick=tick, tick_every=0.02) as beat:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until it refreshed the lock, ticking meanwhile
            with host.db.session() as s:
                expires = s.get(Lock, "ticking").expires_at
            if expires > first and len(ticks) >= 10:
                break
            time.sleep(0.02)
        beat.check()
    assert expires > first and len(ticks) >= 10
    lock.release()


def test_held_context_releases_on_error(make_host):
    host = make_host(plugins=[])
    lock = host.lock("ctx")
    with pytest.raises(RuntimeError), lock.held():
        raise RuntimeError("job failed")
    assert host.lock("ctx").try_acquire()


def test_a_database_that_cannot_be_reached_is_one_plain_line(mdm, monkeypatch):
    """No SQLAlchemy wrapping, no link: what failed and what to check."""
    monkeypatch.setenv("MDM_DATABASE_URL", "postgresql+psycopg://mdm:secret-pw@127.0.0.1:1/mdm")
    code, out, err = mdm("devices", "list")
    assert code == 1 and out == ""
    assert err == (
        "mdm: error: cannot connect to database postgresql+psycopg://mdm:***@127.0.0.1:1/mdm: nothing accepts connections "
        "at 127.0.0.1:1: check that the database server runs there, and the host and port in [core] database_url or MDM_DATABASE_URL\n"
    )
    assert err.count("\n") == 1 and "Background on this error" not in err and "psycopg.OperationalError" not in err
    assert "secret-pw" not in err


def test_a_password_given_in_the_url_query_is_never_shown(mdm, monkeypatch):
    """libpq takes the password as ``?password=`` too (some hosting services write it so): it is
    hidden like one before the ``@`` (was: printed in clear by every error and `mdm status`)."""
    monkeypatch.setenv("MDM_DATABASE_URL", "postgresql+psycopg://mdm@127.0.0.1:1/mdm?password=secret-pw&sslmode=disable&sslpassword=key-pw")
    for command in (("devices", "list"), ("status",)):
        code, out, err = mdm(*command)
        assert code == 1 and "password=***" in out + err and "sslpassword=***" in out + err and "sslmode=disable" in out + err
        assert "secret-pw" not in out + err and "key-pw" not in out + err


# ---------------------------------------------------------------------- fencing (issue 17 points 1 and 6)


def check_fencing(db) -> None:
    """A holder that lost its lock learns it at its next refresh, and its fenced transaction
    writes nothing; every acquisition has a new generation."""
    from mdm_core.locks import LockLost
    from mdm_core.models import MdmUser

    paused = DbLock(db, "fence", ttl=0.2)
    paused.acquire()
    first_generation = paused.generation
    time.sleep(0.3)  # paused past its expiry
    other = DbLock(db, "fence", ttl=60)
    assert other.try_acquire()
    assert other.generation == first_generation + 1
    with pytest.raises(LockLost, match="lost the lock fence .*it is now held by process"):
        paused.refresh()
    with pytest.raises(LockLost), db.write_session() as session:
        session.add(MdmUser(id="written-by-a-fenced-holder"))
        paused.fence(session)
        session.commit()
    with db.session() as session:
        assert session.get(MdmUser, "written-by-a-fenced-holder") is None
    with db.write_session() as session:  # the current holder passes its fence
        other.fence(session)
        session.commit()
    other.refresh()
    other.release()
    assert paused.try_acquire() and paused.generation == first_generation + 2  # released: free again, a new generation
    paused.release()


def test_a_holder_that_lost_its_lock_is_fenced(make_host):
    check_fencing(make_host(plugins=[]).db)


def test_a_lock_of_a_dead_local_process_is_free_at_once(make_host):
    import subprocess
    import sys

    host = make_host(plugins=[])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    holder = f"{__import__('socket').gethostname()}:{int(dead.stdout)}:deadbeef"
    crashed = DbLock(host.db, "job", ttl=600, holder=holder)
    crashed.acquire()  # as if that process had taken it, then died
    assert DbLock(host.db, "job").try_acquire()  # at once: no 600 s wait


def test_an_interrupted_try_gives_back_the_lock_it_took_and_no_other(make_host, database_url, monkeypatch):
    """A try interrupted once its commit is done (a signal during the commit is raised when its
    write session ends) gives back the lock it took, so another holder takes it at once with
    the next generation; a try interrupted while another holder has the lock leaves it theirs."""
    import signal

    from mdm_core.interrupts import Interrupted
    from mdm_core.models import utcnow

    host = make_host(plugins=[], database_url=database_url)
    real_take = DbLock._take

    def take_then_interrupted(self: DbLock) -> bool:
        real_take(self)
        raise Interrupted(signal.SIGINT)

    other = DbLock(host.db, "job", ttl=300)
    assert other.try_acquire()
    monkeypatch.setattr(DbLock, "_take", take_then_interrupted)
    mine = DbLock(host.db, "job", ttl=300)
    with pytest.raises(Interrupted):
        mine.try_acquire()  # busy: took nothing
    other.refresh()  # still held by the other holder, same generation
    other.release()
    with pytest.raises(Interrupted):
        mine.try_acquire()  # took it, then interrupted
    monkeypatch.undo()
    row = mine.info()
    assert row is not None and row.holder == mine.holder and row.expires_at <= utcnow() and mine.generation is None
    after = DbLock(host.db, "job", ttl=300)
    assert after.try_acquire() and after.generation == row.generation + 1


def test_lock_busy_names_the_holder_and_its_expiry(make_host):
    host = make_host(plugins=[])
    first = DbLock(host.db, "job", ttl=300)
    first.acquire()
    with pytest.raises(
        LockBusy,
        match=rf"job is already running in another process: held by process {os.getpid()} on .* since "
        r"\d\d:\d\d:\d\d UTC; its lock expires at \d\d:\d\d:\d\d UTC unless renewed",
    ):
        DbLock(host.db, "job").acquire()


def _pg_connect_error(mdm, monkeypatch, url: str) -> str:
    monkeypatch.setenv("MDM_DATABASE_URL", url)
    code, out, err = mdm("devices", "list")
    assert code == 1 and out == "" and err.count("\n") == 1, err
    line = err.strip()
    for driver_words in ("FATAL", "connection to server", "psycopg.", "OperationalError", "Background on this error", "secret-pw"):
        assert driver_words not in line, line  # our words, not the driver's
    return line


@pytest.mark.slow  # waits out libpq's real connect timeout (2 s)
def test_a_silent_database_host_fails_in_one_line_within_the_connect_timeout(mdm, monkeypatch):
    """A port that accepts but never answers (a firewall, a wrong service): libpq's connect
    timeout ends it, told in one line."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        line = _pg_connect_error(mdm, monkeypatch, f"postgresql+psycopg://mdm:secret-pw@127.0.0.1:{port}/mdm?connect_timeout=1")
    assert line == (
        f"mdm: error: cannot connect to database postgresql+psycopg://mdm:***@127.0.0.1:{port}/mdm?connect_timeout=1: "
        f"the server at 127.0.0.1:{port} did not answer in time: check the host and port in [core] database_url or "
        "MDM_DATABASE_URL, that the server runs, and the network (a firewall)"
    )


def test_an_unknown_database_host_name_is_one_line(mdm, monkeypatch):
    line = _pg_connect_error(mdm, monkeypatch, "postgresql+psycopg://mdm:secret-pw@no-such-host.invalid/mdm?connect_timeout=5")
    assert line.endswith(": the host name no-such-host.invalid is unknown (DNS): check the host in [core] database_url or MDM_DATABASE_URL")


def test_postgresql_connections_have_a_bounded_connect_timeout():
    """Without one, libpq waits for a host that drops packets for as long as the OS lets it;
    a URL's own ``connect_timeout`` wins."""
    from sqlalchemy import event

    for url, expected in (("postgresql+psycopg://mdm:pw@127.0.0.1:1/mdm", 10), ("postgresql+psycopg://mdm:pw@127.0.0.1:1/mdm?connect_timeout=3", "3")):
        db = Database(url)
        seen: list = []

        @event.listens_for(db.engine, "do_connect")
        def spy(dialect, conn_rec, cargs, cparams):
            seen.append(cparams.get("connect_timeout"))  # noqa: B023  # the listener runs (and is dropped) in this turn
            raise ConnectionAbortedError("not connecting in this test")

        with pytest.raises(ConnectionAbortedError), db.engine.connect():
            pass
        db.engine.dispose()
        assert seen == [expected], url


@pytest.mark.skipif(not os.environ.get("MDM_TEST_POSTGRES_URL"), reason="set MDM_TEST_POSTGRES_URL to run the PostgreSQL tests (.ci/run does)")
@pytest.mark.parametrize(
    "change, says",
    [
        ({"password": "secret-pw"}, "the server refused the password of user {user}: check the user and password in [core] database_url or MDM_DATABASE_URL"),
        (
            {"database": "mdm_no_such_database"},
            "the server has no database mdm_no_such_database: create it (createdb -O {user} mdm_no_such_database) "
            "or correct its name in [core] database_url or MDM_DATABASE_URL",
        ),
    ],
)
def test_a_postgresql_login_that_fails_says_what_to_fix(mdm, monkeypatch, change, says):
    from sqlalchemy import make_url

    url = make_url(os.environ["MDM_TEST_POSTGRES_URL"]).set(**change)
    line = _pg_connect_error(mdm, monkeypatch, url.render_as_string(hide_password=False))
    assert line == f"mdm: error: cannot connect to database {url.render_as_string(hide_password=True)}: " + says.format(user=url.username)
