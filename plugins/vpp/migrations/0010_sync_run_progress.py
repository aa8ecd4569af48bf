"""sync run progress: a running sync's pages and rows read so far, seen from every process.

``vpp_sync_run.progress`` (JSON, nullable): written by the syncing process every few seconds
while it reads (``plugins/vpp/sync/stored_progress.py``), set back to NULL when the run ends,
so that a console in another process (another host, or beside a shell's ``mdm vpp sync``)
shows how far the sync is. Existing runs have ended: NULL.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vpp_sync_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vpp_sync_run", schema=None) as batch_op:
        batch_op.drop_column("progress")
