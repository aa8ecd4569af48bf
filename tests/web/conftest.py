"""Fixtures of the web tests: a host with every installed plugin, admins, API tokens, and
FastAPI TestClients that sign in through the real sign-in form."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host

PASSWORD = "correct horse battery staple"

WEB_CONFIG = """
[vpp]
max_attempts = 1
max_total_wait = 1.0
request_timeout = 5.0
min_interval = 60

[mobile_apps]
install_wait = 5.0
reclaim_wait = 1.0
"""


@pytest.fixture
def web_host(make_host: Callable[..., Host]) -> Host:
    """A host with the installed plugins, an admin ``alice`` and a viewer ``victor``."""
    return make_web_host(make_host)


def make_web_host(make_host: Callable[..., Host], database_url: str | None = None) -> Host:
    """``web_host`` on ``database_url`` (the project's SQLite file when None): a module overrides
    ``web_host`` with it and the ``database_url`` fixture to run on SQLite and PostgreSQL."""
    from mdm_core.web.access import add_admin

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD, "admin")
    add_admin(host, "victor", PASSWORD, "viewer")
    return host


@pytest.fixture
def app(web_host: Host) -> Any:
    from mdm_core.web.app import create_app

    return create_app(web_host)


def sign_in(client: Any, name: str = "alice", password: str = PASSWORD) -> Any:
    """Sign in through the form, as a browser does; returns the response."""
    client.get("/login")
    return client.post("/login", data={"name": name, "password": password, "next": "/", "csrftoken": client.cookies.get("csrftoken")}, follow_redirects=False)


def csrf(client: Any) -> str:
    """The CSRF token a form of the console carries."""
    if not client.cookies.get("csrftoken"):
        client.get("/login")
    return str(client.cookies.get("csrftoken"))


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    """Anonymous."""
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin(app: Any) -> Iterator[Any]:
    """Signed in as ``alice`` (admin)."""
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        assert sign_in(c).status_code == 303
        yield c


@pytest.fixture
def viewer(app: Any) -> Iterator[Any]:
    """Signed in as ``victor`` (viewer)."""
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        assert sign_in(c, "victor").status_code == 303
        yield c


@pytest.fixture
def school(web_host: Host, simulator: Any, project_dir: Path) -> Host:
    """``web_host`` with the account ``school`` on the simulator, synced once."""
    from plugins.vpp.accounts import add_account
    from plugins.vpp.sync.run import sync_account

    token = simulator.write_token(project_dir / "school.vpptoken")
    add_account(web_host, "school", str(token), service_url=simulator.base_url)
    assert sync_account(web_host, "school")["status"] == "ok"
    return web_host


def token_for(host: Host, role: str) -> dict[str, str]:
    """Authorization header of a new API token with ``role``."""
    from mdm_core.web.access import create_token

    return {"Authorization": "Bearer " + create_token(host, f"t-{role}", role)["token"]}


# ---------------------------------------------------------------------- real `mdm run` processes


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    """An empty database shared by the processes of a test: an SQLite file, or PostgreSQL."""
    from ..conftest import database_param

    return database_param(request, project_dir)


class MdmRun:
    """A real ``mdm run`` (``python -m mdm_core.cli``) in its own process, started and ready:
    ``url`` is its console (None with ``--no-web``), ``lines`` what it printed on stderr."""

    def __init__(self, folder: Path, env: dict[str, str], *args: str, ready: str = "web console at", timeout: float = 60):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mdm_core.cli", *args], env={**os.environ, **env}, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.url: str | None = None
        assert self.process.stderr is not None
        deadline = time.monotonic() + timeout
        for line in self.process.stderr:  # until it says it is ready (or ends)
            self.lines.append(line.rstrip("\n"))
            match = re.search(r"web console at (http://\S+)", line)
            if match:
                self.url = match.group(1).rstrip("/")
            if ready in line or time.monotonic() > deadline:
                break
        self._drain = threading.Thread(target=self._read_rest, daemon=True)  # never let its log fill the pipe
        self._drain.start()

    def _read_rest(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(60)
        self._drain.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code


def run_env(database_url: str, config: Path) -> dict[str, str]:
    """The environment of the test's ``mdm`` processes: one database, one key, one configuration."""
    return {"MDM_DATABASE_URL": database_url, "MDM_SECRET_KEY": "processes-test-key", "MDM_CONFIG": str(config)}
