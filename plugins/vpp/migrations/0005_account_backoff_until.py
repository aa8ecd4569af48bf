"""account backoff until: the time until which Apple asked (Retry-After, 9646) not to be called
with the account's token, shared by every process on the database.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 07:31:07.669676
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vpp_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backoff_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vpp_account", schema=None) as batch_op:
        batch_op.drop_column("backoff_until")
