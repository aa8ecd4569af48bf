"""Ended installs and reclaims past ``[mobile_apps] history_retention_days`` are deleted by the
host's housekeeping (``mdm_housekeeping``): every `mdm apps install` and every license taken
back adds a row, which `mdm apps installs` and `mdm apps reclaims --all` list for as long as it
stays. What is still under way or needs the admin stays, whatever its age: an install waiting
for Apple, the user or the device (``associating``, ``invited``, ``pending``, ``queued``: the
install whose commands a reclaim withdraws) or licensed for a user without a device
(``licensed``); a reclaim ``pending``, ``failed`` or ``irrevocable`` (listed without ``--all``),
but for a failed one that a later reclaim of the same license superseded.
An install's or a reclaim's id (in its events and the API) is never given again once deleted:
the tables count their ids up on SQLite too (``AUTOINCREMENT``, mobile_apps migration 0007)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Table, not_

from mdm_core.db.typed import table_of
from mdm_core.housekeeping import delete_in_chunks

from .models import Install, Reclaim
from .reclaims import is_open
from .settings import settings

if TYPE_CHECKING:
    from mdm_core.host import Host

#: the statuses of an install that has ended, and that nothing reads again
ENDED_INSTALLS = ("failed", "canceled", "removed")


def _ended() -> list[tuple[Table, ColumnElement[bool]]]:
    """Each table with what says a row of it has ended, and nothing reads it again: an install
    :data:`ENDED_INSTALLS`; a reclaim no longer open (:func:`.reclaims.is_open`: ``done``,
    ``canceled``, or failed and superseded by a later reclaim of the same license)."""
    installs = table_of(Install)
    return [(installs, installs.c.status.in_(ENDED_INSTALLS)), (table_of(Reclaim), not_(is_open()))]


def prune_history(host: Host, now: datetime, chunk: int) -> dict[str, int]:
    """Delete the installs and reclaims that ended more than ``[mobile_apps]
    history_retention_days`` before ``now`` (:func:`_ended`); returns the rows deleted by table."""
    before = now - timedelta(days=settings(host).history_retention_days)
    return {table.name: delete_in_chunks(host.db, table, table.c.id, [ended, table.c.updated_at < before], chunk) for table, ended in _ended()}
