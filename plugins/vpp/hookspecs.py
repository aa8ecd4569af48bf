"""Hooks the VPP plugin owns.

Two kinds:

- **Requests** (``firstresult``): other plugins (and ``mdm vpp ...``) ask the VPP plugin to do
  something: sync, associate or disassociate licenses, look up metadata, read the mirror.
  The VPP plugin implements them; callers get plain values back (dicts and lists with
  Apple's field names), never ORM objects. Errors raise ``MdmError`` with a one-line reason.
- **Events**: delivered after the sync (or the request) that caused them has committed, from
  the host's outbox, each implementation on its own (a failing subscriber is logged and
  recorded; the others still run). Every event has a stable ``event.id``: subscribers should
  be idempotent, as an event cut short by a crash is delivered again at the next start.
  Payloads are plain JSON values; each carries ``account`` (the account's name).

Consumers mark their implementations ``@hookimpl(optionalhook=True)`` so they load even when
the VPP plugin is disabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mdm_core import hookspec

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.host import Host


# --------------------------------------------------------------------------- requests


@hookspec(firstresult=True)
def mdm_vpp_sync(host: "Host", account: str | None, full: bool, trigger: str, wait: float) -> list[dict[str, Any]] | None:
    """Sync one VPP account, or all of them, now.

    When: called by ``mdm vpp sync``, by the scheduler at each account's interval, or by any
    plugin. One sync per account at a time, across processes: a trigger waits up to ``wait``
    seconds for a running sync of the same account, then reports it as ``already running``.
    Args: ``account`` name or ``None`` for all; ``full`` forces a full sync (else incremental
    when possible); ``trigger`` is recorded on the sync run (``manual``, ``schedule``, ...).
    Returns: one report per account: ``account``, ``mode``, ``status`` (``ok``, ``error``,
    ``already running``, ``skipped``), ``error``, ``pages`` and the counts added, changed and
    removed per entity. ``None`` means the VPP plugin is not loaded.
    Errors: an unknown account raises ``MdmError``; a failing sync is reported, not raised.
    """


@hookspec(firstresult=True)
def mdm_vpp_accounts(host: "Host") -> list[dict[str, Any]] | None:
    """The VPP accounts, without their tokens.

    Returns: for each: ``name``, ``locationName``, ``orgName``, ``uId``,
    ``countryISO2ACode``, ``defaultPlatform``, ``tokenExpirationDate``, ``token_state``,
    ``interval_seconds``, ``last_sync_at``, ``last_sync_result``. ``None``: plugin absent.
    Errors: none expected.
    """


@hookspec(firstresult=True)
def mdm_vpp_assets(host: "Host", account: str | None) -> list[dict[str, Any]] | None:
    """The mirrored assets with their counts (Apple's field names, plus ``account``).

    Args: ``account`` name or ``None`` for all accounts.
    Returns: a list (possibly empty); ``None``: plugin absent.
    Errors: an unknown account raises ``MdmError``.
    """


@hookspec(firstresult=True)
def mdm_vpp_licenses(
    host: "Host", account: str | None, adam_id: str | None, serial_number: str | None, client_user_id: str | None
) -> list[dict[str, Any]] | None:
    """The mirrored licenses (assignments), filtered by any of the arguments.

    Returns: dicts with ``account``, ``adamId``, ``pricingParam`` and ``serialNumber`` or
    ``clientUserId``; ``None``: plugin absent.
    Errors: an unknown account raises ``MdmError``.
    """


@hookspec(firstresult=True)
def mdm_vpp_users(host: "Host", account: str | None) -> list[dict[str, Any]] | None:
    """The mirrored VPP users: ``clientUserId``, ``email``, ``status``, ``idHash``,
    ``inviteCode``, ``invitationUrl`` (while Registered), ``mdmUser`` (linked MDM user or None).

    Returns: a list; ``None``: plugin absent.
    Errors: an unknown account raises ``MdmError``.
    """


@hookspec(firstresult=True)
def mdm_vpp_associate(
    host: "Host", account: str, adam_id: str, pricing_param: str, serial_numbers: list[str], client_user_ids: list[str], wait: float
) -> dict[str, Any] | None:
    """Associate licenses of one asset with devices and/or users, and follow Apple's events.

    When: before an app is installed with a VPP license (``mdm apps install``).
    Args: targets are chunked by Apple's ``limits``; ``wait`` bounds how long to follow the
    events (0: return as soon as Apple accepted the request).
    Returns: ``{"event_ids": [...], "status": "COMPLETE"|"FAILED"|"PENDING",
    "succeeded": {"serialNumbers": [...], "clientUserIds": [...]}, "failed": [{"serialNumber"
    or "clientUserId", "errorNumber", "errorMessage"}]}``; succeeded licenses are written to
    the mirror and announced as ``vpp_licenses_associated``. ``None``: plugin absent.
    Errors: a request Apple refuses outright (token, 9707, size limits) raises ``MdmError``.
    """


@hookspec(firstresult=True)
def mdm_vpp_disassociate(
    host: "Host", account: str, adam_id: str, pricing_param: str, serial_numbers: list[str], client_user_ids: list[str], wait: float
) -> dict[str, Any] | None:
    """Disassociate (reclaim) licenses of one asset; same arguments and result as
    ``mdm_vpp_associate``. Irrevocable assets raise ``MdmError`` without calling Apple.

    Errors: Apple unreachable raises ``MdmError`` (the caller may keep the reclaim pending).
    """


@hookspec(firstresult=True)
def mdm_vpp_lookup_metadata(host: "Host", account: str, adam_ids: list[str]) -> dict[str, dict[str, Any]] | None:
    """Look up names, bundle ids, versions and icons in Apple's content-metadata service.

    Args: the account whose token (``itvt`` cookie), ``defaultPlatform`` and country are used.
    Returns: ``{adamId: {"name", "bundleId", "version", "iconUrl", "kind", "deviceFamilies"}}``
    for the ids Apple knows (others are absent); ``None``: plugin absent.
    Errors: Apple unreachable raises ``MdmError``; callers should publish without metadata and
    retry later.
    """


# --------------------------------------------------------------------------- events


@hookspec
def mdm_vpp_assets_added(host: "Host", event: "Event") -> None:
    """New assets appeared in an account (a purchase, a transfer).

    Payload: ``account``, ``assets``: list of Apple asset dicts (``adamId``, ``pricingParam``,
    ``productType``, counts, ``deviceAssignable``, ``revocable``, ``supportedPlatforms``).
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_vpp_assets_changed(host: "Host", event: "Event") -> None:
    """Assets whose counts or properties changed.

    Payload: ``account``, ``assets``: the new asset dicts (as in ``mdm_vpp_assets_added``).
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_vpp_assets_removed(host: "Host", event: "Event") -> None:
    """Assets that are no longer in the account (refunded, transferred away).

    Payload: ``account``, ``assets``: the last known asset dicts.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_vpp_licenses_associated(host: "Host", event: "Event") -> None:
    """Licenses newly associated with devices or users (by a sync or by this host).

    Payload: ``account``, ``adamId``, ``pricingParam``, ``source`` (``sync`` when found by a
    sync, e.g. assigned in Apple's portal; ``request`` when this host associated them),
    ``serialNumbers`` and ``clientUserIds`` (at most 1000 targets per event), and
    ``enrolledSerialNumbers`` / ``mdmUserIds``: the subset known to the MDM inventory.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_vpp_licenses_disassociated(host: "Host", event: "Event") -> None:
    """Licenses no longer associated (reclaimed here, or removed in Apple's portal).

    Payload: as ``mdm_vpp_licenses_associated``.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_vpp_users_added(host: "Host", event: "Event") -> None:
    """VPP users that appeared. Payload: ``account``, ``users``: list of Apple user dicts
    (``clientUserId``, ``email``, ``status``, ``idHash``, ``inviteCode``) with ``mdmUser``.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_vpp_users_changed(host: "Host", event: "Event") -> None:
    """VPP users whose email, status (e.g. Registered → Associated) or idHash changed.
    Payload: as ``mdm_vpp_users_added``.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_vpp_users_retired(host: "Host", event: "Event") -> None:
    """VPP users retired (their revocable licenses went back to the pool).
    Payload: as ``mdm_vpp_users_added``.
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_vpp_user_invited(host: "Host", event: "Event") -> None:
    """A VPP user was registered without a Managed Apple ID and must accept an invitation.

    Payload: ``account``, ``clientUserId``, ``email``, ``invitationUrl`` (send it to the user).
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_vpp_token_state_changed(host: "Host", event: "Event") -> None:
    """An account's token changed state: ``valid``, ``expiring_30``, ``expiring_14``,
    ``expiring_7``, ``expired``, ``revoked``, ``invalid`` or ``taken_over``.

    Payload: ``account``, ``previous``, ``state``, ``detail`` (e.g. the other MDM's name),
    ``tokenExpirationDate``, ``action`` (what the user should do).
    Errors: isolated per subscriber.
    """


@hookspec
def mdm_vpp_sync_finished(host: "Host", event: "Event") -> None:
    """A sync of one account finished, successfully or not.

    Payload: the sync report (see ``mdm_vpp_sync``).
    Errors: isolated per subscriber.
    """
