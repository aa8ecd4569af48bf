"""ids never reused: on SQLite an account's and a sync run's ids are not given again once their
rows are deleted.

A plain ``INTEGER PRIMARY KEY`` on SQLite gives a new row the highest id + 1: with the newest
account removed (its runs with it), the next account added got its id, the ``accountId`` the
``vpp_account_removed`` event had carried to subscribers, and a bookmarked /vpp/runs/N showed
another account's run. Both tables are rebuilt with ``AUTOINCREMENT``, their ids counted from
the highest one today (mdm_core/db/sqlite_ids.py); the triggers of vpp migration 0008 that name
vpp_account are created again. PostgreSQL: nothing (its sequences never go back).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 14:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from mdm_core.db.sqlite_ids import never_reuse_ids

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    never_reuse_ids("vpp_account")
    never_reuse_ids("vpp_sync_run")


def downgrade() -> None:
    """Nothing: ids keep counting up (AUTOINCREMENT stays), which the older schema reads the same."""
