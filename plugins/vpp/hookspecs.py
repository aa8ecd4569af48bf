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
  Payloads are plain JSON values; each carries ``account`` (the account's name) and
  ``accountId`` (its database id, which a rename keeps; absent from events of older versions).

The types of the results and payloads are the ``TypedDict``s of :mod:`plugins.vpp.payloads`,
the contract other plugins may import. Consumers mark their implementations ``@hookimpl(optionalhook=True)`` so they load even when
the VPP plugin is disabled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from mdm_core import hookspec

if TYPE_CHECKING:
    from sqlalchemy.sql import FromClause
    from sqlmodel import Session

    from mdm_core.events import Event
    from mdm_core.host import Host

    from .payloads import Account, AppMetadata, Asset, License, LicenseResult, MirroredUser, SyncReport, UserHold, UserResult


# --------------------------------------------------------------------------- requests


@hookspec(firstresult=True)
def mdm_vpp_sync(host: Host, account: str | None, full: bool, trigger: str, wait: float | None) -> list[SyncReport] | None:
    """Sync one VPP account, or all of them, now.

    When: called by ``mdm vpp sync``, by the scheduler at each account's interval, or by any
    plugin. One sync per account at a time, across processes.
    Args: ``host``; ``account``: a name, or ``None`` for all; ``full``: force a full sync
    (else incremental when possible); ``trigger``: recorded on the sync run (``manual``,
    ``schedule``, ``console``, ``api``, ...); ``wait``: seconds to wait for a running sync of the same account
    before reporting ``already running`` (``None``: ``[vpp] lock_wait``).
    Returns: one ``SyncReport`` per account: ``account``, ``trigger``, ``mode``, ``status`` (``ok``,
    ``error``, ``already running``, ``skipped``), ``error_type``, ``error``, ``pages``,
    ``duration_s`` and ``counts`` added/changed/removed per entity. ``None``: the VPP plugin
    is not loaded.
    Errors: an unknown account raises ``MdmError``; a failing sync is reported, not raised.
    """


@hookspec(firstresult=True)
def mdm_vpp_accounts(host: Host) -> list[Account] | None:
    """The VPP accounts, without their tokens.

    When: any time (reads the database only).
    Args: ``host``.
    Returns: an ``Account`` for each: ``name``, ``locationName``, ``orgName``, ``uId``,
    ``countryISO2ACode``, ``defaultPlatform``, ``tokenExpirationDate``, ``token_state``,
    ``action``, ``paused``, ``interval_seconds``, ``last_sync_at``, ``last_sync_result``.
    ``None``: the VPP plugin is not loaded.
    Errors: none expected.
    """


@hookspec(firstresult=True)
def mdm_vpp_assets(host: Host, account: str | None) -> list[Asset] | None:
    """The mirrored assets with their counts (Apple's field names, plus ``account``).

    When: any time (reads the mirror only).
    Args: ``host``; ``account``: a name, or ``None`` for all accounts.
    Returns: a list of ``Asset`` (possibly empty); ``None``: the VPP plugin is not loaded.
    Errors: an unknown account raises ``MdmError``.
    """


@hookspec(firstresult=True)
def mdm_vpp_licenses(
    host: Host,
    account: str | None,
    adam_id: str | None,
    serial_number: str | None,
    client_user_id: str | None,
    serial_numbers: list[str] | None,
    client_user_ids: list[str] | None,
) -> list[License] | None:
    """The mirrored licenses (assignments), filtered by any of the arguments.

    When: any time (reads the mirror only).
    Args: ``host``; ``account``, ``adam_id``, ``serial_number``, ``client_user_id``: filters,
    ``None`` for any; ``serial_numbers``, ``client_user_ids``: the licenses held by
    any of these devices or users only (read by chunks of targets, never the whole list of an
    asset that may hold 100,000 licenses), ``None`` for any.
    Returns: ``License`` dicts with ``account``, ``adamId``, ``pricingParam`` and either
    ``serialNumber`` (+ ``enrolled``) or ``clientUserId`` (+ ``mdmUser``); ``None``: the VPP
    plugin is not loaded.
    Errors: an unknown account raises ``MdmError``.
    """


@hookspec(firstresult=True)
def mdm_vpp_user_holds(host: Host, session: Session, account: str, adam_id: str, pricing_param: str, client_user_ids: list[str]) -> dict[str, UserHold] | None:
    """Whether each of these users holds a license of one asset in the mirror, and its VPP
    user's status, read in the caller's transaction (``session``).

    When: inside a write transaction whose writes depend on the answer (an install queues
    nothing for a user whose license is gone). Reads the whole batch at once, and holds the
    rows read until that transaction ends (PostgreSQL ``FOR SHARE``): a retirement or a reclaim
    another process writes meanwhile waits for it, so the check and the write agree.
    Args: ``host``; ``session``: the caller's; ``account``, ``adam_id``, ``pricing_param``: the
    asset; ``client_user_ids``: the users.
    Returns: ``clientUserId`` -> ``UserHold`` (``holds``, ``status``: ``None`` when the account
    has no such VPP user) for each one given; ``None``: the VPP plugin is not loaded.
    Errors: an unknown account raises ``MdmError``.
    """


@hookspec(firstresult=True)
def mdm_vpp_users(host: Host, account: str | None, client_user_ids: list[str] | None) -> list[MirroredUser] | None:
    """The mirrored VPP users, linked to MDM users by ``clientUserId``.

    When: any time (reads the mirror only).
    Args: ``host``; ``account``: a name, or ``None`` for all accounts; ``client_user_ids``:
    only the VPP users of these ids (a user's, a batch's: not every user of a district read
    to find them), ``None`` for every one.
    Returns: ``MirroredUser`` dicts with ``account``, ``clientUserId``, ``email``, ``status``, ``idHash``,
    ``inviteCode``, ``invitationUrl`` (while Registered) and ``mdmUser``; ``None``: the VPP
    plugin is not loaded.
    Errors: an unknown account raises ``MdmError``.
    """


@hookspec(firstresult=True)
def mdm_vpp_iter_assets(host: Host, account: str | None, offset: int, limit: int | None) -> Iterator[Asset] | None:
    """The mirrored assets, streamed: the paged form of ``mdm_vpp_assets``.

    When: any time (reads the mirror only); for long lists (a console's pages, an export).
    Args: ``host``; ``account``: a name, or ``None`` for all accounts; ``offset``: rows to
    skip; ``limit``: at most this many rows (``None``: all).
    Returns: an iterator of ``Asset``, by account then adamId, read from the database as it is
    consumed (constant memory, one read transaction: read it to the end or close it);
    ``None``: the VPP plugin is not loaded.
    Errors: an unknown account raises ``MdmError`` at the call, before any row.
    """


@hookspec(firstresult=True)
def mdm_vpp_iter_licenses(
    host: Host, account: str | None, adam_id: str | None, serial_number: str | None, client_user_id: str | None, offset: int, limit: int | None
) -> Iterator[License] | None:
    """The mirrored licenses, streamed: the paged form of ``mdm_vpp_licenses``.

    When: any time (reads the mirror only); for long lists (a console's pages, an export).
    Args: ``host``; ``account``, ``adam_id``, ``serial_number``, ``client_user_id``: filters
    as in ``mdm_vpp_licenses``, ``None`` for any; ``offset``: rows to skip; ``limit``: at most
    this many rows (``None``: all).
    Returns: an iterator of ``License``, by account, adamId, pricingParam, kind and holder,
    read as it is consumed (constant memory, one read transaction: read it to the end or close
    it); ``None``: the VPP plugin is not loaded.
    Errors: an unknown account raises ``MdmError`` at the call, before any row.
    """


@hookspec(firstresult=True)
def mdm_vpp_iter_users(host: Host, account: str | None, offset: int, limit: int | None) -> Iterator[MirroredUser] | None:
    """The mirrored VPP users, streamed: the paged form of ``mdm_vpp_users``.

    When: any time (reads the mirror only); for long lists (a console's pages, an export).
    Args: ``host``; ``account``: a name, or ``None`` for all accounts; ``offset``: rows to
    skip; ``limit``: at most this many rows (``None``: all).
    Returns: an iterator of ``MirroredUser``, by account then clientUserId, read as it is
    consumed (constant memory, one read transaction: read it to the end or close it);
    ``None``: the VPP plugin is not loaded.
    Errors: an unknown account raises ``MdmError`` at the call, before any row.
    """


@hookspec(firstresult=True)
def mdm_vpp_associate(
    host: Host, account: str, adam_id: str, pricing_param: str, serial_numbers: list[str], client_user_ids: list[str], wait: float
) -> LicenseResult | None:
    """Associate licenses of one asset with devices and/or users, and follow Apple's events.

    When: before an app is installed with a VPP license (``mdm apps install``).
    Args: ``host``; ``account``; ``adam_id`` and ``pricing_param``: the asset;
    ``serial_numbers`` and ``client_user_ids``: the targets (chunked by Apple's ``limits``);
    ``wait``: seconds to follow the events (0: return once Apple accepted the request).
    Returns: a ``LicenseResult``: ``{"event_ids": [...], "status": "COMPLETE"|"FAILED"|"PENDING",
    "succeeded": {"serialNumbers": [...], "clientUserIds": [...]}, "failed": [{"serialNumber"
    or "clientUserId", "errorNumber", "errorMessage"}], "pending": {"serialNumbers": [...],
    "clientUserIds": [...]}}``: ``pending`` are the targets Apple has not confirmed yet (its
    event still running after ``wait``, or failing with its transient 9603 after three rounds
    of back-off; ask again later), ``status`` is ``PENDING`` when there are any. A target is
    ``succeeded`` only when Apple's event did all it was asked (``numCompleted``) or Apple's
    assignments show it. Succeeded licenses are written to the mirror and announced as
    ``vpp_licenses_associated``. ``None``: the VPP plugin is not loaded.
    Errors: ``TemporaryError`` when Apple cannot be reached (retry later); ``MdmError`` when
    Apple refuses outright (token, 9707 not device-assignable, size limits).
    """


@hookspec(firstresult=True)
def mdm_vpp_disassociate(
    host: Host, account: str, adam_id: str, pricing_param: str, serial_numbers: list[str], client_user_ids: list[str], wait: float
) -> LicenseResult | None:
    """Disassociate (reclaim) licenses of one asset, and follow Apple's events.

    When: a device left the inventory, or ``mdm apps reclaim``.
    Args: as ``mdm_vpp_associate``: ``host``, ``account``, ``adam_id``, ``pricing_param``,
    ``serial_numbers``, ``client_user_ids``, ``wait``.
    Returns: a ``LicenseResult``, as ``mdm_vpp_associate``; removed licenses are announced as
    ``vpp_licenses_disassociated``. ``None``: the VPP plugin is not loaded.
    Errors: ``MdmError`` for an irrevocable asset (9706, Apple is not called);
    ``TemporaryError`` when Apple cannot be reached (keep the reclaim pending, retry).
    """


@hookspec(firstresult=True)
def mdm_vpp_revoke(host: Host, account: str, serial_numbers: list[str], client_user_ids: list[str], wait: float, quick: bool) -> LicenseResult | None:
    """Take back every revocable license of devices or users with Apple's ``assets/revoke``,
    including those granted since the last sync (which a disassociation of the mirrored ones
    would miss).

    When: a device or an MDM user left the inventory.
    Args: ``host``; ``account``; ``serial_numbers`` and ``client_user_ids``: the targets
    (chunked by ``maxRevokeSerialNumbers`` / ``maxRevokeClientUserIds``); ``wait``: seconds to
    follow Apple's events; ``quick``: someone is waiting (``mdm devices remove``): one short
    retry at most, the caller keeps what fails for a later attempt.
    Returns: as ``mdm_vpp_associate``; a target has ``succeeded`` once Apple shows it holding no
    revocable license. Its mirrored revocable licenses are removed and announced as
    ``vpp_licenses_disassociated`` (source ``request``). ``None``: the VPP plugin is not loaded.
    Errors: ``TemporaryError`` when Apple cannot be reached (retry later); ``MdmError`` when
    Apple refuses outright.
    """


@hookspec(firstresult=True)
def mdm_vpp_update_users(host: Host, mdm_user_ids: list[str], account: str | None, wait: float) -> list[UserResult] | None:
    """Send Apple the current e-mail and Managed Apple ID of MDM users (``users/update``).

    When: an MDM user's e-mail or Managed Apple ID changed (the VPP plugin does it itself on
    ``mdm_user_changed``).
    Args: ``host``; ``mdm_user_ids``; ``account``: one account, or ``None`` for every account
    where the user is a live VPP user; ``wait``: seconds to follow Apple's events.
    Returns: a ``UserResult`` per (account, user): ``account``, ``clientUserId``, ``status`` (Apple's
    user status after the update, ``pending`` or ``FAILED``), ``email``, ``errorNumber``,
    ``errorMessage``; the mirror is updated (``vpp_users_changed``). ``None``: the VPP plugin is
    not loaded.
    Errors: ``TemporaryError`` when Apple cannot be reached; ``MdmError`` otherwise.
    """


@hookspec(firstresult=True)
def mdm_vpp_retire_users(host: Host, client_user_ids: list[str], account: str | None, wait: float) -> list[UserResult] | None:
    """Retire VPP users at Apple (``users/retire``); Apple frees their revocable licenses.

    When: an MDM user left the inventory, once its licenses were reclaimed (mobile_apps does
    it), or by hand (``mdm vpp users retire``).
    Args: ``host``; ``client_user_ids``; ``account``: one account or ``None`` for every account
    where they are live VPP users; ``wait``: seconds to follow Apple's events.
    Returns: one dict per (account, user) as ``mdm_vpp_update_users``, ``status`` ``Retired``
    when done (``unknown`` for a clientUserId that is no live VPP user). The mirror follows:
    ``vpp_users_retired``, and the user's revocable licenses removed
    (``vpp_licenses_disassociated``). ``None``: the VPP plugin is not loaded.
    Errors: ``TemporaryError`` when Apple cannot be reached; ``MdmError`` otherwise.
    """


@hookspec(firstresult=True)
def mdm_vpp_lookup_metadata(host: Host, account: str, adam_ids: list[str], platform: str | None) -> dict[str, AppMetadata] | None:
    """Look up names, bundle ids, versions and icons in Apple's content-metadata service.

    When: whenever a plugin needs metadata; never call it inside a sync's event delivery path
    if a slow lookup would matter (publish first, look up later).
    Args: ``host``; ``account``: whose token (``itvt`` cookie), ``defaultPlatform`` and
    country are used; ``adam_ids``: batched by the client; ``platform``: the application
    platform the metadata is for: ``macOS`` asks the Mac App Store (``macappstore``: a
    universal app's Mac bundle id and version), anything else (or ``None``) the account's
    ``defaultPlatform``. Results are cached per adamId and platform by the caller.
    Returns: ``{adamId: AppMetadata}``, ``AppMetadata`` being ``{"name", "bundleId", "version", "iconUrl", "kind", "deviceFamilies"}}``
    for the ids Apple knows (others are absent); ``None``: the VPP plugin is not loaded.
    Errors: ``TemporaryError`` when Apple cannot be reached; ``MdmError`` otherwise.
    """


@hookspec(firstresult=True)
def mdm_vpp_asset_labels(host: Host) -> FromClause | None:
    """Where the console finds the names and icons of assets, to show, search and sort by them.

    When: each time a console page or API route lists assets; the answer is joined into the VPP
    plugin's own query (one database), so it reads stored rows only and never calls Apple.
    Args: ``host``.
    Returns: an SQLAlchemy selectable (a subquery over the implementing plugin's own table) with
    the columns ``adam_id``, ``name`` and ``icon_url`` (nullable), at most one row per
    ``adam_id``: the mobile_apps plugin answers with the metadata it looked up. ``None``: no
    names known (the pages show adamIds). The first implementation that answers wins.
    Errors: an exception, or a selectable the database refuses, is logged and the pages show
    adamIds without names.
    """


# --------------------------------------------------------------------------- events


@hookspec
def mdm_vpp_assets_added(host: Host, event: Event) -> None:
    """A sync committed assets that are new to the account (a purchase, a transfer).

    When: after the commit, delivered from the outbox.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``AssetsPayload``):
    ``account``, ``assets``: Apple asset dicts (``adamId``, ``pricingParam``, ``productType``,
    the four counts, ``deviceAssignable``, ``revocable``, ``supportedPlatforms``), at most 500
    per event.
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_assets_changed(host: Host, event: Event) -> None:
    """A sync committed assets whose counts or properties changed; also a license request
    of this host, or Apple's notification, that moved an asset's counts (with its licenses event).

    When: after the commit, delivered from the outbox.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``AssetsPayload``):
    ``account``, ``assets``: the new asset dicts, as in ``mdm_vpp_assets_added``.
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_assets_removed(host: Host, event: Event) -> None:
    """A sync committed assets that left the account (refunded, transferred away), or the account was removed.

    When: after the commit, delivered from the outbox.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``AssetsPayload``): ``account``, ``assets``: the last known asset dicts.
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_licenses_associated(host: Host, event: Event) -> None:
    """Licenses newly associated with devices or users were committed: found by a sync (e.g. assigned in Apple's portal) or associated by this host.

    When: after the commit, delivered from the outbox.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``LicensesPayload``):
    ``account``, ``adamId``, ``pricingParam``, ``source`` (``sync`` or ``request``),
    ``serialNumbers`` and ``clientUserIds`` (at most 1000 targets per event),
    ``enrolledSerialNumbers`` / ``mdmUserIds``: the subset known to the MDM inventory.
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_licenses_disassociated(host: Host, event: Event) -> None:
    """Licenses no longer associated were committed: reclaimed here, or removed in Apple's portal and found by a sync.

    When: after the commit, delivered from the outbox.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``LicensesPayload``): as ``mdm_vpp_licenses_associated``.
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_licenses_refused(host: Host, event: Event) -> None:
    """Apple refused licenses of an event this host asked for (an associate, a disassociate, a
    revoke), as its ``ASSET_MANAGEMENT`` notification said: nothing changed at Apple for these
    targets. A request still following the event reports the same error itself; this tells the
    ones that stopped following it (a pending install).

    When: after the commit of the notification's act, delivered from the outbox; one event per
    asset named (a revoke's failures, which name no asset, make none).
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload``
    (``LicensesRefusedPayload``): ``account``, ``type`` (``ASSOCIATE``, ``DISASSOCIATE``,
    ``REVOKE``), ``eventId``, ``adamId``, ``pricingParam``, ``serialNumbers``,
    ``clientUserIds``, ``errorNumber``, ``errorMessage`` (Apple's).
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_users_added(host: Host, event: Event) -> None:
    """A sync or a registration committed VPP users new to the account.

    When: after the commit, delivered from the outbox.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``UsersPayload``):
    ``account``, ``users``: Apple user dicts (``clientUserId``, ``email``, ``status``,
    ``idHash``, ``inviteCode``) with ``mdmUser`` (the linked MDM user or None).
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_users_changed(host: Host, event: Event) -> None:
    """VPP users whose email, status (e.g. Registered to Associated) or idHash changed were committed.

    When: after the commit, delivered from the outbox.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``UsersPayload``): as ``mdm_vpp_users_added``.
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_users_retired(host: Host, event: Event) -> None:
    """VPP users retired in Apple's records were committed (their revocable licenses went back to the pool).

    When: after the commit, delivered from the outbox.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``UsersPayload``): as ``mdm_vpp_users_added``.
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_user_invited(host: Host, event: Event) -> None:
    """A VPP user was registered without a Managed Apple ID and must accept an invitation.

    When: after the commit, delivered from the outbox.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``UserInvitedPayload``):
    ``account``, ``clientUserId``, ``email``, ``invitationUrl`` (send it to the user).
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_token_state_changed(host: Host, event: Event) -> None:
    """An account's token changed state: ``valid``, ``expiring_30``, ``expiring_14``, ``expiring_7``, ``expired``, ``revoked``, ``invalid`` or ``taken_over``.

    When: after the commit, delivered from the outbox.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``TokenStatePayload``):
    ``account``, ``previous``, ``state``, ``detail`` (e.g. the other MDM's name),
    ``tokenExpirationDate``, ``action`` (what the user should do).
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_sync_finished(host: Host, event: Event) -> None:
    """A sync of one account finished, successfully or not (after its transaction committed or rolled back).

    When: after the commit, delivered from the outbox; a successful sync's report is recorded in
    its transaction, after every other event of it, a failed one's after the rollback.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``SyncReport``): the sync report (see ``mdm_vpp_sync``).
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_account_renamed(host: Host, event: Event) -> None:
    """An account was renamed (``mdm vpp account rename``, the console, the API).

    When: after the commit, delivered from the outbox, after the events recorded before the
    rename (which name the account ``previous``).
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``AccountRenamedPayload``):
    ``account`` (the new name), ``previous`` (the old one), ``accountId`` (the account's database
    id, which a rename keeps; absent from events recorded before it was added). A subscriber that
    keys state by the account's name moves it to the new name (what it keeps as history may stay
    as it was).
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """


@hookspec
def mdm_vpp_account_removed(host: Host, event: Event) -> None:
    """An account was removed (``mdm vpp account remove``, the console, the API).

    When: after the commit, delivered from the outbox, after its assets' ``vpp_assets_removed``.
    Args: ``host``; ``event`` (stable ``event.id``), ``event.payload`` (``AccountRemovedPayload``):
    ``account`` (its name), ``accountId`` (its database id). The name is free: another account
    may be added or renamed to it later, so a subscriber closes what it keeps waiting under that
    name (the mobile_apps plugin cancels its pending installs and reclaims).
    Returns: nothing.
    Errors: isolated per subscriber (logged and recorded; the others still run).
    """
