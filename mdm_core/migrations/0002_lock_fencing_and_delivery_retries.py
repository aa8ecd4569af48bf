"""lock fencing and delivery retries

``core_lock.generation``: grows at every acquisition; with the holder, the fencing token that
a lock-guarded transaction checks. ``core_subscriber_failure``: the hook that failed, how many
attempts were made and when the next one is due (empty once retries are exhausted).

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
    with op.batch_alter_table("core_lock", schema=None) as batch_op:
        batch_op.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("core_subscriber_failure", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hook", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("core_subscriber_failure", schema=None) as batch_op:
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("attempts")
        batch_op.drop_column("hook")
    with op.batch_alter_table("core_lock", schema=None) as batch_op:
        batch_op.drop_column("generation")
