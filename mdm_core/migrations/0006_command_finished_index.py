"""index core_command on (status, updated_at): housekeeping finds the commands finished before
its retention without reading the whole queue.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("core_command", schema=None) as batch_op:
        batch_op.create_index("ix_core_command_finished", ["status", "updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("core_command", schema=None) as batch_op:
        batch_op.drop_index("ix_core_command_finished")
