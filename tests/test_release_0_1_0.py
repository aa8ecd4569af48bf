"""Release 0.1.0's databases upgrade in place, and the migrations make exactly the models' schema.

``fixtures/release_0_1_0/`` holds what 0.1.0 (commit 1507aee) created: its DDL on SQLite and
on PostgreSQL, and every row of a database filled by its ``mdm demo`` (see ``generate.py``
there). Each test runs on SQLite, and on PostgreSQL when ``MDM_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, Boolean, DateTime, MetaData, create_engine, inspect, text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from mdm_core.db import Database
from mdm_core.db.migrate import alembic_config, order
from mdm_core.host import Host
from mdm_core.testing import MdmRunner

from .conftest import PG_ADMIN_URL, PG_SKIP_REASON

FIXTURE = Path(__file__).parent / "fixtures" / "release_0_1_0"
RELEASE_HISTORIES = ("core", "mobile_apps", "vpp")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> Iterator[str]:
    """An empty database: an SQLite file, or a PostgreSQL database of this session."""
    if request.param == "sqlite":
        yield f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"
        return
    if not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    yield request.getfixturevalue("pg_url")


def fixture_rows() -> dict[str, list[dict[str, Any]]]:
    """0.1.0's rows as it stored them in SQLite (datetimes naive UTC, JSON as text)."""
    return json.loads((FIXTURE / "data.json").read_text(encoding="utf-8"))


def _typed(table: Any, row: dict[str, Any]) -> dict[str, Any]:
    """A fixture row with Python values for the reflected column types."""
    out = {}
    for name, value in row.items():
        kind = table.c[name].type
        if value is not None and isinstance(kind, DateTime):
            value = datetime.fromisoformat(value).replace(tzinfo=UTC)  # 0.1.0 wrote aware UTC
        elif value is not None and isinstance(kind, JSON):
            value = json.loads(value)
        elif value is not None and isinstance(kind, Boolean):
            value = bool(value)
        out[name] = value
    return out


def build_release_0_1_0(url: str) -> None:
    """A database as 0.1.0 left it: its DDL, its rows, no version table."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in (FIXTURE / f"schema.{engine.dialect.name}.sql").read_text().split(";\n"):
                if statement.strip():
                    conn.exec_driver_sql(statement)
            metadata = MetaData()
            metadata.reflect(conn)
            rows = fixture_rows()
            for table in metadata.sorted_tables:
                if rows.get(table.name):
                    conn.execute(table.insert(), [_typed(table, r) for r in rows[table.name]])
            if engine.dialect.name == "postgresql":
                for name, column in (
                    ("core_event", "seq"),
                    ("vpp_account", "id"),
                    ("vpp_sync_run", "id"),
                    ("mobile_apps_app", "id"),
                    ("mobile_apps_install", "id"),
                    ("mobile_apps_reclaim", "id"),
                ):
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', '{column}'), (SELECT max({column}) FROM {name}))"))
    finally:
        engine.dispose()


def release_heads() -> dict[str, str]:
    """The latest revision of each history of the installed plugins, in this release."""
    import mdm_core.web
    import plugins.alerts.plugin
    import plugins.mobile_apps.plugin
    import plugins.vpp.plugin
    from mdm_core.db.migrate import History, core_migration_set
    from mdm_core.models import CORE_TABLES

    sets = {
        "core": core_migration_set(CORE_TABLES),
        "vpp": plugins.vpp.plugin.mdm_register_migrations(),
        "mobile_apps": plugins.mobile_apps.plugin.mdm_register_migrations(),
        "alerts": plugins.alerts.plugin.mdm_register_migrations(),
        "web": mdm_core.web.mdm_register_migrations(),
    }
    return {name: History(s).head for name, s in sets.items()}


def table_contents(url: str, columns_of: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every row of the 0.1.0 tables, with comparable values (aware UTC datetimes, parsed JSON);
    with ``columns_of``, only the columns those rows have (later migrations add columns)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            metadata = MetaData()
            metadata.reflect(conn, only=list(fixture_rows()))
            found = {}
            for table in metadata.sorted_tables:
                rows = [dict(r._mapping) for r in conn.execute(table.select())]
                if columns_of is not None and columns_of.get(table.name):
                    keep = set(columns_of[table.name][0])
                    rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
                found[table.name] = sorted((_comparable(table, r) for r in rows), key=lambda r: json.dumps(r, sort_keys=True, default=str))
            return found
    finally:
        engine.dispose()


def _comparable(table: Any, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in row.items():
        if isinstance(value, datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        elif isinstance(value, str) and isinstance(table.c[name].type, JSON):
            value = json.loads(value)
        elif isinstance(table.c[name].type, Boolean) and value is not None:
            value = bool(value)
        out[name] = value
    return out


# ---------------------------------------------------------------------- upgrading 0.1.0


@pytest.mark.slow  # a release database upgraded, every row checked
def test_a_release_0_1_0_database_is_recognised_upgraded_and_keeps_every_row(
    database_url: str, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from plugins.vpp.simulator import Simulator

    build_release_0_1_0(database_url)
    before = table_contents(database_url)
    assert {t: len(r) for t, r in before.items() if r} == {t: len(r) for t, r in fixture_rows().items() if r}
    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url})

    heads = release_heads()
    code, out, err = mdm("devices", "list")
    assert code == 1
    assert err == (
        "mdm: error: database schema is behind this release: run `mdm db upgrade` (pending: "
        f"core release 0.1.0 tables -> {heads['core']}, alerts nothing -> {heads['alerts']}, "
        f"mobile_apps release 0.1.0 tables -> {heads['mobile_apps']}, vpp release 0.1.0 tables -> {heads['vpp']}, "
        f"web nothing -> {heads['web']})\n"
    )
    code, out, err = mdm("db", "upgrade")
    assert code == 0, err
    for history in RELEASE_HISTORIES:
        assert f"{history}: existing tables match 0001 (release 0.1.0 schema): recorded as applied" in out
    # then what came after 0.1.0: plugins new since (their tables are created), vpp's count history
    assert "alerts: applied 0001 (alerts tables" in out
    assert "web: applied 0001 (admins, API tokens and failed sign-ins)" in out
    assert "vpp: applied 0003 (asset count history)" in out
    assert "vpp: applied 0004 (notifications)" in out
    assert "created" not in out + err
    code, out, _ = mdm("db", "status", "--json")
    assert {r["plugin"]: (r["current"], r["state"]) for r in json.loads(out)} == {h: (heads[h], "current") for h in (*RELEASE_HISTORIES, "alerts", "web")}
    after = table_contents(database_url)  # nothing recreated, nothing lost (later migrations add columns)
    metadata_before, metadata_after = before.pop("mobile_apps_metadata"), after.pop("mobile_apps_metadata")
    assert {t: rows for t, rows in table_contents(database_url, columns_of=before).items() if t in before} == before
    # mobile_apps 0002: metadata per platform; each adamId's cached entry is kept for its
    # platforms, except the macOS entry of a universal app, which is looked up again
    old = {r["adam_id"]: r for r in metadata_before}
    platforms: dict[str, set[str]] = {}
    for r in metadata_after:
        platforms.setdefault(r["adam_id"], set()).add(r["platform"])
    assert set(platforms) == set(old)
    for r in metadata_after:
        if r["platform"] == "macOS" and len(platforms[r["adam_id"]]) > 1:
            assert (r["status"], r["bundle_id"]) == ("pending", None)
        else:
            assert {c: r[c] for c in old[r["adam_id"]]} == old[r["adam_id"]]

    # every command works on the upgraded data
    rows = fixture_rows()
    for args, count in (
        (("devices", "list", "--json"), len(rows["core_device"])),
        (("users", "list", "--json"), len(rows["core_user"])),
        (("commands", "list", "--json"), len(rows["core_command"])),
        (("vpp", "assets", "--json"), len(rows["vpp_asset"])),
        (("vpp", "licenses", "--json"), len(rows["vpp_license"])),
        (("vpp", "users", "--json"), len(rows["vpp_user"])),
        (("vpp", "runs", "--json"), len(rows["vpp_sync_run"])),
        (("apps", "installs", "--json"), len(rows["mobile_apps_install"])),
        (("apps", "reclaims", "--json"), len(rows["mobile_apps_reclaim"])),
    ):
        code, out, err = mdm(*args)
        assert code == 0, (args, err)
        assert len(json.loads(out)) == count, args
    code, out, err = mdm("vpp", "account", "list", "--json")
    (account,) = json.loads(out)
    assert account["name"] == "demo" and account["last_sync_at"].endswith("+00:00")  # 0.1.0's naive UTC reads back aware
    assert (account["notifications"], account["last_notification_at"]) == ("off", None)  # vpp 0004: polling, as before
    assert datetime.fromisoformat(account["last_sync_at"]) == datetime.fromisoformat(rows["vpp_account"][0]["last_sync_at"]).replace(tzinfo=UTC)
    code, out, err = mdm("apps", "list", "--json")
    assert code == 0 and len(json.loads(out)) == len(rows["mobile_apps_app"])
    assert mdm("jobs")[0] == 0

    # the token 0.1.0 encrypted still decrypts and syncs (Apple is the same seeded simulator,
    # with the token's expiry of the day the fixture was made: the sToken carries its expDate)
    expires = rows["vpp_account"][0]["token_expires_at"]
    with Simulator(seed=7, assets=12, devices=24, users=16, async_delay=0, token_expires_at=expires) as sim:
        engine = create_engine(database_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE vpp_account SET service_url = :url"), {"url": sim.base_url})
        engine.dispose()
        code, out, err = mdm("vpp", "sync", "demo", "--full")
        assert code == 0, out + err
        assert "full sync ok" in out
    engine = create_engine(database_url)
    with engine.connect() as conn:  # vpp 0003's table takes the counts of the assets the sync changed
        recorded = conn.execute(text("SELECT count(*) FROM vpp_asset_count")).scalar_one()
    engine.dispose()
    assert recorded > 0
    code, out, err = mdm("admins", "add", "alice", "--password-file", str(_password_file(project_dir)))
    assert code == 0, err  # web 0001's tables take admins
    code, out, err = mdm("devices", "add", "C02NEW00001", "--platform", "macOS")
    assert code == 0, err
    code, out, _ = mdm("devices", "list", "--json")
    assert len(json.loads(out)) == len(rows["core_device"]) + 1


def test_mdm_run_with_auto_upgrade_says_the_upgrade_of_a_release_0_1_0_database_step_by_step(
    database_url: str, make_host: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """`mdm run` with auto_upgrade on a 0.1.0 database: each step logged as it is applied, the
    0.1.0 tables adopted first; it said "created the tables of alerts, web (first use on this
    database)" before any of them, as if nothing else had been upgraded."""
    build_release_0_1_0(database_url)
    host = make_host(database_url=database_url, config="[core]\nauto_upgrade = true\n")
    with caplog.at_level(logging.WARNING, logger="mdm_core.host"):
        host.start()
    host.shutdown()
    said = [r.getMessage() for r in caplog.records if r.name == "mdm_core.host"]
    assert said[0] == "database upgraded: core: existing tables match 0001 (release 0.1.0 schema): recorded as applied"
    assert any(line.startswith("database upgraded: alerts: applied 0001 (alerts tables") for line in said)
    assert any(line.startswith("database upgraded: web: applied 0001 (admins") for line in said)
    assert "created" not in capsys.readouterr().err


def _password_file(project_dir: Path) -> Path:
    path = project_dir / "password.txt"
    path.write_text("correct horse battery staple\n")
    return path


def test_tables_that_differ_from_release_0_1_0_are_refused_and_left_untouched(
    database_url: str, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_release_0_1_0(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE vpp_sync_run DROP COLUMN pages"))
    engine.dispose()
    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url})
    code, out, err = mdm("db", "upgrade")
    assert code == 1
    assert err == (
        "mdm: error: vpp: table vpp_sync_run does not match revision 0001 (column pages is missing), so it was not made "
        "by release 0.1.0 and is left untouched: restore a backup or fix the table by hand\n"
    )
    engine = create_engine(database_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert "vpp_alembic_version" not in tables and "vpp_sync_run" in tables
    assert {"core_alembic_version", "mobile_apps_alembic_version"} <= tables  # the histories that matched were recorded


# ---------------------------------------------------------------------- the migrations' schema


def _host(make_host: Any, url: str) -> Host:
    """A host with every installed plugin (entry points) and the example with migrations."""
    return make_host(config='[plugins]\nenabled = ["plugins.examples.device_notes"]\n', database_url=url)


def test_the_migrations_make_exactly_the_models_schema(make_host: Any, database_url: str) -> None:
    """Autogenerate, comparing every history's models with a database built by its migrations,
    finds nothing to do (types included), for every installed plugin."""
    host = _host(make_host, database_url)
    sets = host.migration_sets()
    assert {*RELEASE_HISTORIES, "device_notes", "alerts", "web"} <= {s.name for s in sets}
    with host.db.engine.connect() as conn:
        for migration_set in sets:
            own = migration_set.table_names

            def include_name(name: Any, type_: str, parents: Any, own: set[str] = own) -> bool:
                return type_ != "table" or name in own

            def include_object(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any, own: set[str] = own) -> bool:
                return type_ != "table" or name in own

            context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": include_name, "include_object": include_object})
            assert compare_metadata(context, SQLModel.metadata) == [], migration_set.name
            assert own <= set(inspect(conn).get_table_names())


def _schema(conn: Connection) -> Any:
    """The database's own account of its schema: SQLite's stored DDL, PostgreSQL's catalog."""
    if conn.dialect.name == "sqlite":
        return sorted(tuple(r) for r in conn.execute(text("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE '%alembic%'")))
    columns = conn.execute(
        text(
            "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name NOT LIKE '%alembic%' ORDER BY 1, 2"
        )
    )
    constraints = conn.execute(
        text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text NOT LIKE '%alembic%' ORDER BY 1, 2"
        )
    )
    indexes = conn.execute(
        text("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE '%alembic%' ORDER BY 1, 2")
    )
    return [list(map(tuple, columns)), list(map(tuple, constraints)), list(map(tuple, indexes))]


def test_the_first_migrations_are_release_0_1_0s_schema_exactly(make_host: Any, database_url: str, project_dir: Path) -> None:
    """Revision 0001 of core, vpp and mobile_apps creates what 0.1.0's create_all created,
    statement for statement on SQLite, catalog entry for catalog entry on PostgreSQL."""
    build_release_0_1_0(database_url)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        expected = _schema(conn)
    engine.dispose()
    if database_url.startswith("sqlite"):
        fresh = f"sqlite:///{project_dir / 'var' / 'fresh.sqlite3'}"
    else:
        fresh = database_url
        engine = create_engine(fresh)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    db = Database(fresh)
    try:
        for migration_set in order(_host(make_host, fresh).migration_sets()):
            if migration_set.name in RELEASE_HISTORIES:
                with db.migration_connection() as conn, conn.begin():
                    command.upgrade(alembic_config(migration_set, connection=conn), "0001")
        with db.engine.connect() as conn:
            assert _schema(conn) == expected
    finally:
        db.dispose()
