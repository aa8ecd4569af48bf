"""``mdm run`` as an admin runs it: the console beside the scheduler, ``--no-web``, an address
that is wrong or taken, and several processes on one database (SQLite, and PostgreSQL as
several hosts would share it) serving one console: a session made by one is accepted by the
other, failed sign-ins counted by one refuse the next try at the other, and a sync running in
one process is "already running" for the Synchronize button of the other."""

from __future__ import annotations

import html
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mdm_core.host import Host, create_host

from .conftest import PASSWORD, MdmRun, run_env

pytestmark = pytest.mark.slow  # real mdm processes, seconds each


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def config(project_dir: Path) -> Path:
    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text("[vpp]\nmax_attempts = 1\nmin_interval = 60\n")
    return conf


def _host(database_url: str, config: Path) -> Host:
    return create_host(config, environ=run_env(database_url, config), database_url=database_url)


@pytest.fixture
def admins(database_url: str, config: Path) -> Iterator[Host]:
    """The database with an admin ``alice`` and a viewer ``victor`` (as `mdm admins add` makes them)."""
    from mdm_core.web.access import add_admin

    host = _host(database_url, config)
    add_admin(host, "alice", PASSWORD)
    add_admin(host, "victor", PASSWORD, "viewer")
    yield host
    host.close()


def sign_in(session: requests.Session, url: str, name: str = "alice", password: str = PASSWORD) -> requests.Response:
    """The sign-in form, as a browser sends it (its CSRF cookie first)."""
    session.get(f"{url}/login")
    return session.post(
        f"{url}/login", data={"name": name, "password": password, "next": "/vpp", "csrftoken": session.cookies.get("csrftoken")}, allow_redirects=False
    )


# ---------------------------------------------------------------------- one process


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_web_runs_the_scheduler_alone(admins: Host, database_url: str, config: Path, project_dir: Path) -> None:
    port = _free_port()
    config.write_text(config.read_text() + f'\n[web]\nlisten = "127.0.0.1:{port}"\n')
    env = run_env(database_url, config)
    scheduler = MdmRun(project_dir, env, "run", "--no-web", ready="running on database")
    try:
        assert any("running on database" in line for line in scheduler.lines), scheduler.lines  # the host runs ...
        assert scheduler.url is None and not _listening(port)  # ... with nothing on [web] listen
    finally:
        assert scheduler.stop() == 0
    assert not any("web console" in line for line in scheduler.lines)
    served = MdmRun(project_dir, env, "run")  # the same configuration without --no-web serves there
    try:
        assert served.url == f"http://127.0.0.1:{port}" and _listening(port)
    finally:
        assert served.stop() == 0
    assert not _listening(port)  # and stops serving when it stops


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_disabled_console_plugin_serves_nothing(admins: Host, database_url: str, config: Path, project_dir: Path) -> None:
    port = _free_port()
    env = {**run_env(database_url, config), "MDM_DISABLED_PLUGINS": "web"}
    host = MdmRun(project_dir, env, "run", "--listen", f"127.0.0.1:{port}", ready="running on database")
    try:
        assert host.url is None and not _listening(port)
    finally:
        assert host.stop() == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bad_or_taken_address_is_one_line(admins: Host, database_url: str, config: Path, project_dir: Path) -> None:
    env = {**run_env(database_url, config), "PYTHONWARNINGS": "ignore"}
    bad = subprocess.run(
        [sys.executable, "-m", "mdm_core.cli", "run", "--listen", "localhost"],
        env={**os.environ, **env},
        cwd=project_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr == "mdm: error: listen address 'localhost' is not HOST:PORT: use e.g. 127.0.0.1:8080 (port 0 picks a free one)\n"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [sys.executable, "-m", "mdm_core.cli", "run", "--listen", f"127.0.0.1:{port}"],
            env={**os.environ, **env},
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert busy.returncode == 1
    assert busy.stderr.splitlines()[-1] == (
        f"mdm: error: cannot listen on 127.0.0.1:{port} (Address already in use): choose another address with `mdm run --listen HOST:PORT` or [web] listen"
    )
    assert "Traceback" not in busy.stderr


# ---------------------------------------------------------------------- several processes


@pytest.fixture
def two_consoles(admins: Host, database_url: str, config: Path, project_dir: Path) -> Iterator[tuple[str, str]]:
    """Two `mdm run` processes on the one database, each serving the console on its own port."""
    env = run_env(database_url, config)
    first = MdmRun(project_dir, env, "run", "--listen", "127.0.0.1:0")
    second = MdmRun(project_dir, env, "run", "--listen", "127.0.0.1:0")
    try:
        assert first.url and second.url, (first.lines, second.lines)
        yield first.url, second.url
    finally:
        codes = [first.stop(), second.stop()]
    assert codes == [0, 0], (first.lines[-5:], second.lines[-5:])


def test_a_session_made_by_one_process_is_accepted_by_the_other_and_ended_everywhere(admins: Host, two_consoles: tuple[str, str]) -> None:
    from mdm_core.web.access import remove_admin

    first, second = two_consoles
    browser = requests.Session()  # cookies belong to the host name, not the port: both consoles get it
    assert sign_in(browser, first).status_code == 303
    page = browser.get(f"{second}/vpp", allow_redirects=False)
    assert page.status_code == 200 and 'id="signed-in-as">alice (admin)<' in page.text
    remove_admin(admins, "alice")  # `mdm admins remove alice`, run anywhere
    for url in (first, second):
        gone = browser.get(f"{url}/vpp", allow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"].startswith("/login")


def test_failed_sign_ins_counted_by_one_process_refuse_the_next_at_the_other(admins: Host, two_consoles: tuple[str, str]) -> None:
    first, second = two_consoles
    guesser = requests.Session()
    for _ in range(5):
        assert sign_in(guesser, first, "victor", "a wrong guess").status_code == 401
    refused = sign_in(requests.Session(), second, "victor")  # even with the right password, from the same address
    assert refused.status_code == 429 and "too many failed sign-ins" in refused.text
    assert sign_in(requests.Session(), second, "alice").status_code == 303  # another name is not locked out


def test_synchronize_says_already_running_while_another_process_syncs(admins: Host, database_url: str, config: Path, project_dir: Path, simulator: Any) -> None:
    from mdm_core.web.access import create_token
    from plugins.vpp.sync.run import recent_runs, sync_account
    from plugins.vpp.testing import add_simulated_account

    add_simulated_account(admins, simulator, project_dir)
    assert sync_account(admins, "school")["status"] == "ok"  # synced: the console's scheduler waits an interval
    env = run_env(database_url, config)
    console = MdmRun(project_dir, env, "run", "--listen", "127.0.0.1:0")
    simulator.faults.add("slow", endpoint="assets", seconds=8, count=1)  # the other process's sync takes a while
    cli = subprocess.Popen(
        [sys.executable, "-m", "mdm_core.cli", "vpp", "sync", "school"],
        env={**os.environ, **env},
        cwd=project_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not [r for r in recent_runs(admins, "school", 1) if r["status"] == "running"] and time.monotonic() < deadline:
            time.sleep(0.05)  # until the command line's sync has recorded its run
        (running,) = recent_runs(admins, "school", 1)
        assert running["status"] == "running" and running["trigger"] == "manual"
        browser = requests.Session()
        assert sign_in(browser, str(console.url)).status_code == 303
        page = browser.post(f"{console.url}/vpp/accounts/school/sync", data={"csrftoken": browser.cookies.get("csrftoken")})
        assert f"a sync of school is already running (run {running['id']}, started " in html.unescape(page.text)
        token = {"Authorization": "Bearer " + create_token(admins, "ops", "admin")["token"]}
        api = requests.post(f"{console.url}/api/v1/vpp/accounts/school/sync", headers=token)
        assert api.status_code == 409 and "already running" in api.json()["error"]
        out, err = cli.communicate(timeout=120)
        assert cli.returncode == 0 and "school: incremental sync ok" in out, err
        assert [r["trigger"] for r in recent_runs(admins, "school", 5)] == ["manual", "manual"]  # the console started none
    finally:
        if cli.poll() is None:
            cli.kill()
        assert console.stop() == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_health_check_follows_the_database_going_away_and_coming_back(admins: Host, database_url: str, config: Path, project_dir: Path) -> None:
    """What a load balancer sees from a real `mdm run` when PostgreSQL stops taking its
    connections (a failover, a restart): 503 while it does, 200 again as soon as it is back,
    without restarting the host; never the reason in the answer."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from ..conftest import PG_ADMIN_URL

    assert PG_ADMIN_URL
    name = make_url(database_url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    served = MdmRun(project_dir, run_env(database_url, config), "run", "--listen", "127.0.0.1:0")

    def cut(allowed: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:  # the host's open connections end too, as in a server restart
                conn.execute(  # the host's sessions (not an autovacuum worker, which only a superuser may end)
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid() "
                        "AND backend_type = 'client backend' AND usename = current_user"
                    ),
                    {"n": name},
                )

    try:
        assert served.url
        assert (requests.get(f"{served.url}/healthz").status_code, requests.head(f"{served.url}/healthz").status_code) == (200, 200)
        cut(False)
        down = requests.get(f"{served.url}/healthz", timeout=30)
        assert (down.status_code, down.json()) == (503, {"status": "unavailable"})
        assert name not in down.text and "connection" not in down.text
        cut(True)
        assert requests.get(f"{served.url}/healthz", timeout=30).status_code == 200  # the first probe after: no restart, no stale connection
    finally:
        cut(True)
        admin.dispose()
        assert served.stop() == 0
