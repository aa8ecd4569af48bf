"""reclaim unretired: a removed user's revoke waiting to retire its VPP user says so in a column.

A removed user's revoke whose licenses are released at Apple, with only its VPP user left to
retire, was recognised by its ``last_error`` text alone (``reclaims.NOT_RETIRED``), so rewording
that message would have sent the revoke to Apple again at every attempt. It gets ``unretired``;
the pending reclaims that carry that message today are marked, so they keep being recognised.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 21:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the ``last_error`` of a revoke waiting to retire its VPP user, as written up to this revision
NOT_RETIRED = "its licenses are released at Apple; its VPP user could not be retired yet: asking again later"


def upgrade() -> None:
    # a plain ADD COLUMN, not a batch: on SQLite a batch rebuilds the table, and its AUTOINCREMENT (0007) with it
    op.add_column("mobile_apps_reclaim", sa.Column("unretired", sa.Boolean(), nullable=False, server_default=sa.false()))
    reclaim = sa.table("mobile_apps_reclaim", sa.column("status", sa.String), sa.column("last_error", sa.String), sa.column("unretired", sa.Boolean))
    op.execute(reclaim.update().where(reclaim.c.status == "pending", reclaim.c.last_error == NOT_RETIRED).values(unretired=True))


def downgrade() -> None:
    op.execute("ALTER TABLE mobile_apps_reclaim DROP COLUMN unretired")  # SQLite 3.35+ too, keeping the table (and its AUTOINCREMENT)
