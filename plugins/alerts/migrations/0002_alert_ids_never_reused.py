"""alert ids never reused: on SQLite an alert's id is not given again once it is deleted.

`mdm alerts` lists alerts by id, for `mdm alerts retry ID`; housekeeping deletes alerts past
``[alerts] keep_days``. On a quiet host the newest went too, and a plain ``INTEGER PRIMARY KEY``
on SQLite gave its id to the next alert: an id noted earlier retried another alert. The table
is rebuilt with ``AUTOINCREMENT`` (its deliveries' foreign key kept), its ids counted from the
highest one today (mdm_core/db/sqlite_ids.py). PostgreSQL: nothing (its sequences never go back).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 14:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from mdm_core.db.sqlite_ids import never_reuse_ids

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    never_reuse_ids("alerts_message")


def downgrade() -> None:
    """Nothing: ids keep counting up (AUTOINCREMENT stays), which the older schema reads the same."""
