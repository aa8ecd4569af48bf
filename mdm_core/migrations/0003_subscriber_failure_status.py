"""subscriber failure status

``core_subscriber_failure.status``: ``retrying`` (``mdm run`` delivers the event again to that
subscriber at ``next_attempt_at``), ``waiting`` (what the subscriber needs, or the subscriber
itself, is not loaded: tried again when the host starts), ``failed`` (retries exhausted: left
for ``mdm events redeliver``). Rows from before are ``failed``: nobody retried them.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("core_subscriber_failure", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="failed"))


def downgrade() -> None:
    with op.batch_alter_table("core_subscriber_failure", schema=None) as batch_op:
        batch_op.drop_column("status")
