"""license autovacuum thresholds: on PostgreSQL autovacuum keeps ``vpp_license`` visible.

An incremental sync reads the mirrored licenses of the assets it re-reads with index-only
scans of ``vpp_license``'s primary key; they read the index alone only for pages the
visibility map marks all-visible, and every license a sync deletes or adds clears its page's
mark. Autovacuum's default thresholds (20% of the table's rows) pass about once every 40 syncs
of a 1% change; in between, those reads fetched 40-80% of their rows from the table too
(19,120 licenses of 64 assets: 15.3 ms against 6.0 ms all-visible). At 1% (of the rows, plus
autovacuum's base threshold), autovacuum passes about every second such sync, in the
background (0.06-0.12 s of the server at 300,000 licenses). SQLite: nothing (no visibility map).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the share of ``vpp_license``'s rows deleted or updated (vacuum) or inserted (insert vacuum)
#: after which autovacuum vacuums it
SCALE_FACTORS = {"autovacuum_vacuum_scale_factor": "0.01", "autovacuum_vacuum_insert_scale_factor": "0.01"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        options = ", ".join(f"{name} = {value}" for name, value in SCALE_FACTORS.items())
        op.execute(f"ALTER TABLE vpp_license SET ({options})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE vpp_license RESET ({', '.join(SCALE_FACTORS)})")
