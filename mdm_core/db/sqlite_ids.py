"""SQLite ids that never come back: the rebuild a migration runs to give a table AUTOINCREMENT.

A plain ``INTEGER PRIMARY KEY`` on SQLite gives a new row the highest id + 1: once the
highest rows are deleted (an account removed, history past its retention) their ids are given
again, while a URL, an event's payload or a listing the admin copied still names the old row.
PostgreSQL's sequences never go back. A model whose ids leave the database sets
``sqlite_autoincrement=True``; its plugin's migration calls :func:`never_reuse_ids`.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text


def never_reuse_ids(table: str, column: str = "id") -> None:
    """SQLite: rebuild ``table`` with ``AUTOINCREMENT`` on ``column``, its rows, ids, indexes,
    constraints and foreign keys kept, and its ids counted from its highest one today (ids
    deleted before are not known any more). The triggers on it or naming it are dropped for the
    rebuild (SQLite checks them at the rename) and created again as they were. Foreign keys are
    off on the migration's connection (``Database.migration_connection``: the drop does not
    cascade) and checked after it (``migrate._check_foreign_keys``); the table and its indexes are
    checked too (``PRAGMA integrity_check``). A table that has AUTOINCREMENT already (its
    history taken down past this migration and up again) is left as it is, its sequence with
    it: counted again from its highest id, the ids deleted at its top would be given again.
    PostgreSQL: nothing."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    created = bind.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}).scalar_one()
    if "AUTOINCREMENT" in created.upper():
        return
    if bind.execute(text("PRAGMA foreign_keys")).scalar():
        raise RuntimeError(f"{table} cannot be rebuilt with foreign keys on: its drop would delete the rows that refer to it")
    naming = bind.execute(
        text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND (tbl_name = :t OR sql LIKE :named) ORDER BY name"),
        {"t": table, "named": f"%{table}%"},
    ).all()
    for name, _ in naming:
        op.execute(f'DROP TRIGGER "{name}"')
    with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass
    op.execute(text("DELETE FROM sqlite_sequence WHERE name = :t").bindparams(t=table))
    op.execute(text(f'INSERT INTO sqlite_sequence (name, seq) SELECT :t, COALESCE(MAX("{column}"), 0) FROM "{table}"').bindparams(t=table))
    for _, sql in naming:
        op.execute(sql)
    problems = [row[0] for row in bind.execute(text(f'PRAGMA integrity_check("{table}")'))]
    if problems != ["ok"]:
        raise RuntimeError(f"{table} rebuilt is not consistent: {problems[0]}")
