"""application published index

``ix_mobile_apps_app_published`` on ``mobile_apps_app (published_at)``: after a manual sync
(``mdm vpp sync``, the console's Sync now), the metadata lookup first asks whether any
application was published since the sync started (``catalog.refresh_metadata``, most publish
none). Without it that question scanned every application of every account, each sync.
On SQLite a plain CREATE INDEX: the table (and its AUTOINCREMENT, 0005) is not rebuilt.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_mobile_apps_app_published", "mobile_apps_app", ["published_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_mobile_apps_app_published", table_name="mobile_apps_app")
