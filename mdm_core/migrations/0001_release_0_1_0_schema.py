"""release 0.1.0 schema

Revision ID: 0001
Revises:
Create Date: 2026-11-30 07:07:30.433282
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
        "core_command",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("device_serial", sa.String(length=64), nullable=False),
        sa.Column("request_type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("uuid"),
    )
    with op.batch_alter_table("core_command", schema=None) as batch_op:
        batch_op.create_index("ix_core_command_device_status", ["device_serial", "status"], unique=False)

    op.create_table(
        "core_device",
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("udid", sa.String(length=64), nullable=True),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("serial_number"),
    )
    with op.batch_alter_table("core_device", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_core_device_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_core_device_udid"), ["udid"], unique=False)

    op.create_table(
        "core_event",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("core_event", schema=None) as batch_op:
        batch_op.create_index("ix_core_event_pending", ["delivered_at", "seq"], unique=False)

    op.create_table(
        "core_job_run",
        sa.Column("name", sa.String(length=191), nullable=False),
        sa.Column("plugin", sa.String(length=128), nullable=False),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "core_lock",
        sa.Column("name", sa.String(length=191), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "core_subscriber_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_name", sa.String(length=128), nullable=False),
        sa.Column("plugin", sa.String(length=128), nullable=False),
        sa.Column("error", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("core_subscriber_failure", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_core_subscriber_failure_event_id"), ["event_id"], unique=False)

    op.create_table(
        "core_user",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("managed_apple_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("core_user")
    with op.batch_alter_table("core_subscriber_failure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_core_subscriber_failure_event_id"))

    op.drop_table("core_subscriber_failure")
    op.drop_table("core_lock")
    op.drop_table("core_job_run")
    with op.batch_alter_table("core_event", schema=None) as batch_op:
        batch_op.drop_index("ix_core_event_pending")

    op.drop_table("core_event")
    with op.batch_alter_table("core_device", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_core_device_udid"))
        batch_op.drop_index(batch_op.f("ix_core_device_owner"))

    op.drop_table("core_device")
    with op.batch_alter_table("core_command", schema=None) as batch_op:
        batch_op.drop_index("ix_core_command_device_status")

    op.drop_table("core_command")
