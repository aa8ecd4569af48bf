"""running sync runs index

``ix_vpp_sync_run_running``: the runs still ``running`` of each account, a partial index (on
SQLite and PostgreSQL). Every sync's preamble looks for them (runs a crashed process left, and
whether staged rows belong to no running run): it scanned every run of the retention period
(``[vpp] sync_run_retention_days``, 90 days of syncs every 15 minutes: 8,640 runs an account,
2.1 ms of PostgreSQL server time at each sync's start; 0.15 ms with the index).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    op.create_index("ix_vpp_sync_run_running", "vpp_sync_run", ["account_id"], unique=False, sqlite_where=RUNNING, postgresql_where=RUNNING)


def downgrade() -> None:
    op.drop_index("ix_vpp_sync_run_running", table_name="vpp_sync_run")
