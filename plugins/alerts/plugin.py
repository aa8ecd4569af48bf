"""The alerts plugin's hook implementations: it tells admins about trouble by e-mail and webhooks.

Written as a third-party plugin would be: it is loaded by its own ``mdm.plugins`` entry point,
reads its own ``[alerts]`` section, owns its ``alerts_*`` tables and its ``alerts.*`` jobs,
and knows the other plugins only by their documented events and request hooks
(``mdm_vpp_accounts``, ``mdm_vpp_assets``; ``mdm_app_names`` for the apps' names), never by
importing their modules. Its implementations of other plugins' hooks are ``optionalhook``, so
it loads whichever of them is disabled, and its subscribers only write to its own queue, so no
event waits for a mail server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from mdm_core import hookimpl
from mdm_core.redelivery import as_of_now
from plugins.mobile_apps.payloads import REVOKE
from plugins.vpp.payloads import ACCOUNT_EVENTS, payload_now

if TYPE_CHECKING:
    import argparse
    from datetime import datetime

    from mdm_core.db.migrate import MigrationSet
    from mdm_core.events import Event
    from mdm_core.host import Host
    from mdm_core.scheduler import HostScheduler
    from mdm_core.web.registry import WebRegistry
    from plugins.mobile_apps.payloads import InstallFailedPayload, ReclaimFinishedPayload
    from plugins.vpp.payloads import AccountRenamedPayload, AssetsPayload, SyncReport, TokenStatePayload

PLUGIN_NAME = "alerts"
#: VPP events (and events naming a VPP account) delivered again after the account was renamed
#: (a retry) are applied under its name now; after it was removed, not at all
ACCOUNT_AS_OF_NOW = as_of_now(ACCOUNT_EVENTS, payload_now)


@hookimpl
def mdm_config_sections() -> dict[str, type]:
    """``[alerts]``."""
    from .settings import AlertsSettings

    return {"alerts": AlertsSettings}


@hookimpl
def mdm_configure(host: Host) -> None:
    """Check ``[alerts]`` beyond its types (addresses, thresholds, names)."""
    from .settings import settings, validate

    validate(settings(host), host.config.source)


@hookimpl
def mdm_register_tables() -> list[type]:
    """The ``alerts_*`` tables."""
    from .models import ALERTS_TABLES

    return list(ALERTS_TABLES)


@hookimpl
def mdm_register_migrations() -> MigrationSet:
    """The ``alerts`` migration history: ``plugins/alerts/migrations/`` (after the core's)."""
    from pathlib import Path

    from mdm_core.db.migrate import MigrationSet

    return MigrationSet("alerts", Path(__file__).with_name("migrations"))


@hookimpl
def mdm_register_cli(subparsers: argparse._SubParsersAction[Any], host: Host) -> None:
    """``mdm alerts ...``."""
    from . import cli

    cli.register(subparsers)


@hookimpl
def mdm_register_jobs(scheduler: HostScheduler, host: Host) -> None:
    """``alerts.deliver`` (send what is due) and ``alerts.check`` (token expiry, license counts, failing jobs)."""
    from .delivery import check, deliver_job
    from .settings import settings

    s = settings(host)
    scheduler.add("alerts.deliver", s.deliver_interval, lambda: deliver_job(host), plugin=PLUGIN_NAME)
    scheduler.add("alerts.check", s.check_interval, lambda: check(host), plugin=PLUGIN_NAME)


@hookimpl
def mdm_housekeeping(host: Host, now: datetime, chunk: int) -> dict[str, int]:
    """Alerts past ``[alerts] keep_days`` (none with a delivery still pending), and the guards of
    applied events whose event is gone from the outbox."""
    from .store import prune

    return prune(host, now, chunk)


@hookimpl
def mdm_register_web(web: WebRegistry, host: Host) -> None:
    """The Alerts page, ``GET /api/v1/alerts`` and the console's and the API's words for the alerts' advice."""
    from . import web as alerts_web

    alerts_web.register(web)


@hookimpl
def mdm_startup(host: Host) -> None:
    """Check once at start (a token may have crossed a threshold while the host was down)."""
    from .delivery import check, safely

    safely("alerts check at start-up", lambda: check(host))


# --------------------------------------------------------------------------- VPP events


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_token_state_changed(host: Host, event: Event) -> None:
    """Expiring in 30/14/7 days, expired, revoked, invalid, taken over; valid again."""
    from .store import on_event, token_state

    p = cast("TokenStatePayload", event.payload)
    on_event(
        host,
        event,
        lambda session: token_state(session, p["account"], p["state"], expires=p.get("tokenExpirationDate"), detail=p.get("detail"), action=p.get("action")),
    )


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_sync_finished(host: Host, event: Event) -> None:
    """N failed syncs in a row; the first success after them."""
    from .store import on_event, sync_finished, sync_news

    report = cast("SyncReport", event.payload)
    if sync_news(host, report):  # a success after a success changes nothing: no transaction
        on_event(host, event, lambda session: sync_finished(host, session, report))


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_assets_added(host: Host, event: Event) -> None:
    """New assets whose available licenses are already below their threshold."""
    _license_counts(host, event)


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_assets_changed(host: Host, event: Event) -> None:
    """Available licenses crossing their threshold, either way."""
    _license_counts(host, event)


def _license_counts(host: Host, event: Event) -> None:
    """An assets event's license levels, with the names of the apps that may alert (asked
    before the transaction, for those alone: an incremental sync's event names hundreds), each
    level computed once (again in the transaction only for a state changed meanwhile)."""
    from .names import license_levels
    from .store import license_counts, on_event

    p = cast("AssetsPayload", event.payload)
    levels = license_levels(host, {p["account"]: p["assets"]})  # names of those whose level changes: not every asset's
    if levels.changing:  # else no asset changes level: no alert, nothing written, no transaction
        on_event(host, event, lambda session: license_counts(host, session, p["account"], p["assets"], levels=levels))


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_assets_removed(host: Host, event: Event) -> None:
    """Assets that left the account are no longer watched."""
    from .store import assets_removed, on_event

    p = cast("AssetsPayload", event.payload)
    on_event(host, event, lambda session: assets_removed(session, p["account"], p["assets"]))


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_vpp_account_renamed(host: Host, event: Event) -> None:
    """The account's states follow its new name (no alert sent again under it)."""
    from .store import account_renamed, on_event

    p = cast("AccountRenamedPayload", event.payload)
    on_event(host, event, lambda session: account_renamed(session, p["previous"], p["account"]))


# --------------------------------------------------------------------------- mobile_apps events


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_mobile_apps_install_failed(host: Host, event: Event) -> None:
    """An install Apple refused (failures of one asset close together make one alert)."""
    from .names import app_names
    from .store import install_failed, on_event

    payload = cast("InstallFailedPayload", event.payload)
    adam_id = str(payload.get("adamId"))
    name = app_names(host, [adam_id]).get(adam_id)
    on_event(host, event, lambda session: install_failed(host, session, payload, name))


@hookimpl(optionalhook=True)
@ACCOUNT_AS_OF_NOW
def mdm_mobile_apps_reclaim_finished(host: Host, event: Event) -> None:
    """A reclaim Apple refused: the device or user keeps the license (refusals of one asset close
    together make one alert). A removed device's or user's revoke (adamId ``*``) is told by the
    reclaims of the licenses it held, each with its outcome; a refused one that none rode on
    (``licenses`` 0: what it holds, the mirror did not know) is told on its own, refused revokes
    close together in one alert. Other outcomes alert nothing."""
    from .names import app_names
    from .store import on_event, reclaim_failed

    payload = cast("ReclaimFinishedPayload", event.payload)
    adam_id = str(payload.get("adamId"))
    if payload.get("status") != "failed" or (adam_id == REVOKE and payload.get("licenses") != 0):  # (no count: an older event)
        return
    name = None if adam_id == REVOKE else app_names(host, [adam_id]).get(adam_id)
    on_event(host, event, lambda session: reclaim_failed(host, session, payload, name))
