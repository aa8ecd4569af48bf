"""installation id: the table of this database's installation id, made once (at its first
claim: a copy of a database made before that, such as a test template, gets its own), that
every claim of a location carries in its ``mdmInfo`` metadata.

``mdmInfo`` named the machine (its host name) and ``[vpp] mdm_name``, so a second installation
on one machine (a test instance, a staging copy, another school's database) took the first
one's location as its own: no take-over question, and neither saw ``taken_over``. A claim is
now this database's when its metadata carries this id (plugins/vpp/installation.py); the
locations of existing accounts stay theirs (their stored ``mdmInfo`` id).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 17:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vpp_installation",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("installation_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("vpp_installation")
