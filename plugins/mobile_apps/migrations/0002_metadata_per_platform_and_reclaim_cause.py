"""metadata per platform and reclaim cause

Metadata is cached per adamId and application platform (a universal app's macOS entry comes
from the Mac App Store, with its own bundle id and version). Each cached row becomes one row
per platform its adamId is published on: the iOS (and other) rows keep what was looked up;
macOS rows of apps that also run on iOS were looked up with the iOS storefront, so they are
looked up again. Reclaims get ``cause``: the removal event that asked for them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 07:46:25.897905
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "adam_id",
    "account",
    "status",
    "name",
    "bundle_id",
    "version",
    "icon_url",
    "store_kind",
    "device_families",
    "fetched_at",
    "attempts",
    "last_error",
    "next_attempt_at",
)


def upgrade() -> None:
    op.create_table(
        "mobile_apps_metadata_new",
        sa.Column("adam_id", sa.String(length=32), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=True),
        sa.Column("bundle_id", sa.String(length=255), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("icon_url", sa.String(length=1024), nullable=True),
        sa.Column("store_kind", sa.String(length=64), nullable=True),
        sa.Column("device_families", sa.JSON(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("adam_id", "platform"),
    )
    cols = ", ".join(COLUMNS)
    picked = ", ".join(f"m.{c}" for c in COLUMNS)
    op.execute(
        f"INSERT INTO mobile_apps_metadata_new (platform, {cols}) "
        f"SELECT p.platform, {picked} FROM mobile_apps_metadata m "
        "JOIN (SELECT DISTINCT adam_id, platform FROM mobile_apps_app) p ON p.adam_id = m.adam_id"
    )
    # macOS entries of apps also on iOS came from the iOS storefront: look them up again
    op.execute(
        "UPDATE mobile_apps_metadata_new SET status = 'pending', next_attempt_at = NULL, name = NULL, bundle_id = NULL, "
        "version = NULL, icon_url = NULL, fetched_at = NULL WHERE platform = 'macOS' AND adam_id IN "
        "(SELECT adam_id FROM mobile_apps_app WHERE platform <> 'macOS')"
    )
    op.drop_table("mobile_apps_metadata")
    op.rename_table("mobile_apps_metadata_new", "mobile_apps_metadata")
    with op.batch_alter_table("mobile_apps_metadata", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mobile_apps_metadata_bundle_id"), ["bundle_id"], unique=False)

    with op.batch_alter_table("mobile_apps_reclaim", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cause", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_mobile_apps_reclaim_cause"), ["cause"], unique=False)


def downgrade() -> None:
    """Refused before it changes anything: metadata per platform has no way back."""
    raise NotImplementedError("metadata per platform cannot be folded back into one row per adamId")
