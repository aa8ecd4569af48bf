"""alerts webhook secrets: each webhook's POSTs are signed (HMAC-SHA256) with a secret of its own.

The receiver checks ``X-MDM-Signature`` with it (README, Alerts); the secret is kept encrypted
with the host's key, as the VPP tokens are, and made at the webhook's first use.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 19:40:00.000000
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
    op.create_table(
        "alerts_webhook_secret",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("secret_ciphertext", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("alerts_webhook_secret")
