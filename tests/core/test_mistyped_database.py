"""A mistyped database path (an existing folder, a file that does not exist) or an empty
PostgreSQL database: every command but those that make a site's database (``mdm db upgrade``)
created an empty database there, then showed an empty inventory as if the fleet were gone
(``mdm alerts test`` alone refused it). Each now says, in one line, which database is not there
and how to make it, exit 2, and creates nothing; a PostgreSQL password is never shown. An empty
SQLite file (``touch mdm.db``) is a database without tables, as an empty PostgreSQL database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from mdm_core.host import Host
from mdm_core.testing import MdmRunner
from tests.conftest import database_param

#: commands that read or work on an existing site
SITE_COMMANDS = [
    ("vpp", "account", "list"),
    ("vpp", "licenses"),
    ("devices", "list"),
    ("apps", "list"),
    ("alerts", "test"),
    ("users", "add", "kid-1"),
    ("run", "--no-web"),
]


@pytest.fixture(params=["sqlite", "empty file", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(request: pytest.FixtureRequest, project_dir: Path, kind: str) -> str:
    """A mistyped SQLite path (its folder exists), an empty SQLite file (``touch mdm.db``, 0
    bytes), or an empty PostgreSQL database."""
    if kind == "sqlite":
        return f"sqlite:///{project_dir / 'var' / 'mdm.sqlit3'}"
    if kind == "empty file":
        (project_dir / "var").mkdir(exist_ok=True)
        (project_dir / "var" / "mdm.db").touch()
        return f"sqlite:///{project_dir / 'var' / 'mdm.db'}"
    return database_param(request, project_dir, "postgresql")


@pytest.fixture
def mdm(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str) -> MdmRunner:
    runner = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": url})
    runner.initialise = False
    return runner


@pytest.fixture(autouse=True)
def run_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`mdm run` that got past its start (the old code) returns at once instead of running on."""
    real = Host.run

    def run(self: Host, **kwargs: Any) -> None:
        self.stop_event.set()
        real(self, install_signal_handlers=False, on_start=kwargs.get("on_start"))

    monkeypatch.setattr(Host, "run", run)


def _tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("args", SITE_COMMANDS, ids=" ".join)
def test_a_command_on_a_site_refuses_a_database_that_is_not_there(mdm: MdmRunner, project_dir: Path, kind: str, url: str, args: tuple[str, ...]) -> None:
    before = _files(project_dir)
    code, out, err = mdm(*args)
    assert (code, out) == (2, ""), err
    if kind == "sqlite":
        typo = project_dir / "var" / "mdm.sqlit3"
        assert err == f"mdm: error: database file {typo} does not exist (from MDM_DATABASE_URL): create it with `mdm db upgrade`, or correct the path\n"
        assert _files(project_dir) == before  # nothing created: no file, no key
    elif kind == "empty file":
        empty = project_dir / "var" / "mdm.db"
        assert err == (
            f"mdm: error: database {empty} is not initialised, it has no tables (from MDM_DATABASE_URL): "
            "create them with `mdm db upgrade`, or correct the URL\n"
        )
        assert _files(project_dir) == before and empty.stat().st_size == 0  # nothing written: no -wal file, no key
    else:
        name = url.rsplit("/", 1)[-1]
        assert err == (
            f"mdm: error: database postgresql+psycopg://mdm:***@127.0.0.1/{name} is not initialised, it has no tables (from MDM_DATABASE_URL): "
            "create them with `mdm db upgrade`, or correct the URL\n"
        )
        assert _tables(url) == []  # nothing created


def test_mdm_run_with_auto_upgrade_upgrades_a_site_but_does_not_make_one(mdm: MdmRunner, project_dir: Path, kind: str, url: str) -> None:
    code, out, err = mdm("run", "--no-web", config="[core]\nauto_upgrade = true\n")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "mdm db upgrade" in err, err
    assert _tables(url) == [] if kind == "postgresql" else not (project_dir / "var" / "mdm.sqlit3").exists()
    assert kind != "empty file" or (project_dir / "var" / "mdm.db").stat().st_size == 0


def test_mdm_db_upgrade_makes_the_database_then_the_commands_work(mdm: MdmRunner, project_dir: Path) -> None:
    code, out, err = mdm("db", "upgrade")
    assert code == 0 and "is up to date" in out, err
    for args in SITE_COMMANDS[:4]:
        code, out, err = mdm(*args)
        assert (code, err) == (0, ""), (args, err)
    assert mdm("users", "add", "kid-1")[:2] == (0, "added user kid-1\n")
    assert "kid-1" in mdm("users", "list")[1]


@pytest.mark.parametrize("kind", ["postgresql"])  # a URL with a password: PostgreSQL's alone (no skipped SQLite case)
def test_a_postgresql_password_is_never_in_the_line(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str, url: str
) -> None:
    """The URL is shown without its password, given in the URL or as ``?password=``."""
    assert "mdm:mdm@" in url  # the test server's user and password
    for given in (url, url.replace("mdm:mdm@", "mdm@") + "?password=mdm"):
        mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": given})
        mdm.initialise = False
        for args in (("devices", "list"), ("alerts", "test"), ("status",)):
            code, out, err = mdm(*args)
            assert code in (1, 2), (args, out, err)
            assert ":mdm@" not in out + err and "password=mdm" not in out + err, (args, out, err)
            assert "***" in out + err, (args, out, err)


@pytest.mark.parametrize("kind", ["empty file"])
def test_an_empty_sqlite_file_is_a_database_without_tables_to_status_and_backup(mdm: MdmRunner, project_dir: Path, kind: str) -> None:
    """An empty file (``touch mdm.db``) is there, without tables: ``mdm status`` said it did not
    exist (``"exists": false``) and ``mdm db backup`` that the file did not exist."""
    empty = project_dir / "var" / "mdm.db"
    refusal = f"database {empty} is not initialised, it has no tables (from MDM_DATABASE_URL): create them with `mdm db upgrade`, or correct the URL"
    code, out, err = mdm("status", "--json")
    status = json.loads(out)
    assert (code, status["database"]["exists"], status["database"]["schema"], status["problems"]) == (1, True, "new", [refusal]), err
    code, out, err = mdm("db", "status")
    assert (code, err) == (1, f"mdm: {refusal}\n") and "new" in out
    code, out, err = mdm("db", "backup", str(project_dir / "copy.sqlite3"))
    assert (code, out) == (1, "")
    assert err == (
        f"mdm: error: database file {empty} is empty, it has no tables: there is nothing to back up (create them with `mdm db upgrade`, "
        "or check [core] database_url or MDM_DATABASE_URL)\n"
    )
    assert not (project_dir / "copy.sqlite3").exists() and empty.stat().st_size == 0


SITE_PLUGIN = """
    @hookimpl
    def mdm_register_cli(subparsers, host):
        subparsers.add_parser("site-make").set_defaults(func=_use, creates_database=True)
        subparsers.add_parser("site-show").set_defaults(func=_use)

    def _use(host, args):
        host.db
        print("used the database")
"""


def test_a_plugin_command_creates_the_database_only_with_creates_database(mdm: MdmRunner, write_plugin: Any, project_dir: Path, kind: str, url: str) -> None:
    """A plugin's command is refused a database without tables as the core's are, unless its
    parser says ``set_defaults(creates_database=True)``, as `mdm db upgrade`'s does (README,
    Writing a plugin)."""
    mdm.conf.write_text(f'[plugins]\nenabled = ["{write_plugin(SITE_PLUGIN)}"]\n')
    before = _files(project_dir / "var")
    code, out, err = mdm("site-show")
    assert (code, out, err.count("\n")) == (2, "", 1) and "`mdm db upgrade`" in err, err
    assert _tables(url) == [] if kind == "postgresql" else _files(project_dir / "var") == before  # nothing created
    code, out, err = mdm("site-make")
    assert (code, out) == (0, "used the database\n"), err
    assert err.startswith(("mdm: created new database at ", "mdm: created the tables in empty database ")), err
    assert mdm("site-show")[:2] == (0, "used the database\n")
