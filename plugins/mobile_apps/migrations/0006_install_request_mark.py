"""install request mark

Installs get ``request_token`` and ``request_started_at``: the mark of the request asking Apple
for an install's license while it is ``associating``. The installs job takes such an install
over (``pending``) only while its status and mark are still those it read, so a request that
recorded its outcome at that very moment keeps it, and the job says whether the request was
interrupted or still under way. Existing installs start with no mark (the job compares their
status alone, as before).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 00:05:00.000000
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
    with op.batch_alter_table("mobile_apps_install", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_token", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("request_started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # SQLite 3.35+: ALTER TABLE ... DROP COLUMN, the table kept (a rebuild dropped the AUTOINCREMENT of 0007: ids given again)
    with op.batch_alter_table("mobile_apps_install", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("request_started_at")
        batch_op.drop_column("request_token")
