"""reclaim unconfirmed: a reclaim Apple took but has not confirmed yet says so in a column.

A pending reclaim whose request Apple accepted without confirming it yet (``mdm apps reclaim``
says "asked Apple to take the license back; not confirmed yet", a removal "Apple was asked to
take them back and has not confirmed yet") was recognised by its ``last_error`` text alone, so
rewording that message would have made such reclaims say "Apple could not be reached". They get
``unconfirmed``; the pending reclaims that carry that message today are marked, so they keep
saying it after the upgrade.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the ``last_error`` of a reclaim Apple had not confirmed, as written up to this revision
NOT_CONFIRMED = "Apple has not confirmed yet; asking again later"


def upgrade() -> None:
    # a plain ADD COLUMN, not a batch: on SQLite a batch rebuilds the table, and its AUTOINCREMENT (0007) with it
    op.add_column("mobile_apps_reclaim", sa.Column("unconfirmed", sa.Boolean(), nullable=False, server_default=sa.false()))
    reclaim = sa.table("mobile_apps_reclaim", sa.column("status", sa.String), sa.column("last_error", sa.String), sa.column("unconfirmed", sa.Boolean))
    op.execute(reclaim.update().where(reclaim.c.status == "pending", reclaim.c.last_error == NOT_CONFIRMED).values(unconfirmed=True))


def downgrade() -> None:
    op.execute("ALTER TABLE mobile_apps_reclaim DROP COLUMN unconfirmed")  # SQLite 3.35+ too, keeping the table (and its AUTOINCREMENT)
