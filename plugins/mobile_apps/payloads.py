"""The mobile_apps plugin's public contract: what its events carry (see :mod:`.hookspecs`).

Plain JSON values, typed here so that subscribers (alerts, audit logs, other plugins) know
them without reading this plugin's code. No dependency, no side effect.
"""

# (no ``from __future__ import annotations``: TypedDict must see NotRequired[...] at run time)
from typing import NotRequired, TypedDict

#: ``adamId`` and ``pricingParam`` of a reclaim that is Apple's revoke of every revocable
#: license of a removed device or user (:class:`ReclaimFinishedPayload`)
REVOKE = "*"


class AppPayload(TypedDict):
    """``mobile_apps_app_published``, ``mobile_apps_app_retired``: one application (one platform
    of a VPP asset; ``iOS`` also covers iPadOS)."""

    id: int
    account: str
    adamId: str
    pricingParam: str
    platform: str
    kind: str  # app or book
    availableCount: int
    totalCount: int


class InstallQueuedPayload(TypedDict):
    """``mobile_apps_install_queued``: an ``InstallApplication`` with a VPP license was queued.
    ``source``: ``request`` (``mdm apps install``), ``auto`` (auto_install), ``pending`` (a
    license Apple confirmed late) or ``update`` (a new version, :mod:`.updates`)."""

    account: str
    adamId: str
    pricingParam: str
    serialNumber: str
    commandUuid: str
    license: str  # device or user
    clientUserId: str | None
    source: str  # request, auto, pending or update


class InstallFailedPayload(TypedDict):
    """``mobile_apps_install_failed``: Apple refused the license of a pending install."""

    id: int
    account: str
    adamId: str
    pricingParam: str
    license: str  # device or user
    serialNumber: str | None
    clientUserId: str | None
    source: str  # request or auto
    error: str
    errorNumber: int | None


class AppUpdatedPayload(TypedDict):
    """``mobile_apps_app_updated``: Apple published a new version of an application (one
    platform of a VPP asset); ``oldVersion`` is the one devices were last brought to."""

    id: int
    account: str
    adamId: str
    pricingParam: str
    platform: str
    oldVersion: str
    newVersion: str


class ReclaimFinishedPayload(TypedDict):
    """``mobile_apps_reclaim_finished``: a reclaim reached ``done``, ``failed``, ``irrevocable`` or
    ``canceled`` (the removed device or user came back before Apple was asked, or its account was
    removed); a failed or irrevocable one is announced again when it ends ``done`` or ``canceled``;
    it names the device (``serialNumber``) or the user (``clientUserId``). ``adamId`` and
    ``pricingParam`` are ``*`` for Apple's revoke of every revocable license of a removed
    device or user; ``licenses`` then counts the reclaims of the licenses the mirror held for it
    that ended with it (each announced on its own): 0 for a revoke of licenses the mirror did
    not know (granted since the last sync, or in Apple's portal)."""

    id: int
    account: str
    adamId: str
    pricingParam: str
    serialNumber: NotRequired[str]
    clientUserId: NotRequired[str]
    reason: str  # device_removed, user_removed, manual, unused
    status: str  # done, failed, irrevocable or canceled
    error: str | None
    licenses: NotRequired[int]  # a revoke's (adamId *): its mirrored licenses' reclaims that ended with it, each announced too


#: Event name (the hook is ``mdm_<name>``) -> its payload type.
EVENT_PAYLOADS: dict[str, type] = {
    "mobile_apps_app_published": AppPayload,
    "mobile_apps_app_retired": AppPayload,
    "mobile_apps_install_queued": InstallQueuedPayload,
    "mobile_apps_install_failed": InstallFailedPayload,
    "mobile_apps_reclaim_finished": ReclaimFinishedPayload,
    "mobile_apps_app_updated": AppUpdatedPayload,
}
