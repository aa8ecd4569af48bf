"""The mobile_apps migrations taken down and up again (an admin going back to the previous
release, then forward): every application, install, reclaim and metadata row is kept, with its
id, on SQLite and PostgreSQL, and an id deleted before is still never given again (the
AUTOINCREMENT 0005 and 0007 gave the tables, and the ids they counted, survive the downgrades).
Below 0002 there is no way back (metadata per platform); it is refused, nothing changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text

from mdm_core.db.migrate import alembic_config
from mdm_core.host import Host
from tests.test_ids_never_reused import CASES, _insert

#: a table's rows as `mdm apps list`, `installs`, `reclaims` and the metadata cache show them
SHOWN = {
    "mobile_apps_app": "SELECT id, account, adam_id, platform, state FROM mobile_apps_app ORDER BY id",
    "mobile_apps_install": "SELECT id, target, status FROM mobile_apps_install ORDER BY id",
    "mobile_apps_reclaim": "SELECT id, target, status FROM mobile_apps_reclaim ORDER BY id",
    "mobile_apps_metadata": "SELECT adam_id, platform, name, version FROM mobile_apps_metadata ORDER BY adam_id",
}
METADATA = (
    "INSERT INTO mobile_apps_metadata (adam_id, platform, account, status, name, version, device_families, attempts)"
    " VALUES ('100', 'iOS', 'school', 'ok', 'Keynote', '14.1', '[]', 0)"
)


def _shown(host: Host) -> dict[str, list[tuple[Any, ...]]]:
    with host.db.engine.connect() as conn:
        return {table: [tuple(row) for row in conn.execute(text(query))] for table, query in SHOWN.items()}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_down_to_0002_and_up_again_keeps_the_rows_and_never_gives_a_deleted_id_again(
    make_host: Callable[..., Host], request: pytest.FixtureRequest, dialect: str
) -> None:
    """At head, rows 1-3 of each table with ids, row 3 deleted; down to 0002 (below is refused)
    and up to head: rows 1 and 2 are as they were, and the next row of each table gets id 4."""
    host = make_host(database_url=request.getfixturevalue("pg_url") if dialect == "postgresql" else None)
    [apps] = [s for s in host.migration_sets() if s.name == "mobile_apps"]
    with host.db.engine.begin() as conn:
        for table in ("mobile_apps_app", "mobile_apps_install", "mobile_apps_reclaim"):
            for n in (1, 2, 3):
                conn.execute(text(_insert(table, CASES[table][3], n)))
            if dialect == "postgresql":  # the ids were given, not drawn: the sequence as drawing them would leave it
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 3)"))
            conn.execute(text(f"DELETE FROM {table} WHERE id = 3"))
        conn.execute(text(METADATA))
    before = _shown(host)
    assert [row[0] for row in before["mobile_apps_reclaim"]] == [1, 2]

    def migrate(step: Callable[..., None], target: str) -> None:
        with host.db.migration_connection() as conn, conn.begin():
            step(alembic_config(apps, connection=conn), target)
        host.db.engine.dispose()

    migrate(command.downgrade, "0002")
    assert _shown(host) == before
    with pytest.raises(NotImplementedError, match="metadata per platform"):
        migrate(command.downgrade, "0001")
    with host.db.engine.connect() as conn:  # still at 0002: its reclaim cause kept
        assert "cause" in {c["name"] for c in inspect(conn).get_columns("mobile_apps_reclaim")}
    assert _shown(host) == before
    migrate(command.upgrade, "head")
    assert _shown(host) == before
    with host.db.engine.begin() as conn:
        for table in ("mobile_apps_app", "mobile_apps_install", "mobile_apps_reclaim"):
            conn.execute(text(_insert(table, CASES[table][3], None)))
    assert {table: [row[0] for row in rows] for table, rows in _shown(host).items() if table != "mobile_apps_metadata"} == {
        "mobile_apps_app": [1, 2, 4],
        "mobile_apps_install": [1, 2, 4],
        "mobile_apps_reclaim": [1, 2, 4],
    }, "a deleted id was given again"
