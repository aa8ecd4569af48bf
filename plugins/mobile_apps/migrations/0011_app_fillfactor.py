"""application pages kept half full on PostgreSQL: a sync's new license counts update the applications in place (HOT).

After a sync whose assets' counts moved, ``vpp_assets_changed`` sets the counts (and
``updated_at``: no index holds them) of each application of those assets, hundreds in one
``UPDATE``. In full pages (all of them after the first sync published the applications) each
row's new version went to another page, with a new entry in each of the table's four indexes:
the benchmark's first incremental syncs after a full one spent 10-27 ms of the server on it for
765 of 2,000 applications, until the table had spread out; with room in its own page the new
version stays there (a heap-only tuple) and no index is written: 3 ms from the first sync on.
50%: room for a new version of every row of a page in one statement (a full sync's counts).
SQLite: no such storage parameter; nothing to do.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _storage("SET (fillfactor = 50)")  # pages written from now on; those already full stay so


def downgrade() -> None:
    _storage("RESET (fillfactor)")


def _storage(change: str) -> None:
    """Change ``mobile_apps_app``'s storage parameters on PostgreSQL (SQLite has none)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE mobile_apps_app {change}")
