"""asset license count: the licenses the mirror holds per asset, filled from vpp_license.

Stored on vpp_asset and kept by every writer of vpp_license (plugins/vpp/license_counts.py),
so that an incremental sync need not count the whole mirror.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 16:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vpp_asset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("license_count", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE vpp_asset SET license_count = (SELECT count(*) FROM vpp_license WHERE vpp_license.account_id = vpp_asset.account_id"
        " AND vpp_license.adam_id = vpp_asset.adam_id AND vpp_license.pricing_param = vpp_asset.pricing_param)"
    )


def downgrade() -> None:
    with op.batch_alter_table("vpp_asset", schema=None) as batch_op:
        batch_op.drop_column("license_count")
