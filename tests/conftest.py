"""Shared fixtures: every test builds its own host, database and configuration."""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

from mdm_core.host import Host, create_host


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A project folder with conf/ and var/ of its own."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "var").mkdir()
    return tmp_path


@pytest.fixture
def make_host(project_dir: Path) -> Iterator[Callable[..., Host]]:
    """Build a host on a real SQLite file under the test's own folder.

    ``make_host(plugins=[module, ...], config="toml text", environ={...})``; ``plugins=None``
    loads the installed entry points like ``mdm`` does.
    """
    hosts: list[Host] = []

    def make(plugins: Iterable[Any] | None = None, config: str = "", environ: dict[str, str] | None = None, database_url: str | None = None) -> Host:
        conf = project_dir / "conf" / "mdm.toml"
        conf.write_text(config)
        env = {"MDM_SECRET_KEY": "test-secret-key"}
        env.update(environ or {})
        host = create_host(conf, environ=env, plugins=plugins, database_url=database_url or f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()


@pytest.fixture
def simulator() -> Iterator[Any]:
    """A small Apple-compatible service on a free loopback port (events complete at once)."""
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=7, async_delay=0) as sim:
        yield sim


@pytest.fixture
def vpp_host(make_host: Callable[..., Host], simulator: Any, project_dir: Path) -> Host:
    """A host with the installed plugins and an account ``school`` on the simulator (not yet synced)."""
    from plugins.vpp.accounts import add_account

    host = make_host()
    token_file = project_dir / "school.vpptoken"
    simulator.write_token(token_file)
    add_account(host, "school", str(token_file), service_url=simulator.base_url)
    return host


class MdmRunner:
    """Runs ``mdm ARGS`` in-process on a test's configuration and database.

    ``runner("vpp", "sync")`` -> (exit code, stdout, stderr). The environment points ``main``
    at the project's SQLite file and a test key; ``config`` (if given) is written to the conf file.
    """

    def __init__(self, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                 config: str | None = None, environ: dict[str, str] | None = None):
        self.project_dir = project_dir
        self.conf = project_dir / "conf" / "mdm.toml"
        self.db = project_dir / "var" / "mdm.sqlite3"
        self.capsys = capsys
        monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{self.db}")
        monkeypatch.setenv("MDM_SECRET_KEY", "test-secret-key")
        monkeypatch.delenv("MDM_CONFIG", raising=False)
        for name, value in (environ or {}).items():
            monkeypatch.setenv(name, value)
        if config is not None:
            self.conf.write_text(config)
        elif not self.conf.exists():
            self.conf.write_text("")

    def __call__(self, *args: str) -> tuple[int, str, str]:
        from mdm_core.cli import main

        self.capsys.readouterr()
        code = main(["--config", str(self.conf), *args])
        out, err = self.capsys.readouterr()
        return code, out, err


# ---------------------------------------------------------------------- PostgreSQL

PG_ADMIN_URL = os.environ.get("MDM_TEST_POSTGRES_URL")
PG_SKIP_REASON = "set MDM_TEST_POSTGRES_URL to run the PostgreSQL tests (.ci/run does)"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test session (or pytest-xdist worker) alone: created with a
    unique name through ``MDM_TEST_POSTGRES_URL`` (whose role needs CREATEDB) and dropped at the
    end, so that several checkouts and workers never share tables. Skipped without that URL."""
    if not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    machine = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"mdm_t_{machine}_{os.getpid()}_{worker}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # databases left by killed sessions of this machine (their process is gone)
            for (old,) in conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": f"mdm\\_t\\_{machine}\\_%"}):
                pid = old.split("_")[3]
                if pid.isdigit() and not _process_alive(int(pid)):
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session's PostgreSQL database, emptied for this test."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return pg_database
