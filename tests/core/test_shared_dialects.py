"""``mdm_core.testing.SharedDialects``: the SQLite engines of a test process compile a statement
once between them, and each still has its own file, connections and pragmas."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text

from mdm_core.db.engine import Database
from mdm_core.testing import DIALECTS, SharedDialects

NOTES = Table("notes", MetaData(), Column("id", Integer, primary_key=True), Column("body", String))


def _database(path: Path, query: str = "") -> Database:
    db = Database(f"sqlite:///{path}{query}")
    NOTES.metadata.create_all(db.engine)
    return db


def test_a_statement_is_compiled_once_for_every_engine_and_runs_on_each_ones_own_file(tmp_path: Path) -> None:
    first, second = _database(tmp_path / "first.sqlite3"), _database(tmp_path / "second.sqlite3")
    try:
        with first.engine.begin() as conn:
            conn.execute(insert(NOTES), [{"body": "first"}])
        with second.engine.begin() as conn:
            conn.execute(insert(NOTES), [{"body": "second"}, {"body": "again"}])
        query = select(NOTES.c.body).where(NOTES.c.id >= 1).order_by(NOTES.c.id)
        with first.engine.connect() as a, second.engine.connect() as b:
            on_first, on_second = a.execute(query), b.execute(query)
            assert on_first.context.compiled is on_second.context.compiled  # compiled once
            assert on_first.scalars().all() == ["first"] and on_second.scalars().all() == ["second", "again"]
            assert a.dialect is b.dialect
            for conn in (a, b):  # each engine's connections still get its pragmas
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        first.dispose()
        second.dispose()


def test_a_dialect_is_shared_only_once_a_connection_has_initialised_it(tmp_path: Path) -> None:
    query = "?cached_statements=97"  # URL options of their own: no engine of this process had them
    early, late = Database(f"sqlite:///{tmp_path / 'early.sqlite3'}{query}"), Database(f"sqlite:///{tmp_path / 'late.sqlite3'}{query}")
    try:
        assert early.engine.dialect is not late.engine.dialect  # neither has connected yet
        with early.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        later = Database(f"sqlite:///{tmp_path / 'later.sqlite3'}{query}")
        assert later.engine.dialect is early.engine.dialect and later.write_engine.dialect is early.engine.dialect
        assert late.engine.dialect is not early.engine.dialect
        with late.engine.connect() as conn:  # its own dialect, initialised on its own
            assert conn.execute(text("SELECT 2")).scalar() == 2
        later.dispose()
    finally:
        early.dispose()
        late.dispose()


def test_other_databases_keep_their_own_dialect_and_cache() -> None:
    db = Database("postgresql+psycopg://mdm@127.0.0.1:1/none")  # not connected: no server needed
    try:
        assert all(d is not db.engine.dialect for d in DIALECTS.dialects.values())
        assert db.engine.get_execution_options().get("compiled_cache") is None
    finally:
        db.dispose()


def test_uninstalling_the_outermost_install_restores_engine_creation(tmp_path: Path) -> None:
    before = Database._create_engine
    nested = SharedDialects()
    nested.install()
    try:
        assert Database._create_engine is not before
        _database(tmp_path / "nested.sqlite3").dispose()
        assert nested.dialects
    finally:
        nested.uninstall()
    assert Database._create_engine is before and not nested.dialects and not len(nested.compiled)
