"""How requests reach Apple: HTTP, retries with back-off, limits, Service Config and paging.

:class:`Transport` sends one logical request with retries (rate-limit, server and transport
errors only, full-jitter back-off or ``Retry-After``, bounded by :class:`RetryPolicy`), keeps
Apple's limit of requests in flight, redacts the sToken from every error, caches
``service/config`` (whose ``urls`` name every other endpoint) and pages through listings with
a bounded number of pages prefetched in parallel. The endpoints themselves are in
:mod:`.client`. Contract: docs/apple-api.md ("Service config", "Paging and versionId",
"Errors and retries").
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Self
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .errors import IncompletePagesError, MalformedResponseError, RateLimitedError, TransportError, VppError, is_retryable
from .http_session import EnvOnceSession
from .limiter import TokenGate, format_wait_until
from .protocol import DEFAULT_SERVICE_URL, ServiceConfig, check_mdm_info, is_int, parse_response
from .stoken import SToken

__all__ = ["RetryPolicy", "Transport", "backoff_delay", "parse_retry_after"]

USER_AGENT = "mdm-host-vpp/0.1"
PAGE_MARGIN = 10  # pages a traversal may read beyond the first page's totalPages (at least; 10% for large listings)
_LISTINGS = {"getAssets": "assets", "getAssignments": "assignments", "getUsers": "users"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying rate-limit, server and transport errors.

    ``max_attempts`` counts every request sent (first try included);
    ``max_total_wait`` bounds the whole operation in seconds. A ``Retry-After`` that does not
    fit in what is left of it ends the operation at once ("Apple asks to wait until HH:MM"):
    calling Apple before that time only prolongs the block.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_total_wait: float = 300.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    Returns None when absent or unparseable; a date in the past gives 0.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def backoff_delay(policy: RetryPolicy, retry_index: int, rng: random.Random) -> float:
    """Exponential back-off with "equal jitter": uniform(c/2, c), c = min(max_delay, base * 2**i).

    Never close to 0 s: the shortest wait is half the base delay, so a burst of failures never
    turns into a burst of immediate retries.
    """
    ceiling = max(0.0, min(policy.max_delay, policy.base_delay * (2 ** min(retry_index, 62))))
    return rng.uniform(ceiling / 2, ceiling)


def _encode_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Drop None values; booleans become "true"/"false"."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


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
    elif isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
        reason, retryable = "invalid URL", False
    else:
        reason, retryable = f"request failed ({type(exc).__name__})", False
    err = TransportError(
        f"cannot reach the Apps and Books service at {host} ({reason}): check --service-url and the network",
        retryable=retryable,
    )
    err.url = url
    return err


class Transport:
    """Requests to one location's Apps and Books service (one sToken), with retries and limits.

    Thread-safe for concurrent calls. Retries rate-limit, server and transport
    errors per ``retry``; never retries token errors, conflicts, 9721, 9650 or
    other 4xx. With ``mdm_info_id`` set, any authenticated response whose
    ``mdmInfo.id`` differs raises :class:`MdmConflictError` (use a client
    without ``mdm_info_id`` to claim a location held by another MDM); its advice names the
    location as ``account``, this host's account of it.
    """

    def __init__(
        self,
        stoken: SToken,
        service_url: str = DEFAULT_SERVICE_URL,
        *,
        mdm_info_id: str | None = None,
        account: str | None = None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 60.0),
        retry: RetryPolicy = RetryPolicy(),
        max_parallel_pages: int = 5,
        service_config_ttl: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        gate: TokenGate | None = None,
    ) -> None:
        if max_parallel_pages < 1:
            raise ValueError("max_parallel_pages must be at least 1")
        self._stoken = stoken
        self.service_url = service_url.rstrip("/")
        self.mdm_info_id = mdm_info_id
        # this host's name for the location, in the advice of another MDM's claim and of a refused
        # token (None: a token not stored yet, being added or renewed)
        self.account = account
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
        # Shared by every client of this token in the process when the host passes one
        # (Apple's limits are per token); a client of its own otherwise.
        self.gate = gate if gate is not None else TokenGate(max_parallel_pages)
        self._wall = wall_clock
        self._pages_pool: ThreadPoolExecutor | None = None  # see _fetch_ahead
        self._pages_pool_lock = threading.Lock()

    @staticmethod
    def _new_session(parallel: int) -> requests.Session:
        session = EnvOnceSession()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, parallel * 2))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(service_url={self.service_url!r}, org={self._stoken.org_name!r}, "
            f"token_fingerprint={self._stoken.fingerprint!r}, mdm_info_id={self.mdm_info_id!r})"
        )

    def close(self) -> None:
        """Close the HTTP session if this client created it; pages still fetched ahead are dropped."""
        with self._pages_pool_lock:
            pool, self._pages_pool = self._pages_pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_session:
            self._session.close()

    def _fetch_ahead(self) -> ThreadPoolExecutor:
        """The threads that fetch pages ahead of the traversals, one set for the client's life
        (``max_parallel_pages`` of them, the most Apple takes at once): a set per traversal
        started its threads anew for every asset an incremental sync reads again, each start
        waiting for the new thread to run while the others held the interpreter's lock."""
        with self._pages_pool_lock:
            if self._pages_pool is None:
                self._pages_pool = ThreadPoolExecutor(max_workers=self.max_parallel_pages, thread_name_prefix="vpp-page")
            return self._pages_pool

    def __enter__(self) -> Self:
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
                f"refusing to send the sToken to a non-HTTPS URL on {urlsplit(url).hostname}: check the service config and --service-url",
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
            with self.gate.in_flight:  # Apple: at most 5 requests at once per token, whoever sends them
                response = self._session.request(method, url, params=query or None, data=data, headers=headers, timeout=self.timeout)
                body = response.content
        except requests.RequestException as exc:
            raise _transport_error(exc, url) from None
        log.debug("Apps and Books %s %s -> HTTP %s", method, urlsplit(url).path, response.status_code)
        result = parse_response(response.status_code, response.headers, body, url=url, account=self.account)
        if check_mdm:
            check_mdm_info(result, self.mdm_info_id, self.account or "NAME")
        return result

    @staticmethod
    def _redact(err: VppError, secrets: list[str]) -> VppError:
        err.message = _scrub(err.message, secrets)
        err.error_info = _scrub(err.error_info, secrets)
        err.args = (err.message,)
        return err

    def _wait_for_gate(self) -> float:
        """Wait out a back-off Apple asked for (recorded by any client of this token); returns
        the seconds slept. One that does not fit in the retry budget ends the request at once."""
        wait = self.gate.remaining(self._wall())
        if wait <= 0:
            return 0.0
        if wait > self.retry.max_total_wait:
            raise self._wait_until_error(self.gate.until(), None)
        log.info("Apps and Books: Apple asked this token to wait; waiting %.1fs", wait)
        self._sleep(wait)
        return wait

    @staticmethod
    def _wait_until_error(until: float, cause: VppError | None) -> RateLimitedError:
        err = RateLimitedError(
            f"Apple asks to wait until {format_wait_until(until)} before calling it again with this token: try again then (nothing was done)",
            error_number=cause.error_number if cause else None,
            http_status=cause.http_status if cause else None,
        )
        err.url = cause.url if cause else None
        err.retry_at = until
        return err

    def _with_retries(self, method: str, url: str, send: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        policy = self.retry
        start = self._monotonic()
        slept = self._wait_for_gate()
        attempt = 1
        while True:
            try:
                return send()
            except VppError as err:
                if not is_retryable(err):
                    raise
                delay = self._retry_delay(err, attempt - 1)
                asked = parse_retry_after(err.retry_after) is not None
                if asked or isinstance(err, RateLimitedError):  # Apple's back-off: for every client of the token
                    until = self.gate.note(delay, self._wall())
                spent = max(self._monotonic() - start, slept)
                if asked and spent + delay > policy.max_total_wait:
                    raise self._wait_until_error(until, err) from None
                if attempt >= policy.max_attempts or spent + delay > policy.max_total_wait:
                    raise
                log.info(  # the final failure is what the user sees; retries show with -v
                    "Apps and Books %s %s failed (%s: %s); retry %d of %d in %.2fs",
                    method,
                    urlsplit(url).path,
                    type(err).__name__,
                    err,
                    attempt,
                    policy.max_attempts - 1,
                    delay,
                )
                self._sleep(delay)
                slept += delay
                attempt += 1

    def _retry_delay(self, err: VppError, retry_index: int) -> float:
        after = parse_retry_after(err.retry_after)
        if after is not None:
            return max(after, self.retry.base_delay / 2)  # "Retry-After: 0" is no licence to hammer: as back-off's floor
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

    # ------------------------------------------------------------------ paging

    def _fetch_page(self, url: str, params: Mapping[str, Any], index: int) -> dict[str, Any]:
        return self._request("GET", url, params={**params, "pageIndex": index})

    @staticmethod
    def _page_links(page: Mapping[str, Any], index: int, what: str) -> tuple[int | None, int]:
        """Check page ``index`` of ``what``; return (nextPageIndex or None, totalPages).

        ``currentPageIndex`` must be ``index`` and ``totalPages`` a count; a page with
        ``nextPageIndex`` must offer the next page, one without must be the last one
        ``totalPages`` announces (else Apple's listing ended early: nothing may be taken as
        removed on the strength of it).
        """
        current = page.get("currentPageIndex")
        if not is_int(current) or current != index:
            raise MalformedResponseError(f"{what}: asked for page {index} but got currentPageIndex {current!r}")
        total = page.get("totalPages")
        if not is_int(total) or total < 0:
            raise MalformedResponseError(f"{what}: page {index} has no valid totalPages ({total!r})")
        nxt = page.get("nextPageIndex")
        if nxt is not None:
            if not is_int(nxt) or nxt != index + 1:
                raise MalformedResponseError(f"{what}: page {index} has nextPageIndex {nxt!r}, expected {index + 1}")
            return nxt, total  # (beyond totalPages: the data grew; iter_pages bounds how far)
        if index + 1 < total:
            raise IncompletePagesError(
                f"{what}: page {index} is the last one Apple sent (no nextPageIndex) but totalPages is {total}: "
                "the listing ended early, so nothing is taken from it; the next sync tries again"
            )
        return None, total

    def iter_pages(self, url_key: str, params: Mapping[str, Any] | None = None) -> Generator[dict[str, Any], None, None]:
        """Yield every page's response dict in page order, checked for completeness.

        Follows ``nextPageIndex`` (always the next index: no page is read twice) until it is
        absent, at which point the last page must be the last of ``totalPages``. A traversal
        reads at most the first page's ``totalPages`` plus a margin (the data may grow while
        paging): a server that always offers one more page cannot keep it going forever.
        Up to ``max_parallel_pages`` pages are fetched ahead, within ``totalPages``.
        """
        url = self.url(url_key)
        what = _LISTINGS.get(url_key, url_key)
        base = _encode_params(params)
        first = self._fetch_page(url, base, 0)
        next_index, announced = self._page_links(first, 0, what)
        hint, limit = announced, announced + max(PAGE_MARGIN, announced // 10)
        yield first
        if next_index is None:
            return
        del first
        window = self.max_parallel_pages
        pending: dict[int, Future[dict[str, Any]]] = {}
        executor = self._fetch_ahead()
        try:
            while next_index is not None:
                if next_index >= limit:
                    raise MalformedResponseError(
                        f"{what}: Apple offers page {next_index} but announced {announced} pages at the start: "
                        "stopped (the listing does not end); the next sync tries again"
                    )
                last = max(next_index, min(hint - 1, next_index + window - 1, limit - 1))
                for index in range(next_index, last + 1):
                    if index not in pending:
                        pending[index] = executor.submit(self._fetch_page, url, base, index)
                page = pending.pop(next_index).result()
                current = next_index
                next_index, hint = self._page_links(page, current, what)
                yield page
                del page
        finally:
            # stopped early (an error, an interruption, the consumer closed us): the pages not
            # requested yet are not; requests still in flight are not waited for, their answers dropped
            for future in pending.values():
                future.cancel()
            pending.clear()
