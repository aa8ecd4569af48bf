"""failure ids never reused: on SQLite a failed delivery's id is not given again once it is gone.

`mdm events failures` lists each failed delivery by id, for `mdm events redeliver ID` and the
console's /events/failures/ID/redeliver; a failure is deleted once delivered. With the newest
one delivered, a plain ``INTEGER PRIMARY KEY`` on SQLite gave its id to the next failure: an id
copied from an earlier listing (or a console page left open) redelivered another event to
another subscriber. The table is rebuilt with ``AUTOINCREMENT``, its ids counted from the
highest one today (mdm_core/db/sqlite_ids.py). PostgreSQL: nothing (its sequences never go back).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 14:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from mdm_core.db.sqlite_ids import never_reuse_ids

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    never_reuse_ids("core_subscriber_failure")


def downgrade() -> None:
    """Nothing: ids keep counting up (AUTOINCREMENT stays), which the older schema reads the same."""
