"""Client for Apple's Apps and Books for Organizations (VPP) v2 web service.

Contract: ``/work/shared/docs/apple-apps-and-books-api.md`` (§1 auth, §2-3 v2
endpoints, §5.1 metadata lookup). Every URL except ``/service/config`` comes
from the Service Config ``urls``. The sToken never appears in logs, ``repr``
or error messages.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from .errors import (
    EventFailedError,
    EventTimeoutError,
    MalformedResponseError,
    MdmConflictError,
    TransportError,
    VppError,
    error_for,
    is_retryable,
    one_line,
)
from .retry import RetryPolicy, backoff_delay, parse_retry_after
from .stoken import SToken

__all__ = [
    "DEFAULT_SERVICE_URL",
    "AppsBooksClient",
    "RetryPolicy",
    "ServiceConfig",
    "check_mdm_info",
    "invitation_url",
    "parse_response",
]

DEFAULT_SERVICE_URL = "https://vpp.itunes.apple.com/mdm/v2"
USER_AGENT = "mdm-host-vpp/0.1"

log = logging.getLogger(__name__)

# Fallbacks when Service Config omits a limit (Apple's example values, doc §3.1).
DEFAULT_LIMITS: dict[str, int] = {
    "maxAssets": 25,
    "maxUsers": 100,
    "maxClientUserIds": 1000,
    "maxSerialNumbers": 1000,
    "maxRevokeClientUserIds": 100,
    "maxRevokeSerialNumbers": 100,
}

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
_INT_RE = re.compile(r"-?[0-9]{1,18}")
_REQUEST_USER_KEYS = ("clientUserId", "email", "managedAppleId")


# --------------------------------------------------------------------------
# Pure helpers (no I/O): response parsing and validation
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceConfig:
    """Parsed ``GET /service/config`` (doc §3.1)."""

    urls: dict[str, str]
    limits: dict[str, int] = field(default_factory=dict)
    error_codes: dict[int, str] = field(default_factory=dict)
    notification_types: list[str] = field(default_factory=list)

    def limit(self, name: str, default: int) -> int:
        """A positive integer limit, or ``default`` when absent or unusable."""
        value = self.limits.get(name)
        return value if isinstance(value, int) and value > 0 else default

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> "ServiceConfig":
        """Build from the decoded body; ``urls`` is required, the rest lenient."""
        urls = data.get("urls")
        if not isinstance(urls, dict):
            raise MalformedResponseError("service config response has no 'urls' object")
        limits = data.get("limits")
        codes = data.get("errorCodes")
        types = data.get("notificationTypes")
        return cls(
            urls={str(k): v for k, v in urls.items() if isinstance(v, str) and v},
            limits={
                str(k): v
                for k, v in (limits.items() if isinstance(limits, dict) else ())
                if _is_int(v)
            },
            error_codes={
                c["errorNumber"]: c["errorMessage"]
                for c in (codes if isinstance(codes, list) else ())
                if isinstance(c, dict)
                and _is_int(c.get("errorNumber"))
                and isinstance(c.get("errorMessage"), str)
            },
            notification_types=[t for t in (types if isinstance(types, list) else ()) if isinstance(t, str)],
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _header(headers: Any, name: str) -> str | None:
    """Case-insensitive header lookup on any mapping (or None)."""
    if not headers:
        return None
    try:
        items = headers.items()
    except AttributeError:
        return None
    lowered = name.lower()
    for key, value in items:
        if isinstance(key, str) and key.lower() == lowered:
            return value if isinstance(value, str) else None
    return None


def _load_json(body: bytes | None) -> tuple[Any, str | None]:
    """(value, problem): problem is None on success, else a short description."""
    if body is None or not body.strip():
        return None, "an empty body"
    try:
        return json.loads(body), None
    except (ValueError, RecursionError, TypeError):
        return None, "a body that is not JSON"


def _error_number(data: Mapping[str, Any]) -> tuple[int | None, bool]:
    """(errorNumber, valid). A missing/null number is (None, True)."""
    raw = data.get("errorNumber")
    if raw is None:
        return None, True
    if _is_int(raw):
        return raw, True
    if isinstance(raw, float) and raw.is_integer():
        return int(raw), True
    if isinstance(raw, str) and _INT_RE.fullmatch(raw.strip()):
        return int(raw.strip()), True
    return None, False


def parse_response(status: int, headers: Any, body: bytes | None, *, url: str) -> dict[str, Any]:
    """Decode an Apps and Books response or raise the matching :class:`VppError`.

    A non-zero ``errorNumber`` in the body wins over the HTTP status (Apple
    sends some errors with HTTP 200). Otherwise HTTP >= 400 maps by status,
    even when the body is empty or not JSON (e.g. a proxy's HTML 502 page is a
    retryable ``ServerError``). A 1xx-3xx answer must be a JSON object. Raises
    only ``VppError`` subclasses, whatever the input.
    """
    retry_after = _header(headers, "Retry-After")
    data, problem = _load_json(body)
    obj = data if isinstance(data, dict) else None
    err: VppError | None = None
    if obj is not None:
        number, valid = _error_number(obj)
        message = obj.get("errorMessage")
        message = message if isinstance(message, str) else None
        info = obj.get("errorInfo")
        if number:
            err = error_for(number, status, message, info)
        elif status >= 400:
            err = error_for(None, status, message, info)
        elif not valid:
            err = MalformedResponseError("response has an 'errorNumber' that is not a number",
                                         http_status=status)
    elif status >= 400:
        what = problem or "a JSON body that is not an object"
        err = error_for(None, status, f"HTTP {status} with {what}", None)
    elif problem:
        err = MalformedResponseError(f"Apps and Books service answered with {problem}", http_status=status)
    else:
        err = MalformedResponseError(
            f"Apps and Books service answered with JSON {type(data).__name__}, not an object",
            http_status=status,
        )
    if err is not None:
        err.url = url
        err.retry_after = retry_after
        raise err
    assert obj is not None
    return obj


def _short(value: object, limit: int = 100) -> str:
    text = one_line(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_mdm_info(data: Mapping[str, Any], expected_id: str | None) -> None:
    """Raise :class:`MdmConflictError` if ``mdmInfo.id`` names another MDM.

    A response without ``mdmInfo`` (or without an id) is fine: nobody claims
    the location. Does nothing when ``expected_id`` is None.
    """
    if expected_id is None or "mdmInfo" not in data:
        return
    info = data.get("mdmInfo")
    if info is None:
        return
    if not isinstance(info, dict):
        raise MalformedResponseError("response has an 'mdmInfo' that is not an object")
    other_id = info.get("id")
    if other_id is None or other_id == "" or str(other_id) == expected_id:
        return
    name, metadata = info.get("name"), info.get("metadata")
    raise MdmConflictError(
        f"location is managed by another MDM {_short(name)!r} "
        f"(id {_short(other_id)!r}, metadata {_short(metadata)!r}), not by this server "
        f"(id {_short(expected_id)!r}): stop the other MDM using this token, then renew it here with "
        "`mdm vpp account set NAME --token-file FILE` (or add it again with --take-over)",
        other_id=str(other_id),
        other_name=name if isinstance(name, str) else None,
        other_metadata=metadata if isinstance(metadata, str) else None,
    )


def _encode_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Drop None values; booleans become "true"/"false"."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


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


def _scrub(value: Any, secrets: list[str]) -> Any:
    """Replace every secret in nested strings with ``[redacted]``."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "[redacted]")
        return value
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def _transport_error(exc: requests.RequestException, url: str) -> TransportError:
    """Describe a requests failure without echoing headers or the query."""
    host = urlsplit(url).hostname or url
    text = str(exc).lower()
    retryable = True
    if isinstance(exc, requests.exceptions.SSLError):
        reason, retryable = "TLS error", False
    elif isinstance(exc, requests.Timeout):
        reason = "timed out"
    elif isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        reason = "connection broken during the response"
    elif isinstance(exc, requests.ConnectionError):
        if any(s in text for s in ("name or service", "nodename", "getaddrinfo", "resolve", "name resolution")):
            reason = "DNS lookup failed"
        elif "refused" in text:
            reason = "connection refused"
        elif "reset" in text:
            reason = "connection reset"
        else:
            reason = "connection failed"
    elif isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                          requests.exceptions.InvalidSchema)):
        reason, retryable = "invalid URL", False
    else:
        reason, retryable = f"request failed ({type(exc).__name__})", False
    err = TransportError(
        f"cannot reach the Apps and Books service at {host} ({reason}): "
        "check --service-url and the network",
        retryable=retryable,
    )
    err.url = url
    return err


def invitation_url(template: str, invite_code: str) -> str:
    """A user's invitation URL: Service Config's ``invitationEmail`` template with its code."""
    if not isinstance(invite_code, str) or not invite_code:
        raise ValueError("invite_code must be a non-empty string")
    code = quote(invite_code, safe="")
    return template.replace("%25inviteCode%25", code).replace("%inviteCode%", code)


# --------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------


class AppsBooksClient:
    """Apps and Books v2 client for one location (one sToken).

    Thread-safe for concurrent calls. Retries rate-limit, server and transport
    errors per ``retry``; never retries token errors, conflicts, 9721, 9650 or
    other 4xx. With ``mdm_info_id`` set, any authenticated response whose
    ``mdmInfo.id`` differs raises :class:`MdmConflictError` (use a client
    without ``mdm_info_id`` to claim a location held by another MDM).
    """

    def __init__(
        self,
        stoken: SToken,
        service_url: str = DEFAULT_SERVICE_URL,
        *,
        mdm_info_id: str | None = None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 60.0),
        retry: RetryPolicy = RetryPolicy(),
        max_parallel_pages: int = 5,
        service_config_ttl: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if max_parallel_pages < 1:
            raise ValueError("max_parallel_pages must be at least 1")
        self._stoken = stoken
        self.service_url = service_url.rstrip("/")
        self.mdm_info_id = mdm_info_id
        self.timeout = timeout
        self.retry = retry
        self.max_parallel_pages = max_parallel_pages
        self.service_config_ttl = service_config_ttl
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._owns_session = session is None
        self._session = session if session is not None else self._new_session(max_parallel_pages)
        self._config: ServiceConfig | None = None
        self._config_at = 0.0
        self._config_lock = threading.Lock()
        self._in_flight = threading.BoundedSemaphore(max_parallel_pages)

    @staticmethod
    def _new_session(parallel: int) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, parallel * 2))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def __repr__(self) -> str:
        return (
            f"AppsBooksClient(service_url={self.service_url!r}, org={self._stoken.org_name!r}, "
            f"token_fingerprint={self._stoken.fingerprint!r}, mdm_info_id={self.mdm_info_id!r})"
        )

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> "AppsBooksClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- transport

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        auth: bool = True,
        itvt_cookie: bool = False,
        check_mdm: bool = True,
        secrets: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Send one logical request (with retries) and return the decoded body."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if auth or itvt_cookie:
            self._check_secure(url)
        if auth:
            headers["Authorization"] = f"Bearer {self._stoken.bearer()}"
        if itvt_cookie:
            headers["Cookie"] = f"itvt={self._stoken.bearer()}"
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        query = _encode_params(params)
        all_secrets = [*self._stoken._secret_values(), *[s for s in secrets if s]]

        def send() -> dict[str, Any]:
            try:
                return self._send_once(method, url, query, data, headers, check_mdm and auth)
            except VppError as err:
                raise self._redact(err, all_secrets) from None

        return self._with_retries(method, url, send)

    def _check_secure(self, url: str) -> None:
        if self.service_url.startswith("https://") and not url.startswith("https://"):
            raise TransportError(
                f"refusing to send the sToken to a non-HTTPS URL on {urlsplit(url).hostname}: "
                "check the service config and --service-url",
                retryable=False,
            )

    def _send_once(
        self,
        method: str,
        url: str,
        query: dict[str, str],
        data: bytes | None,
        headers: dict[str, str],
        check_mdm: bool,
    ) -> dict[str, Any]:
        try:
            with self._in_flight:  # Apple: at most 5 requests at once, whoever sends them
                response = self._session.request(
                    method, url, params=query or None, data=data, headers=headers, timeout=self.timeout
                )
                body = response.content
        except requests.RequestException as exc:
            raise _transport_error(exc, url) from None
        log.debug("Apps and Books %s %s -> HTTP %s", method, urlsplit(url).path, response.status_code)
        result = parse_response(response.status_code, response.headers, body, url=url)
        if check_mdm:
            check_mdm_info(result, self.mdm_info_id)
        return result

    @staticmethod
    def _redact(err: VppError, secrets: list[str]) -> VppError:
        err.message = _scrub(err.message, secrets)
        err.error_info = _scrub(err.error_info, secrets)
        err.args = (err.message,)
        return err

    def _with_retries(self, method: str, url: str, send: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        policy = self.retry
        start = self._monotonic()
        slept = 0.0
        attempt = 1
        while True:
            try:
                return send()
            except VppError as err:
                if not is_retryable(err) or attempt >= policy.max_attempts:
                    raise
                delay = self._retry_delay(err, attempt - 1)
                spent = max(self._monotonic() - start, slept)
                if spent + delay > policy.max_total_wait:
                    raise
                log.info(  # the final failure is what the user sees; retries show with -v
                    "Apps and Books %s %s failed (%s: %s); retry %d of %d in %.2fs",
                    method, urlsplit(url).path, type(err).__name__, err,
                    attempt, policy.max_attempts - 1, delay,
                )
                self._sleep(delay)
                slept += delay
                attempt += 1

    def _retry_delay(self, err: VppError, retry_index: int) -> float:
        after = parse_retry_after(err.retry_after)
        if after is not None:
            return min(after, self.retry.max_retry_after)
        with self._rng_lock:
            return backoff_delay(self.retry, retry_index, self._rng)

    # ---------------------------------------------------------- service config

    def service_config(self) -> ServiceConfig:
        """``GET {service_url}/service/config`` (no auth), cached ``service_config_ttl`` s."""
        with self._config_lock:
            now = self._monotonic()
            if self._config is not None and now - self._config_at < self.service_config_ttl:
                return self._config
            data = self._request("GET", f"{self.service_url}/service/config", auth=False, check_mdm=False)
            self._config = ServiceConfig.from_response(data)
            self._config_at = now
            return self._config

    def url(self, key: str) -> str:
        """The URL named ``key`` in Service Config ``urls`` (e.g. ``getAssets``)."""
        url = self.service_config().urls.get(key)
        if not url:
            raise MalformedResponseError(f"service config has no URL for {key!r}")
        return url

    def limit(self, name: str, default: int) -> int:
        """A Service Config limit (e.g. ``maxSerialNumbers``), or ``default``."""
        return self.service_config().limit(name, default)

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
            "POST", self.url("clientConfig"), json_body=body,
            secrets=[notification_auth_token] if notification_auth_token else (),
        )

    # ------------------------------------------------------------------ paging

    def _fetch_page(self, url: str, params: Mapping[str, Any], index: int) -> dict[str, Any]:
        return self._request("GET", url, params={**params, "pageIndex": index})

    @staticmethod
    def _page_links(page: Mapping[str, Any], index: int) -> tuple[int | None, int | None]:
        """Validate page ``index``; return (nextPageIndex or None, totalPages hint)."""
        current = page.get("currentPageIndex", index)
        if not _is_int(current) or current != index:
            raise MalformedResponseError(f"asked for page {index} but got currentPageIndex {current!r}")
        nxt = page.get("nextPageIndex")
        if nxt is not None and (not _is_int(nxt) or nxt != index + 1):
            raise MalformedResponseError(f"page {index} has nextPageIndex {nxt!r}, expected {index + 1}")
        total = page.get("totalPages")
        return nxt, total if _is_int(total) and total >= 0 else None

    def iter_pages(self, url_key: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Yield every page's response dict in page order.

        Follows ``nextPageIndex`` until it is absent; ``totalPages`` is only a
        prefetch hint (at most ``max_parallel_pages`` requests in flight).
        """
        url = self.url(url_key)
        base = _encode_params(params)
        first = self._fetch_page(url, base, 0)
        next_index, hint = self._page_links(first, 0)
        yield first
        if next_index is None:
            return
        del first
        window = self.max_parallel_pages
        pending: dict[int, Future[dict[str, Any]]] = {}
        executor = ThreadPoolExecutor(max_workers=window, thread_name_prefix="vpp-page")
        try:
            while next_index is not None:
                last = max(next_index, min((hint or 0) - 1, next_index + window - 1))
                for index in range(next_index, last + 1):
                    if index not in pending:
                        pending[index] = executor.submit(self._fetch_page, url, base, index)
                page = pending.pop(next_index).result()
                current = next_index
                next_index, new_hint = self._page_links(page, current)
                hint = new_hint if new_hint is not None else hint
                yield page
                del page
        finally:
            for future in pending.values():
                future.cancel()
            pending.clear()
            executor.shutdown(wait=True, cancel_futures=True)

    def iter_assets(self, **filters: Any) -> Iterator[dict[str, Any]]:
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
    ) -> Iterator[dict[str, Any]]:
        """Pages of ``GET /assignments`` (doc §3.4)."""
        if serial_number is not None and client_user_id is not None:
            raise ValueError("give serial_number or client_user_id, not both")
        return self.iter_pages("getAssignments", {
            "sinceVersionId": since_version_id,
            "adamId": adam_id,
            "pricingParam": pricing_param,
            "serialNumber": serial_number,
            "clientUserId": client_user_id,
            "excludeInactiveUsers": exclude_inactive_users,
            "includeUserState": include_user_state,
        })

    def iter_users(
        self,
        *,
        since_version_id: str | None = None,
        active_only: bool | None = None,
        client_user_id: str | None = None,
        retired_only: bool | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Pages of ``GET /users`` (doc §3.7)."""
        return self.iter_pages("getUsers", {
            "sinceVersionId": since_version_id,
            "activeOnly": active_only,
            "retiredOnly": retired_only,
            "clientUserId": client_user_id,
        })

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
        self, url_key: str, assets: Iterable[tuple[str, str]],
        serial_numbers: Iterable[str], client_user_ids: Iterable[str],
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
        self, assets: Iterable[tuple[str, str]], *,
        serial_numbers: Iterable[str] = (), client_user_ids: Iterable[str] = (),
    ) -> list[str]:
        """``POST assets/associate``; serials and users go in separate, chunked requests."""
        return self._manage_assets("associateAssets", assets, serial_numbers, client_user_ids)

    def disassociate_assets(
        self, assets: Iterable[tuple[str, str]], *,
        serial_numbers: Iterable[str] = (), client_user_ids: Iterable[str] = (),
    ) -> list[str]:
        """``POST assets/disassociate``; serials and users go in separate, chunked requests."""
        return self._manage_assets("disassociateAssets", assets, serial_numbers, client_user_ids)

    def revoke_assets(
        self, *, serial_numbers: Iterable[str] = (), client_user_ids: Iterable[str] = (),
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
        """``GET status?eventId=…`` (StatusResponse, doc §3.6)."""
        if not isinstance(event_id, str) or not event_id:
            raise ValueError("event_id must be a non-empty string")
        data = self._request("GET", self.url("eventStatus"), params={"eventId": event_id})
        if not isinstance(data.get("eventStatus"), str):
            raise MalformedResponseError("status response has no 'eventStatus' string")
        return data

    def wait_for_event(
        self, event_id: str, *, timeout: float = 120, poll_interval: float = 0.5,
        raise_on_failure: bool = False,
    ) -> dict[str, Any]:
        """Poll until eventStatus is COMPLETE or FAILED and return that status.

        Raises :class:`EventTimeoutError` after ``timeout`` seconds, and
        :class:`EventFailedError` on FAILED when ``raise_on_failure``.
        """
        deadline = self._monotonic() + timeout
        while True:
            status = self.event_status(event_id)
            state = status["eventStatus"]
            if state == "FAILED" and raise_on_failure:
                raise EventFailedError(f"event {_short(event_id)} failed", error_info=status.get("failures"))
            if state in ("COMPLETE", "FAILED"):
                return status
            if self._monotonic() + poll_interval > deadline:
                raise EventTimeoutError(
                    f"event {_short(event_id)} still {_short(state)} after {timeout:g}s: "
                    "check it later with event_status()"
                )
            self._sleep(poll_interval)

    # ---------------------------------------------------------------- metadata

    def lookup_metadata(
        self, adam_ids: Iterable[str], *, platform: str, country: str,
        language: str = "en", batch_size: int = 50,
    ) -> dict[str, dict[str, Any]]:
        """Content metadata by adamId via ``contentMetadataLookup`` (doc §5.1).

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
                "version": "2", "id": ",".join(batch), "p": "mdm-lockup", "caller": "MDM",
                "platform": platform, "cc": country.lower(), "l": language,
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
