"""index core_subscriber_failure on (status, plugin): ``mdm run``'s retries (every turn),
``mdm status`` and the alerts check find the failed deliveries by status, and ``mdm events
discard --plugin`` and the housekeeping of uninstalled plugins' by plugin, without reading
every failed delivery (about 1,400 a sync for a subscriber that keeps failing).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 04:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("core_subscriber_failure", schema=None) as batch_op:
        batch_op.create_index("ix_core_subscriber_failure_status", ["status", "plugin"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("core_subscriber_failure", schema=None) as batch_op:
        batch_op.drop_index("ix_core_subscriber_failure_status")
