"""event outbox pages kept 45% full on PostgreSQL: a delivery's claim updates its events in place (HOT).

A delivery claims a batch of up to 1,000 events (``claimed_by``, ``claimed_at``: no index holds
them) before it dispatches them. In full pages each claimed row's new version went to another
page, with a new entry in each of the table's three indexes; with room in its own page it stays
there (a heap-only tuple) and no index is written. 45%: the room for a new version of every row
of a page in the claim's one transaction (at 50% about a fifth of them still moved). SQLite: no
such storage parameter; nothing to do.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 06:25:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 45


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # pages written from now on; those already full stay so
        op.execute(f"ALTER TABLE core_event SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE core_event RESET (fillfactor)")
