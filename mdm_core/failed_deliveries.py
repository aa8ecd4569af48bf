"""Subscribers whose deliveries failed for good: told in ``mdm status`` (and by the alerts plugin).

A delivery left ``failed`` (its retries exhausted) keeps its event in the outbox until
``mdm events redeliver`` delivers it: housekeeping cannot delete it. A subscriber that keeps
failing (a plugin broken by an upgrade) keeps every event it is given, about 1,400 a sync,
so the database grows while nobody looks at ``mdm events failures``: each such subscriber is
named, with how many, since when, its last error and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from mdm_core.db.typed import table_of
from mdm_core.errors import one_line
from mdm_core.models import SubscriberFailure

if TYPE_CHECKING:
    from mdm_core.db import Database

FIX = "fix what the error says (the log of `mdm run` has the details), then `mdm events redeliver --all`; `mdm events failures --failed` lists them"


@dataclass(frozen=True)
class FailedSubscriber:
    """A plugin with deliveries failed for good: how many, the first one's last attempt, the latest error."""

    plugin: str
    deliveries: int
    since: datetime
    error: str

    def line(self) -> str:
        """The one line ``mdm status`` warns with."""
        return (
            f"subscriber {self.plugin}: {self.deliveries} event deliveries failed for good since {self.since:%Y-%m-%d %H:%M} UTC "
            f"(last error: {one_line(self.error)}); their events are kept until delivered, so the database grows: {FIX}"
        )


def failed_subscribers(db: Database) -> list[FailedSubscriber]:
    """Each plugin with deliveries left ``failed`` (retries exhausted), by name."""
    failure = table_of(SubscriberFailure)
    failed = failure.c.status == "failed"
    with db.reading() as conn:
        by_plugin = select(failure.c.plugin, func.count(), func.min(failure.c.at), func.max(failure.c.id)).where(failed).group_by(failure.c.plugin)
        counts = conn.execute(by_plugin.order_by(failure.c.plugin)).all()
        errors = dict(conn.execute(select(failure.c.id, failure.c.error).where(failure.c.id.in_([row[3] for row in counts]))).all()) if counts else {}
    return [FailedSubscriber(plugin, count, since, errors.get(latest, "")) for plugin, count, since, latest in counts]
