"""note author

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 07:08:20.640143
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("device_notes_note", schema=None) as batch_op:
        batch_op.add_column(sa.Column("author", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_notes_note", schema=None) as batch_op:
        batch_op.drop_column("author")
