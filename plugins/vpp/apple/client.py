"""The Apps and Books v2 endpoints for one location: client config, assets, assignments,
users, license management, event status and the content-metadata lookup.

Requests go through :class:`.transport.Transport` (retries, limits, paging); responses are
checked by :mod:`.protocol`. Every URL except ``/service/config`` comes from the Service
Config ``urls``. The sToken never appears in logs, ``repr`` or error messages.
Contract: docs/apple-api.md.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any

from .errors import EventFailedError, EventTimeoutError, MalformedResponseError, VppError
from .protocol import DEFAULT_LIMITS, DEFAULT_SERVICE_URL, ServiceConfig, check_mdm_info, invitation_url, parse_response, short
from .transport import RetryPolicy, Transport

__all__ = [
    "DEFAULT_SERVICE_URL",
    "AppsBooksClient",
    "RetryPolicy",
    "ServiceConfig",
    "check_mdm_info",
    "invitation_url",
    "parse_response",
]

_ASSET_FILTERS = {
    "adam_id": "adamId",
    "product_type": "productType",
    "pricing_param": "pricingParam",
    "revocable": "revocable",
    "device_assignable": "deviceAssignable",
    "min_available_count": "minAvailableCount",
    "max_available_count": "maxAvailableCount",
    "min_assigned_count": "minAssignedCount",
    "max_assigned_count": "maxAssignedCount",
    "unlimited": "unlimited",
}
_REQUEST_USER_KEYS = ("clientUserId", "email", "managedAppleId")


def _str_list(values: Iterable[str], name: str) -> list[str]:
    """Validate a collection of non-empty strings and drop duplicates (keep order)."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings, not a single string")
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must contain non-empty strings, got {value!r}")
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


def _asset_list(assets: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """[(adamId, pricingParam)] -> Apple's asset objects, duplicates dropped."""
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for item in assets:
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) and x for x in item)):
            raise ValueError(f"assets must be (adamId, pricingParam) string pairs, got {item!r}")
        if item not in seen:
            seen.add(item)
            out.append({"adamId": item[0], "pricingParam": item[1]})
    return out


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class AppsBooksClient(Transport):
    """Apps and Books v2 client for one location (one sToken); see :class:`.transport.Transport`
    for retries, limits and the ``mdmInfo`` check."""

    # ------------------------------------------------------------ client config

    def get_client_config(self) -> dict[str, Any]:
        """``GET client/config``: uId, locationName, countryISO2ACode, mdmInfo, …"""
        return self._request("GET", self.url("clientConfig"))

    def post_client_config(
        self,
        *,
        mdm_info: dict[str, str] | None = None,
        notification_url: str | None = None,
        notification_auth_token: str | None = None,
        notification_types: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """``POST client/config`` with only the given ``ClientConfigRequest`` keys."""
        body: dict[str, Any] = {}
        if mdm_info is not None:
            missing = [k for k in ("id", "name", "metadata") if not isinstance(mdm_info.get(k), str)]
            if missing:
                raise ValueError(f"mdm_info needs string id, name and metadata (missing {missing})")
            body["mdmInfo"] = {k: mdm_info[k] for k in ("id", "name", "metadata")}
        if (notification_url is None) != (notification_auth_token is None):
            raise ValueError("notification_url and notification_auth_token must be given together")
        if notification_url is not None:
            body["notificationUrl"] = notification_url
            body["notificationAuthToken"] = notification_auth_token
        if notification_types is not None:
            body["notificationTypes"] = _str_list(notification_types, "notification_types")
        if not body:
            raise ValueError("post_client_config needs at least one setting")
        return self._request(
            "POST",
            self.url("clientConfig"),
            json_body=body,
            secrets=[notification_auth_token] if notification_auth_token else (),
        )

    def iter_assets(self, **filters: Any) -> Generator[dict[str, Any], None, None]:
        """Pages of ``GET /assets``. Filters: snake_case (``product_type``) or Apple names."""
        params: dict[str, Any] = {}
        apple_names = set(_ASSET_FILTERS.values())
        for name, value in filters.items():
            key = _ASSET_FILTERS.get(name, name if name in apple_names else None)
            if key is None:
                raise TypeError(f"unknown asset filter {name!r}")
            params[key] = value
        return self.iter_pages("getAssets", params)

    def iter_assignments(
        self,
        *,
        since_version_id: str | None = None,
        adam_id: str | None = None,
        pricing_param: str | None = None,
        serial_number: str | None = None,
        client_user_id: str | None = None,
        exclude_inactive_users: bool | None = None,
        include_user_state: bool | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Pages of ``GET /assignments`` (docs/apple-api.md, "Assignments")."""
        if serial_number is not None and client_user_id is not None:
            raise ValueError("give serial_number or client_user_id, not both")
        return self.iter_pages(
            "getAssignments",
            {
                "sinceVersionId": since_version_id,
                "adamId": adam_id,
                "pricingParam": pricing_param,
                "serialNumber": serial_number,
                "clientUserId": client_user_id,
                "excludeInactiveUsers": exclude_inactive_users,
                "includeUserState": include_user_state,
            },
        )

    def iter_users(
        self,
        *,
        since_version_id: str | None = None,
        active_only: bool | None = None,
        client_user_id: str | None = None,
        retired_only: bool | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Pages of ``GET /users`` (docs/apple-api.md, "Users")."""
        return self.iter_pages(
            "getUsers",
            {
                "sinceVersionId": since_version_id,
                "activeOnly": active_only,
                "retiredOnly": retired_only,
                "clientUserId": client_user_id,
            },
        )

    # ------------------------------------------------------------------ writes

    def _post_event(self, url: str, body: dict[str, Any]) -> str:
        data = self._request("POST", url, json_body=body)
        event_id = data.get("eventId")
        if not isinstance(event_id, str) or not event_id:
            raise MalformedResponseError("write response has no 'eventId' string")
        return event_id

    def _post_chunks(self, url: str, bodies: Iterable[dict[str, Any]]) -> list[str]:
        """POST each body; on failure the error carries ``submitted_event_ids``."""
        events: list[str] = []
        try:
            for body in bodies:
                events.append(self._post_event(url, body))
        except VppError as err:
            err.submitted_event_ids = list(events)
            raise
        return events

    def _manage_assets(
        self,
        url_key: str,
        assets: Iterable[tuple[str, str]],
        serial_numbers: Iterable[str],
        client_user_ids: Iterable[str],
    ) -> list[str]:
        asset_objs = _asset_list(assets)
        serials = _str_list(serial_numbers, "serial_numbers")
        users = _str_list(client_user_ids, "client_user_ids")
        if not asset_objs:
            raise ValueError("assets must not be empty")
        if not serials and not users:
            raise ValueError("give serial_numbers and/or client_user_ids")
        config = self.service_config()
        max_assets = config.limit("maxAssets", DEFAULT_LIMITS["maxAssets"])
        targets = (
            ("serialNumbers", serials, config.limit("maxSerialNumbers", DEFAULT_LIMITS["maxSerialNumbers"])),
            ("clientUserIds", users, config.limit("maxClientUserIds", DEFAULT_LIMITS["maxClientUserIds"])),
        )
        bodies = [
            {"assets": asset_chunk, field_name: target_chunk}
            for field_name, values, size in targets
            for target_chunk in _chunks(values, size)
            for asset_chunk in _chunks(asset_objs, max_assets)
        ]
        return self._post_chunks(self.url(url_key), bodies)

    def associate_assets(
        self,
        assets: Iterable[tuple[str, str]],
        *,
        serial_numbers: Iterable[str] = (),
        client_user_ids: Iterable[str] = (),
    ) -> list[str]:
        """``POST assets/associate``; serials and users go in separate, chunked requests."""
        return self._manage_assets("associateAssets", assets, serial_numbers, client_user_ids)

    def disassociate_assets(
        self,
        assets: Iterable[tuple[str, str]],
        *,
        serial_numbers: Iterable[str] = (),
        client_user_ids: Iterable[str] = (),
    ) -> list[str]:
        """``POST assets/disassociate``; serials and users go in separate, chunked requests."""
        return self._manage_assets("disassociateAssets", assets, serial_numbers, client_user_ids)

    def revoke_assets(
        self,
        *,
        serial_numbers: Iterable[str] = (),
        client_user_ids: Iterable[str] = (),
    ) -> list[str]:
        """``POST assets/revoke`` (all revocable assets), chunked by maxRevoke* limits."""
        serials = _str_list(serial_numbers, "serial_numbers")
        users = _str_list(client_user_ids, "client_user_ids")
        if not serials and not users:
            raise ValueError("give serial_numbers and/or client_user_ids")
        config = self.service_config()
        max_serials = config.limit("maxRevokeSerialNumbers", DEFAULT_LIMITS["maxRevokeSerialNumbers"])
        max_users = config.limit("maxRevokeClientUserIds", DEFAULT_LIMITS["maxRevokeClientUserIds"])
        bodies = [{"serialNumbers": c} for c in _chunks(serials, max_serials)]
        bodies += [{"clientUserIds": c} for c in _chunks(users, max_users)]
        return self._post_chunks(self.url("revokeAssets"), bodies)

    @staticmethod
    def _request_users(users: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        seen: set[str] = set()
        for user in users:
            if not isinstance(user, Mapping):
                raise ValueError(f"each user must be a dict, got {type(user).__name__}")
            unknown = set(user) - set(_REQUEST_USER_KEYS)
            if unknown:
                raise ValueError(f"unknown user keys {sorted(map(str, unknown))}; allowed: {_REQUEST_USER_KEYS}")
            cid = user.get("clientUserId")
            if not isinstance(cid, str) or not cid:
                raise ValueError("each user needs a non-empty 'clientUserId' string")
            if cid in seen:
                raise ValueError(f"duplicate clientUserId {cid!r}")
            seen.add(cid)
            entry = {k: v for k, v in user.items() if v is not None}
            if not all(isinstance(v, str) for v in entry.values()):
                raise ValueError(f"user {cid!r}: values must be strings")
            out.append(entry)
        if not out:
            raise ValueError("users must not be empty")
        return out

    def _manage_users(self, url_key: str, users: list[dict[str, str]]) -> list[str]:
        size = self.limit("maxUsers", DEFAULT_LIMITS["maxUsers"])
        return self._post_chunks(self.url(url_key), ({"users": c} for c in _chunks(users, size)))

    def create_users(self, users: Iterable[Mapping[str, Any]]) -> list[str]:
        """``POST users/create`` with RequestUser dicts (clientUserId, email?, managedAppleId?)."""
        return self._manage_users("createUsers", self._request_users(users))

    def update_users(self, users: Iterable[Mapping[str, Any]]) -> list[str]:
        """``POST users/update`` with RequestUser dicts, chunked by maxUsers."""
        return self._manage_users("updateUsers", self._request_users(users))

    def retire_users(self, client_user_ids: Iterable[str]) -> list[str]:
        """``POST users/retire`` for these clientUserIds, chunked by maxUsers."""
        ids = _str_list(client_user_ids, "client_user_ids")
        if not ids:
            raise ValueError("client_user_ids must not be empty")
        return self._manage_users("retireUsers", [{"clientUserId": i} for i in ids])

    # ------------------------------------------------------------------ events

    def event_status(self, event_id: str) -> dict[str, Any]:
        """``GET status?eventId=…`` (StatusResponse, docs/apple-api.md, "Managing licenses")."""
        if not isinstance(event_id, str) or not event_id:
            raise ValueError("event_id must be a non-empty string")
        data = self._request("GET", self.url("eventStatus"), params={"eventId": event_id})
        if not isinstance(data.get("eventStatus"), str):
            raise MalformedResponseError("status response has no 'eventStatus' string")
        return data

    def wait_for_event(
        self,
        event_id: str,
        *,
        timeout: float = 120,
        poll_interval: float = 0.5,
        raise_on_failure: bool = False,
        max_poll_interval: float | None = None,
        notified: Callable[[str, float], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """Poll until eventStatus is COMPLETE or FAILED and return that status.

        With ``max_poll_interval`` the interval doubles after each poll up to it (back-off:
        a slow event is not asked about four times a second). ``notified(event_id, seconds)``,
        when given, is waited on instead of sleeping between polls (at most ``seconds``, less when
        Apple's notification about the event arrives): it returns a final status learnt another
        way, or None to ask Apple for the status now.
        Raises :class:`EventTimeoutError` after ``timeout`` seconds, and
        :class:`EventFailedError` on FAILED when ``raise_on_failure``.
        """
        deadline = self._monotonic() + timeout
        interval = poll_interval
        status = self.event_status(event_id)
        while True:
            state = status["eventStatus"]
            if state == "FAILED" and raise_on_failure:
                raise EventFailedError(f"event {short(event_id)} failed", error_info=status.get("failures"))
            if state in ("COMPLETE", "FAILED"):
                return status
            remaining = deadline - self._monotonic()
            if interval > remaining:
                if max_poll_interval is None or remaining <= 0:
                    raise EventTimeoutError(f"event {short(event_id)} still {short(state)} after {timeout:g}s: check it later with event_status()")
                interval = remaining  # one last look at the deadline
            pushed = notified(event_id, interval) if notified is not None else None
            if pushed is None:
                if notified is None:
                    self._sleep(interval)
                status = self.event_status(event_id)
            else:
                status = pushed
            if max_poll_interval is not None:
                interval = min(max_poll_interval, interval * 2)

    # ---------------------------------------------------------------- metadata

    def lookup_metadata(
        self,
        adam_ids: Iterable[str],
        *,
        platform: str,
        country: str,
        language: str = "en",
        batch_size: int = 50,
    ) -> dict[str, dict[str, Any]]:
        """Content metadata by adamId via ``contentMetadataLookup`` (docs/apple-api.md,
        "Content metadata lookup").

        The sToken goes as cookie ``itvt``. Ids absent from the result are not
        accessible (or unknown).
        """
        ids = _str_list(adam_ids, "adam_ids")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        merged: dict[str, dict[str, Any]] = {}
        if not ids:
            return merged
        url = self.url("contentMetadataLookup")
        for batch in _chunks(ids, batch_size):
            params = {
                "version": "2",
                "id": ",".join(batch),
                "p": "mdm-lockup",
                "caller": "MDM",
                "platform": platform,
                "cc": country.lower(),
                "l": language,
            }
            data = self._request("GET", url, params=params, auth=False, itvt_cookie=True, check_mdm=False)
            results = data.get("results", {})
            if results is None:
                continue
            if not isinstance(results, dict):
                raise MalformedResponseError("metadata lookup 'results' is not an object")
            merged.update({str(k): v for k, v in results.items() if isinstance(v, dict)})
        return merged

    def invitation_url(self, invite_code: str) -> str:
        """The user invitation URL from the ``invitationEmail`` template."""
        return invitation_url(self.url("invitationEmail"), invite_code)
