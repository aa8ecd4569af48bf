"""The client honours the environment's proxy settings (``HTTP_PROXY``, ``NO_PROXY``), read once
per client (:mod:`plugins.vpp.apple.http_session`): through a real forwarding proxy on loopback."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from plugins.vpp.apple.client import AppsBooksClient
from plugins.vpp.apple.stoken import SToken


class _Forwarder(http.server.BaseHTTPRequestHandler):
    """A plain HTTP proxy: forwards ``GET http://host/path`` and notes the URL."""

    seen: list[str]

    def do_GET(self) -> None:
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        request = urllib.request.Request(self.path, headers={k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as upstream:
            body = upstream.read()
            self.send_response(upstream.status)
            self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[Any]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forwarder)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _pages_of_assets(simulator: Any) -> int:
    with AppsBooksClient(SToken.parse(simulator.token), simulator.base_url) as client:
        return sum(1 for _ in client.iter_assets())


def test_every_request_goes_through_the_proxy_of_the_environment_and_no_proxy_bypasses_it(simulator: Any, proxy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    assert _pages_of_assets(simulator) == 2  # 10 assets, 7 a page
    paths = [p.split("?")[0] for p in proxy.seen]
    assert paths.count(f"{simulator.base_url}/assets") >= 2, proxy.seen  # every page (7 a page), not the first request alone
    assert f"{simulator.base_url}/service/config" in paths

    proxy.seen.clear()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a new client reads the environment again
    assert _pages_of_assets(simulator) == 2  # 10 assets, 7 a page
    assert proxy.seen == []
