"""Ids that leave the database are never given again once their row is deleted (SQLite
AUTOINCREMENT; PostgreSQL's sequences never go back): a failed delivery's (`mdm events redeliver
ID`, deleted once delivered), an alert's (`mdm alerts retry ID`, deleted past its retention),
an application's (/apps/ID, deleted when a renamed account's replaces it), an event's seq (the
``GET /api/v1/events`` cursor, deleted past its retention), an install's and a reclaim's (in
their events, `mdm apps installs`, deleted past their retention). Each migration runs on
a database holding rows, on SQLite and PostgreSQL; the VPP accounts' and runs' are in
tests/vpp/test_ids_never_reused.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mdm_core.host import create_host
from tests.test_apple_migrations import _database_at, _upgrade_then_query

AT = "'2026-01-02 03:04:05+00:00'"
#: table: (history, revision before, the migration's line in `mdm db upgrade`, a row's columns)
CASES: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "core_subscriber_failure": (
        "core",
        "0007",
        "core: applied 0008 (failure ids never reused",
        {"event_id": "'e{id}'", "event_name": "'vpp_sync_finished'", "plugin": "'alerts'", "error": "'boom'", "at": AT, "attempts": "1", "status": "'failed'"},
    ),
    "core_event": (
        "core",
        "0008",
        "core: applied 0009 (event seq never reused",
        {"id": "'e{id}'", "name": "'device_enrolled'", "payload": "'{{}}'", "created_at": AT, "delivered_at": AT},
    ),
    "alerts_message": (
        "alerts",
        "0001",
        "alerts: applied 0002 (alert ids never reused",
        {
            "created_at": AT,
            "kind": "'token'",
            "subject": "'token:s{id}'",
            "state": "'expired'",
            "severity": "'critical'",
            "title": "'t'",
            "text": "'x'",
            "action": "'a'",
            "fields": "'{{}}'",
        },
    ),
    "mobile_apps_app": (
        "mobile_apps",
        "0004",
        "mobile_apps: applied 0005 (application ids never reused",
        {
            "account": "'school'",
            "adam_id": "'{id}00'",
            "pricing_param": "'STDQ'",
            "platform": "'iOS'",
            "kind": "'app'",
            "state": "'published'",
            "product_type": "'App'",
            "device_assignable": "true",
            "revocable": "true",
            "supported_platforms": "'[]'",
            "assigned_count": "0",
            "available_count": "1",
            "retired_count": "0",
            "total_count": "1",
            "published_at": AT,
            "updated_at": AT,
        },
    ),
    "mobile_apps_install": (
        "mobile_apps",
        "0006",
        "mobile_apps: applied 0007 (install and reclaim ids never reused",
        {
            "account": "'school'",
            "adam_id": "'111'",
            "pricing_param": "'STDQ'",
            "kind": "'device'",
            "target": "'S{id}'",
            "source": "'request'",
            "status": "'removed'",
            "event_ids": "'[]'",
            "command_uuids": "'[]'",
            "attempts": "0",
            "created_at": AT,
            "updated_at": AT,
        },
    ),
    "mobile_apps_reclaim": (
        "mobile_apps",
        "0006",
        "mobile_apps: applied 0007 (install and reclaim ids never reused",
        {
            "account": "'school'",
            "adam_id": "'111'",
            "pricing_param": "'STDQ'",
            "kind": "'device'",
            "target": "'S{id}'",
            "reason": "'manual'",
            "status": "'done'",
            "attempts": "0",
            "event_ids": "'[]'",
            "created_at": AT,
            "updated_at": AT,
        },
    ),
}
#: the key a table's rows are named by, where it is not ``id``
KEY = {"core_event": "seq"}
DELIVERY = (
    "INSERT INTO alerts_delivery (id, message_id, channel, status, attempts, next_attempt_at, updated_at)"
    f" VALUES ({{id}}, {{id}}, 'email', 'failed', 3, {AT}, {AT})"
)


def _insert(table: str, row: dict[str, str], id_: int | None) -> str:
    """The INSERT of ``row`` (its values formatted with ``id_``): with that id as its key, else without one."""
    values = {**({KEY.get(table, "id"): str(id_)} if id_ is not None else {}), **{k: v.format(id=id_ or 9) for k, v in row.items()}}
    return f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(values.values())})"


@pytest.mark.parametrize("table", list(CASES))
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_migration_keeps_the_rows_and_a_deleted_id_is_never_given_again(
    project_dir: Path, monkeypatch: Any, capsys: Any, request: pytest.FixtureRequest, dialect: str, table: str
) -> None:
    """A database before the migration, with rows 1 and 2 (alerts: each with its delivery):
    upgraded, both are kept with their ids (and deliveries); the newest deleted (its delivery
    with it), the next row gets id 3, not 2."""
    history, before, applied, row = CASES[table]
    key = KEY.get(table, "id")
    url = str(request.getfixturevalue("pg_url")) if dialect == "postgresql" else None
    rows = [_insert(table, row, n) for n in (1, 2)]
    rows += [DELIVERY.format(id=n) for n in (1, 2)] if table == "alerts_message" else []
    if url:  # the rows' ids were given, not drawn: the sequence as drawing them would leave it
        rows.append(f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'), 2)")
    mdm = _database_at(project_dir, monkeypatch, capsys, {history: before}, rows, url=url)
    [ids, deliveries] = _upgrade_then_query(
        mdm, applied, f"SELECT {key} FROM {table} ORDER BY {key}", "SELECT message_id FROM alerts_delivery ORDER BY id", url=url
    )
    assert ids == [(1,), (2,)]
    assert deliveries == ([(1,), (2,)] if table == "alerts_message" else [])
    host = create_host(mdm.conf)
    try:
        with host.db.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {table} WHERE {key} = 2"))
            conn.execute(text(_insert(table, row, None)))
        with host.db.engine.connect() as conn:
            assert list(conn.execute(text(f"SELECT {key} FROM {table} ORDER BY {key}")).scalars()) == [1, 3], "the deleted row's id was given again"
            assert list(conn.execute(text("SELECT message_id FROM alerts_delivery")).scalars()) == ([1] if table == "alerts_message" else [])
    finally:
        host.close()
