"""metadata warned version

Metadata gets ``warned_version``: the lower version than the known one the lookup answered
that the update check already warned of, so that a stale answer is logged once (per app,
platform and version) rather than at every check. Existing rows start with none: a stale
answer standing now is warned of once more.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:20:00.000000
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
    with op.batch_alter_table("mobile_apps_metadata", schema=None) as batch_op:
        batch_op.add_column(sa.Column("warned_version", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # SQLite 3.35+: ALTER TABLE ... DROP COLUMN, no rebuild
    with op.batch_alter_table("mobile_apps_metadata", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("warned_version")
