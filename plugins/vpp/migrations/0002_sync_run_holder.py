"""sync run holder

``vpp_sync_run.holder``: the lock holder (``host:pid:random``) that runs the sync. Its staged
rows are its own: another sync deletes them only once that holder is known to be gone, and a
run whose holder is gone shows ``interrupted``, never ``running``.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vpp_sync_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vpp_sync_run", schema=None) as batch_op:
        batch_op.drop_column("holder")
