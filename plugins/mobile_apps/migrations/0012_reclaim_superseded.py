"""reclaim superseded: a failed reclaim tried again later is no longer shown open, and is pruned.

A reclaim Apple refused stays ``failed``, listed by ``mdm apps reclaims`` for the admin to act
on. Reclaiming the same license again (same account, asset, pricing, device or user) recorded a
new reclaim beside it, and the failed one stayed listed for good, even once the new one had
taken the license back, and the history's retention never deleted it. It gets ``superseded_by``:
the id of the later reclaim. The failed reclaims that already have a later one of the same
license are given the first of them.

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
    later = reclaim.alias("later")
    first_later = sa.select(sa.func.min(later.c.id)).where(later.c.id > reclaim.c.id, *(later.c[name] == reclaim.c[name] for name in LICENSE)).scalar_subquery()
    op.execute(reclaim.update().where(reclaim.c.status == "failed").values(superseded_by=first_later))


def downgrade() -> None:
    op.execute("ALTER TABLE mobile_apps_reclaim DROP COLUMN superseded_by")  # SQLite 3.35+ too, keeping the table (and its AUTOINCREMENT)
