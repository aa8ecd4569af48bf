"""alerts migration 0004: the account's recent license alerts (read at every assets event to
fold unsent ones into a digest) are found by an index on (kind, account, created_at), not by a
scan of every alert kept for ``keep_days``; the alerts recorded before are kept, and a
downgrade to 0003 removes the index (an upgrade makes it again). SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from tests.conftest import database_param
from tests.test_apple_migrations import _database_at, _upgrade_then_query

INDEX = "ix_alerts_message_recent"
ALERT = (
    "INSERT INTO alerts_message (id, created_at, kind, subject, state, severity, account, title, text, action, fields) "
    "VALUES ({id}, '2026-01-02 03:04:05+00:00', 'licenses', 'licenses:school:{id}:STDQ', 'low', 'warning', 'school', 't', 'x', 'a', '{{}}')"
)


def _indexes(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {str(ix["name"]): [str(c) for c in ix["column_names"]] for ix in inspect(conn).get_indexes("alerts_message")}
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_alerts_0004_indexes_the_recent_license_alerts_and_downgrades_without_it(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, kind: str
) -> None:
    from alembic import command

    from mdm_core.db import Database
    from mdm_core.db.migrate import alembic_config
    from mdm_core.host import create_host

    url = None if kind == "sqlite" else database_param(request, project_dir, kind)
    mdm = _database_at(project_dir, monkeypatch, capsys, {"alerts": "0003"}, [ALERT.format(id=i) for i in range(1, 6)], url)
    [alerts] = _upgrade_then_query(mdm, "alerts: applied 0004 (recent license alerts index", "SELECT count(*), max(id) FROM alerts_message", url=url)
    assert alerts == [(5, 5)]
    database = url or f"sqlite:///{mdm.db}"
    assert _indexes(database)[INDEX] == ["kind", "account", "created_at"]

    host = create_host(mdm.conf)
    db = Database(database)
    try:
        [history] = [s for s in host.migration_sets() if s.name == "alerts"]
        with db.migration_connection() as conn, conn.begin():
            command.downgrade(alembic_config(history, connection=conn), "0003")
    finally:
        db.dispose()
        host.close()
    assert INDEX not in _indexes(database)
    [alerts] = _upgrade_then_query(mdm, "alerts: applied 0004 (recent license alerts index", "SELECT count(*), max(id) FROM alerts_message", url=url)
    assert alerts == [(5, 5)]
    assert INDEX in _indexes(database)
