"""job run holder: which process on which host ran a job's last run, so that `mdm jobs` can say
it (with several hosts on one database, a failed run is looked for in that host's log).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 17:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("core_job_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_holder", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("core_job_run", schema=None) as batch_op:
        batch_op.drop_column("last_holder")
