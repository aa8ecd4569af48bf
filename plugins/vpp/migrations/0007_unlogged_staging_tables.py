"""unlogged staging tables: on PostgreSQL the sync's staging tables write no WAL.

``vpp_stage_license`` and ``vpp_stage_user`` hold the pages of a sync in progress and are
emptied when it ends. Written to the WAL, a full sync's 300,000 staged licenses cost as much
WAL as the mirror itself, flushed at each staging batch's commit; unlogged, they cost none. A
server that crashes empties unlogged tables, when every sync that staged rows in them has
failed anyway (its connection was lost): nothing of the mirror is unlogged. SQLite: nothing.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGING_TABLES = ("vpp_stage_license", "vpp_stage_user")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in STAGING_TABLES:
            op.execute(f"ALTER TABLE {table} SET UNLOGGED")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in STAGING_TABLES:
            op.execute(f"ALTER TABLE {table} SET LOGGED")
