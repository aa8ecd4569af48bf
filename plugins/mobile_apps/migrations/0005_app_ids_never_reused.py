"""application ids never reused: on SQLite an application's id is not given again once deleted.

An application's id is its console page (/apps/ID) and its id in `mdm apps list --json` and
GET /api/v1/apps. A
renamed account's application replaces the one of the same asset already under the new name,
which is deleted (see accounts.account_renamed): when that was the newest (published by a sync
of the new name while the rename's event waited), a plain ``INTEGER PRIMARY KEY`` on SQLite gave
its id to the next application published, and its bookmarked page showed another app. The
table is rebuilt with ``AUTOINCREMENT``, its ids counted from the highest one today
(mdm_core/db/sqlite_ids.py). PostgreSQL: nothing (its sequences never go back).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 14:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from mdm_core.db.sqlite_ids import never_reuse_ids

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    never_reuse_ids("mobile_apps_app")


def downgrade() -> None:
    """Nothing: ids keep counting up (AUTOINCREMENT stays), which the older schema reads the same."""
