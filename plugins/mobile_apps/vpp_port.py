"""mobile_apps' one door to the VPP plugin: a typed façade over the ``mdm_vpp_*`` request hooks.

One method per hook (the style of tox's ``tox/plugin/manager.py``), returning the
``TypedDict``s the VPP plugin publishes in :mod:`plugins.vpp.payloads`. When the VPP plugin is
not loaded (disabled, or not installed) every method raises the one :class:`VppUnavailable`
error, so no caller probes hooks by name or checks for ``None`` itself. Nothing else in this
plugin calls a ``mdm_vpp_*`` hook.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mdm_core.errors import Unavailable
from plugins.vpp.payloads import LIVE_USER_STATUSES as LIVE_USER_STATUSES  # a VPP user's statuses that still hold licenses
from plugins.vpp.payloads import RELEASED_ERRORS as RELEASED_ERRORS  # Apple's answers for a license released already
from plugins.vpp.payloads import Account, AppMetadata, Asset, License, LicenseResult, MirroredUser, UserHold, UserResult

if TYPE_CHECKING:
    from sqlmodel import Session

    from mdm_core.host import Host

#: The request hooks this plugin uses, and what cannot be done without each.
HOOKS = {
    "mdm_vpp_assets": "VPP assets cannot be read",
    "mdm_vpp_licenses": "VPP licenses cannot be read",
    "mdm_vpp_users": "VPP users cannot be read",
    "mdm_vpp_user_holds": "VPP user licenses cannot be checked",
    "mdm_vpp_associate": "VPP licenses cannot be associated",
    "mdm_vpp_disassociate": "VPP licenses cannot be reclaimed",
    "mdm_vpp_lookup_metadata": "metadata cannot be looked up",
    "mdm_vpp_accounts": "VPP accounts cannot be read",
    "mdm_vpp_revoke": "the licenses of removed devices and users cannot be revoked",
    "mdm_vpp_retire_users": "VPP users cannot be retired",
}


class VppUnavailable(Unavailable):
    """The VPP plugin is not loaded: nothing VPP-licensed can be done (an event handler that
    raises it gets the event again once the host starts with the VPP plugin)."""

    def __init__(self, consequence: str = "VPP licenses cannot be used") -> None:
        super().__init__(f"the VPP plugin is not loaded (see `mdm plugins`): {consequence}")


class VppPort:
    """The VPP plugin as mobile_apps sees it, for one host."""

    def __init__(self, host: Host) -> None:
        self.host = host

    @property
    def available(self) -> bool:
        """Every request hook this plugin uses has an implementation (the VPP plugin is loaded)."""
        return all(self._implemented(name) for name in HOOKS)

    def require(self, consequence: str) -> None:
        """Raise :class:`VppUnavailable` (saying ``consequence``) unless the VPP plugin is loaded."""
        if not self.available:
            raise VppUnavailable(consequence)

    # ------------------------------------------------------------------ the mirror

    def accounts(self) -> list[Account]:
        """``mdm_vpp_accounts``: the VPP accounts (without their tokens)."""
        return self._call("mdm_vpp_accounts")

    def assets(self, account: str | None) -> list[Asset]:
        """``mdm_vpp_assets``: the mirrored assets of ``account`` (or of every account)."""
        return self._call("mdm_vpp_assets", account=account)

    def asset(self, account: str, adam_id: str, pricing_param: str) -> Asset | None:
        """One mirrored asset, or ``None`` when the account does not hold it (any more)."""
        return next((a for a in self.assets(account) if a["adamId"] == adam_id and a["pricingParam"] == pricing_param), None)

    def licenses(
        self,
        account: str | None = None,
        adam_id: str | None = None,
        serial_number: str | None = None,
        client_user_id: str | None = None,
        *,
        serial_numbers: Iterable[str] | None = None,
        client_user_ids: Iterable[str] | None = None,
    ) -> list[License]:
        """``mdm_vpp_licenses``: the mirrored licenses matching every filter given; with
        ``serial_numbers`` or ``client_user_ids``, those held by these devices or users only."""
        held = serial_numbers is not None or client_user_ids is not None
        return self._call(
            "mdm_vpp_licenses",
            account=account,
            adam_id=adam_id,
            serial_number=serial_number,
            client_user_id=client_user_id,
            serial_numbers=list(serial_numbers or ()) if held else None,
            client_user_ids=list(client_user_ids or ()) if held else None,
        )

    def users(self, account: str | None, client_user_ids: Iterable[str] | None = None) -> list[MirroredUser]:
        """``mdm_vpp_users``: the mirrored VPP users of ``account`` (or of every account), of
        ``client_user_ids`` only when given."""
        return self._call("mdm_vpp_users", account=account, client_user_ids=None if client_user_ids is None else list(client_user_ids))

    def user(self, account: str, client_user_id: str) -> MirroredUser | None:
        """The VPP user ``client_user_id`` of ``account``, or ``None``."""
        return next(iter(self.users(account, [client_user_id])), None)

    def user_holds(self, session: Session, account: str, adam_id: str, pricing_param: str, client_user_ids: Iterable[str]) -> dict[str, UserHold]:
        """``mdm_vpp_user_holds``: whether each user holds a license of the asset, and its VPP
        user's status, read in ``session`` (the caller's transaction) for the whole batch."""
        return self._call(
            "mdm_vpp_user_holds", session=session, account=account, adam_id=adam_id, pricing_param=pricing_param, client_user_ids=list(client_user_ids)
        )

    # ------------------------------------------------------------------ requests to Apple

    def associate(
        self, account: str, adam_id: str, pricing_param: str, *, serial_numbers: Iterable[str] = (), client_user_ids: Iterable[str] = (), wait: float
    ) -> LicenseResult:
        """``mdm_vpp_associate``: license one asset to devices and/or users (``TemporaryError`` when
        Apple cannot be reached, ``MdmError`` when it refuses)."""
        return self._call(
            "mdm_vpp_associate",
            account=account,
            adam_id=adam_id,
            pricing_param=pricing_param,
            serial_numbers=list(serial_numbers),
            client_user_ids=list(client_user_ids),
            wait=wait,
        )

    def disassociate(
        self, account: str, adam_id: str, pricing_param: str, *, serial_numbers: Iterable[str] = (), client_user_ids: Iterable[str] = (), wait: float
    ) -> LicenseResult:
        """``mdm_vpp_disassociate``: reclaim one asset's licenses (``MdmError`` for an irrevocable asset)."""
        return self._call(
            "mdm_vpp_disassociate",
            account=account,
            adam_id=adam_id,
            pricing_param=pricing_param,
            serial_numbers=list(serial_numbers),
            client_user_ids=list(client_user_ids),
            wait=wait,
        )

    def revoke(self, account: str, *, serial_numbers: Iterable[str] = (), client_user_ids: Iterable[str] = (), wait: float, quick: bool) -> LicenseResult:
        """``mdm_vpp_revoke``: take back every revocable license of devices and/or users (Apple's
        revoke); ``quick``: one short attempt (``TemporaryError`` when Apple cannot be reached)."""
        return self._call("mdm_vpp_revoke", account=account, serial_numbers=list(serial_numbers), client_user_ids=list(client_user_ids), wait=wait, quick=quick)

    def retire_users(self, account: str | None, client_user_ids: Iterable[str], *, wait: float) -> list[UserResult]:
        """``mdm_vpp_retire_users``: retire VPP users at Apple."""
        return self._call("mdm_vpp_retire_users", client_user_ids=list(client_user_ids), account=account, wait=wait)

    def lookup_metadata(self, account: str, adam_ids: list[str], platform: str | None = None) -> dict[str, AppMetadata]:
        """``mdm_vpp_lookup_metadata``: names, bundle ids, versions and icons of the ids Apple
        knows, for an application ``platform`` (macOS: the Mac App Store's entry)."""
        return self._call("mdm_vpp_lookup_metadata", account=account, adam_ids=adam_ids, platform=platform)

    # ------------------------------------------------------------------ plumbing

    def _implemented(self, name: str) -> bool:
        caller = self.host.hook(name)
        return caller is not None and bool(caller.get_hookimpls())

    def _call(self, name: str, **kwargs: Any) -> Any:
        caller = self.host.hook(name)
        result = caller(host=self.host, **kwargs) if caller is not None else None
        if result is None:  # firstresult: no implementation answered
            raise VppUnavailable(HOOKS[name])
        return result
