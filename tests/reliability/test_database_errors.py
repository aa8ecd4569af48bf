"""The database under stress (issue 17 points 10 and 13): read-only, locked, full and
unreachable databases are one line naming the database and what to check, never SQL or its
parameters (user e-mails and token ciphertexts appeared that way); a sync that hits a full
disk cleans its stage, releases its lock and records its run as failed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from mdm_core.testing import MdmRunner

from .conftest import count_figure, database_param, make_read_only


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    return database_param(request, project_dir)


@pytest.fixture
def mdm(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str) -> MdmRunner:
    return MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url, "MDM_DISABLED_PLUGINS": "mobile_apps,alerts"})


def _one_clean_line(err: str, *must: str) -> None:
    assert err.count("\n") == 1, err
    for word in must:
        assert word in err, err
    for leak in ("SQL", "INSERT", "UPDATE", "[parameters", "Traceback", "sqlalche.me", "@example.org", "gAAAA"):
        assert leak not in err, err


def _synced(mdm: MdmRunner, sim: Any, project_dir: Path) -> None:
    token = sim.write_token(project_dir / "school.vpptoken")
    assert mdm("vpp", "account", "add", "school", "--token-file", str(token), "--service-url", sim.base_url)[0] == 0
    assert mdm("vpp", "sync", "school")[0] == 0


def test_a_read_only_database_is_one_line_and_reads_still_work(
    mdm: MdmRunner, small_sim: Any, project_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _synced(mdm, small_sim, project_dir)
    assert mdm("users", "add", "kid-1", "--email", "kid-1@example.org")[0] == 0
    make_read_only(monkeypatch)
    where = database_url.split("@")[-1] if "@" in database_url else database_url.split("///")[-1]
    for args in (
        ("users", "add", "kid-2", "--email", "kid-2@example.org"),
        ("vpp", "sync", "school"),
        ("devices", "add", "C02RO0000001", "--platform", "macOS"),
    ):
        code, out, err = mdm(*args)
        assert code == 1, (args, out, err)
        _one_clean_line(out + err, "is read-only", where)
    for reading in (("devices", "list"), ("users", "list"), ("vpp", "account", "list"), ("vpp", "runs"), ("vpp", "licenses")):
        assert mdm(*reading)[0] == 0, reading
    count_figure("database_errors")


def test_a_locked_sqlite_database_is_one_line(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    mdm = MdmRunner(project_dir, monkeypatch, capsys, config="[core]\nsqlite_busy_timeout = 0.05\n", environ={"MDM_DISABLED_PLUGINS": "mobile_apps,alerts"})
    assert mdm("devices", "list")[0] == 0
    from types import SimpleNamespace

    from mdm_core.db import engine as engine_module

    slept: list[float] = []
    monkeypatch.setattr(engine_module, "time", SimpleNamespace(sleep=slept.append))  # the pauses between attempts, not waited here
    holder = sqlite3.connect(project_dir / "var" / "mdm.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing for a long time
    try:
        code, out, err = mdm("users", "add", "kid-9", "--email", "kid-9@example.org")
        assert code == 1
        assert slept == pytest.approx([0.2, 0.4, 0.6, 0.8])  # five attempts, each waiting the busy timeout, with growing pauses between
        _one_clean_line(err, "is locked by another process", "sqlite_busy_timeout")
        assert mdm("users", "list")[0] == 0  # a read does not need the write lock
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    count_figure("database_errors")


def test_a_sync_that_fills_the_disk_fails_in_one_line_and_cleans_up(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Point 10: a raw SQLAlchemy error, the run left running, the lock held and 40,204 staged
    rows on the full disk. The disk is full here as SQLite sees it: PRAGMA max_page_count."""
    from mdm_core.db import engine as engine_module
    from plugins.vpp.simulator import Simulator

    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DISABLED_PLUGINS": "mobile_apps,alerts"})
    with Simulator(seed=3, assets=8, devices=40, users=30, page_size=50, async_delay=0) as sim:
        _synced(mdm, sim, project_dir)
        db_file = project_dir / "var" / "mdm.sqlite3"
        sim.mutate_fraction(1.0, seed=2)
        for _ in range(400):
            sim.create_user()
        original = engine_module.Database._create_engine
        pages = sqlite3.connect(db_file).execute("PRAGMA page_count").fetchone()[0]

        def full_disk(self: Any, echo: bool) -> Any:
            engine = original(self, echo)
            event.listen(engine, "connect", lambda dbapi, record: dbapi.execute(f"PRAGMA max_page_count = {pages + 2}"))
            return engine

        with monkeypatch.context() as patch:
            patch.setattr(engine_module.Database, "_create_engine", full_disk)
            code, out, err = mdm("vpp", "sync", "school", "--full")
        assert code == 1
        _one_clean_line(out + err, "the disk is full", str(db_file))
        last = runs_of(db_file)[-1]
        assert last["status"] == "error" and "the disk is full" in last["error"], last
        assert stage_count(db_file) == 0
        code, out, err = mdm("vpp", "sync", "school", "--wait", "0")  # the lock was released: no wait at all
        assert code == 0, out + err
    count_figure("database_errors")


def runs_of(db_file: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db_file)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM vpp_sync_run ORDER BY id")]
    finally:
        conn.close()


def stage_count(db_file: Path) -> int:
    conn = sqlite3.connect(db_file)
    try:
        return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("vpp_stage_license", "vpp_stage_user"))
    finally:
        conn.close()


def test_an_unreachable_database_is_one_line(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (project_dir / "not-a-folder").write_text("a file where the database's folder should be")
    for url, expected in (
        (f"sqlite:///{project_dir / 'not-a-folder' / 'mdm.sqlite3'}", "cannot be created"),
        ("postgresql+psycopg://mdm:pw-secret@127.0.0.1:1/mdm", "cannot connect to database"),
    ):
        mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": url})
        code, out, err = mdm("db", "upgrade")  # the command that creates the database (the others refuse a missing file)
        assert code in (1, 2)
        _one_clean_line(err, expected)
        assert "pw-secret" not in err
    count_figure("database_errors")


@pytest.mark.parametrize(
    "state, words",
    [("53100", "disk is full"), ("25006", "is read-only"), ("08006", "cannot be reached"), ("55P03", "is locked"), ("42501", "permission denied")],
)
def test_postgresql_error_states_are_translated(state: str, words: str) -> None:
    """The SQLSTATEs a PostgreSQL server answers when full, read-only, gone, locked or refusing."""
    from sqlalchemy.exc import OperationalError

    from mdm_core.db.errors import database_error

    class ServerError(Exception):
        sqlstate = state

        def __str__(self) -> str:
            return "server said so\nDETAIL: Key (email)=(kid@example.org) already exists."

    ServerError.__module__ = "psycopg.errors"
    exc = OperationalError("UPDATE core_user SET email=%(email)s", {"email": "kid@example.org"}, ServerError())
    line = str(database_error(exc, None))
    assert words in line and "kid@example.org" not in line and "UPDATE" not in line and "\n" not in line
