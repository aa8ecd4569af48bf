"""The ``core.housekeeping`` job: history past its retention is deleted, so that a host running
for years keeps a database of bounded size.

The core deletes delivered events (``core_event``, ``[core] event_retention_days``), the
failed deliveries of plugins no longer installed whose event is that old (``core_subscriber_failure``), and
finished MDM commands (``core_command``, ``[core] command_retention_days``); each plugin
deletes its own tables' history through the ``mdm_housekeeping`` hook (the VPP plugin its sync
runs, assets' counts and Apple's notifications, the alerts plugin its old alerts, it and
mobile_apps the ids of the events they applied). Deletes go ``[core] housekeeping_chunk``
rows per transaction: on SQLite a long DELETE would hold the write lock that syncs wait for.
The job runs like every job (once at a time across hosts, under its ``job.core.housekeeping``
lock); a second run deletes nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Table, and_, delete, exists, not_, or_, select
from sqlmodel import Session

from mdm_core.db.typed import rowcount, table_of
from mdm_core.models import Command, CommandStatus, OutboxEvent, SubscriberFailure, utcnow
from mdm_core.plugins import call_hook

if TYPE_CHECKING:
    from mdm_core.db.engine import Database
    from mdm_core.host import Host
    from mdm_core.scheduler import HostScheduler

log = logging.getLogger(__name__)

JOB = "core.housekeeping"
FINISHED = (CommandStatus.acknowledged.value, CommandStatus.error.value, CommandStatus.canceled.value)
#: An acknowledged install is the record of what a device has installed: mobile_apps pushes an
#: app's update to the devices that acknowledged its install, and a reclaimed license queues
#: RemoveApplication where it was installed. A device's latest one of each app (``iTunesStoreID``)
#: is kept whatever its age; those before it (the versions an update replaced) go with the others.
INSTALLED = ("InstallApplication", "InstallMedia")


def register(scheduler: HostScheduler, host: Host) -> None:
    """Schedule ``core.housekeeping`` every ``[core] housekeeping_interval`` seconds."""
    scheduler.add(JOB, host.config.core.housekeeping_interval, lambda: housekeeping(host), plugin="core")


def housekeeping(host: Host, now: datetime | None = None) -> dict[str, int]:
    """Delete what is past its retention, the core's tables first, then each plugin's
    (``mdm_housekeeping``); returns the rows deleted by table (``mdm jobs run`` prints them)."""
    now = now or utcnow()
    core = host.config.core
    from mdm_core.failed_deliveries import installed_plugins

    retention = now - timedelta(days=core.event_retention_days)
    deleted = {
        "core_subscriber_failure": prune_uninstalled(host.db, installed_plugins(host), retention, core.housekeeping_chunk),
        "core_event": prune_events(host.db, retention, core.housekeeping_chunk),
        "core_command": prune_commands(host.db, now - timedelta(days=core.command_retention_days), core.housekeeping_chunk),
    }
    for counts in call_hook(host.pm, "mdm_housekeeping", host=host, now=now, chunk=core.housekeeping_chunk):
        for table, n in (counts or {}).items():
            deleted[table] = deleted.get(table, 0) + n
    if any(deleted.values()):
        log.info("housekeeping deleted %s", ", ".join(f"{n} from {t}" for t, n in deleted.items() if n))
    return deleted


def prune_events(db: Database, before: datetime, chunk: int) -> int:
    """Delete the events delivered before ``before``. Undelivered ones (claimed or not) stay, and
    so does every event a recorded delivery failure still needs for its retry or ``mdm events
    redeliver``."""
    event = table_of(OutboxEvent)
    failures = table_of(SubscriberFailure)
    where = [event.c.delivered_at < before, event.c.id.not_in(select(failures.c.event_id))]
    return delete_in_chunks(db, event, event.c.seq, where, chunk)


def prune_uninstalled(db: Database, installed: Collection[str], before: datetime, chunk: int) -> int:
    """Delete the failed deliveries of plugins not in ``installed`` whose event was recorded
    before ``before``: nothing will deliver them (they waited for ever, keeping their events);
    :func:`prune_events` then deletes those events. An installed plugin's stay (disabled or
    broken ones too) for ``mdm events redeliver``."""
    failure, event = table_of(SubscriberFailure), table_of(OutboxEvent)
    old = select(event.c.id).where(event.c.created_at < before)
    return delete_in_chunks(db, failure, failure.c.id, [failure.c.plugin.not_in(list(installed)), failure.c.event_id.in_(old)], chunk)


def prune_commands(db: Database, before: datetime, chunk: int) -> int:
    """Delete the MDM commands finished (acknowledged, error, canceled) before ``before``; queued
    and sent ones stay, and so does each device's latest acknowledged install of each app
    (:data:`INSTALLED`, :func:`superseded`)."""
    command = table_of(Command)
    installed = and_(command.c.status == CommandStatus.acknowledged.value, command.c.request_type.in_(INSTALLED), not_(superseded(command)))
    where = [command.c.status.in_(FINISHED), command.c.updated_at < before, not_(installed)]
    return delete_in_chunks(db, command, command.c.uuid, where, chunk)


def superseded(command: Table) -> ColumnElement[bool]:
    """True where the device acknowledged a later install of the same app (same request type and
    ``iTunesStoreID``: an update installed over it). An install without ``iTunesStoreID`` (from a
    manifest URL) is never superseded. The device's commands are found by its index."""
    later = command.alias("later")
    app, later_app = command.c.payload["iTunesStoreID"].as_string(), later.c.payload["iTunesStoreID"].as_string()
    return and_(
        app.is_not(None),
        exists().where(
            later.c.device_serial == command.c.device_serial,
            later.c.status == CommandStatus.acknowledged.value,
            later.c.request_type == command.c.request_type,
            later_app == app,
            or_(later.c.updated_at > command.c.updated_at, and_(later.c.updated_at == command.c.updated_at, later.c.uuid > command.c.uuid)),
        ),
    )


def event_gone(event_id: Any) -> ColumnElement[bool]:
    """True where the event ``event_id`` (a column of a plugin's table of the events it applied)
    is no longer in the outbox: nothing can deliver it again (neither a delivery cut short,
    nor a failed subscriber's retry, which needs the event's row), so its guard may go."""
    event = table_of(OutboxEvent)
    return ~exists().where(event.c.id == event_id)


def delete_in_chunks(db: Database, table: Table, key: Any, where: Sequence[ColumnElement[bool]], chunk: int, *, lock: bool = False) -> int:
    """Delete the rows of ``table`` matching ``where``, at most ``chunk`` per write transaction
    (each one short, so that other writers wait little); returns how many were deleted.

    The DELETE checks ``where`` again: on PostgreSQL (READ COMMITTED) another transaction may
    commit between it and the SELECT of the chunk's keys (a command acknowledged), and a row
    that no longer matches stays. The rules in ``where`` are the whole of them, evaluated by
    each statement (no set of rows to keep computed earlier).

    A rule on another table (an alert's pending delivery) is read from the DELETE's snapshot,
    which misses a change committed while the DELETE runs. ``lock``: the SELECT locks the
    chunk's rows (``FOR UPDATE``, in ``key`` order) until the DELETE commits, and the writers of
    that table lock the row the change keeps (``FOR SHARE``, in key order) before making it: a
    change either commits before the DELETE starts (which sees it) or waits and finds the row
    gone (``plugins.alerts.delivery.retry_failed``). SQLite: each chunk holds the write lock."""

    def one_chunk(session: Session) -> tuple[int, int]:
        query = select(key).where(*where).limit(chunk)
        keys = list(session.execute(query.order_by(key).with_for_update() if lock else query).scalars())
        if not keys:
            return 0, 0
        return len(keys), rowcount(session.execute(delete(table).where(key.in_(keys), *where)))

    total = 0
    while True:
        found, deleted = db.run_write(one_chunk)  # a full chunk whose rows all stayed goes on: the next SELECT skips them
        total += deleted
        if found < chunk:
            return total
