"""Fixtures for the Apple Apps and Books simulator tests: running instances and a tiny client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from plugins.vpp.simulator import Simulator


class Client:
    """Plain `requests` calls against a simulator, with the bearer token."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sim.token}"}

    def get(self, endpoint: str, params: dict[str, Any] | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", self.auth)
        return self.session.get(f"{self.sim.base_url}/{endpoint}", params=params, headers=headers, timeout=10, **kwargs)

    def post(self, endpoint: str, body: Any, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", self.auth)
        return self.session.post(f"{self.sim.base_url}/{endpoint}", json=body, headers=headers, timeout=10, **kwargs)

    def all_pages(self, endpoint: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every page of a listing, following nextPageIndex."""
        pages = []
        page_index: int | None = 0
        while page_index is not None:
            response = self.get(endpoint, {**(params or {}), "pageIndex": page_index})
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append(page)
            page_index = page.get("nextPageIndex")
        return pages

    def wait_event(self, event_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Poll status until the event leaves PENDING."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.get("status", {"eventId": event_id}).json()
            if status["eventStatus"] != "PENDING" or time.monotonic() > deadline:
                return status
            time.sleep(0.02)

    def run(self, endpoint: str, body: Any) -> dict[str, Any]:
        """POST a management request and wait for its event status."""
        response = self.post(endpoint, body)
        assert response.status_code == 200, response.text
        return self.wait_event(response.json()["eventId"])


def make_sim(**kwargs: Any) -> Simulator:
    options: dict[str, Any] = {"seed": 7, "page_size": 10, "async_delay": 0}
    options.update(kwargs)
    return Simulator(**options)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """A read-mostly instance shared by a module (small seed, page size 10)."""
    with make_sim() as running:
        yield running


@pytest.fixture(scope="module")
def client(sim: Simulator) -> Iterator[Client]:
    api = Client(sim)
    yield api
    api.close()


@pytest.fixture
def fresh() -> Iterator[Client]:
    """A client on a private instance, for tests that write."""
    with make_sim() as running:
        api = Client(running)
        yield api
        api.close()


@pytest.fixture
def make_client() -> Iterator[Any]:
    """Factory: a client on a private instance built with custom Simulator kwargs."""
    created: list[Client] = []

    def factory(**kwargs: Any) -> Client:
        api = Client(make_sim(**kwargs).start())
        created.append(api)
        return api

    yield factory
    for api in created:
        api.close()
        api.sim.stop()


class Receiver:
    """A plain HTTP endpoint on loopback that records what is posted to it (an MDM's
    notification URL); ``status`` is what it answers (a list: one answer per request, the
    last one repeated)."""

    def __init__(self) -> None:
        self.received: list[tuple[str | None, dict[str, Any]]] = []
        self.status: list[int] = [200]
        received, answers = self.received, self.status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.headers.get("Authorization"), json.loads(body)))
                code = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/apple/apps-books/notify/acc-1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def bodies(self, notification_type: str | None = None) -> list[dict[str, Any]]:
        """The envelopes received (of one type)."""
        return [b for _, b in self.received if notification_type in (None, b["notificationType"])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An MDM's notification endpoint stand-in on a free loopback port."""
    running = Receiver()
    yield running
    running.close()
