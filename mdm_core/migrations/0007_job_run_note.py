"""job run note: what the last run of a job that went well did not do and why (an account's sync
its token keeps waiting), so that `mdm jobs` does not show it as a plain ok.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 13:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("core_job_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_note", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("core_job_run", schema=None) as batch_op:
        batch_op.drop_column("last_note")
