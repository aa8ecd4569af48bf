"""Paging tests for AppsBooksClient.iter_pages: order, termination, prefetch bounds."""

from __future__ import annotations

import base64
import json
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from plugins.vpp.apple import errors as E
from plugins.vpp.apple.client import AppsBooksClient, RetryPolicy
from plugins.vpp.apple.stoken import SToken

RAW = base64.b64encode(json.dumps({"token": "INNER-PAGING-1", "expDate": "2030-11-08T22:33:22+0000", "orgName": "Org"}).encode()).decode()
BASE = "https://vpp.test/mdm/v2"
URLS = {"getAssets": f"{BASE}/assets", "getAssignments": f"{BASE}/assignments", "getUsers": f"{BASE}/users"}


def page_index(request) -> int:
    return int(parse_qs(urlsplit(request.url).query)["pageIndex"][0])


def query(request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}


def page_body(index: int, *, last: int, total: int | None = None, key: str = "assets", **extra) -> dict:
    body = {
        key: [{"adamId": f"{index}-{n}", "pricingParam": "STDQ"} for n in range(3)],
        "currentPageIndex": index,
        "size": 3,
        "versionId": "v1",
        "uId": "1",
        **extra,
    }
    if total is not None:
        body["totalPages"] = total
    if index < last:
        body["nextPageIndex"] = index + 1
    return body


class Server:
    """A paged endpoint whose pages are produced by ``make(index)``; counts concurrency."""

    def __init__(self, make, delay: float = 0.0) -> None:
        self.make = make
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requested: list[int] = []

    def __call__(self, request):
        index = page_index(request)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.requested.append(index)
        try:
            if self.delay:
                time.sleep(self.delay)
            status, body = self.make(index)
            return status, {}, json.dumps(body)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json={"urls": URLS})
        yield mock


def make_client(**kwargs) -> AppsBooksClient:
    kwargs.setdefault("sleep", lambda s: None)
    return AppsBooksClient(SToken.parse(RAW), BASE, **kwargs)


def test_pages_in_order_until_next_page_index_absent(rsps) -> None:
    server = Server(lambda i: (200, page_body(i, last=3, total=4)))
    rsps.add_callback(responses.GET, URLS["getAssets"], callback=server)
    pages = list(make_client().iter_pages("getAssets"))
    assert [p["currentPageIndex"] for p in pages] == [0, 1, 2, 3]
    assert sorted(server.requested) == [0, 1, 2, 3]


@pytest.mark.parametrize("last", [0, 4])
def test_a_page_without_total_pages_is_malformed(rsps, last) -> None:
    """Without totalPages the end of a listing cannot be checked: nothing is taken from it."""
    server = Server(lambda i: (200, page_body(i, last=last)))
    rsps.add_callback(responses.GET, URLS["getAssets"], callback=server)
    with pytest.raises(E.MalformedResponseError, match="assets: page 0 has no valid totalPages"):
        list(make_client().iter_pages("getAssets"))


def test_a_listing_that_ends_before_total_pages_fails(rsps) -> None:
    """Issue 17 point 3: the last page Apple sent (no nextPageIndex) is page 2 of 10: the
    listing ended early. Reading it as complete made a full sync delete most licenses."""

    def make(i):
        if i > 2:
            return 400, {"errorNumber": 9650, "errorMessage": "page index out of range"}
        return 200, page_body(i, last=2, total=10)

    server = Server(make)
    rsps.add_callback(responses.GET, URLS["getAssets"], callback=server)
    with pytest.raises(E.IncompletePagesError, match=r"assets: page 2 is the last one Apple sent \(no nextPageIndex\) but totalPages is 10"):
        list(make_client().iter_pages("getAssets"))


def test_a_server_that_always_offers_one_more_page_is_stopped(rsps) -> None:
    """Paging is bounded by the first page's totalPages plus a margin, whatever nextPageIndex says."""
    server = Server(lambda i: (200, page_body(i, last=10**9, total=3 + i)))
    rsps.add_callback(responses.GET, URLS["getAssets"], callback=server)
    read: list[int] = []
    with pytest.raises(E.MalformedResponseError, match="Apple offers page 13 but announced 3 pages at the start"):
        for page in make_client().iter_pages("getAssets"):
            read.append(page["currentPageIndex"])
    assert read == list(range(13)) and max(server.requested) <= 12  # no page read twice, none beyond the bound


def test_total_pages_grows_keep_following(rsps) -> None:
    def make(i):
        return 200, page_body(i, last=5, total=2 if i == 0 else 6)

    server = Server(make)
    rsps.add_callback(responses.GET, URLS["getAssets"], callback=server)
    assert [p["currentPageIndex"] for p in make_client().iter_pages("getAssets")] == [0, 1, 2, 3, 4, 5]


def test_total_pages_shrinks_past_next_index(rsps) -> None:
    server = Server(lambda i: (200, page_body(i, last=3, total=1)))
    rsps.add_callback(responses.GET, URLS["getAssets"], callback=server)
    assert [p["currentPageIndex"] for p in make_client().iter_pages("getAssets")] == [0, 1, 2, 3]


def test_at_most_five_requests_in_flight(rsps) -> None:
    server = Server(lambda i: (200, page_body(i, last=19, total=20)), delay=0.03)
    rsps.add_callback(responses.GET, URLS["getAssets"], callback=server)
    pages = list(make_client().iter_pages("getAssets"))
    assert [p["currentPageIndex"] for p in pages] == list(range(20))
    assert 1 < server.max_in_flight <= 5
    assert sorted(server.requested) == list(range(20))


def test_parallelism_is_configurable(rsps) -> None:
    server = Server(lambda i: (200, page_body(i, last=9, total=10)), delay=0.02)
    rsps.add_callback(responses.GET, URLS["getAssets"], callback=server)
    assert len(list(make_client(max_parallel_pages=2).iter_pages("getAssets"))) == 10
    assert server.max_in_flight <= 2


def test_prefetch_is_bounded_while_consumer_is_slow(rsps) -> None:
    server = Server(lambda i: (200, page_body(i, last=29, total=30)))
    rsps.add_callback(responses.GET, URLS["getAssets"], callback=server)
    for consumed, page in enumerate(make_client().iter_pages("getAssets")):
        time.sleep(0.005)
        with server.lock:
            assert max(server.requested) <= consumed + 5
        assert page["currentPageIndex"] == consumed


def test_abandoned_iteration_cancels_prefetch(rsps) -> None:
    """Closed after two pages: close() does not wait for the pages in flight, and nothing past
    the prefetch window is ever requested; the client's page threads end once it is closed."""
    release = threading.Event()

    def make(index):
        if index >= 2:
            release.wait(120)  # the prefetched pages are in flight until released
        return 200, page_body(index, last=99, total=100)

    def page_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("vpp-page")}

    server = Server(make)
    rsps.add_callback(responses.GET, URLS["getAssets"], callback=server)
    others = page_threads()  # other clients' (earlier tests in this process)
    client = make_client()
    pages = client.iter_pages("getAssets")
    assert next(pages)["currentPageIndex"] == 0
    assert next(pages)["currentPageIndex"] == 1
    started = time.monotonic()
    pages.close()
    assert time.monotonic() - started < 60, "close() waited for the pages in flight (held for 120 s)"
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 60, "the client's close() waited for the pages in flight"
    assert page_threads() - others, "no page thread was in flight"
    release.set()
    deadline = time.monotonic() + 30  # the page threads end once their requests are answered
    while page_threads() - others and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not page_threads() - others
    assert len(server.requested) <= 1 + 5 and max(server.requested) <= 1 + 5 - 1, server.requested


def test_error_on_a_page_propagates(rsps) -> None:
    def make(i):
        if i == 2:
            return 400, {"errorNumber": 9721, "errorMessage": "Invalid versionId"}
        return 200, page_body(i, last=4, total=5)

    rsps.add_callback(responses.GET, URLS["getAssets"], callback=Server(make))
    seen = []
    with pytest.raises(E.InvalidVersionIdError):
        for page in make_client().iter_pages("getAssets"):
            seen.append(page["currentPageIndex"])
    assert seen == [0, 1]


def test_retry_inside_prefetch(rsps) -> None:
    failed = set()

    def make(i):
        if i == 1 and i not in failed:
            failed.add(i)
            return 503, {}
        return 200, page_body(i, last=2, total=3)

    rsps.add_callback(responses.GET, URLS["getAssets"], callback=Server(make))
    client = make_client(retry=RetryPolicy(base_delay=0.001))
    assert [p["currentPageIndex"] for p in client.iter_pages("getAssets")] == [0, 1, 2]


@pytest.mark.parametrize("bad", [{"nextPageIndex": 5}, {"nextPageIndex": "1"}, {"currentPageIndex": 3}, {"currentPageIndex": None}])
def test_inconsistent_page_indexes_are_malformed(rsps, bad) -> None:
    rsps.add(responses.GET, URLS["getAssets"], json={**page_body(0, last=3, total=4), **bad})
    with pytest.raises(E.MalformedResponseError):
        list(make_client().iter_pages("getAssets"))


def test_mdm_conflict_while_paging(rsps) -> None:
    other = {"id": "other", "name": "Other MDM", "metadata": "x"}
    rsps.add(responses.GET, URLS["getAssets"], json={**page_body(0, last=0, total=1), "mdmInfo": other})
    with pytest.raises(E.MdmConflictError, match="Other MDM"):
        list(make_client(mdm_info_id="mine").iter_assets())


def test_iter_assets_filters(rsps) -> None:
    seen = []

    def make(i):
        return 200, page_body(i, last=0, total=1)

    server = Server(make)

    def callback(request):
        seen.append(query(request))
        return server(request)

    rsps.add_callback(responses.GET, URLS["getAssets"], callback=callback)
    list(make_client().iter_assets(product_type="App", device_assignable=True, unlimited=False, minAvailableCount=1, adam_id=None))
    assert seen == [{"productType": "App", "deviceAssignable": "true", "unlimited": "false", "minAvailableCount": "1", "pageIndex": "0"}]
    with pytest.raises(TypeError):
        make_client().iter_assets(bogus=1)


def test_iter_assignments_and_users_params(rsps) -> None:
    seen = []

    def callback(request):
        seen.append(query(request))
        key = "users" if "/users" in request.url else "assignments"
        return 200, {}, json.dumps(page_body(page_index(request), last=1, total=2, key=key))

    rsps.add_callback(responses.GET, URLS["getAssignments"], callback=callback)
    rsps.add_callback(responses.GET, URLS["getUsers"], callback=callback)
    client = make_client()
    assert len(list(client.iter_assignments(since_version_id="v9", adam_id="42", pricing_param="STDQ", serial_number="C02X"))) == 2
    assert len(list(client.iter_users(active_only=True, client_user_id="u1"))) == 2
    assert seen[0] == {"sinceVersionId": "v9", "adamId": "42", "pricingParam": "STDQ", "serialNumber": "C02X", "pageIndex": "0"}
    assert seen[1]["pageIndex"] == "1" and seen[1]["sinceVersionId"] == "v9"
    assert seen[2] == {"activeOnly": "true", "clientUserId": "u1", "pageIndex": "0"}
    with pytest.raises(ValueError):
        client.iter_assignments(serial_number="a", client_user_id="b")
