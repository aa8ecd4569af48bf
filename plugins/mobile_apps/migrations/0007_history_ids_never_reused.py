"""install and reclaim ids never reused: on SQLite an install's or a reclaim's id is not given again once deleted.

An install's and a reclaim's id is in its events (``mdm_mobile_apps_install_failed``), `mdm apps
installs` and `mdm apps reclaims --all`, and the API. Housekeeping deletes those ended past
``[mobile_apps] history_retention_days``: with a plain ``INTEGER PRIMARY KEY`` SQLite gave the
highest one deleted to the next row, so the prune kept each table's newest row whatever its age.
The tables are rebuilt with ``AUTOINCREMENT``, their ids counted from the highest one today
(mdm_core/db/sqlite_ids.py), and the prune is plain. PostgreSQL: nothing (its sequences never
go back).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 00:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from mdm_core.db.sqlite_ids import never_reuse_ids

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    never_reuse_ids("mobile_apps_install")
    never_reuse_ids("mobile_apps_reclaim")


def downgrade() -> None:
    """Nothing: ids keep counting up (AUTOINCREMENT stays), which the older schema reads the same."""
