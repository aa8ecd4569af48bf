"""The VPP plugin's public contract: what its request hooks return and what its events carry.

Plain JSON values with Apple's field names (plus ``account``, the account's name), typed here
so that other plugins (and type checkers) know them without reading the VPP plugin's code.
Other plugins may import this module (and only this one, with the hookspecs): it has no
dependency and no side effect (:func:`payload_now` reads the VPP accounts' table when called). The hooks that return or carry each type are documented in
:mod:`plugins.vpp.hookspecs`.
"""

# (no ``from __future__ import annotations``: TypedDict must see NotRequired[...] at run time)
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:
    from mdm_core.host import Host

#: valid, expiring_30, expiring_14, expiring_7, expired, revoked, invalid or taken_over
TokenState = str


# --------------------------------------------------------------------------- mirror records


class Asset(TypedDict):
    """A mirrored asset (Apple's ``ResponseAsset``) with its account: ``mdm_vpp_assets`` rows
    and the ``assets`` of the asset events."""

    account: str
    adamId: str
    pricingParam: str
    productType: str  # App or Book
    assignedCount: int
    availableCount: int
    retiredCount: int
    totalCount: int  # 2147483647 for unlimited assets
    deviceAssignable: bool
    revocable: bool
    supportedPlatforms: list[str]


class License(TypedDict):
    """A mirrored license (Apple's ``Assignment``): a device license has ``serialNumber`` and
    ``enrolled``, a user license ``clientUserId`` and ``mdmUser`` (the linked MDM user or None)."""

    account: str
    adamId: str
    pricingParam: str
    serialNumber: NotRequired[str]
    enrolled: NotRequired[bool]
    clientUserId: NotRequired[str]
    mdmUser: NotRequired[str | None]


#: The statuses of a VPP user that still holds licenses (invited, and accepted); a ``Retired``
#: (or legacy ``Deleted``) one holds none.
LIVE_USER_STATUSES = ("Registered", "Associated")
#: Apple's answers to a take-back (disassociate, revoke) of a license that is not there: 9610
#: "License not found", 9619 "License not associated" (Apple does not say which it gives). The
#: license is released already (an earlier request, or taken back elsewhere).
RELEASED_ERRORS = frozenset({9610, 9619})


class User(TypedDict):
    """A VPP user (Apple's ``ResponseUser``) as the user events carry it; ``mdmUser`` is the MDM
    user with the same ``clientUserId``, or None."""

    clientUserId: str
    email: str | None
    status: str  # Registered, Associated, Retired (or the legacy Deleted)
    idHash: str | None
    inviteCode: str | None
    mdmUser: str | None


class UserHold(TypedDict):
    """A ``mdm_vpp_user_holds`` answer for one clientUserId: whether it holds a license of the
    asset in the mirror, and the status of its VPP user there (``None``: none in the account)."""

    holds: bool
    status: str | None


class MirroredUser(User):
    """A ``mdm_vpp_users`` row: a :class:`User` with its account and, while Registered, the
    invitation URL to send."""

    account: str
    invitationUrl: str | None


class Account(TypedDict):
    """A ``mdm_vpp_accounts`` row: an account without its token."""

    name: str
    locationName: str | None
    orgName: str | None
    uId: str
    countryISO2ACode: str | None
    defaultPlatform: str | None
    tokenExpirationDate: str
    token_state: TokenState
    token_status: str
    action: str
    paused: bool
    interval_seconds: int
    service_url: str
    last_sync_at: str | None
    last_sync_result: str | None
    notifications: str  # "on": Apple posts this account's notifications to this host; "off": polling only; "misdirected": to another URL than [web] public_url
    notification_url: str | None  # where Apple posts this account's notifications (None when off); never their secret
    last_notification_at: str | None
    notice: NotRequired[str]  # a renewal's: what it changed that the user did not ask for (notifications turned off)


# --------------------------------------------------------------------------- request results


class SyncReport(TypedDict):
    """One account's result of ``mdm_vpp_sync``, also the ``vpp_sync_finished`` payload.

    ``status``: ``ok``, ``error``, ``already running`` or ``skipped`` (the last two, and a sync
    that never started, carry only the first six keys).
    """

    account: str
    accountId: NotRequired[int]  # the account's database id: a rename keeps it (absent from events of older versions)
    trigger: str
    mode: str | None  # full or incremental
    status: str
    error_type: str | None
    error: str | None
    started_at: NotRequired[str]
    finished_at: NotRequired[str]
    duration_s: NotRequired[float]
    pages: NotRequired[int]
    counts: NotRequired[dict[str, dict[str, int]]]  # assets/users/licenses -> added, changed, removed, ...


class Targets(TypedDict):
    """Devices and users a license request concerns."""

    serialNumbers: list[str]
    clientUserIds: list[str]


class TargetFailure(TypedDict):
    """One target Apple refused, with Apple's error (``errorNumber`` None when Apple named none)."""

    serialNumber: NotRequired[str]
    clientUserId: NotRequired[str]
    errorNumber: int | None
    errorMessage: str | None


class LicenseResult(TypedDict):
    """What ``mdm_vpp_associate`` / ``mdm_vpp_disassociate`` / ``mdm_vpp_revoke`` return.

    ``status``: ``COMPLETE``, ``FAILED`` (some or all targets refused) or ``PENDING`` (some
    targets are not confirmed yet: Apple's event still running after ``wait``, or failing with
    its transient 9603 after three rounds; they are in ``pending``, to ask about again later).
    """

    event_ids: list[str]
    status: str  # COMPLETE, FAILED or PENDING
    succeeded: Targets
    failed: list[TargetFailure]
    pending: Targets


class UserResult(TypedDict):
    """One (account, user) of ``mdm_vpp_update_users`` / ``mdm_vpp_retire_users``."""

    account: str | None
    clientUserId: str
    status: str  # Apple's user status after the request (Associated, Registered, Retired), pending, FAILED or unknown
    email: NotRequired[str | None]
    errorNumber: int | None
    errorMessage: str | None


class AppMetadata(TypedDict):
    """One app's content metadata from ``mdm_vpp_lookup_metadata`` (None where Apple sent nothing)."""

    name: str | None
    bundleId: str | None
    version: str | None
    iconUrl: str | None
    kind: str | None
    deviceFamilies: list[str]


# --------------------------------------------------------------------------- event payloads


class AssetsPayload(TypedDict):
    """``vpp_assets_added``, ``vpp_assets_changed``, ``vpp_assets_removed``: at most 500 assets."""

    account: str
    accountId: NotRequired[int]  # the account's database id: a rename keeps it (absent from events of older versions)
    assets: list[Asset]


class LicensesPayload(TypedDict):
    """``vpp_licenses_associated``, ``vpp_licenses_disassociated``: one asset, one kind of
    target, at most 1000 targets; ``enrolledSerialNumbers`` / ``mdmUserIds`` are the targets the
    MDM inventory knows. ``source``: ``sync`` (found by a sync) or ``request`` (done by this host)."""

    account: str
    accountId: NotRequired[int]  # the account's database id: a rename keeps it (absent from events of older versions)
    adamId: str
    pricingParam: str
    source: str  # sync or request
    serialNumbers: list[str]
    clientUserIds: list[str]
    enrolledSerialNumbers: list[str]
    mdmUserIds: list[str]


class LicensesRefusedPayload(TypedDict):
    """``vpp_licenses_refused``: Apple's notification that it refused part of an associate,
    disassociate or revoke event (``type``) for one asset: the targets it names, with Apple's
    error. At most 1000 targets."""

    account: str
    accountId: NotRequired[int]  # the account's database id: a rename keeps it (absent from events of older versions)
    type: str  # ASSOCIATE, DISASSOCIATE or REVOKE
    eventId: str
    adamId: str
    pricingParam: str
    serialNumbers: list[str]
    clientUserIds: list[str]
    errorNumber: int | None
    errorMessage: str | None


class UsersPayload(TypedDict):
    """``vpp_users_added``, ``vpp_users_changed``, ``vpp_users_retired``: at most 500 users."""

    account: str
    accountId: NotRequired[int]  # the account's database id: a rename keeps it (absent from events of older versions)
    users: list[User]


class UserInvitedPayload(TypedDict):
    """``vpp_user_invited``: send ``invitationUrl`` to the user."""

    account: str
    accountId: NotRequired[int]  # the account's database id: a rename keeps it (absent from events of older versions)
    clientUserId: str
    email: str | None
    invitationUrl: str | None


class TokenStatePayload(TypedDict):
    """``vpp_token_state_changed``: ``previous`` is None for a new account; ``detail`` names the
    other MDM of a ``taken_over`` location; ``action`` says what the user should do."""

    account: str
    accountId: NotRequired[int]  # the account's database id: a rename keeps it (absent from events of older versions)
    previous: TokenState | None
    state: TokenState
    detail: str | None
    tokenExpirationDate: str
    action: str


class AccountRenamedPayload(TypedDict):
    """``vpp_account_renamed``: the account ``previous`` is now named ``account`` (the events
    recorded before it name it ``previous``; those after it, ``account``). ``accountId``: its
    database id, the same before and after (absent from events recorded by older versions)."""

    account: str
    previous: str
    accountId: NotRequired[int]


class AccountRemovedPayload(TypedDict):
    """``vpp_account_removed``: the account ``account`` (database id ``accountId``) was removed
    (after its assets' ``vpp_assets_removed``); the name is free for another account."""

    account: str
    accountId: int


#: Event name (the hook is ``mdm_<name>``) -> its payload type.
EVENT_PAYLOADS: dict[str, type] = {
    "vpp_assets_added": AssetsPayload,
    "vpp_assets_changed": AssetsPayload,
    "vpp_assets_removed": AssetsPayload,
    "vpp_licenses_associated": LicensesPayload,
    "vpp_licenses_disassociated": LicensesPayload,
    "vpp_licenses_refused": LicensesRefusedPayload,
    "vpp_users_added": UsersPayload,
    "vpp_users_changed": UsersPayload,
    "vpp_users_retired": UsersPayload,
    "vpp_user_invited": UserInvitedPayload,
    "vpp_token_state_changed": TokenStatePayload,
    "vpp_sync_finished": SyncReport,
    "vpp_account_renamed": AccountRenamedPayload,
    "vpp_account_removed": AccountRemovedPayload,
}


#: The events that change what an account is called: a subscriber delivered an older event again
#: (a retry) reads its payload as of now with :func:`payload_now`.
ACCOUNT_EVENTS = ("vpp_account_renamed", "vpp_account_removed")


def payload_now(payload: Mapping[str, Any], later: Iterable[tuple[str, Mapping[str, Any]]], host: "Host | None" = None) -> Mapping[str, Any] | None:
    """``payload`` naming its account as it is called now: with ``accountId`` (and ``host``), the
    name of that account now, read from the database (the renames' events may be pruned);
    without (events recorded by older versions), given the :data:`ACCOUNT_EVENTS` recorded after
    it (``later``, oldest first, as ``mdm_core.redelivery.recorded_since`` gives them). Renamed,
    the new name in ``account`` and in its records' ``account`` (assets); removed, None (nothing
    to file under a name another account may take). Unchanged: ``payload`` itself."""
    name = payload.get("account")
    now = name
    if host is not None and isinstance(payload.get("accountId"), int):
        from .recording import account_name  # read only here: importing this module loads nothing

        now = account_name(host, payload["accountId"])
        if now is None:
            return None
    else:
        for event, p in later:
            if event == "vpp_account_renamed" and p.get("previous") == now:
                now = p.get("account")
            elif event == "vpp_account_removed" and p.get("account") == now:
                return None
    if now == name:
        return payload

    def moved(value: Any) -> Any:
        if isinstance(value, list):
            return [{**v, "account": now} if isinstance(v, dict) and v.get("account") == name else v for v in value]
        return value

    return {key: now if key == "account" else moved(value) for key, value in payload.items()}
