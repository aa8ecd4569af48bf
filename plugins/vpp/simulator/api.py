"""The Apple Apps and Books v2 endpoints, independent of the HTTP transport."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from .errors import ApiError, service_error_codes
from .metadata import LOOKUP_PATH, cookie_value, lookup
from .models import Asset, AssetKey
from .state import NOTIFICATION_TYPES, SimState
from .tokens import TokenState

API_PREFIX = "/mdm/v2"
INVITATION_PATH = "/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

Query = Mapping[str, list[str]]


class Headers(Protocol):
    """Request headers: a mapping, or the HTTP server's (case-insensitive) message."""

    def get(self, name: str, /) -> Any: ...


#: endpoint (relative to /mdm/v2) -> allowed methods
ROUTES: dict[str, tuple[str, ...]] = {
    "service/config": ("GET",),
    "client/config": ("GET", "POST"),
    "assets": ("GET",),
    "assignments": ("GET",),
    "users": ("GET",),
    "assets/associate": ("POST",),
    "assets/disassociate": ("POST",),
    "assets/revoke": ("POST",),
    "users/create": ("POST",),
    "users/update": ("POST",),
    "users/retire": ("POST",),
    "status": ("GET",),
}


@dataclass
class Response:
    """What to answer: a JSON payload (or raw bytes), status, extra headers."""

    status: int = 200
    payload: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    listing: str | None = None  # key of the record list in the payload
    dataset: str | None = None  # dataset a listing belongs to

    def encode(self) -> bytes:
        if self.body is not None:
            return self.body
        return json.dumps(self.payload, separators=(",", ":")).encode()


def error_response(error: ApiError) -> Response:
    return Response(error.status, error.body())


def endpoint_for(path: str) -> str | None:
    """The endpoint name of a request path ("assets", "lookup", ...), None if unknown."""
    if path == LOOKUP_PATH:
        return "lookup"
    if path.startswith(API_PREFIX + "/"):
        rel = path[len(API_PREFIX) + 1 :].strip("/")
        if rel in ROUTES:
            return rel
    return None


# ---------------------------------------------------------------- query helpers
def _str(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values and values[0] != "" else None


def _bool(query: Query, name: str) -> bool | None:
    value = _str(query, name)
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ApiError(9602, {"parameter": name})


def _int(query: Query, name: str) -> int | None:
    value = _str(query, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(9602, {"parameter": name}) from None


def _string_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ApiError(9602, {"parameter": name})
    return value


def _duplicates(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    dups: list[Any] = []
    for value in values:
        if value in seen and value not in dups:
            dups.append(value)
        seen.add(value)
    return dups


def _is_loopback_host(host: str | None) -> bool:
    """127.x, ::1 or localhost: the one place a plain-http notification URL is accepted (tests
    and the demo run without TLS); Apple itself requires https everywhere (9712)."""
    if not host:
        return False
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _asset_info(keys: list[AssetKey]) -> list[dict[str, str]]:
    return [{"adamId": a, "pricingParam": p} for a, p in keys]


class Api:
    """Routes v2 requests to the state; `handle` never raises."""

    def __init__(self, state: SimState, token: TokenState) -> None:
        self.state = state
        self.token = token
        self._get: dict[str, Callable[[Query], Response]] = {
            "client/config": self._get_client_config,
            "assets": self._get_assets,
            "assignments": self._get_assignments,
            "users": self._get_users,
            "status": self._get_status,
        }
        self._post: dict[str, Callable[[dict[str, Any]], Response]] = {
            "client/config": self._post_client_config,
            "assets/associate": lambda b: self._manage_assets("ASSOCIATE", b),
            "assets/disassociate": lambda b: self._manage_assets("DISASSOCIATE", b),
            "assets/revoke": self._revoke,
            "users/create": lambda b: self._manage_users("CREATE", b),
            "users/update": lambda b: self._manage_users("UPDATE", b),
            "users/retire": lambda b: self._manage_users("RETIRE", b),
        }

    def handle(self, method: str, path: str, query: Query, headers: Headers, body: bytes, self_url: str) -> Response:
        """Answer one request; `self_url` is "http://host:port" of this simulator."""
        endpoint = endpoint_for(path)
        if endpoint is None:
            return Response(404, {"errorMessage": "Not Found"})
        try:
            if endpoint == "lookup":
                return self._lookup(method, query, headers)
            if method not in ROUTES[endpoint]:
                raise ApiError(9726)
            with self.state.lock:
                self.state.process_due()
                if endpoint == "service/config":
                    return Response(200, self.service_config(self_url))
                self.token.check_authorization(headers.get("Authorization"))
                if method == "GET":
                    response = self._get[endpoint](query)
                else:
                    response = self._post[endpoint](self._json_body(headers, body))
                if isinstance(response.payload, dict) and response.status == 200:
                    response.payload.update(self.common_fields())
                return response
        except ApiError as error:
            return error_response(error)

    # ------------------------------------------------------------------ common
    def common_fields(self) -> dict[str, Any]:
        """uId, tokenExpirationDate and (once set) mdmInfo."""
        fields: dict[str, Any] = {"tokenExpirationDate": self.token.expiration_date, "uId": self.state.uid}
        if self.state.mdm_info is not None:
            fields["mdmInfo"] = dict(self.state.mdm_info)
        return fields

    @staticmethod
    def _json_body(headers: Headers, body: bytes) -> dict[str, Any]:
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(9727)
        try:
            parsed = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(9602) from None
        if not isinstance(parsed, dict):
            raise ApiError(9602)
        return parsed

    def _page(self, rows: list, query: Query, dataset: str) -> tuple[list, dict[str, Any]]:
        """One page of `rows` and the page fields; 9650 when out of range."""
        page_index = _int(query, "pageIndex") or 0
        size = self.state.page_size
        total_pages = (len(rows) + size - 1) // size
        if page_index < 0 or (page_index >= total_pages and not (page_index == 0 and not rows)):
            raise ApiError(9650)
        chunk = rows[page_index * size : (page_index + 1) * size]
        meta: dict[str, Any] = {"currentPageIndex": page_index, "size": len(chunk), "totalPages": total_pages}
        if page_index + 1 < total_pages:
            meta["nextPageIndex"] = page_index + 1
        meta["versionId"] = self.state.versions.current(dataset)
        return chunk, meta

    def _since(self, query: Query, dataset: str) -> int | None:
        version_id = _str(query, "sinceVersionId")
        if version_id is None:
            return None
        counter = self.state.versions.counter_of(dataset, version_id)
        if counter is None:
            raise ApiError(9721)
        return counter

    # ---------------------------------------------------------------- configs
    def service_config(self, self_url: str) -> dict[str, Any]:
        """The ServiceConfig: error codes, limits, notification types and urls."""
        base = self_url + API_PREFIX
        return {
            "errorCodes": service_error_codes(),
            "limits": dict(self.state.limits),
            "notificationTypes": list(NOTIFICATION_TYPES),
            "urls": {
                "clientConfig": f"{base}/client/config",
                "getAssets": f"{base}/assets",
                "getAssignments": f"{base}/assignments",
                "associateAssets": f"{base}/assets/associate",
                "disassociateAssets": f"{base}/assets/disassociate",
                "revokeAssets": f"{base}/assets/revoke",
                "getUsers": f"{base}/users",
                "createUsers": f"{base}/users/create",
                "updateUsers": f"{base}/users/update",
                "retireUsers": f"{base}/users/retire",
                "eventStatus": f"{base}/status",
                "contentMetadataLookup": f"{self_url}{LOOKUP_PATH}",
                "invitationEmail": f"{self_url}{INVITATION_PATH}?inviteCode=%25inviteCode%25&mt=8",
            },
        }

    def client_config(self) -> dict[str, Any]:
        state = self.state
        config: dict[str, Any] = {
            "countryISO2ACode": state.country,
            "defaultPlatform": "volumestore",
            "locationName": state.location_name,
        }
        if state.mdm_info is not None:
            config["mdmInfo"] = dict(state.mdm_info)
        if state.notification_auth_token is not None:
            config["notificationAuthToken"] = state.notification_auth_token
        if state.notification_url is not None:
            config["notificationUrl"] = state.notification_url
        config["subscribedNotificationTypes"] = list(state.notification_types)
        config["websiteURL"] = "https://school.apple.com"
        return config

    def _get_client_config(self, query: Query) -> Response:
        return Response(200, self.client_config())

    def _post_client_config(self, body: dict[str, Any]) -> Response:
        limits = self.state.limits
        mdm_info = body.get("mdmInfo")
        if mdm_info is not None:
            if not isinstance(mdm_info, dict) or not all(isinstance(mdm_info.get(k), str) and mdm_info.get(k) for k in ("id", "name", "metadata")):
                raise ApiError(9723)
            if len(mdm_info["id"]) > limits["maxMdmIdLength"]:
                raise ApiError(9724)
            if len(mdm_info["name"]) > limits["maxMdmNameLength"]:
                raise ApiError(9725)
            if len(mdm_info["metadata"]) > limits["maxMdmMetadataLength"]:
                raise ApiError(9713)
        url, auth = body.get("notificationUrl"), body.get("notificationAuthToken")
        if (url is None) != (auth is None):
            raise ApiError(9710)
        if url is not None:
            if not isinstance(url, str) or not isinstance(auth, str):
                raise ApiError(9602)
            if len(url) > limits["maxNotificationLength"] or len(auth) > limits["maxNotificationLength"]:
                raise ApiError(9711)
            if url:
                parts = urlsplit(url)
                loopback = parts.scheme == "http" and _is_loopback_host(parts.hostname)
                if not parts.hostname or (parts.scheme != "https" and not loopback):
                    raise ApiError(9712)
        types = body.get("notificationTypes")
        if types is not None and (not isinstance(types, list) or any(t not in NOTIFICATION_TYPES for t in types)):
            raise ApiError(9602, {"parameter": "notificationTypes"})
        state = self.state
        if url and isinstance(auth, str) and not state.test_notification(url, auth):  # Apple refuses what it cannot reach
            raise ApiError(9728)
        if mdm_info is not None:
            state.mdm_info = {k: mdm_info[k] for k in ("id", "name", "metadata")}
        if url is not None:
            state.notification_url = url or None
            state.notification_auth_token = auth or None
        if types is not None:
            state.notification_types = list(dict.fromkeys(types))
        return Response(200, self.client_config())

    # --------------------------------------------------------------- listings
    def _get_assets(self, query: Query) -> Response:
        rows: list[Asset] = self.state.query_assets(
            adam_id=_str(query, "adamId"),
            product_type=_str(query, "productType"),
            pricing_param=_str(query, "pricingParam"),
            revocable=_bool(query, "revocable"),
            device_assignable=_bool(query, "deviceAssignable"),
            min_available=_int(query, "minAvailableCount"),
            max_available=_int(query, "maxAvailableCount"),
            min_assigned=_int(query, "minAssignedCount"),
            max_assigned=_int(query, "maxAssignedCount"),
            unlimited=_bool(query, "unlimited"),
        )
        chunk, meta = self._page(rows, query, "assets")
        if _bool(query, "unlimited"):  # unlimited assets apart, as UnlimitedResponseAsset
            return Response(
                200,
                {"assets": [a.to_json() for a in chunk if not a.unlimited], "unlimitedAssets": [a.to_unlimited_json() for a in chunk if a.unlimited], **meta},
                listing="assets",
                dataset="assets",
            )
        return Response(200, {"assets": [a.to_json() for a in chunk], **meta}, listing="assets", dataset="assets")

    def _get_assignments(self, query: Query) -> Response:
        rows = self.state.query_assignments(
            adam_id=_str(query, "adamId"),
            pricing_param=_str(query, "pricingParam"),
            client_user_id=_str(query, "clientUserId"),
            serial_number=_str(query, "serialNumber"),
            since=self._since(query, "assignments"),
            exclude_inactive_users=bool(_bool(query, "excludeInactiveUsers")),
        )
        include_state = bool(_bool(query, "includeUserState"))
        chunk, meta = self._page(rows, query, "assignments")
        row = self.state.assignment_row
        return Response(200, {"assignments": [row(k, include_state) for k in chunk], **meta}, listing="assignments", dataset="assignments")

    def _get_users(self, query: Query) -> Response:
        rows = self.state.query_users(
            active_only=bool(_bool(query, "activeOnly")),
            retired_only=bool(_bool(query, "retiredOnly")),
            client_user_id=_str(query, "clientUserId"),
            since=self._since(query, "users"),
        )
        chunk, meta = self._page(rows, query, "users")
        records = self.state.users.records
        return Response(200, {"users": [records[rid].to_json() for rid in chunk], **meta}, listing="users", dataset="users")

    def _get_status(self, query: Query) -> Response:
        event = self.state.events.get(_str(query, "eventId") or "")
        if event is None:
            raise ApiError(9708)
        return Response(
            200,
            {
                "eventStatus": event.status,
                "eventType": event.event_type,
                "numRequested": event.num_requested,
                "numCompleted": event.num_completed,
                "failures": [dict(f) for f in event.failures],
            },
        )

    # ------------------------------------------------------------ management
    def _event_response(self, event_type: str, payload: dict[str, Any], num_requested: int) -> Response:
        event = self.state.submit(event_type, payload, num_requested)
        return Response(200, {"eventId": event.event_id})

    def _manage_assets(self, event_type: str, body: dict[str, Any]) -> Response:
        limits = self.state.limits
        raw_assets = body.get("assets")
        if not raw_assets:
            raise ApiError(9718)
        if not isinstance(raw_assets, list):
            raise ApiError(9602, {"parameter": "assets"})
        keys: list[AssetKey] = []
        for item in raw_assets:
            if not isinstance(item, dict) or not isinstance(item.get("adamId"), (str, int)) or str(item.get("adamId")) == "":
                raise ApiError(9602, {"parameter": "assets"})
            pricing = item.get("pricingParam")
            if pricing is not None and not isinstance(pricing, str):
                raise ApiError(9602, {"parameter": "pricingParam"})
            keys.append(self.state.resolve_asset_key(str(item["adamId"]), pricing))
        serials = _string_list(body, "serialNumbers")
        cids = _string_list(body, "clientUserIds")
        if not serials and not cids:
            raise ApiError(9719)
        unique = list(dict.fromkeys(keys))
        if len(unique) > limits["maxAssets"]:
            raise ApiError(9700)
        if len(cids) > limits["maxClientUserIds"]:
            raise ApiError(9701)
        if len(serials) > limits["maxSerialNumbers"]:
            raise ApiError(9702)
        self._check_duplicates(keys, cids, serials)
        known = [self.state.assets[k] for k in unique if k in self.state.assets]
        if event_type == "DISASSOCIATE":
            irrevocable = [a.key for a in known if not a.revocable]
            if irrevocable:
                raise ApiError(9706, {"assets": _asset_info(irrevocable)})
        if serials:
            not_device = [a.key for a in known if not a.device_assignable]
            if not_device:
                raise ApiError(9707, {"assets": _asset_info(not_device)})
        payload = {"assets": unique, "serialNumbers": serials, "clientUserIds": cids}
        return self._event_response(event_type, payload, len(unique) * (len(serials) + len(cids)))

    @staticmethod
    def _check_duplicates(keys: list[AssetKey], cids: list[str], serials: list[str]) -> None:
        dup_assets = _duplicates(keys)
        if dup_assets:
            raise ApiError(9703, {"assets": _asset_info(dup_assets)})
        dup_users = _duplicates(cids)
        if dup_users:
            raise ApiError(9704, {"clientUserIds": dup_users})
        dup_serials = _duplicates(serials)
        if dup_serials:
            raise ApiError(9705, {"serialNumbers": dup_serials})

    def _revoke(self, body: dict[str, Any]) -> Response:
        limits = self.state.limits
        serials = _string_list(body, "serialNumbers")
        cids = _string_list(body, "clientUserIds")
        if not serials and not cids:
            raise ApiError(9719)
        if len(cids) > limits["maxRevokeClientUserIds"]:
            raise ApiError(9701)
        if len(serials) > limits["maxRevokeSerialNumbers"]:
            raise ApiError(9702)
        self._check_duplicates([], cids, serials)
        payload = {"serialNumbers": serials, "clientUserIds": cids}
        return self._event_response("REVOKE", payload, len(serials) + len(cids))

    def _manage_users(self, event_type: str, body: dict[str, Any]) -> Response:
        users = body.get("users")
        if not users:
            raise ApiError(9720)
        if not isinstance(users, list):
            raise ApiError(9602, {"parameter": "users"})
        if len(users) > self.state.limits["maxUsers"]:
            raise ApiError(9714)
        cleaned: list[dict[str, Any]] = []
        for user in users:
            if not isinstance(user, dict) or not isinstance(user.get("clientUserId"), str) or not user["clientUserId"]:
                raise ApiError(9602, {"parameter": "clientUserId"})
            item: dict[str, Any] = {"clientUserId": user["clientUserId"]}
            if event_type != "RETIRE":
                for name in ("email", "managedAppleId"):
                    value = user.get(name)
                    if value is None:
                        continue
                    if not isinstance(value, str) or not _EMAIL.match(value):
                        if name == "email":
                            raise ApiError(9717, {"clientUserIds": [user["clientUserId"]]})
                        raise ApiError(9602, {"parameter": name})
                    item[name] = value
            cleaned.append(item)
        dups = _duplicates([u["clientUserId"] for u in cleaned])
        if dups:
            raise ApiError(9715, {"clientUserIds": dups})
        return self._event_response(event_type, {"users": cleaned}, len(cleaned))

    # ----------------------------------------------------------------- lookup
    def _lookup(self, method: str, query: Query, headers: Headers) -> Response:
        if method != "GET":
            raise ApiError(9726)
        with self.state.lock:
            self.state.process_due()
            authenticated = self.token.matches(cookie_value(headers.get("Cookie"), "itvt"))
            if authenticated:
                try:
                    self.token.check_validity()
                except ApiError:
                    authenticated = False
            return Response(200, lookup(self.state.assets, query, authenticated, self.state.country))
