"""keep revoked API tokens

A revoked token's row was deleted, so a request still sending it got the 401 of a token never
created. Its row now stays with ``revoked_at``: the table gets an ``id`` key (a name is unique
among the tokens not revoked only, so it can be given to a new token) and the column. The
table is built anew and the tokens copied (SQLite cannot change a primary key in place).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 02:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("revoked_at IS NULL")
COLUMNS = "name, role, token_hash, created_at, last_used_at"


def upgrade() -> None:
    op.create_table(
        "web_api_token_new",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.execute(f"INSERT INTO web_api_token_new ({COLUMNS}) SELECT {COLUMNS} FROM web_api_token ORDER BY created_at, name")
    op.drop_table("web_api_token")
    op.rename_table("web_api_token_new", "web_api_token")
    op.create_index("ux_web_api_token_active_name", "web_api_token", ["name"], unique=True, sqlite_where=ACTIVE, postgresql_where=ACTIVE)


def downgrade() -> None:
    """Back to one row per name: the revoked tokens are deleted, as revoking did then."""
    op.drop_index("ux_web_api_token_active_name", table_name="web_api_token")
    op.create_table(
        "web_api_token_old",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.execute(f"INSERT INTO web_api_token_old ({COLUMNS}) SELECT {COLUMNS} FROM web_api_token WHERE revoked_at IS NULL")
    op.drop_table("web_api_token")
    op.rename_table("web_api_token_old", "web_api_token")
