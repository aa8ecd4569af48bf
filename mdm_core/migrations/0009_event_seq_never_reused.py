"""event seq never reused: on SQLite an event's seq is not given again once housekeeping deleted it.

``GET /api/v1/events`` pages the outbox by ``seq`` (its cursor holds the last one sent), and
``mdm events redeliver`` delivers the events after a failed one in ``seq`` order. With every
event past its retention deleted by ``core.housekeeping``, a plain ``INTEGER PRIMARY KEY`` on
SQLite counted again from 1: new events took the old events' seqs, so a cursor held from before
answered new events as older ones, and a client that kept the newest seq it had seen missed
the new ones. The table is rebuilt with ``AUTOINCREMENT``, its seqs counted from the highest one
today (mdm_core/db/sqlite_ids.py). PostgreSQL: nothing (its sequences never go back).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from mdm_core.db.sqlite_ids import never_reuse_ids

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    never_reuse_ids("core_event", "seq")


def downgrade() -> None:
    """Nothing: seqs keep counting up (AUTOINCREMENT stays), which the older schema reads the same."""
