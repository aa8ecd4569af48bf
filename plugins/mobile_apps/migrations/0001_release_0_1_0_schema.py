"""release 0.1.0 schema

Revision ID: 0001
Revises:
Create Date: 2026-11-30 07:07:30.518247
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
        "mobile_apps_app",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("adam_id", sa.String(length=32), nullable=False),
        sa.Column("pricing_param", sa.String(length=8), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("product_type", sa.String(length=16), nullable=False),
        sa.Column("device_assignable", sa.Boolean(), nullable=False),
        sa.Column("revocable", sa.Boolean(), nullable=False),
        sa.Column("supported_platforms", sa.JSON(), nullable=False),
        sa.Column("assigned_count", sa.Integer(), nullable=False),
        sa.Column("available_count", sa.Integer(), nullable=False),
        sa.Column("retired_count", sa.Integer(), nullable=False),
        sa.Column("total_count", sa.Integer(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account", "adam_id", "pricing_param", "platform", name="uq_mobile_apps_app_asset_platform"),
    )
    with op.batch_alter_table("mobile_apps_app", schema=None) as batch_op:
        batch_op.create_index("ix_mobile_apps_app_adam", ["adam_id"], unique=False)

    op.create_table(
        "mobile_apps_install",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("adam_id", sa.String(length=32), nullable=False),
        sa.Column("pricing_param", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("event_ids", sa.JSON(), nullable=False),
        sa.Column("command_uuids", sa.JSON(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mobile_apps_install", schema=None) as batch_op:
        batch_op.create_index("ix_mobile_apps_install_status", ["status", "account", "adam_id"], unique=False)

    op.create_table(
        "mobile_apps_metadata",
        sa.Column("adam_id", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=True),
        sa.Column("bundle_id", sa.String(length=255), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("icon_url", sa.String(length=1024), nullable=True),
        sa.Column("store_kind", sa.String(length=64), nullable=True),
        sa.Column("device_families", sa.JSON(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("adam_id"),
    )
    with op.batch_alter_table("mobile_apps_metadata", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mobile_apps_metadata_bundle_id"), ["bundle_id"], unique=False)

    op.create_table(
        "mobile_apps_reclaim",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("adam_id", sa.String(length=32), nullable=False),
        sa.Column("pricing_param", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("event_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mobile_apps_reclaim", schema=None) as batch_op:
        batch_op.create_index("ix_mobile_apps_reclaim_status", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "mobile_apps_seen_event",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )


def downgrade() -> None:
    op.drop_table("mobile_apps_seen_event")
    with op.batch_alter_table("mobile_apps_reclaim", schema=None) as batch_op:
        batch_op.drop_index("ix_mobile_apps_reclaim_status")

    op.drop_table("mobile_apps_reclaim")
    with op.batch_alter_table("mobile_apps_metadata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mobile_apps_metadata_bundle_id"))

    op.drop_table("mobile_apps_metadata")
    with op.batch_alter_table("mobile_apps_install", schema=None) as batch_op:
        batch_op.drop_index("ix_mobile_apps_install_status")

    op.drop_table("mobile_apps_install")
    with op.batch_alter_table("mobile_apps_app", schema=None) as batch_op:
        batch_op.drop_index("ix_mobile_apps_app_adam")

    op.drop_table("mobile_apps_app")
