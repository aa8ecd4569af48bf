"""reclaim superseded: a failed reclaim tried again later is no longer shown open, and is pruned.

A reclaim Apple refused stays ``failed``, listed by ``mdm apps reclaims`` for the admin to act
on. Reclaiming the same license again (same account, asset, pricing, device or user) recorded a
new reclaim beside it, and the failed one stayed listed for good, even once the new one had
taken the license back, and the history's retention never deleted it. It gets ``superseded_by``:
the id of the later reclaim. The failed reclaims that already have a later one of the same
license are given the next of them.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.sql.expression import ColumnClause

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: what names one license (or, with adam_id "*", one revoke) in the table
LICENSE = ("account", "adam_id", "pricing_param", "kind", "target")


def upgrade() -> None:
    # a plain ADD COLUMN, not a batch: on SQLite a batch rebuilds the table, and its AUTOINCREMENT (0007) with it
    op.add_column("mobile_apps_reclaim", sa.Column("superseded_by", sa.Integer(), nullable=True))
    license_columns: list[ColumnClause[Any]] = [sa.column(name, sa.String) for name in LICENSE]
    columns: list[ColumnClause[Any]] = [sa.column("id", sa.Integer), sa.column("status", sa.String), sa.column("superseded_by", sa.Integer), *license_columns]
    reclaim = sa.table("mobile_apps_reclaim", *columns)
    # each reclaim with the next one of its license, numbered by one sort of the table (a
    # subquery per failed reclaim scanned the whole table: no index holds the license's columns)
    following = sa.func.lead(reclaim.c.id).over(partition_by=license_columns, order_by=reclaim.c.id)
    ordered = sa.select(reclaim.c.id, reclaim.c.status, following.label("next_id")).subquery("ordered")
    bind = op.get_bind()
    superseded = bind.execute(sa.select(ordered.c.id, ordered.c.next_id).where(ordered.c.status == "failed", ordered.c.next_id.is_not(None))).all()
    mark = reclaim.update().where(reclaim.c.id == sa.bindparam("reclaim_id")).values(superseded_by=sa.bindparam("next_id"))
    for start in range(0, len(superseded), 1000):
        bind.execute(mark, [{"reclaim_id": row[0], "next_id": row[1]} for row in superseded[start : start + 1000]])


def downgrade() -> None:
    op.execute("ALTER TABLE mobile_apps_reclaim DROP COLUMN superseded_by")  # SQLite 3.35+ too, keeping the table (and its AUTOINCREMENT)
