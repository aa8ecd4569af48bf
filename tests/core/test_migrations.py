"""Schema migrations: a new database, behind and ahead, failures, the lock, dependencies.

Each test plugin here is a package written on the fly with a ``migrations`` folder, enabled
from the configuration like a third-party plugin. Tests taking ``db_url`` run on SQLite and,
when ``MDM_TEST_POSTGRES_URL`` is set, on PostgreSQL.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from mdm_core.db.migrate import MigrationSet, SchemaAhead, SchemaBehind, order
from mdm_core.errors import MdmError, PluginError

from ..conftest import PG_ADMIN_URL, PG_SKIP_REASON, head_revision

PLUGIN = """
from pathlib import Path

from mdm_core import hookimpl
from mdm_core.db.migrate import MigrationSet

PLUGIN_NAME = "{name}"


@hookimpl
def mdm_register_migrations():
    return MigrationSet("{name}", Path(__file__).with_name("migrations"), depends_on={depends_on!r})
"""


def migration(revision: str, down: str | None, body: str, doc: str = "a step") -> str:
    """The text of a revision file."""
    return (
        f'"""{doc}"""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade():\n{textwrap.indent(textwrap.dedent(body).strip(), '    ')}\n\n\ndef downgrade():\n    pass\n"
    )


class PluginPackage:
    """A plugin package in ``plugin_dir`` whose migrations a test adds and removes."""

    def __init__(self, folder: Path, depends_on: tuple[str, ...] = ()):
        self.name = f"mdmtest_{uuid.uuid4().hex[:10]}"
        self.package = folder / self.name
        (self.package / "migrations").mkdir(parents=True)
        (self.package / "__init__.py").write_text(PLUGIN.format(name=self.name, depends_on=depends_on))
        importlib.invalidate_caches()

    @property
    def config(self) -> str:
        return f'[plugins]\nenabled = ["{self.name}"]\n'

    def add(self, revision: str, down: str | None, body: str, doc: str = "a step") -> Path:
        path = self.package / "migrations" / f"{revision}_step.py"
        path.write_text(migration(revision, down, body, doc))
        return path

    def module(self) -> Any:
        return importlib.import_module(self.name)


@pytest.fixture
def new_plugin(plugin_dir: Path) -> Callable[..., PluginPackage]:
    return lambda depends_on=(): PluginPackage(plugin_dir, depends_on)


CREATE_THINGS = """
op.create_table("{p}_thing", sa.Column("id", sa.Integer(), primary_key=True), sa.Column("name", sa.String(32), nullable=False))
op.execute("INSERT INTO {p}_thing (id, name) VALUES (1, 'first')")
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The database of the test (and of its ``mdm`` commands): an SQLite file or PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"
    elif not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    else:
        url = request.getfixturevalue("pg_url")
    request.getfixturevalue("mdm")  # sets MDM_DATABASE_URL to SQLite: this one wins
    monkeypatch.setenv("MDM_DATABASE_URL", url)
    return url


def _db(project_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(project_dir / "var" / "mdm.sqlite3")


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def _version(url: str, history: str) -> str | None:
    rows = _query(url, f"SELECT version_num FROM {history}_alembic_version")
    return rows[0][0] if rows else None


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _columns(url: str, table: str) -> list[str]:
    engine = create_engine(url)
    try:
        return [c["name"] for c in inspect(engine).get_columns(table)]
    finally:
        engine.dispose()


def _sqlite_url(project_dir: Path) -> str:
    return f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"


# ---------------------------------------------------------------------- a new database


def _core_head() -> str:
    from mdm_core.db.migrate import History, core_migration_set
    from mdm_core.models import CORE_TABLES

    return History(core_migration_set(CORE_TABLES)).head


def test_new_database_is_created_by_every_migration_and_says_where(mdm, project_dir):
    db_file = project_dir / "var" / "mdm.sqlite3"
    mdm.initialise = False
    code, out, err = mdm("devices", "list")  # a command that reads a site: the file is not made here
    assert (code, out, err) == (
        2,
        "",
        f"mdm: error: database file {db_file} does not exist (from MDM_DATABASE_URL): create it with `mdm db upgrade`, or correct the path\n",
    )
    assert not db_file.exists()
    code, out, err = mdm("db", "upgrade")
    assert code == 0 and f"created new database at {db_file}" in out, err
    head = _core_head()
    assert _version(_sqlite_url(project_dir), "core") == head
    code, out, err = mdm("devices", "list")
    assert (code, err) == (0, "")  # only once
    code, out, _ = mdm("db", "status", "--json")
    assert [(r["plugin"], r["current"], r["state"]) for r in json.loads(out)] == [("core", head, "current"), ("web", head_revision("web"), "current")]


def test_an_empty_postgresql_database_is_created_by_the_migrations(mdm, pg_url, monkeypatch):
    monkeypatch.setenv("MDM_DATABASE_URL", pg_url)
    mdm.initialise = False  # the empty database itself
    for args in (("devices", "list"), ("users", "add", "u1")):  # commands on a site: an empty database is refused, left empty
        code, out, err = mdm(*args)
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert err.startswith("mdm: error: database postgresql+psycopg://mdm:***@") and "is not initialised, it has no tables (from MDM_DATABASE_URL)" in err
        assert "create them with `mdm db upgrade`, or correct the URL" in err
        assert ":mdm@" not in err  # the password never shown
        assert _tables(pg_url) == set()  # nothing created
    code, out, err = mdm("db", "upgrade")
    assert code == 0, err
    assert _version(pg_url, "core") == _core_head()
    assert mdm("devices", "list")[2] == ""


def test_mdm_db_upgrade_creates_a_new_database_too(mdm, project_dir):
    code, out, err = mdm("db", "upgrade")
    assert code == 0, err
    assert "core: applied 0001 (release 0.1.0 schema)" in out
    assert f"created new database at {project_dir / 'var' / 'mdm.sqlite3'}" in out
    code, out, err = mdm("db", "upgrade")
    assert code == 0 and "(nothing to do)" in out


def test_reads_never_take_the_write_lock(mdm, project_dir):
    """A list command runs while another process holds SQLite's write lock (0.1.0 created
    tables under BEGIN IMMEDIATE at every start, so it waited and failed)."""
    config = "[core]\nsqlite_busy_timeout = 0.5\n"
    assert mdm("devices", "add", "C02AAA111", "--platform", "macOS", config=config)[0] == 0
    writer = _db(project_dir)
    writer.isolation_level = None
    writer.execute("BEGIN IMMEDIATE")
    try:
        code, out, err = mdm("devices", "list", config=config)
        assert code == 0, err
        assert "C02AAA111" in out
        code, out, err = mdm("db", "status", config=config)
        assert code == 0, err
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_looking_at_a_mistyped_sqlite_path_creates_nothing_and_says_it_does_not_exist(mdm, project_dir, monkeypatch):
    """`mdm db status` on a mistyped path created the folder and an empty database there,
    and showed every plugin `new` without saying the file was not there; then it said so but
    exited 0, though every other command refuses that database (`mdm db status || mdm db
    upgrade` skipped the upgrade it needs): exit 1, with the line the others print."""
    typo = project_dir / "vra" / "mdm.sqlite3"
    mdm.initialise = False
    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{typo}")
    for args in (("db", "status"), ("db", "status", "--json"), ("db", "history", "core"), ("status",)):
        code, out, err = mdm(*args)
        assert not typo.parent.exists(), args  # was: the folder and an empty database file
        if args[:2] == ("db", "history"):
            assert code == 0 and "[x]" not in out, (args, out, err)
        if args[:2] == ("db", "status"):
            assert code == 1, (args, out, err)
            assert err == f"mdm: database file {typo} does not exist (from MDM_DATABASE_URL): create it with `mdm db upgrade`, or correct the path\n"
    assert {r["state"] for r in json.loads(mdm("db", "status", "--json")[1])} == {"new"}
    code, out, err = mdm("db", "upgrade")
    assert code == 0 and typo.exists() and f"created new database at {typo}" in out, out + err
    code, out, err = mdm("db", "status")
    assert code == 0 and err == "" and " current " in out


# ---------------------------------------------------------------------- behind, ahead


def test_a_database_behind_the_code_stops_every_command_until_mdm_db_upgrade(mdm, db_url, new_plugin):
    plugin = new_plugin()
    plugin.add("0001", None, CREATE_THINGS.format(p=plugin.name))
    assert mdm("devices", "list", config=plugin.config)[0] == 0

    doc = "thing colour: the colour each thing is shown in,\nnone for the things made before.\n\nWhy: the console colours them."
    plugin.add("0002", "0001", f'op.add_column("{plugin.name}_thing", sa.Column("colour", sa.String(16)))', doc=doc)
    code, out, err = mdm("devices", "list")
    assert code == 1 and out == ""
    assert err == f"mdm: error: database schema is behind this release: run `mdm db upgrade` (pending: {plugin.name} 0001 -> 0002)\n"
    code, out, err = mdm("db", "status", "--json")  # exit 1: a script knows an upgrade is due (was: exit 0)
    status = {r["plugin"]: r for r in json.loads(out)}
    assert status[plugin.name] == {"plugin": plugin.name, "current": "0001", "head": "0002", "pending": ["0002"], "state": "behind"}
    assert (code, err) == (1, f"mdm: database schema is behind this release: run `mdm db upgrade` (pending: {plugin.name} 0001 -> 0002)\n")
    assert mdm("-q", "db", "status")[::2] == (1, err)  # -q: the line still said
    code, out, _ = mdm("db", "history", plugin.name)
    # the summary is the docstring's first paragraph, whole, on one line
    assert out.splitlines()[1:] == ["  [x] 0001  a step", "  [ ] 0002  thing colour: the colour each thing is shown in, none for the things made before."]

    code, out, err = mdm("db", "upgrade")
    assert code == 0, err
    assert f"{plugin.name}: applied 0002 (thing colour: the colour each thing is shown in, none for the things made before.)" in out
    assert _version(db_url, plugin.name) == "0002"
    assert _query(db_url, f"SELECT id, name, colour FROM {plugin.name}_thing") == [(1, "first", None)]
    assert mdm("devices", "list")[0] == 0


@pytest.mark.slow  # a fresh Python process
def test_a_command_on_a_current_database_does_not_load_alembic(mdm, db_url, project_dir):
    """Every command checked the schema by importing Alembic and running every migration file
    (80 ms and 10 MB of each command's peak memory); a database at this release's heads is now
    told so from the files' revision lines. Behind, ahead or new, Alembic's full check runs
    (the tests around this one)."""
    assert mdm("db", "upgrade")[0] == 0
    code = (
        "import sys\nfrom mdm_core.cli import main\ntry:\n    main(['devices', 'list'])\nexcept SystemExit as exc:\n    print('exit', exc.code)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=project_dir, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]", done.stdout + done.stderr
    assert "exit" not in done.stdout and done.stderr == ""


def test_a_database_ahead_of_the_code_stops_every_command_and_the_upgrade(mdm, db_url, new_plugin):
    plugin = new_plugin()
    plugin.add("0001", None, CREATE_THINGS.format(p=plugin.name))
    newer = plugin.add("0002", "0001", f'op.add_column("{plugin.name}_thing", sa.Column("colour", sa.String(16)))')
    assert mdm("db", "upgrade", config=plugin.config)[0] == 0
    newer.unlink()  # the release now running is older than the one that upgraded the database

    for command in (("devices", "list"), ("db", "upgrade")):
        code, out, err = mdm(*command)
        assert code == 1
        assert err == (
            f"mdm: error: database schema is ahead of this release ({plugin.name} is at 0002, this release knows up "
            "to 0001): a newer mdm-host has upgraded it; run that release, or restore the backup made before the upgrade\n"
        )
    assert _version(db_url, plugin.name) == "0002"
    code, out, err = mdm("db", "status")  # the table, and exit 1 with the line every command says (was: exit 0)
    assert code == 1 and any(line.split()[:4] == [plugin.name, "0002", "0001", "ahead"] for line in out.splitlines())
    assert err == f"mdm: database schema is ahead of this release ({plugin.name} is at 0002, this release knows up to 0001): " + (
        "a newer mdm-host has upgraded it; run that release, or restore the backup made before the upgrade\n"
    )


def test_a_plugin_enabled_later_gets_its_tables_at_the_next_command(mdm, db_url, new_plugin):
    assert mdm("devices", "list")[0] == 0
    plugin = new_plugin()
    plugin.add("0001", None, CREATE_THINGS.format(p=plugin.name))
    code, out, err = mdm("devices", "list", config=plugin.config)
    assert code == 0
    assert err == f"mdm: created the tables of {plugin.name} (first use on this database)\n"
    assert _version(db_url, plugin.name) == "0001"


STATUS_HOOK = """

@hookimpl
def mdm_status(host):
    from sqlalchemy import text

    with host.db.engine.connect() as conn:
        return {f"{PLUGIN_NAME} things": [{"name": r[0]} for r in conn.execute(text(f"SELECT name FROM {PLUGIN_NAME}_thing"))]}
"""


def _enabled_after_first_use(mdm: Any, new_plugin: Callable[..., PluginPackage], hooks: str) -> PluginPackage:
    """A plugin with one table and ``hooks`` (its source), enabled on a database already in use: its
    tables are not made yet."""
    assert mdm("devices", "list")[0] == 0
    plugin = new_plugin()
    plugin.add("0001", None, CREATE_THINGS.format(p=plugin.name))
    with (plugin.package / "__init__.py").open("a") as init:
        init.write(hooks)
    return plugin


def test_status_says_a_plugin_used_for_the_first_time_gets_its_tables_then_and_makes_none(mdm, db_url, new_plugin):
    """`mdm status` agrees with `mdm db status` (exit 0) and the other commands (they make the
    tables): one note, exit 0 (was: "attention: database schema is behind", exit 1). It makes
    nothing itself, nor does the plugin's status hook reading host.db; its rows show once made."""
    plugin = _enabled_after_first_use(mdm, new_plugin, STATUS_HOOK)
    code, out, err = mdm("status", config=plugin.config)
    assert (code, err) == (0, ""), out
    assert "schema:        current\n" in out and "attention" not in out, out
    assert f"\nnote: plugin {plugin.name}: its tables are made at its first use\n" in out
    code, out, _ = mdm("status", "--json")
    assert (code, json.loads(out)["notes"]) == (0, [f"plugin {plugin.name}: its tables are made at its first use"])
    assert not {t for t in _tables(db_url) if t.startswith(plugin.name)}  # status made none
    assert mdm("db", "status")[0] == 0
    assert mdm("devices", "list")[2] == f"mdm: created the tables of {plugin.name} (first use on this database)\n"
    code, out, err = mdm("status")
    assert (code, err) == (0, "") and "note:" not in out, out
    assert f"{plugin.name} things:" in out and "first" in out


NOISY_STATUS_HOOK = """

@hookimpl
def mdm_status(host):
    import sys

    print(f"{PLUGIN_NAME}: status asked", file=sys.stderr)
    return {}
"""


def test_status_does_not_ask_a_plugin_without_its_tables_yet_for_its_status(mdm, db_url, new_plugin):
    """A plugin used for the first time has no rows to show: its status hook is not called (was:
    called, and its result, often a failure to read its missing tables, thrown away); it is once
    its tables are made."""
    plugin = _enabled_after_first_use(mdm, new_plugin, NOISY_STATUS_HOOK)
    code, out, err = mdm("status", config=plugin.config)
    assert (code, err) == (0, ""), out
    assert mdm("devices", "list")[0] == 0  # makes its tables
    code, out, err = mdm("status")
    assert (code, err) == (0, f"{plugin.name}: status asked\n"), out


def test_status_lists_the_histories_of_plugins_no_longer_loaded(mdm, db_url, new_plugin):
    plugin = new_plugin()
    plugin.add("0001", None, CREATE_THINGS.format(p=plugin.name))
    assert mdm("db", "upgrade", config=plugin.config)[0] == 0
    code, out, err = mdm("devices", "list", config="")  # the plugin disabled: its history is not checked
    assert (code, err) == (0, "")
    code, out, _ = mdm("db", "status", "--json")
    assert json.loads(out)[-1] == {"plugin": plugin.name, "current": "0001", "head": None, "pending": [], "state": "not loaded"}


# ---------------------------------------------------------------------- failures


def test_a_failing_migration_is_rolled_back_and_leaves_the_previous_revision(mdm, db_url, new_plugin):
    plugin = new_plugin()
    plugin.add("0001", None, CREATE_THINGS.format(p=plugin.name))
    assert mdm("db", "upgrade", config=plugin.config)[0] == 0
    # 0002 creates a table, then adds a NOT NULL column without a default to a table with rows: refused
    plugin.add(
        "0002",
        "0001",
        f"""
        op.create_table("{plugin.name}_extra", sa.Column("id", sa.Integer(), primary_key=True))
        with op.batch_alter_table("{plugin.name}_thing") as batch:
            batch.add_column(sa.Column("size", sa.Integer(), nullable=False))
    """,
        doc="thing size",
    )
    plugin.add("0003", "0002", f'op.create_table("{plugin.name}_later", sa.Column("id", sa.Integer(), primary_key=True))')

    code, out, err = mdm("db", "upgrade")
    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.startswith(f"mdm: error: {plugin.name}: migration 0002 (thing size) failed and was rolled back; {plugin.name} stays at 0001: ")
    assert _version(db_url, plugin.name) == "0001"
    assert not {f"{plugin.name}_extra", f"{plugin.name}_later"} & _tables(db_url)
    assert _query(db_url, f"SELECT id, name FROM {plugin.name}_thing") == [(1, "first")]
    assert _columns(db_url, f"{plugin.name}_thing") == ["id", "name"]
    if db_url.startswith("sqlite"):
        assert _query(db_url, "PRAGMA integrity_check") == [("ok",)]


def _parent_and_child(mdm: Any, new_plugin: Callable[..., PluginPackage], on_delete: str = "", *, rows: bool = False) -> PluginPackage:
    """A plugin whose 0001 makes ``P_parent`` and ``P_child`` (its ``parent_id`` a foreign key to
    it, ``on_delete`` e.g. ``', ondelete="CASCADE"'``), with ``rows`` parent 1 and its children 10
    and 11; upgraded to it."""
    plugin = new_plugin()
    p = plugin.name
    fill = f"""
        op.execute("INSERT INTO {p}_parent (id) VALUES (1)")
        op.execute("INSERT INTO {p}_child (id, parent_id) VALUES (10, 1), (11, 1)")"""
    plugin.add(
        "0001",
        None,
        f"""
        op.create_table("{p}_parent", sa.Column("id", sa.Integer(), primary_key=True))
        op.create_table("{p}_child", sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("parent_id", sa.Integer(), sa.ForeignKey("{p}_parent.id"{on_delete}), nullable=False)){fill if rows else ""}
    """,
    )
    assert mdm("db", "upgrade", config=plugin.config)[0] == 0
    return plugin


def test_rebuilding_a_parent_table_on_sqlite_keeps_the_rows_that_refer_to_it(mdm, project_dir, new_plugin):
    """Batch mode copies, drops and renames the table: with foreign keys enforced, the drop
    would cascade-delete every child row. Migrations run with them off and checked after."""
    plugin = _parent_and_child(mdm, new_plugin, ', ondelete="CASCADE"', rows=True)
    p = plugin.name
    plugin.add(
        "0002",
        "0001",
        f"""
        with op.batch_alter_table("{p}_parent", recreate="always") as batch:
            batch.add_column(sa.Column("label", sa.String(32)))
    """,
    )
    code, out, err = mdm("db", "upgrade")
    assert code == 0, err
    with _db(project_dir) as conn:
        assert conn.execute(f"SELECT id, parent_id FROM {p}_child ORDER BY id").fetchall() == [(10, 1), (11, 1)]
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"DELETE FROM {p}_parent")  # the cascade still works on the rebuilt table
        assert conn.execute(f"SELECT count(*) FROM {p}_child").fetchone() == (0,)


def test_a_migration_leaving_orphan_rows_is_rolled_back(mdm, db_url, new_plugin):
    plugin = _parent_and_child(mdm, new_plugin)
    p = plugin.name
    plugin.add("0002", "0001", f'op.execute("INSERT INTO {p}_child (id, parent_id) VALUES (1, 42)")')
    code, out, err = mdm("db", "upgrade")
    assert code == 1 and "stays at 0001" in err
    # SQLite: checked before commit (its foreign keys are off while migrating); PostgreSQL: refused at once
    assert ("row(s) whose foreign key has no parent" if db_url.startswith("sqlite") else "ForeignKeyViolation") in err
    assert _version(db_url, p) == "0001"
    assert _query(db_url, f"SELECT count(*) FROM {p}_child") == [(0,)]


# ---------------------------------------------------------------------- declaring histories


def test_tables_without_migrations_stop_the_host_naming_the_plugin(make_host, load_plugin):
    plug = load_plugin("""
        from typing import Optional
        from sqlmodel import Field, SQLModel

        class Gadget(SQLModel, table=True):
            __tablename__ = "nomig_gadget"
            id: Optional[int] = Field(default=None, primary_key=True)

        @hookimpl
        def mdm_register_tables():
            return [Gadget]
    """)
    host = make_host(plugins=[plug])
    with pytest.raises(PluginError, match=r"registers tables \(nomig_gadget\) but no migrations: return a MigrationSet"):
        host.db


def test_histories_run_in_dependency_order_the_cores_first(tmp_path):
    sets = [MigrationSet("b", tmp_path, depends_on=("a",)), MigrationSet("a", tmp_path), MigrationSet("core", tmp_path)]
    assert [s.name for s in order(sets)] == ["core", "a", "b"]
    with pytest.raises(PluginError, match="depend on 'vpp', which is not loaded"):
        order([MigrationSet("core", tmp_path), MigrationSet("x", tmp_path, depends_on=("vpp",))])
    with pytest.raises(PluginError, match="not valid"):
        order([MigrationSet("core", tmp_path), MigrationSet("Bad-Name", tmp_path)])


def test_a_plugin_depending_on_another_is_migrated_after_it(mdm, db_url, new_plugin):
    first = new_plugin()
    first.add("0001", None, CREATE_THINGS.format(p=first.name))
    second = new_plugin(depends_on=(first.name,))
    # refers to the first plugin's table: fails unless the first history ran before
    second.add("0001", None, f"op.execute(\"INSERT INTO {first.name}_thing (id, name) VALUES (2, 'second')\")")
    config = f'[plugins]\nenabled = ["{second.name}", "{first.name}"]\n'
    code, out, err = mdm("db", "upgrade", config=config)
    assert code == 0, err
    lines = [line.split(":")[0] for line in out.splitlines() if "applied" in line]
    assert list(dict.fromkeys(lines)) == ["core", first.name, second.name, "web"]  # the built-in console's history sorts after mdmtest_


def test_two_migrations_following_the_same_revision_are_refused(mdm, new_plugin):
    plugin = new_plugin()
    plugin.add("0001", None, "pass")
    plugin.add("0002", "0001", "pass")
    (plugin.package / "migrations" / "0003_step.py").write_text(migration("0003", "0001", "pass"))
    code, out, err = mdm("devices", "list", config=plugin.config)
    assert code == 1
    assert f"migrations of {plugin.name} have several heads (0002, 0003)" in err


# ---------------------------------------------------------------------- auto_upgrade and the lock


def test_mdm_run_upgrades_only_with_auto_upgrade(make_host, new_plugin, db_url):
    plugin = new_plugin()
    plugin.add("0001", None, CREATE_THINGS.format(p=plugin.name))
    make_host(plugins=[plugin.module()], database_url=db_url).db
    plugin.add("0002", "0001", f'op.add_column("{plugin.name}_thing", sa.Column("colour", sa.String(16)))')

    host = make_host(plugins=[plugin.module()], database_url=db_url)
    with pytest.raises(SchemaBehind, match="run `mdm db upgrade`"):
        host.start()
    host = make_host(plugins=[plugin.module()], config="[core]\nauto_upgrade = true\n", database_url=db_url)
    host.start()
    host.shutdown()
    assert "colour" in _columns(db_url, f"{plugin.name}_thing")
    assert _version(db_url, plugin.name) == "0002"


def test_an_upgrade_is_refused_while_mdm_run_runs_on_the_database(mdm, make_host, db_url, new_plugin):
    """`mdm db upgrade` (and `mdm run` with auto_upgrade) upgraded the schema under a running
    `mdm run`, which went on with the code it started with, written for the schema before (a
    column a migration fills, a table it backfills, left as the previous release writes them),
    and nothing said to restart it. Now the upgrade is refused, naming the process and the order
    of the steps, and nothing changes; once it has stopped, the upgrade runs."""
    plugin = new_plugin()
    plugin.add("0001", None, CREATE_THINGS.format(p=plugin.name))
    assert mdm("devices", "list", config=plugin.config)[0] == 0
    running = make_host(plugins=[plugin.module()], database_url=db_url)
    running.cluster.join()  # what `mdm run` does at start
    try:
        plugin.add("0002", "0001", f'op.add_column("{plugin.name}_thing", sa.Column("colour", sa.String(16)))')
        code, out, err = mdm("db", "upgrade", config=plugin.config)  # (make_host wrote its own configuration)
        assert (code, out) == (1, "")
        shown = db_url.replace(":mdm@", ":***@")
        assert err == (
            f"mdm: error: `mdm run` is running on database {shown} (process {os.getpid()} on {socket.gethostname()}): stop it first "
            f"(it runs the release it started with, which would go on writing the tables of {plugin.name} as before the upgrade), "
            "then run `mdm db upgrade`, then start it again; nothing was changed\n"
        )
        assert _version(db_url, plugin.name) == "0001" and "colour" not in _columns(db_url, f"{plugin.name}_thing")
        starting = make_host(plugins=[plugin.module()], config="[core]\nauto_upgrade = true\n", database_url=db_url)
        with pytest.raises(MdmError, match=r"^`mdm run` is running on database .*: stop it first"):
            starting.start()  # another host of the database, on the new release
        assert _version(db_url, plugin.name) == "0001"
    finally:
        running.cluster.leave()
    code, out, err = mdm("db", "upgrade", config=plugin.config)
    assert code == 0 and f"{plugin.name}: applied 0002" in out, err
    assert _version(db_url, plugin.name) == "0002"


UPGRADER = """
import sys
from mdm_core.host import create_host
host = create_host(sys.argv[1], environ={"MDM_SECRET_KEY": "k"}, database_url=sys.argv[2], autoload=False)
steps = host.upgrade_database()
print(",".join(f"{s.history}:{s.revision}" for s in steps))
host.close()
"""


@pytest.mark.slow  # two upgrading processes
def test_two_hosts_upgrading_together_apply_each_migration_once(project_dir, new_plugin, plugin_dir, db_url):
    """The first host holds the lock inside migration 0002 (until the test lets it go); the
    second waits for it, then finds 0002 applied and applies only 0003."""
    plugin = new_plugin()
    p = plugin.name
    plugin.add("0001", None, f'op.create_table("{p}_log", sa.Column("step", sa.String(8), primary_key=True))')
    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text(plugin.config)
    url = db_url
    env = {"PYTHONPATH": f"{plugin_dir}:{Path.cwd()}", "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-c", UPGRADER, str(conf), url]
    first_run = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert first_run.returncode == 0, first_run.stderr

    inside, go = project_dir / "inside", project_dir / "go"
    plugin.add(
        "0002",
        "0001",
        f"""
        import pathlib, time
        op.execute("INSERT INTO {p}_log (step) VALUES ('0002')")
        pathlib.Path({str(inside)!r}).touch()
        deadline = time.monotonic() + 30
        while not pathlib.Path({str(go)!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    """,
    )
    plugin.add("0003", "0002", f"op.execute(\"INSERT INTO {p}_log (step) VALUES ('0003')\")")
    first = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(inside, first)
        second = subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            second.wait(timeout=1.0)  # blocked behind the first host's migration
        go.touch()
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
    finally:
        go.touch()
        first.kill()
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    applied = sorted(filter(None, (out1.strip() + "," + out2.strip()).split(",")))
    assert applied == [f"{p}:0002", f"{p}:0003"]  # each once, by one host or the other
    assert _version(db_url, p) == "0003"
    assert _query(db_url, f"SELECT step FROM {p}_log ORDER BY step") == [("0002",), ("0003",)]


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    import time

    deadline = time.monotonic() + 30
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first upgrade never reached migration 0002"
        time.sleep(0.02)


def test_ahead_is_reported_before_anything_is_applied(make_host, new_plugin, db_url):
    behind, ahead = new_plugin(), new_plugin()
    behind.add("0001", None, "pass")
    extra = ahead.add("0001", None, "pass")
    make_host(plugins=[behind.module(), ahead.module()], database_url=db_url).db
    behind.add("0002", "0001", f'op.create_table("{behind.name}_new", sa.Column("id", sa.Integer(), primary_key=True))')
    ahead.add("0002", "0001", "pass")
    make_host(plugins=[ahead.module()], database_url=db_url).upgrade_database()
    (ahead.package / "migrations" / "0002_step.py").unlink()
    assert extra.exists()
    with pytest.raises(SchemaAhead):
        make_host(plugins=[behind.module(), ahead.module()], database_url=db_url).upgrade_database()
    assert _version(db_url, behind.name) == "0001"
