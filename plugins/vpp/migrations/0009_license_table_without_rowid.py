"""license table without rowid: SQLite keeps each license once in its primary key's b-tree.

Every column of a license is part of its primary key, so SQLite kept each row three times: in
the table's rowid b-tree, in the primary key's index and in the target index. Stored in the
primary key itself (``WITHOUT ROWID``), a license is written and deleted in two b-trees instead
of three. The benchmark's incremental sync (1,500 licenses inserted, 1,345 deleted), its write
transaction replayed on a database built by each: 5,915 -> 5,135 pages written to the WAL,
0.134-0.139 -> 0.128-0.133 s of CPU; the database after the full sync 119 -> 108 MB. Queries do
not change (each reads licenses through the primary key or the target index; `mdm vpp licenses`
scans the primary key as it scanned its index).

The table is rebuilt (copy, drop, rename: 0.8 s for 300,000 licenses), which drops its triggers
(vpp migration 0008): they are created again, and so are the account's, which name it (SQLite
checks them at the rename). PostgreSQL: nothing (its tables have no rowid).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 06:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "account_id, adam_id, pricing_param, kind, target"
MISSING = "NOT EXISTS (SELECT 1 FROM vpp_account WHERE id = NEW.account_id)"
REFUSE = "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END"
#: vpp migration 0008's triggers that name vpp_license, as it created them on SQLite
TRIGGERS = (
    f"CREATE TRIGGER vpp_license_account_insert BEFORE INSERT ON vpp_license WHEN {MISSING} {REFUSE}",
    f"CREATE TRIGGER vpp_license_account_update BEFORE UPDATE OF account_id ON vpp_license WHEN {MISSING} {REFUSE}",
    "CREATE TRIGGER vpp_account_cascade AFTER DELETE ON vpp_account BEGIN DELETE FROM vpp_license WHERE account_id = OLD.id;"
    " DELETE FROM vpp_user WHERE account_id = OLD.id; END",
    "CREATE TRIGGER vpp_account_renumber BEFORE UPDATE OF id ON vpp_account WHEN OLD.id IS NOT NEW.id AND (EXISTS (SELECT 1 FROM vpp_license"
    " WHERE account_id = OLD.id) OR EXISTS (SELECT 1 FROM vpp_user WHERE account_id = OLD.id)) "
    "BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END",
)


def _rebuild(*, rowid: bool) -> None:
    """SQLite: vpp_license again, with or without its rowid, the same rows, index and triggers."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in ("vpp_account_cascade", "vpp_account_renumber"):  # they name vpp_license: the rename would fail
        op.execute(f"DROP TRIGGER {name}")
    op.execute(
        "CREATE TABLE _vpp_license_new (\n\taccount_id INTEGER NOT NULL, \n\tadam_id VARCHAR(32) NOT NULL, \n\tpricing_param VARCHAR(8) NOT NULL, "
        "\n\tkind VARCHAR(8) NOT NULL, \n\ttarget VARCHAR(255) NOT NULL, \n\tPRIMARY KEY (account_id, adam_id, pricing_param, kind, target)\n)"
        + ("" if rowid else " WITHOUT ROWID")
    )
    op.execute(f"INSERT INTO _vpp_license_new ({COLUMNS}) SELECT {COLUMNS} FROM vpp_license ORDER BY {COLUMNS}")
    op.execute("DROP TABLE vpp_license")
    op.execute("ALTER TABLE _vpp_license_new RENAME TO vpp_license")
    op.execute("CREATE INDEX ix_vpp_license_target ON vpp_license (account_id, kind, target)")
    for statement in TRIGGERS:
        op.execute(statement)


def upgrade() -> None:
    _rebuild(rowid=False)


def downgrade() -> None:
    _rebuild(rowid=True)
