"""record who revoked API tokens

A revoked token kept when it was revoked, not by whom. ``revoked_by`` says it (``cli:OSUSER``
for ``mdm api-tokens revoke``); tokens revoked before stay NULL: nobody recorded it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 05:30:30.114931
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
    with op.batch_alter_table("web_api_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_by", sa.String(length=160), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("web_api_token", schema=None) as batch_op:
        batch_op.drop_column("revoked_by")
