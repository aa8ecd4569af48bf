"""``mdm_core.testing.MigratedTemplates``: a new test database copied from one migrated before
is the database the migrations make, and anything but a new, empty SQLite file is migrated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

from mdm_core.db.engine import Database
from mdm_core.db.migrate import schema_of
from mdm_core.host import Host
from mdm_core.testing import TEMPLATES


def _contents(db: Database) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    with db.engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        rows = {t: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{t}"')))) for t in tables}
        return schema_of(conn, tables), rows


def test_a_copied_database_equals_a_migrated_one_and_reports_the_same_steps(make_host: Callable[..., Host], tmp_path: Path) -> None:
    from mdm_core.db import migrate

    sets = make_host().migration_sets()
    assert TEMPLATES._real is not None and migrate.upgrade == TEMPLATES.upgrade  # installed by the plugin
    migrated = Database(f"sqlite:///{tmp_path / 'migrated.sqlite3'}")
    steps_plain = TEMPLATES._real(migrated, sets)  # every migration, no template
    first, second = (Database(f"sqlite:///{tmp_path / f'{n}.sqlite3'}") for n in ("first", "second"))
    seen: list[str] = []
    steps_first = migrate.upgrade(first, sets)
    steps_second = migrate.upgrade(second, sets, on_step=lambda step: seen.append(step.describe()))
    try:
        assert _contents(second) == _contents(first) == _contents(migrated)
        assert [s.revision for s in steps_second] == [s.revision for s in steps_first] == [s.revision for s in steps_plain]
        assert seen == [s.describe() for s in steps_first]
        assert any(steps == steps_first for steps in TEMPLATES.steps.values())  # the second was a copy
    finally:
        for db in (migrated, first, second):
            db.dispose()


def test_a_database_with_tables_is_migrated_not_replaced(tmp_path: Path, make_host: Callable[..., Host]) -> None:
    from mdm_core.db import migrate

    sets = make_host().migration_sets()
    warm = Database(f"sqlite:///{tmp_path / 'warm.sqlite3'}")
    migrate.upgrade(warm, sets)  # a template exists for these migrations
    db = Database(f"sqlite:///{tmp_path / 'own.sqlite3'}")
    try:
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE notes (body TEXT)"))
            conn.execute(text("INSERT INTO notes VALUES ('kept')"))
        migrate.upgrade(db, sets)
        schema, rows = _contents(db)
        assert rows["notes"] == [("kept",)] and schema.keys() == _contents(warm)[0].keys() | {"notes"}
    finally:
        warm.dispose()
        db.dispose()
