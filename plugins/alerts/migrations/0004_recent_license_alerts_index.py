"""recent license alerts index

``ix_alerts_message_recent`` on ``alerts_message (kind, account, created_at)``: every assets
event that finds licenses low reads the account's license alerts of the last few minutes (to
fold those not sent yet into one digest, ``plugins/alerts/store.py``). Without it that read
scanned every alert kept for ``[alerts] keep_days`` (90 days by default), each event.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_alerts_message_recent", "alerts_message", ["kind", "account", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_message_recent", table_name="alerts_message")
