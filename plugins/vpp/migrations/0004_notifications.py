"""notifications

Apple's Apps and Books notifications: ``vpp_notification``, the inbox of what Apple posted
(recorded before it is answered, acted on once: ``notificationId`` unique per account);
``vpp_pending_secret``, a secret being given to Apple (its test notification is accepted with
it while ``POST client/config`` is under way); and the account's notification state
(``notifications`` on/off, the URL given to Apple, the encrypted bearer secret, when the last
notification arrived). Existing accounts start with notifications off (polling, as before).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 08:51:33.239894
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vpp_pending_secret",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mdm_info_id", sa.String(length=64), nullable=False),
        sa.Column("secret_ciphertext", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("vpp_pending_secret", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vpp_pending_secret_mdm_info_id"), ["mdm_info_id"], unique=False)

    op.create_table(
        "vpp_notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.String(length=255), nullable=False),
        sa.Column("notification_type", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["vpp_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "notification_id", name="uq_vpp_notification_id"),
    )
    with op.batch_alter_table("vpp_notification", schema=None) as batch_op:
        batch_op.create_index("ix_vpp_notification_event", ["account_id", "event_id"], unique=False)
        batch_op.create_index("ix_vpp_notification_status", ["status", "account_id", "id"], unique=False)

    with op.batch_alter_table("vpp_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notifications", sa.String(length=8), nullable=False, server_default="off"))
        batch_op.add_column(sa.Column("notification_url", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("notification_secret", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("last_notification_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vpp_account", schema=None) as batch_op:
        batch_op.drop_column("last_notification_at")
        batch_op.drop_column("notification_secret")
        batch_op.drop_column("notification_url")
        batch_op.drop_column("notifications")

    with op.batch_alter_table("vpp_notification", schema=None) as batch_op:
        batch_op.drop_index("ix_vpp_notification_status")
        batch_op.drop_index("ix_vpp_notification_event")

    op.drop_table("vpp_notification")
    with op.batch_alter_table("vpp_pending_secret", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vpp_pending_secret_mdm_info_id"))

    op.drop_table("vpp_pending_secret")
