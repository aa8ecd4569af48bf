"""An over-long request line or headers (a search pasted into the URL, a cookie grown too
large) is answered with one line saying what is too long, not a connection reset."""

from __future__ import annotations

import contextlib
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
