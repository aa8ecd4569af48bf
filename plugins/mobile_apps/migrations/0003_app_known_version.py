"""app known version

Applications get ``known_version``: the version devices were last brought to, where automatic
updates (``mobile_apps.updates``, ``mdm apps check-updates``) start from. Each application
starts from the version already looked up for its platform (none while its metadata is pending).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 16:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mobile_apps_app", schema=None) as batch_op:
        batch_op.add_column(sa.Column("known_version", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE mobile_apps_app SET known_version = (SELECT m.version FROM mobile_apps_metadata m "
        "WHERE m.adam_id = mobile_apps_app.adam_id AND m.platform = mobile_apps_app.platform)"
    )


def downgrade() -> None:
    # SQLite 3.35+: ALTER TABLE ... DROP COLUMN, the table kept (a rebuild dropped the AUTOINCREMENT of 0005: ids given again)
    with op.batch_alter_table("mobile_apps_app", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("known_version")
