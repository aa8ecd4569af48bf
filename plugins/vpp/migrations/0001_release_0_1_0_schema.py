"""release 0.1.0 schema

Revision ID: 0001
Revises:
Create Date: 2026-11-30 07:07:30.478256
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
        "vpp_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("org_name", sa.String(length=255), nullable=True),
        sa.Column("location_name", sa.String(length=255), nullable=True),
        sa.Column("country", sa.String(length=8), nullable=True),
        sa.Column("default_platform", sa.String(length=32), nullable=True),
        sa.Column("website_url", sa.String(length=255), nullable=True),
        sa.Column("invitation_template", sa.String(length=512), nullable=True),
        sa.Column("service_url", sa.String(length=512), nullable=False),
        sa.Column("token_ciphertext", sa.String(), nullable=False),
        sa.Column("token_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mdm_info_id", sa.String(length=64), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("token_state", sa.String(length=32), nullable=False),
        sa.Column("state_detail", sa.String(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("assets_version_id", sa.String(length=128), nullable=True),
        sa.Column("users_version_id", sa.String(length=128), nullable=True),
        sa.Column("assignments_version_id", sa.String(length=128), nullable=True),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sync_result", sa.String(), nullable=True),
        sa.Column("last_full_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("uid"),
    )
    op.create_table(
        "vpp_stage_license",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("adam_id", sa.String(length=32), nullable=False),
        sa.Column("pricing_param", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("vpp_stage_license", schema=None) as batch_op:
        batch_op.create_index("ix_vpp_stage_license_key", ["run_id", "adam_id", "pricing_param", "kind", "target"], unique=False)

    op.create_table(
        "vpp_stage_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("client_user_id", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("id_hash", sa.String(length=255), nullable=True),
        sa.Column("invite_code", sa.String(length=255), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("vpp_stage_user", schema=None) as batch_op:
        batch_op.create_index("ix_vpp_stage_user_key", ["run_id", "client_user_id"], unique=False)

    op.create_table(
        "vpp_asset",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("adam_id", sa.String(length=32), nullable=False),
        sa.Column("pricing_param", sa.String(length=8), nullable=False),
        sa.Column("product_type", sa.String(length=16), nullable=False),
        sa.Column("assigned_count", sa.Integer(), nullable=False),
        sa.Column("available_count", sa.Integer(), nullable=False),
        sa.Column("retired_count", sa.Integer(), nullable=False),
        sa.Column("total_count", sa.Integer(), nullable=False),
        sa.Column("device_assignable", sa.Boolean(), nullable=False),
        sa.Column("revocable", sa.Boolean(), nullable=False),
        sa.Column("supported_platforms", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["vpp_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "adam_id", "pricing_param"),
    )
    op.create_table(
        "vpp_license",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("adam_id", sa.String(length=32), nullable=False),
        sa.Column("pricing_param", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["vpp_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "adam_id", "pricing_param", "kind", "target"),
    )
    with op.batch_alter_table("vpp_license", schema=None) as batch_op:
        batch_op.create_index("ix_vpp_license_target", ["account_id", "kind", "target"], unique=False)

    op.create_table(
        "vpp_sync_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["vpp_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("vpp_sync_run", schema=None) as batch_op:
        batch_op.create_index("ix_vpp_sync_run_account", ["account_id", "started_at"], unique=False)

    op.create_table(
        "vpp_user",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("client_user_id", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("id_hash", sa.String(length=255), nullable=True),
        sa.Column("invite_code", sa.String(length=255), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["vpp_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "client_user_id"),
    )


def downgrade() -> None:
    op.drop_table("vpp_user")
    with op.batch_alter_table("vpp_sync_run", schema=None) as batch_op:
        batch_op.drop_index("ix_vpp_sync_run_account")

    op.drop_table("vpp_sync_run")
    with op.batch_alter_table("vpp_license", schema=None) as batch_op:
        batch_op.drop_index("ix_vpp_license_target")

    op.drop_table("vpp_license")
    op.drop_table("vpp_asset")
    with op.batch_alter_table("vpp_stage_user", schema=None) as batch_op:
        batch_op.drop_index("ix_vpp_stage_user_key")

    op.drop_table("vpp_stage_user")
    with op.batch_alter_table("vpp_stage_license", schema=None) as batch_op:
        batch_op.drop_index("ix_vpp_stage_license_key")

    op.drop_table("vpp_stage_license")
    op.drop_table("vpp_account")
