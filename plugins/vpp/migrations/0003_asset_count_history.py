"""asset count history

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 07:36:59.199143
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
    op.create_table(
        "vpp_asset_count",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("adam_id", sa.String(length=32), nullable=False),
        sa.Column("pricing_param", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_count", sa.Integer(), nullable=False),
        sa.Column("available_count", sa.Integer(), nullable=False),
        sa.Column("retired_count", sa.Integer(), nullable=False),
        sa.Column("total_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["vpp_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("vpp_asset_count", schema=None) as batch_op:
        batch_op.create_index("ix_vpp_asset_count_asset", ["account_id", "adam_id", "pricing_param", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vpp_asset_count", schema=None) as batch_op:
        batch_op.drop_index("ix_vpp_asset_count_asset")

    op.drop_table("vpp_asset_count")
