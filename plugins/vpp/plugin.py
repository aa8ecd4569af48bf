"""The VPP plugin's hook implementations: tables, configuration, commands, jobs, requests."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mdm_core import hookimpl

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator
    from datetime import datetime

    import pluggy
    from sqlmodel import Session

    from mdm_core.db.migrate import MigrationSet
    from mdm_core.events import Event
    from mdm_core.host import Host
    from mdm_core.scheduler import HostScheduler
    from mdm_core.web.registry import WebRegistry
    from plugins.vpp.payloads import Account, AppMetadata, Asset, License, LicenseResult, MirroredUser, SyncReport, UserHold, UserResult

PLUGIN_NAME = "vpp"
log = logging.getLogger(__name__)


@hookimpl
def mdm_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Declare the VPP plugin's own hooks (requests and events)."""
    from plugins.vpp import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def mdm_config_sections() -> dict[str, type]:
    """``[vpp]``."""
    from plugins.vpp.settings import VppSettings

    return {"vpp": VppSettings}


@hookimpl
def mdm_register_tables() -> list[type]:
    """The ``vpp_*`` tables."""
    from plugins.vpp.models import VPP_TABLES

    return list(VPP_TABLES)


@hookimpl
def mdm_register_migrations() -> MigrationSet:
    """The ``vpp`` migration history: ``plugins/vpp/migrations/``."""
    from pathlib import Path

    from mdm_core.db.migrate import MigrationSet

    return MigrationSet("vpp", Path(__file__).with_name("migrations"))


@hookimpl
def mdm_register_cli(subparsers: argparse._SubParsersAction[Any], host: Host) -> None:
    """``mdm vpp ...``."""
    from plugins.vpp import cli

    cli.register(subparsers)


@hookimpl
def mdm_register_jobs(scheduler: HostScheduler, host: Host) -> None:
    """One sync job per account at its interval, and a job that follows account changes."""
    from plugins.vpp.accounts import settings
    from plugins.vpp.jobs import refresh_account_jobs
    from plugins.vpp.notifications.act import notifications_job

    refresh_account_jobs(host, scheduler)
    # local: it follows the accounts in this process's own scheduler, every process must run it
    scheduler.add("vpp.accounts", settings(host).accounts_refresh, lambda: refresh_account_jobs(host, scheduler), plugin=PLUGIN_NAME, local=True)
    scheduler.add("vpp.notifications", settings(host).notifications_poll, lambda: notifications_job(host), plugin=PLUGIN_NAME)


@hookimpl
def mdm_housekeeping(host: Host, now: datetime, chunk: int) -> dict[str, int]:
    """Sync runs past ``[vpp] sync_run_retention_days``, each account's latest ones kept,
    assets' recorded counts past ``[vpp] asset_count_retention_days``, the latest before kept,
    Apple's notifications acted on more than ``[vpp] notification_retention`` seconds ago, and
    the sync jobs' last runs of accounts removed, past the sync runs' retention."""
    from plugins.vpp.retention import prune_asset_counts, prune_job_runs, prune_notifications, prune_sync_runs

    return {
        "vpp_sync_run": prune_sync_runs(host, now, chunk),
        "vpp_asset_count": prune_asset_counts(host, now, chunk),
        "vpp_notification": prune_notifications(host, now, chunk),
        "core_job_run": prune_job_runs(host, now, chunk),
    }


@hookimpl
def mdm_status(host: Host) -> dict[str, list[dict[str, Any]]]:
    """The accounts in ``mdm status``: token state, interval, last sync, Apple's notifications."""
    from plugins.vpp.accounts import list_accounts

    return {
        "accounts": [
            {
                "name": a["name"],
                "location": a["locationName"],
                "token": a["token_state"],
                "interval_seconds": a["interval_seconds"],
                "last_sync_at": a["last_sync_at"],
                "last_sync_result": a["last_sync_result"],
                "notifications": a["notifications"],
                "last_notification_at": a["last_notification_at"],
            }
            for a in list_accounts(host)
        ]
    }


@hookimpl
def mdm_status_attention(host: Host) -> dict[str, list[str]]:
    """Accounts whose token stopped working (problems: ``mdm status`` exits 1) or expires
    within 30 days (warnings), and whose notifications Apple posts elsewhere (warnings)."""
    from plugins.vpp.accounts import accounts_with_notices
    from plugins.vpp.token_state import attention

    return attention(accounts_with_notices(host))


@hookimpl
def mdm_register_web(web: WebRegistry, host: Host) -> None:
    """The Apple Volume Purchase Program pages, the ``/api/v1/vpp`` routes, and the public
    endpoint of Apple's notifications (``/apple/apps-books/notify/{id}``, its own bearer)."""
    from plugins.vpp import web as vpp_web
    from plugins.vpp.notifications import web as notify_web

    vpp_web.register(web)
    notify_web.register(web)


@hookimpl
def mdm_vpp_sync(host: Host, account: str | None, full: bool, trigger: str, wait: float | None) -> list[SyncReport]:
    """Sync one account or all (see the hookspec)."""
    from plugins.vpp.sync.run import sync_accounts

    return sync_accounts(host, account, full=full, trigger=trigger, wait=wait)


@hookimpl
def mdm_vpp_accounts(host: Host) -> list[Account]:
    """The accounts, without tokens."""
    from plugins.vpp.accounts import list_accounts

    return list_accounts(host)


@hookimpl
def mdm_vpp_assets(host: Host, account: str | None) -> list[Asset]:
    """The mirrored assets."""
    from plugins.vpp.views import list_assets

    return list_assets(host, account)


@hookimpl
def mdm_vpp_licenses(
    host: Host,
    account: str | None,
    adam_id: str | None,
    serial_number: str | None,
    client_user_id: str | None,
    serial_numbers: list[str] | None,
    client_user_ids: list[str] | None,
) -> list[License]:
    """The mirrored licenses (of these devices or users only, when given)."""
    from plugins.vpp.views import list_licenses, list_licenses_held

    if serial_numbers is not None or client_user_ids is not None:
        return list_licenses_held(host, account, adam_id, serial_numbers or [], client_user_ids or [])
    return list_licenses(host, account, adam_id, serial_number, client_user_id)


@hookimpl
def mdm_vpp_user_holds(host: Host, session: Session, account: str, adam_id: str, pricing_param: str, client_user_ids: list[str]) -> dict[str, UserHold]:
    """Whether these users hold a license of the asset, in the caller's transaction."""
    from plugins.vpp.views import user_holds

    return user_holds(session, account, adam_id, pricing_param, client_user_ids)


@hookimpl
def mdm_vpp_users(host: Host, account: str | None, client_user_ids: list[str] | None) -> list[MirroredUser]:
    """The mirrored VPP users (of these ids)."""
    from plugins.vpp.views import list_users

    return list_users(host, account, client_user_ids)


@hookimpl
def mdm_vpp_iter_assets(host: Host, account: str | None, offset: int, limit: int | None) -> Iterator[Asset]:
    """The mirrored assets, streamed."""
    from plugins.vpp.views import iter_assets

    return iter_assets(host, account, offset=offset, limit=limit)


@hookimpl
def mdm_vpp_iter_licenses(
    host: Host, account: str | None, adam_id: str | None, serial_number: str | None, client_user_id: str | None, offset: int, limit: int | None
) -> Iterator[License]:
    """The mirrored licenses, streamed."""
    from plugins.vpp.views import iter_licenses

    return iter_licenses(host, account, adam_id, serial_number, client_user_id, offset=offset, limit=limit)


@hookimpl
def mdm_vpp_iter_users(host: Host, account: str | None, offset: int, limit: int | None) -> Iterator[MirroredUser]:
    """The mirrored VPP users, streamed."""
    from plugins.vpp.views import iter_users

    return iter_users(host, account, offset=offset, limit=limit)


@hookimpl
def mdm_vpp_associate(
    host: Host, account: str, adam_id: str, pricing_param: str, serial_numbers: list[str], client_user_ids: list[str], wait: float
) -> LicenseResult:
    """Associate licenses and follow Apple's events."""
    from plugins.vpp.operations import manage_licenses

    return manage_licenses(host, account, adam_id, pricing_param, serial_numbers, client_user_ids, wait=wait, associate=True)


@hookimpl
def mdm_vpp_disassociate(
    host: Host, account: str, adam_id: str, pricing_param: str, serial_numbers: list[str], client_user_ids: list[str], wait: float
) -> LicenseResult:
    """Disassociate licenses and follow Apple's events."""
    from plugins.vpp.operations import manage_licenses

    return manage_licenses(host, account, adam_id, pricing_param, serial_numbers, client_user_ids, wait=wait, associate=False)


@hookimpl
def mdm_vpp_revoke(host: Host, account: str, serial_numbers: list[str], client_user_ids: list[str], wait: float, quick: bool) -> LicenseResult:
    """Revoke every revocable license of these devices or users (Apple's assets/revoke)."""
    from plugins.vpp.operations import revoke_licenses

    return revoke_licenses(host, account, serial_numbers, client_user_ids, wait=wait, quick=quick)


@hookimpl
def mdm_vpp_update_users(host: Host, mdm_user_ids: list[str], account: str | None, wait: float) -> list[UserResult]:
    """users/update with the MDM users' e-mail and Managed Apple ID."""
    from plugins.vpp.operations import update_users

    return update_users(host, mdm_user_ids, account=account, wait=wait)


@hookimpl
def mdm_vpp_retire_users(host: Host, client_user_ids: list[str], account: str | None, wait: float) -> list[UserResult]:
    """users/retire."""
    from plugins.vpp.operations import retire_users

    return retire_users(host, client_user_ids, account=account, wait=wait)


@hookimpl
def mdm_user_changed(host: Host, event: Event) -> None:
    """VPP users follow MDM users: a new e-mail or Managed Apple ID goes to Apple (users/update)."""
    from plugins.vpp.operations import update_users

    update_users(host, [str(event.payload["id"])], wait=30.0)


@hookimpl
def mdm_vpp_lookup_metadata(host: Host, account: str, adam_ids: list[str], platform: str | None) -> dict[str, AppMetadata]:
    """Content metadata for these adamIds on an application platform."""
    from plugins.vpp.operations import lookup_metadata

    return lookup_metadata(host, account, adam_ids, platform)
