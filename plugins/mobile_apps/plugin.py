"""mobile_apps plugin hook implementations.

Publishes the VPP plugin's assets as installable applications, looks up their metadata,
installs them with VPP licenses and reclaims licenses. It uses the VPP plugin only through
``vpp_port.VppPort`` (a typed façade over the ``mdm_vpp_*`` request hooks) and the VPP event
payloads (``plugins.vpp.payloads``); its implementations of VPP event hooks are
``optionalhook`` so that the plugin loads when the VPP plugin is disabled.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from mdm_core import hookimpl
from mdm_core.redelivery import as_of_now
from plugins.vpp.payloads import ACCOUNT_EVENTS, payload_now

if TYPE_CHECKING:
    import argparse
    from datetime import datetime

    import pluggy

    from mdm_core.db.migrate import MigrationSet
    from mdm_core.events import Event
    from mdm_core.host import Host
    from mdm_core.scheduler import HostScheduler
    from mdm_core.web.registry import WebRegistry
    from plugins.vpp.payloads import AccountRemovedPayload, AccountRenamedPayload, AssetsPayload

PLUGIN_NAME = "mobile_apps"
log = logging.getLogger(__name__)
#: VPP events (and events naming a VPP account) delivered again after the account was renamed
#: (a retry) are applied under its name now; after it was removed, not at all
ACCOUNT_AS_OF_NOW = as_of_now(ACCOUNT_EVENTS, payload_now)


@hookimpl
def mdm_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Declare the mobile_apps events (published, retired, install queued, reclaim finished)."""
    from plugins.mobile_apps import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def mdm_config_sections() -> dict[str, type]:
    """``[mobile_apps]``."""
    from plugins.mobile_apps.settings import MobileAppsSettings

    return {"mobile_apps": MobileAppsSettings}


@hookimpl
def mdm_register_tables() -> list[type]:
    """The ``mobile_apps_*`` tables."""
    from plugins.mobile_apps.models import MOBILE_APPS_TABLES

    return list(MOBILE_APPS_TABLES)


@hookimpl
def mdm_register_migrations() -> MigrationSet:
    """The ``mobile_apps`` migration history: ``plugins/mobile_apps/migrations/``."""
    from pathlib import Path

    from mdm_core.db.migrate import MigrationSet

    return MigrationSet("mobile_apps", Path(__file__).with_name("migrations"))


@hookimpl
def mdm_register_cli(subparsers: argparse._SubParsersAction[Any], host: Host) -> None:
    """``mdm apps ...``."""
    from plugins.mobile_apps import cli

    cli.register(subparsers)


@hookimpl
def mdm_register_jobs(scheduler: HostScheduler, host: Host) -> None:
    """Metadata lookups, reclaim retries and pending installs."""
    from plugins.mobile_apps import jobs

    jobs.register(host, scheduler)


@hookimpl
def mdm_housekeeping(host: Host, now: datetime, chunk: int) -> dict[str, int]:
    """The ids of applied events whose event is gone from the outbox, and the installs and
    reclaims ended more than ``[mobile_apps] history_retention_days`` ago (:mod:`.retention`).

    A guard deleted while its event can still be delivered again lets that delivery apply it
    a second time (a catalog entry added again). An event is delivered again only while it is
    in the outbox: undelivered (a delivery cut short by a crash), or kept for a failed
    subscriber's retry or ``mdm events redeliver``; the host's housekeeping deletes neither, and
    deletes the others only ``[core] event_retention_days`` after their delivery. So a guard goes
    once its event is gone, never by its own age."""
    from mdm_core.db.typed import table_of
    from mdm_core.housekeeping import delete_in_chunks, event_gone
    from plugins.mobile_apps.models import SeenEvent
    from plugins.mobile_apps.retention import prune_history

    seen = table_of(SeenEvent)
    return {"mobile_apps_seen_event": delete_in_chunks(host.db, seen, seen.c.event_id, [event_gone(seen.c.event_id)], chunk), **prune_history(host, now, chunk)}


@hookimpl
def mdm_register_web(web: WebRegistry, host: Host) -> None:
    """The Mobile Applications pages and the ``/api/v1/apps`` routes."""
    from plugins.mobile_apps import web as apps_web

    apps_web.register(web)


@hookimpl(optionalhook=True)
def mdm_vpp_asset_labels(host: Host) -> Any:
    """The stored metadata's names and icons (never a lookup)."""
    from plugins.mobile_apps.catalog import label_source

    return label_source()


@hookimpl
def mdm_app_names(host: Host, adam_ids: list[str]) -> dict[str, str]:
    """The names its metadata lookups found (never a lookup)."""
    from plugins.mobile_apps.catalog import app_names

    return app_names(host, adam_ids)


# --------------------------------------------------------------------------- VPP events


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_assets_added(host: Host, event: Event) -> None:
    """Publish one application per platform of each new asset (books as books)."""
    from plugins.mobile_apps.catalog import once, upsert_assets

    payload = cast("AssetsPayload", event.payload)
    once(host, event, lambda session: upsert_assets(host, session, payload["account"], payload["assets"]))


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_assets_changed(host: Host, event: Event) -> None:
    """Update counts and flags (and platforms) of published applications."""
    from plugins.mobile_apps.catalog import once, upsert_assets

    payload = cast("AssetsPayload", event.payload)
    once(host, event, lambda session: upsert_assets(host, session, payload["account"], payload["assets"]))


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_assets_removed(host: Host, event: Event) -> None:
    """Retire the applications of assets that left the account (kept for history)."""
    from plugins.mobile_apps.catalog import once, retire_assets

    payload = cast("AssetsPayload", event.payload)
    once(host, event, lambda session: retire_assets(host, session, payload["account"], payload["assets"]))


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_licenses_associated(host: Host, event: Event) -> None:
    """Complete pending installs; with ``auto_install``, install licenses assigned in Apple's portal."""
    from plugins.mobile_apps.installs.pending import on_licenses_associated

    on_licenses_associated(host, event)


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_licenses_refused(host: Host, event: Event) -> None:
    """Pending installs whose license Apple refused (its notification) fail at once."""
    from plugins.mobile_apps.installs.pending import on_licenses_refused

    on_licenses_refused(host, event)


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_users_changed(host: Host, event: Event) -> None:
    """Users who accepted the invitation: the installs waiting for them go ahead."""
    from plugins.mobile_apps.installs.pending import on_users_changed

    on_users_changed(host, event)


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_sync_finished(host: Host, event: Event) -> None:
    """After a sync someone is waiting for (``mdm vpp sync``, the console's Synchronize, the
    REST API), look up the names, bundle ids and versions of the applications that sync
    published at once, bounded; older pending ones are the mobile_apps.metadata job's (a sync
    costs what it changed). A failed lookup is logged and left to the job, never failing the
    sync."""
    from datetime import datetime

    from plugins.mobile_apps.catalog import MANUAL_SYNC_LOOKUPS, refresh_metadata

    report = event.payload
    if report.get("trigger") not in ("manual", "console", "api") or report.get("status") != "ok":
        return
    try:
        since = datetime.fromisoformat(report["started_at"])
        refresh_metadata(host, account=report["account"], limit=MANUAL_SYNC_LOOKUPS, pending_only=True, published_since=since)
    except Exception as exc:  # the sync is done and reported; the job retries
        log.warning("metadata of account %s not looked up after the sync (the mobile_apps.metadata job retries): %s", report["account"], exc)


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_licenses_disassociated(host: Host, event: Event) -> None:
    """Licenses taken back: cancel their queued installs, remove the apps this MDM installed."""
    from plugins.mobile_apps.installs.removal import on_licenses_disassociated

    on_licenses_disassociated(host, event)


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_account_renamed(host: Host, event: Event) -> None:
    """The applications, metadata, installs and reclaims filed under the old name follow the account."""
    from plugins.mobile_apps.accounts import account_renamed
    from plugins.mobile_apps.catalog import once

    payload = cast("AccountRenamedPayload", event.payload)
    once(host, event, lambda session: account_renamed(session, payload["previous"], payload["account"]))


@hookimpl(optionalhook=True)
def mdm_vpp_account_removed(host: Host, event: Event) -> None:
    """The installs and reclaims still waiting under the removed account's name are canceled."""
    from plugins.mobile_apps.accounts import account_removed
    from plugins.mobile_apps.catalog import once

    payload = cast("AccountRemovedPayload", event.payload)
    once(host, event, lambda session: account_removed(host, session, payload["account"]))


# --------------------------------------------------------------------------- core events


@hookimpl
def mdm_device_removed(host: Host, event: Event) -> None:
    """Reclaim the VPP licenses the removed device held. With the VPP plugin disabled this
    raises ``VppUnavailable``: the event waits and is delivered again once it is enabled."""
    from plugins.mobile_apps.installs.pending import cancel_removed
    from plugins.mobile_apps.reclaims import on_device_removed
    from plugins.mobile_apps.vpp_port import VppPort

    VppPort(host).require("the licenses of the removed device are reclaimed once it is enabled again")
    on_device_removed(host, event)
    cancel_removed(host, "device", str(event.payload.get("serial_number") or "").upper())


@hookimpl
def mdm_removal_summary(host: Host, kind: str, key: str, event_id: str | None) -> str | None:
    """``VPP licenses: N reclaimed, M pending`` for the removal (event ``event_id``) of a device or user."""
    from plugins.mobile_apps.reclaims import removal_summary

    return removal_summary(host, kind, key, event_id)


@hookimpl
def mdm_user_removed(host: Host, event: Event) -> None:
    """Reclaim the VPP user licenses the removed MDM user held. With the VPP plugin disabled
    this raises ``VppUnavailable``: the event waits and is delivered again once it is enabled."""
    from plugins.mobile_apps.installs.pending import cancel_removed
    from plugins.mobile_apps.reclaims import on_user_removed
    from plugins.mobile_apps.vpp_port import VppPort

    VppPort(host).require("the licenses of the removed user are reclaimed once it is enabled again")
    on_user_removed(host, event)
    cancel_removed(host, "user", str(event.payload.get("id") or ""))
