"""``GET /api/v1/events`` pages are bounded by bytes as well as by rows: 200 events with large
payloads made one 19 MB answer (and as much memory in the server). A page now stops before the
event that would take it past ``PAGE_BYTES``, holds at least one event (a larger one is a page
alone), and its cursor goes on from the last event sent: none skipped, none repeated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mdm_core.host import Host

from .conftest import make_web_host, token_for

#: the bound README documents (1 MiB of events a page)
PAGE_BYTES = 1024 * 1024
#: what a page holds besides its events: {"items":[...],"next_cursor":"..."}
ENVELOPE = 200


@pytest.fixture
def web_host(make_host: Callable[..., Host], database_url: str) -> Host:
    """On SQLite and PostgreSQL: the page is read from either."""
    return make_web_host(make_host, database_url)


def _record(host: Host, payloads: list[dict[str, Any]]) -> None:
    with host.db.session() as session:
        host.events.record_many(session, [("device_enrolled", p) for p in payloads])
        session.commit()


def _walk(client: Any, headers: dict[str, str], **params: Any) -> list[tuple[list[str], int]]:
    """Every page: the ids of its events, in order, and its answer's size in bytes."""
    pages: list[tuple[list[str], int]] = []
    cursor = None
    while True:
        response = client.get("/api/v1/events", params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert response.status_code == 200, response.text[:300]
        body = response.json()
        assert body["items"], "a page without an event: paging would never end"
        pages.append(([e["id"] for e in body["items"]], len(response.content)))
        cursor = body["next_cursor"]
        if not cursor:
            return pages


@pytest.mark.slow
def test_a_page_of_large_events_stays_under_the_byte_bound_and_paging_misses_none(web_host: Host, client: Any) -> None:
    from sqlalchemy import select
    from sqlmodel import col

    from mdm_core.models import OutboxEvent

    blob = "x" * 100_000
    _record(web_host, [{"serial": f"BIG{i:04d}", "blob": blob} for i in range(30)])  # 3 MB of events
    _record(web_host, [{"serial": "HUGE", "blob": "y" * (PAGE_BYTES + 500_000)}])  # larger than a page alone
    _record(web_host, [{"serial": f"SMALL{i:04d}"} for i in range(5)])
    with web_host.db.session() as session:
        newest_first = list(session.execute(select(col(OutboxEvent.id)).order_by(col(OutboxEvent.seq).desc())).scalars())
    headers = token_for(web_host, "viewer")

    pages = _walk(client, headers, limit=200)
    assert [i for ids, _ in pages for i in ids] == newest_first  # every event once, newest first: each cursor goes on where its page stopped
    [huge] = [(ids, size) for ids, size in pages if size > PAGE_BYTES]
    assert len(huge[0]) == 1 and huge[1] < PAGE_BYTES * 2  # alone on its page, which still moves on
    assert all(size <= PAGE_BYTES + ENVELOPE for ids, size in pages if ids != huge[0]), [size for _, size in pages]
    assert [len(ids) for ids, _ in pages] == [5, 1, 10, 10, 10], "pages of 100 KB events: ten (about 1 MB) each"

    # the row bound still holds where the bytes do not bind
    assert [i for ids, _ in _walk(client, headers, limit=2) for i in ids] == newest_first
