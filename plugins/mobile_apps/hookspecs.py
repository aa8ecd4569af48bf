"""Hooks the mobile_apps plugin owns: events other plugins can react to.

Each is delivered from the host's outbox after the transaction that recorded it committed,
each implementation on its own (a failing subscriber is logged and recorded; the others still
run). Every event has a stable ``event.id``: subscribers should be idempotent. Payloads are
plain JSON values, typed in :mod:`plugins.mobile_apps.payloads` (the contract subscribers may
import). Consumers mark their implementations ``@hookimpl(optionalhook=True)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mdm_core import hookspec

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.host import Host


@hookspec
def mdm_mobile_apps_app_published(host: Host, event: Event) -> None:
    """An application (or book) became available: a VPP asset appeared, or came back.

    When: after the VPP sync event that announced the asset was applied.
    Args: ``host``; ``event``, whose ``event.payload`` (``AppPayload``) has ``id`` (application id), ``account``, ``adamId``,
    ``pricingParam``, ``platform`` (``iOS`` also covers iPadOS, ``macOS``), ``kind``
    (``app`` or ``book``), ``availableCount``, ``totalCount``.
    Returns: nothing.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_mobile_apps_app_retired(host: Host, event: Event) -> None:
    """An application is no longer installable (its asset was refunded or transferred away,
    or the asset no longer supports that platform). The row is kept for history.

    When: after the VPP sync event that removed the asset was applied.
    Args: ``host``; ``event``, whose ``event.payload`` (``AppPayload``) has as ``mdm_mobile_apps_app_published``.
    Returns: nothing.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_mobile_apps_install_queued(host: Host, event: Event) -> None:
    """An ``InstallApplication`` command with a VPP license was queued for a device.

    When: after ``mdm apps install``, an automatic install (``auto_install``) or a pending
    install that Apple confirmed later, once the command is committed.
    Args: ``host``; ``event``, whose ``event.payload`` (``InstallQueuedPayload``) has ``account``, ``adamId``, ``pricingParam``,
    ``serialNumber``, ``commandUuid``, ``license`` (``device`` or ``user``), ``clientUserId``
    (user licenses) and ``source`` (``request``, ``auto``, ``pending`` or ``update``).
    Returns: nothing.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_mobile_apps_install_failed(host: Host, event: Event) -> None:
    """An install waiting for Apple's license failed: Apple refused the license (e.g. 9709, no
    license left), so no ``InstallApplication`` was queued; the install is recorded ``failed``.

    When: after the ``mobile_apps.installs`` job asked Apple again about a pending install and
    Apple refused it, once that is committed; one event per install (device or user).
    Args: ``host``; ``event``, whose ``event.payload`` (``InstallFailedPayload``) has ``id`` (install id, as in
    ``mdm apps installs``), ``account``, ``adamId``, ``pricingParam``, ``license`` (``device`` or
    ``user``), ``serialNumber`` (device licenses, else None), ``clientUserId`` (user licenses,
    else None), ``source`` (``request`` or ``auto``), ``error`` (one line, what Apple said) and
    ``errorNumber`` (Apple's error number or None).
    Returns: nothing.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_mobile_apps_reclaim_finished(host: Host, event: Event) -> None:
    """A reclaim of a VPP license reached an end state.

    When: after Apple confirmed (``done``) or refused (``failed``) a disassociation, or when the
    asset turned out irrevocable (``irrevocable``, never attempted); a pending reclaim ``canceled``
    (its device or user came back, its account was removed). A ``failed`` or ``irrevocable`` one
    is announced again when it ends ``done`` (a sync showed its license released elsewhere) or
    ``canceled`` (its account was removed).
    Args: ``host``; ``event``, whose ``event.payload`` (``ReclaimFinishedPayload``) has ``id``, ``account``, ``adamId``, ``pricingParam``,
    ``serialNumber`` or ``clientUserId``, ``reason`` (``device_removed``, ``user_removed``, ``manual``,
    ``unused``), ``status`` and ``error``.
    Returns: nothing.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_mobile_apps_app_updated(host: Host, event: Event) -> None:
    """Apple published a new version of an application: the update check
    (``mobile_apps.updates`` with ``auto_update``, or ``mdm apps check-updates``) found it and
    recorded it on the application, once per version.

    When: after that is committed, together with the ``InstallApplication`` commands the update
    queued (each announced by ``mdm_mobile_apps_install_queued`` with ``source`` ``update``).
    Args: ``host``; ``event``, whose ``event.payload`` (``AppUpdatedPayload``) has ``id``
    (application id), ``account``, ``adamId``, ``pricingParam``, ``platform``, ``oldVersion``
    and ``newVersion``.
    Returns: nothing.
    Errors: isolated per subscriber.
    """
