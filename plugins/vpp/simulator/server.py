"""The HTTP server and the `Simulator` facade."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from mdm_core.files import private_folder

from .api import API_PREFIX, Api, Response, endpoint_for
from .control import handle_control
from .errors import error_body
from .faults import SHORT_CIRCUIT, Fault, Faults
from .metadata import cookie_value, publish_version
from .models import AssetKey
from .notifications import DEFAULT_ATTEMPTS, DEFAULT_CHUNK, DEFAULT_RETRY_DELAYS, Notifier
from .seed import seed_state
from .state import SimState
from .tokens import TokenState, build_stoken, default_expiry, random_secret

log = logging.getLogger(__name__)

_DEFAULT_EXTRA = {"simUnknownField": "unexpected", "simUnknownObject": {"nested": [1, 2, 3]}}


class InFlight:
    """Apple's per-organization limit: at most ``limit`` requests of the token at once; one more
    is refused with 9646 (HTTP 429). ``peak``, ``refused`` and ``total`` (requests made with the
    token) are there for tests to read."""

    def __init__(self, limit: int | None = 5) -> None:
        self.limit = limit
        self.current = self.peak = self.refused = self.total = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            self.total += 1
            if self.limit is not None and self.current >= self.limit:
                self.refused += 1
                return False
            self.current += 1
            self.peak = max(self.peak, self.current)
            return True

    def leave(self) -> None:
        with self._lock:
            self.current -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a sync's parallel pages plus background jobs on a
    # loaded machine could find the queue full and see refused connections Apple never gives.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AppleAppsAndBooksSimulator/2"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # Request lines carry paths and queries only; never headers (Authorization, Cookie).
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # ----------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _self_url(self) -> str:
        host, port = cast(tuple[str, int], self.server.server_address[:2])  # a TCP server's address
        if host in ("0.0.0.0", "::", ""):
            return f"http://{self.headers.get('Host') or f'127.0.0.1:{port}'}"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
            split = urlsplit(self.path)
            path = split.path
            sim = self.server.sim
            if path == "/_sim" or path.startswith("/_sim/"):
                self._send(handle_control(sim, method, path, body, self.client_address[0]))
                return
            with sim.state.lock:  # due events are processed on any request, faulted or not
                sim.state.process_due()
            counted = self._carries_token()
            if counted and not sim.in_flight.enter():
                self._send(Response(429, error_body(9646)))
                return
            try:
                response, truncate = self._serve(method, path, split.query, body)
            finally:
                if counted:  # done before answering: the client may send its next one at once
                    sim.in_flight.leave()
            if response is not None:
                self._send(response, truncate=truncate)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:  # pragma: no cover - a simulator bug must not kill the connection
            log.exception("simulator error on %s %s", method, urlsplit(self.path).path)
            self._send(Response(500, error_body(9603)))

    def _carries_token(self) -> bool:
        """The request is made with the sToken (bearer or ``itvt`` cookie): it counts against its limit."""
        token = self.server.sim._token
        bearer = (self.headers.get("Authorization") or "").partition(" ")[2]
        return token.matches(bearer) or token.matches(cookie_value(self.headers.get("Cookie"), "itvt"))

    def _serve(self, method: str, path: str, raw_query: str, body: bytes) -> tuple[Response | None, bool]:
        """The answer to one request (None: drop the connection) and whether to truncate it."""
        sim = self.server.sim
        endpoint = endpoint_for(path)
        if endpoint:
            with sim.state.lock:
                sim.requests[endpoint] += 1
        fired = sim.faults.select(endpoint) if endpoint else []
        by_kind: dict[str, Fault] = {}
        for fault in fired:
            by_kind.setdefault(fault.kind, fault)
        if "slow" in by_kind:
            time.sleep(float(by_kind["slow"].params.get("seconds", 1.0)))
        for kind in SHORT_CIRCUIT:
            if kind in by_kind:
                if kind == "drop":
                    self.close_connection = True
                    return None, False
                return _fault_response(by_kind[kind]), False
        query = parse_qs(raw_query, keep_blank_values=True)
        response = sim.api.handle(method, path, query, self.headers, body, self._self_url())
        if response.status == 200 and isinstance(response.payload, dict):
            _apply_payload_faults(response, by_kind, sim)
        return response, "truncated_json" in by_kind

    def _send(self, response: Response, truncate: bool = False) -> None:
        body = response.encode()
        if truncate:
            body = body[: len(body) // 2]
        self.send_response(response.status)
        headers = {"Content-Type": "application/json;charset=UTF-8", **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        # Headers and body in one write: avoids Nagle / delayed-ACK stalls on keep-alive.
        self._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]  # BaseHTTPRequestHandler's buffer, undeclared in typeshed
        if self.command != "HEAD":
            self._headers_buffer.append(body)  # type: ignore[attr-defined]  # the same buffer
        self.flush_headers()


def _fault_response(fault: Fault) -> Response:
    """The answer of a short-circuiting fault."""
    params = fault.params
    headers: dict[str, str] = {}
    if params.get("retry_after") is not None:
        headers["Retry-After"] = str(params["retry_after"])
    if fault.kind == "rate_limit":
        return Response(429, error_body(9646), headers=headers)
    if fault.kind == "server_error":
        status = int(params.get("status", 500))
        if params.get("body", "9603") == "empty":
            return Response(status, body=b"", headers=headers)
        return Response(status, error_body(9603), headers=headers)
    if fault.kind == "error_200":
        return Response(200, error_body(int(params.get("error_number", 9622))))
    # malformed_json
    return Response(200, body=str(params.get("body") or '<html>{"assets": [oops,,').encode())


def _apply_payload_faults(response: Response, by_kind: dict[str, Fault], sim: Simulator) -> None:
    payload = response.payload
    records = payload.get(response.listing, []) if response.listing else []
    if "missing_field" in by_kind:
        name = by_kind["missing_field"].params["field"]
        payload.pop(name, None)
        for record in records:
            record.pop(name, None)
    if "extra_field" in by_kind:
        extra = by_kind["extra_field"].params.get("fields") or _DEFAULT_EXTRA
        payload.update(json.loads(json.dumps(extra)))
        for record in records:
            record.update(json.loads(json.dumps(extra)))
    if "reverse_records" in by_kind:
        records.reverse()
    if "version_change" in by_kind and response.dataset:
        sim.state.touch_dataset(response.dataset)


class Simulator:
    """A local Apple Apps and Books v2 service with seeded data, faults and a control API."""

    def __init__(
        self,
        seed: object = 1,
        assets: int = 12,
        devices: int = 40,
        users: int = 25,
        assignments: int | None = None,
        page_size: int = 437,
        async_delay: float = 0.2,
        host: str = "127.0.0.1",
        port: int = 0,
        org_name: str = "Springfield Schools",
        location_name: str | None = None,
        country: str = "US",
        limits: dict[str, int] | None = None,
        token_expires_at: datetime | str | None = None,
        notification_attempts: int = DEFAULT_ATTEMPTS,
        notification_retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        notification_chunk: int = DEFAULT_CHUNK,
        max_in_flight: int | None = 5,
    ) -> None:
        self.seed = seed
        self.host = host
        self.port = port
        self.state = SimState(
            seed, page_size=page_size, async_delay=async_delay, limits=limits, org_name=org_name, location_name=location_name, country=country
        )
        seed_state(self.state, assets=assets, devices=devices, users=users, assignments=assignments)
        if isinstance(token_expires_at, str):
            token_expires_at = datetime.fromisoformat(token_expires_at.replace("Z", "+00:00"))
        if token_expires_at is not None and token_expires_at.tzinfo is None:
            token_expires_at = token_expires_at.replace(tzinfo=UTC)  # a naive expiry is UTC, as the sToken writes it
        expires = token_expires_at or default_expiry()
        secret = random_secret(random.Random(f"{seed}/token"))
        self._token = TokenState(build_stoken(secret, expires, org_name), expires)
        self.faults = Faults(self.state, self._token)
        self.api = Api(self.state, self._token)
        self.notifier = Notifier(
            self.state, self.faults, attempts=notification_attempts, retry_delays=tuple(notification_retry_delays), chunk=notification_chunk
        )
        self.state.notifier = self.notifier
        self.in_flight = InFlight(max_in_flight)  # Apple's 5 requests at once per token
        self.requests: Counter[str] = Counter()  # requests received per endpoint ("assets/associate", "lookup", ...), faulted ones too
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.root_url if self._server else "not started"
        return f"<Simulator seed={self.seed!r} {where} assets={len(self.state.assets)} assignments={len(self.state.assignments)} users={len(self.state.users)}>"

    # ------------------------------------------------------------- lifecycle
    def start(self) -> Simulator:
        """Bind (port 0 = a free port) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name=f"vpp-simulator-{self._server.server_address[1]}", daemon=True
        )
        self._thread.start()
        self.notifier.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self.notifier.stop()
        server.shutdown()
        with server.connections_lock:
            for connection in list(server.connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = cast(tuple[str, int], self._server.server_address[:2])  # a TCP server's address
        return host, port

    @property
    def root_url(self) -> str:
        """http://HOST:PORT"""
        host, port = self.address
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """http://HOST:PORT/mdm/v2"""
        return self.root_url + API_PREFIX

    # ----------------------------------------------------------------- token
    @property
    def token(self) -> str:
        """The sToken (the `.vpptoken` content and bearer value)."""
        return self._token.stoken

    @property
    def token_expiration_date(self) -> str:
        return self._token.expiration_date

    @property
    def token_status(self) -> str:
        return self._token.status

    def write_token(self, path: str | os.PathLike[str]) -> Path:
        """Write the `.vpptoken` file with mode 0600."""
        target = Path(path)
        private_folder(target.parent)  # a token's folder: its owner's only
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.token)
        os.chmod(target, 0o600)
        return target

    def expire_token(self) -> None:
        self.faults.expire_token()

    def revoke_token(self) -> None:
        self.faults.revoke_token()

    def restore_token(self) -> None:
        self.faults.restore_token()

    def claim_by_other_mdm(
        self,
        id: str = "other-mdm-id",
        name: str = "OtherMDM",  # noqa: A002
        metadata: str = "other.example.com",
    ) -> None:
        self.faults.claim_by_other_mdm(id=id, name=name, metadata=metadata)

    # ------------------------------------------------------------ out of band
    def purchase(
        self,
        adam_id: str | None = None,
        pricing_param: str = "STDQ",
        count: int = 10,
        product_type: str = "App",
        device_assignable: bool = True,
        revocable: bool = True,
        supported_platforms: Sequence[str] = ("iOS",),
        unlimited: bool = False,
        custom: bool = False,
    ) -> AssetKey:
        """Buy licenses (new asset or more of an existing one); returns (adamId, pricingParam).
        ``unlimited``: a free asset without a license limit; ``custom``: a custom (B2B) app."""
        return self.state.purchase(adam_id, pricing_param, count, product_type, device_assignable, revocable, supported_platforms, unlimited, custom)

    def fail_next_event(self, event_type: str, error_number: int | None = 9603, silent: bool = False) -> None:
        """The next ``event_type`` event (ASSOCIATE, DISASSOCIATE, REVOKE, CREATE, UPDATE, RETIRE)
        does nothing: FAILED naming every target with ``error_number``, or with ``silent``
        COMPLETE with no failures and ``numCompleted`` 0."""
        self.state.fail_next_event(event_type, error_number, silent)

    def assign_in_portal(self, adam_id: str, pricing_param: str = "STDQ", serial_number: str | None = None, client_user_id: str | None = None) -> bool:
        return self.state.assign_in_portal(adam_id, pricing_param, serial_number, client_user_id)

    def remove_in_portal(self, adam_id: str, pricing_param: str = "STDQ", serial_number: str | None = None, client_user_id: str | None = None) -> bool:
        return self.state.remove_in_portal(adam_id, pricing_param, serial_number, client_user_id)

    def retire_user(self, client_user_id: str) -> bool:
        return self.state.retire_user(client_user_id)

    def create_user(self, client_user_id: str | None = None, email: str | None = None, managed_apple_id: str | None = None) -> str:
        return self.state.create_user(client_user_id, email, managed_apple_id)

    def accept_invite(self, client_user_id: str, apple_id: str | None = None) -> bool:
        return self.state.accept_invite(client_user_id, apple_id)

    def remove_asset(self, adam_id: str, pricing_param: str = "STDQ") -> bool:
        return self.state.remove_asset(adam_id, pricing_param)

    def transfer(self, adam_id: str, pricing_param: str = "STDQ", count: int = 1) -> int:
        """Licenses moved in (``count`` > 0) or out (< 0) in Apple's portal; returns the new total."""
        return self.state.transfer(adam_id, pricing_param, count)

    refund = remove_asset

    def publish_version(self, adam_id: str, version: str | None = None) -> str:
        """A new version of an app in the App Store (default: the last number plus one); returns it."""
        with self.state.lock:
            return publish_version(self.state.assets, adam_id, version)

    def mutate_fraction(self, fraction: float, seed: object = 0) -> dict[str, int]:
        return self.state.mutate_fraction(fraction, seed)

    # ------------------------------------------------------------ inspection
    def snapshot(self) -> dict[str, Any]:
        """{"assets": {(adamId, pricingParam): ResponseAsset}, "assignments": {(adamId,
        pricingParam, kind, value)}, "users": {clientUserId: {email, status, idHash, inviteCode}}}"""
        return self.state.snapshot()

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification sent or attempted, oldest first: notificationId, notificationType,
        notification, status (queued, delivered, failed, dropped), attempts, answers, duplicate."""
        return [d.describe() for d in list(self.notifier.log)]

    def wait_notifications(self, timeout: float = 10.0) -> bool:
        """Wait until every due event has run and every notification was delivered or given up
        (retries included); True if that happened within ``timeout`` seconds."""
        return self.notifier.wait_idle(timeout)

    def versions(self) -> dict[str, str]:
        """Current versionId per dataset (assets, assignments, users)."""
        return self.state.version_ids()
