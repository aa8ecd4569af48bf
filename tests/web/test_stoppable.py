"""The console's server (``mdm run``'s, the notification tests'): stopping it takes as long as
its requests, not until uvicorn next looks at its exit flag."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from mdm_core.host import Host
from mdm_core.web.server import WebServer


def test_a_stopped_console_ends_at_once_not_at_its_next_tick(make_host: Callable[..., Host]) -> None:
    server = WebServer(make_host(), "127.0.0.1:0")
    server.server.TICK = 60.0  # a loop that was not woken would take a minute to see the stop
    server.start()
    try:
        assert requests.get(server.url + "login", timeout=10).status_code == 200  # serving
    finally:
        started = time.monotonic()
        server.stop()
    assert not server.thread.is_alive() and time.monotonic() - started < 10
    assert server.server.started  # it had started, so uvicorn's shutdown ran after the loop
