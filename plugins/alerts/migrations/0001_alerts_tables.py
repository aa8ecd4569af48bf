"""alerts tables: subjects (state per watched thing), messages, deliveries, seen events

Revision ID: 0001
Revises:
Create Date: 2026-11-30 07:23:51.026972
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=True),
        sa.Column("title", sa.String(length=512), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alerts_message", schema=None) as batch_op:
        batch_op.create_index("ix_alerts_message_subject", ["subject", "created_at"], unique=False)

    op.create_table(
        "alerts_seen_event",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("alerts_seen_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_seen_event_at"), ["at"], unique=False)

    op.create_table(
        "alerts_subject",
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    with op.batch_alter_table("alerts_subject", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_subject_account"), ["account"], unique=False)

    op.create_table(
        "alerts_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["alerts_message.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alerts_delivery", schema=None) as batch_op:
        batch_op.create_index("ix_alerts_delivery_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_delivery_message_id"), ["message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alerts_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_delivery_message_id"))
        batch_op.drop_index("ix_alerts_delivery_due")

    op.drop_table("alerts_delivery")
    with op.batch_alter_table("alerts_subject", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_subject_account"))

    op.drop_table("alerts_subject")
    with op.batch_alter_table("alerts_seen_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_seen_event_at"))

    op.drop_table("alerts_seen_event")
    with op.batch_alter_table("alerts_message", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_message_subject")

    op.drop_table("alerts_message")
