"""Every hook of the host, grouped by lifecycle.

Conventions (see the README, "Writing a plugin"):

- Hooks are called with keyword arguments only; implementations take no default values.
- Start-up and registration hooks fail fast: an exception names the plugin and stops the host.
- Event hooks (``mdm_event``, ``mdm_device_enrolled``, ``mdm_device_removed`` and every
  plugin-owned event hook) are delivered from the outbox after the transaction that recorded
  the event has committed; only events declared by such a hookspec can be recorded. Payload
  types are in ``mdm_core.payloads``. Each implementation is called on its own: one that raises is
  logged and recorded in ``core_subscriber_failure``; the others still run. Every event has a
  stable ``event.id``, so subscribers can be idempotent: an event whose delivery was cut short
  by a crash is delivered again at the next start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mdm_core import hookspec

if TYPE_CHECKING:
    import argparse
    from datetime import datetime

    import pluggy

    from mdm_core.db.migrate import MigrationSet
    from mdm_core.events import Event
    from mdm_core.host import Host
    from mdm_core.scheduler import HostScheduler
    from mdm_core.web.registry import WebRegistry


# --------------------------------------------------------------------------- set-up


@hookspec(historic=True)
def mdm_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Add a plugin's own hookspecs to the manager.

    When: once per plugin, as it is registered (historic: plugins registered later still see
    the call, so a consumer of another plugin's hooks can mark them ``optionalhook=True``).
    Args: ``pluginmanager``, call ``pluginmanager.add_hookspecs(module)``.
    Returns: nothing.
    Errors: fail fast; the host names the plugin and stops.
    """


@hookspec
def mdm_config_sections() -> dict[str, type] | None:
    """Declare the configuration tables a plugin reads.

    When: once at start-up, before ``mdm_configure``.
    Args: none.
    Returns: ``{"section": Dataclass}``; the host validates ``[section]`` of the configuration
    file against the dataclass (unknown keys and wrong types are one-line errors naming the
    file and the key). ``None`` means the plugin reads no configuration.
    Errors: fail fast.
    """


@hookspec(historic=True)
def mdm_configure(host: Host) -> None:
    """Let a plugin read its configuration and keep a reference to the host.

    When: once, after every plugin is registered and the configuration is validated
    (historic: a plugin registered later is configured as it registers).
    Args: ``host``, the running host (``host.config.section(name, schema)``, ``host.db``).
    Returns: nothing. Must not open network connections or start threads.
    Errors: fail fast.
    """


@hookspec
def mdm_register_tables() -> list[type] | None:
    """Declare the SQLModel table classes a plugin owns.

    When: once, before the database is first used. The tables are created and changed by the
    plugin's migrations (``mdm_register_migrations``), never from these classes; the host
    uses them to check that the migrations match the models.
    Args: none.
    Returns: a list of SQLModel classes with ``table=True`` whose ``__tablename__`` starts with
    the plugin name (``vpp_``, ``mobile_apps_``); ``None`` if the plugin has no table. A
    plugin that returns tables must also implement ``mdm_register_migrations``.
    Errors: fail fast.
    """


@hookspec
def mdm_register_migrations() -> MigrationSet | None:
    """Declare where the plugin's schema migrations (Alembic revision files) are.

    When: once, whenever the host opens the database (to check its revision at start) and
    for every ``mdm db`` command.
    Args: none.
    Returns: ``MigrationSet(name, directory, depends_on=(...))`` from ``mdm_core.db.migrate``:
    ``name`` names the history and its version table ``<name>_alembic_version``;
    ``directory`` holds its revision files (``0001_....py``, kept beside the models);
    ``depends_on`` names histories to apply first (the core's always is). The plugin's
    ``mdm_register_tables`` classes belong to this history. ``None`` if it has no migrations.
    Errors: fail fast.
    """


@hookspec
def mdm_register_cli(subparsers: argparse._SubParsersAction[Any], host: Host) -> None:
    """Add the plugin's subcommands to the ``mdm`` command line.

    When: while the parser is built: once per process for the same set of plugins (a process
    running many commands in-process, like the tests or the demo, reuses the parser), so the
    parsers added must not depend on the host's configuration.
    Args: ``subparsers`` from ``argparse``; each added parser sets
    ``set_defaults(func=callable)`` where ``callable(host, args) -> int`` returns the exit code
    (read configuration there, from the ``host`` it is given).
    ``host``, the host (its configuration is loaded; its database is not opened yet).
    Returns: nothing.
    Errors: fail fast.
    """


@hookspec
def mdm_register_jobs(scheduler: HostScheduler, host: Host) -> None:
    """Register the plugin's scheduled jobs.

    When: once when the host's scheduler is built (``mdm run``, ``mdm jobs``).
    Args: ``scheduler``, call ``scheduler.add(name, seconds, func, plugin=...)``; jobs can
    later be re-timed or removed with ``scheduler.retime`` / ``scheduler.remove``. ``host``, the
    host.
    Returns: nothing.
    Errors: fail fast. A job that raises while running is logged and recorded and keeps its
    schedule.
    """


@hookspec
def mdm_register_web(web: WebRegistry, host: Host) -> None:
    """Add the plugin's REST routes, console pages and navigation entries to the web console.

    When: when the web application is built (``mdm run`` without ``--no-web``, and tests), after
    ``mdm_configure``: once per process for the same set of plugins (applications built later,
    for other hosts, reuse the routers), so the routes added must not depend on the host's
    configuration (read it in the route, from ``request.app.state.host``).
    Args: ``web``, the registry: ``web.add_api(router, plugin=...)`` (a FastAPI ``APIRouter``
    mounted under ``/api/v1``; ``mdm_core.web.helpers.rest_router()`` makes one whose JSON is
    the CLI's ``--json``), ``web.add_pages(router, plugin=..., templates=folder)``
    (console pages; templates extend ``base.html``), ``web.add_nav(label, path, order=...)``,
    ``web.add_public(router, plugin=...)`` (only for endpoints that carry their own
    authentication, e.g. Apple's notification endpoint). Every route but the public ones goes
    through the one access check: signed-in admin or bearer token, and the ``admin`` role for
    anything but GET. Route code uses ``mdm_core.web.helpers`` (``render``, ``WebError``,
    ``redirect``, ``run_in_background``) and ``mdm_core.web.paging`` (``keyset`` for REST lists,
    ``numbered`` for console tables, ``search``). ``host``, the host.
    Returns: nothing.
    Errors: fail fast; the host names the plugin and the console does not start.
    """


# --------------------------------------------------------------------------- lifecycle


@hookspec
def mdm_startup(host: Host) -> None:
    """The host is starting to run.

    When: once per ``mdm run`` (``host.start()``), after the tables exist and the outbox left by
    a previous run is delivered, before the first job runs.
    Args: ``host``.
    Returns: nothing.
    Errors: fail fast; the host names the plugin and does not start.
    """


@hookspec
def mdm_status(host: Host) -> dict[str, list[dict[str, Any]]] | None:
    """What a plugin adds to ``mdm status``: named lists of plain rows.

    When: on ``mdm status`` (and the ``mdm run`` banner counts the rows), only when the
    database schema is current; never during a sync. ``host.db`` is the database as it is
    (``mdm status`` creates nothing): a plugin whose tables are not made yet (its first use) is
    called, but what it returns is not shown.
    Args: ``host``.
    Returns: ``{"accounts": [{"name": ..., "token_state": ...}, ...]}`` (each list printed as a
    table titled with its key; keep rows short and plain: no secrets), or ``None``.
    Errors: logged and shown as that plugin's error line; ``mdm status`` still prints the rest.
    """


@hookspec
def mdm_status_attention(host: Host) -> dict[str, list[str]] | None:
    """What needs the admin, for ``mdm status`` and the monitoring scripts that run it
    (``mdm status || alert``).

    When: on ``mdm status``, after ``mdm_status`` (only when the database schema is current;
    never during a sync; as for ``mdm_status``, not shown for a plugin whose tables are not made
    yet).
    Args: ``host``.
    Returns: ``{"problems": [line, ...], "warnings": [line, ...]}`` (either key may be left
    out), or ``None`` when all is well. A problem is something that stopped working until the
    admin acts (a VPP token expired, revoked or taken over): printed as an ``attention:`` line,
    it makes ``mdm status`` exit 1. A warning is something to act on soon (a token expiring in
    12 days): a ``warning:`` line, the exit code unchanged. Both are in ``--json``
    (``problems``, ``warnings``). Each line says what is wrong and what to do; no secrets.
    Errors: an exception, or a value of another shape, is one ``attention:`` line naming the
    plugin (exit 1); ``mdm status`` still prints the rest.
    """


@hookspec
def mdm_shutdown(host: Host) -> None:
    """The host is stopping.

    When: once, on SIGINT/SIGTERM or ``host.stop_event``, after the running jobs have finished
    and the events they recorded are delivered.
    Args: ``host``.
    Returns: nothing.
    Errors: logged; every implementation still runs.
    """


@hookspec
def mdm_removal_summary(host: Host, kind: str, key: str, event_id: str | None) -> str | None:
    """One line saying what a plugin did about a removed device or user, for the admin.

    When: ``mdm devices remove`` / ``mdm users remove``, after the removal's events were
    delivered (e.g. mobile_apps: ``VPP licenses: 2 reclaimed, 1 pending``).
    Args: ``host``; ``kind``: ``device`` or ``user``; ``key``: the serial number or user id;
    ``event_id``: the id of this removal's ``device_removed`` / ``user_removed`` event (the same
    device removed, enrolled again and removed again has one per removal; another process may
    deliver it, and not yet). An implementation may leave ``event_id`` out of its arguments.
    Returns: the line, or ``None`` when the plugin has nothing to say.
    Errors: an exception is logged and the line left out (the removal is already committed).
    """


@hookspec
def mdm_app_names(host: Host, adam_ids: list[str]) -> dict[str, str] | None:
    """The names of apps and books by adamId, for messages that name them (alerts: Apple's
    asset lists carry no names).

    When: any time, outside the caller's database transaction (the alerts plugin asks before
    it records an alert about an asset). Reads stored names only, never calls Apple.
    Args: ``host``; ``adam_ids``: the adamIds asked about (text; possibly thousands, for the
    alerts check).
    Returns: ``{adamId: name}`` for the adamIds the plugin knows (the others left out), or
    ``None``. Every implementation is called and the answers are merged, the first answer for
    an adamId winning (pluggy calls the plugin registered last first): the mobile_apps plugin
    answers with the metadata it looked up (an app's iOS entry first). Names are as the lookup
    found them: the caller makes them safe where it puts them (the alerts plugin keeps them on
    one line, without control characters, at most 100 characters).
    Errors: logged by the caller, which then names the apps by adamId (``adamId 123``).
    """


@hookspec
def mdm_housekeeping(host: Host, now: datetime, chunk: int) -> dict[str, int] | None:
    """Delete the plugin's own rows that are past their retention (history nobody needs any more).

    When: by the ``core.housekeeping`` job (``[core] housekeeping_interval``, default daily, and
    ``mdm jobs run core.housekeeping``), after the core deleted the delivered events older than
    ``[core] event_retention_days``: a plugin's guard against applying an event twice (a table
    of the event ids it applied) may go once ``mdm_core.housekeeping.event_gone`` says its event
    is gone from the outbox, as nothing can deliver that event again.
    Args: ``host``; ``now``: the job's time (UTC), the one every retention is counted from;
    ``chunk``: the most rows to delete in one transaction (``[core] housekeeping_chunk``;
    ``mdm_core.housekeeping.delete_in_chunks`` does it).
    Returns: the rows deleted by table name (``{"vpp_sync_run": 12}``), or ``None``.
    Errors: an exception fails the job (logged, shown by ``mdm jobs``); what was deleted stays
    deleted, and the next run goes on.
    """


# --------------------------------------------------------------------------- events


@hookspec
def mdm_device_enrolled(host: Host, event: Event) -> None:
    """A device was added to the inventory.

    When: after the commit that enrolled it, delivered from the outbox.
    Args: ``host``; ``event`` whose ``payload`` (``DevicePayload``) holds ``serial_number``,
    ``udid``, ``platform``, ``model``, ``owner``, ``enrollment_type``.
    Returns: nothing.
    Errors: isolated per subscriber (logged, recorded, others still run).
    """


@hookspec
def mdm_device_removed(host: Host, event: Event) -> None:
    """A device was removed from the inventory (unenrolled, wiped, retired).

    When: after the commit that removed it, delivered from the outbox. Plugins reclaim what
    the device held here (for example its VPP licenses).
    Args: ``host``; ``event`` whose ``payload`` (``DevicePayload``) holds ``serial_number``,
    ``udid``, ``platform``, ``model``, ``owner``, ``enrollment_type``.
    Returns: nothing.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_user_added(host: Host, event: Event) -> None:
    """An MDM user was added to the inventory.

    When: after the commit that added it, delivered from the outbox.
    Args: ``host``; ``event`` whose ``payload`` (``UserPayload``) holds ``id`` (Apple's ``clientUserId``),
    ``email``, ``managed_apple_id``, ``name``.
    Returns: nothing.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_user_changed(host: Host, event: Event) -> None:
    """An MDM user's e-mail address or Managed Apple ID changed (an add or import of an existing
    user with other values).

    When: after the commit that changed it, delivered from the outbox. Plugins that keep the
    user elsewhere update it there (the VPP plugin sends Apple ``users/update``).
    Args: ``host``; ``event`` whose ``payload`` (``UserChangedPayload``) holds ``id``,
    ``email``, ``managed_apple_id``, ``name`` (the new values) and ``previous``:
    ``{"email", "managed_apple_id"}`` before.
    Returns: nothing.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_user_removed(host: Host, event: Event) -> None:
    """An MDM user was removed from the inventory (left the organisation).

    When: after the commit that removed it (its devices stay enrolled, without an owner),
    delivered from the outbox. Plugins reclaim what the user held here (e.g. VPP licenses).
    Args: ``host``; ``event`` whose ``payload`` (``UserPayload``) holds ``id``, ``email``,
    ``managed_apple_id``, ``name``.
    Returns: nothing.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_command_queued(host: Host, event: Event) -> None:
    """An MDM command was queued for a device (``InstallApplication``, say).

    When: after the commit that queued it, delivered from the outbox.
    Args: ``host``; ``event`` whose ``payload`` (``CommandQueuedPayload``) holds
    ``command_uuid``, ``device_serial``, ``request_type``.
    Returns: nothing.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_event(host: Host, event: Event) -> None:
    """Every event, whatever its name (audit logs, forwarding to a SIEM, metrics).

    When: after the commit that recorded the event, once per event, after the event's own
    hook (``mdm_<event.name>``) has been delivered.
    Args: ``host``; ``event`` with ``id`` (stable), ``name``, ``payload`` (plain JSON values),
    ``created_at``.
    Returns: nothing.
    Errors: isolated per subscriber.
    """
