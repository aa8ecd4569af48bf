"""Fixtures for the Apple Apps and Books simulator tests: running instances and a tiny client."""

from __future__ import annotations

import time
from typing import Any, Iterator

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
        return self.session.get(f"{self.sim.base_url}/{endpoint}", params=params, headers=headers,
                                timeout=10, **kwargs)

    def post(self, endpoint: str, body: Any, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", self.auth)
        return self.session.post(f"{self.sim.base_url}/{endpoint}", json=body, headers=headers,
                                 timeout=10, **kwargs)

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
    options = {"seed": 7, "page_size": 10, "async_delay": 0}
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
