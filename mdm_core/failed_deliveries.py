"""Subscribers whose deliveries failed for good: told in ``mdm status`` (and by the alerts plugin).

A delivery left ``failed`` (its retries exhausted) keeps its event in the outbox until
``mdm events redeliver`` delivers it or ``mdm events discard`` drops it: housekeeping cannot
delete it, except for a plugin no longer installed (:func:`uninstalled_subscribers`), whose
deliveries would wait for ever: named in ``mdm status``, pruned after ``[core] event_retention_days``. A subscriber that keeps
failing (a plugin broken by an upgrade) keeps every event it is given, about 1,400 a sync,
so the database grows while nobody looks at ``mdm events failures``: each such subscriber is
named, with how many, since when, its last error and the fix.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlmodel import Session

from mdm_core.db.typed import table_of
from mdm_core.errors import one_line
from mdm_core.models import SubscriberFailure

if TYPE_CHECKING:
    from mdm_core.db import Database
    from mdm_core.host import Host

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


def installed_plugins(host: Host) -> set[str]:
    """The plugins of this installation: loaded (any registered subscriber), disabled or broken;
    not a disabled name that no plugin has."""
    return {name for name, _ in host.pm.list_name_plugin()} | {r.name for r in host.unloaded if r.source != "configuration"}


@dataclass(frozen=True)
class Uninstalled:
    """A plugin no longer installed whose failed deliveries (any status) wait for it for ever."""

    plugin: str
    deliveries: int
    since: datetime

    def line(self) -> str:
        """The one line ``mdm status`` warns with."""
        return (
            f"subscriber {self.plugin} is not installed: {self.deliveries} event deliveries wait for it since {self.since:%Y-%m-%d %H:%M} UTC, "
            f"their events kept; `mdm events discard --plugin {self.plugin} --yes` drops them (core.housekeeping does after [core] event_retention_days)"
        )


def uninstalled_subscribers(db: Database, installed: Collection[str]) -> list[Uninstalled]:
    """Each plugin not in ``installed`` with failed deliveries of any status, by name."""
    failure = table_of(SubscriberFailure)
    with db.reading() as conn:
        rows = conn.execute(
            select(failure.c.plugin, func.count(), func.min(failure.c.at))
            .where(failure.c.plugin.not_in(list(installed)))
            .group_by(failure.c.plugin)
            .order_by(failure.c.plugin)
        ).all()
    return [Uninstalled(plugin, count, since) for plugin, count, since in rows]


def counts_by_plugin(db: Database, plugin: str | None = None) -> dict[str, int]:
    """How many failed deliveries each plugin has (of ``plugin`` only, if given)."""
    failure = table_of(SubscriberFailure)
    query = select(failure.c.plugin, func.count()).group_by(failure.c.plugin).order_by(failure.c.plugin)
    with db.reading() as conn:
        return dict(conn.execute(query.where(failure.c.plugin == plugin) if plugin is not None else query).all())


def discard(db: Database, plugin: str | None = None) -> dict[str, int]:
    """Delete the failed deliveries (of ``plugin``, or all) without delivering them; returns how
    many each plugin had. Their events are then housekeeping's like any delivered one."""
    failure = table_of(SubscriberFailure)
    where = [failure.c.plugin == plugin] if plugin is not None else []

    def work(session: Session) -> dict[str, int]:
        counts = dict(session.execute(select(failure.c.plugin, func.count()).where(*where).group_by(failure.c.plugin)).all())
        session.execute(delete(failure).where(*where))
        return {name: counts[name] for name in sorted(counts)}

    return db.run_write(work)
