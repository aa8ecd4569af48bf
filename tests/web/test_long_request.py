"""An over-long request line or headers (a search pasted into the URL, a cookie grown too
large) is answered with one line saying what is too long, not a connection reset."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable

import pytest

from mdm_core.host import Host
from mdm_core.web.server import WebServer


def _ask(url: str, request: bytes) -> bytes:
    """Send ``request`` whole to the server at ``url`` (as a browser does) and read its answer."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with contextlib.suppress(ConnectionError):  # the server stopped reading: its answer may be there all the same
            sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionError as exc:
            pytest.fail(f"connection reset after {len(answer)} bytes ({exc}): {answer[:200]!r}")
    return answer


@pytest.mark.parametrize("what", ["url", "header"])
def test_an_over_long_request_line_or_header_is_answered_in_one_line(make_host: Callable[..., Host], what: str) -> None:
    server = WebServer(make_host(), "127.0.0.1:0").start()
    try:
        long = "a" * 120_000
        path, header = (f"/devices?q={long}", "") if what == "url" else ("/devices", f"Cookie: x={long}\r\n")
        answer = _ask(server.url, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n".encode())
        head, _, body = answer.partition(b"\r\n\r\n")
        status = {"url": b"HTTP/1.1 414 ", "header": b"HTTP/1.1 431 "}[what]
        assert head.startswith(status), answer[:300]
        said = body.decode().strip()
        assert "\n" not in said and "too long" in said, said
        assert _ask(server.url, b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200 ")  # still serving
    finally:
        server.stop()


@pytest.mark.parametrize("form", ["", "http://127.0.0.1"])  # the request target's origin form, and its absolute form (was: a text 414)
@pytest.mark.parametrize("what", ["url", "header"])
def test_the_api_answers_an_over_long_request_in_its_json_error_shape(make_host: Callable[..., Host], what: str, form: str) -> None:
    """An API client reads ``{"error": ...}`` there as for the API's other refusals, not a page's text line."""
    server = WebServer(make_host(), "127.0.0.1:0").start()
    try:
        long = "a" * 120_000
        path, header = (f"{form}/api/v1/devices?q={long}", "") if what == "url" else (f"{form}/api/v1/devices", f"Authorization: Bearer {long}\r\n")
        answer = _ask(server.url, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n".encode())
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith({"url": b"HTTP/1.1 414 ", "header": b"HTTP/1.1 431 "}[what]), answer[:300]
        assert b"content-type: application/json" in head.lower(), head
        said = json.loads(body)
        assert list(said) == ["error"] and "too long" in said["error"], said
    finally:
        server.stop()
