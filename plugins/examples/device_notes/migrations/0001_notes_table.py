"""notes table

Revision ID: 0001
Revises:
Create Date: 2026-11-30 07:08:19.884942
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
        "device_notes_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("device_notes_note", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_device_notes_note_serial_number"), ["serial_number"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("device_notes_note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_notes_note_serial_number"))

    op.drop_table("device_notes_note")
