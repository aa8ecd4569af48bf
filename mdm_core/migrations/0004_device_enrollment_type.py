"""device enrollment type: device, automated or user (User Enrollment forbids some command keys);
devices enrolled before are Device Enrollment.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 07:33:29.340054
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
    with op.batch_alter_table("core_device", schema=None) as batch_op:
        batch_op.add_column(sa.Column("enrollment_type", sa.String(length=16), nullable=False, server_default="device"))


def downgrade() -> None:
    with op.batch_alter_table("core_device", schema=None) as batch_op:
        batch_op.drop_column("enrollment_type")
