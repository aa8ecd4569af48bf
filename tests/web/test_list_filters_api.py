"""A list's filter naming nothing here is a 404 naming it and where the valid ones are listed
(a malformed one a 422), in the API's words; a known one matching nothing is an empty page.
``?asset=`` and ``/events?name=`` answered an empty 200 for a misspelt value while an unknown
account was a 404."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mdm_core.host import Host

from .conftest import make_web_host, token_for


@pytest.fixture
def web_host(make_host: Callable[..., Host], database_url: str) -> Host:
    """On SQLite and PostgreSQL: the checks are queries of the mirror and the outbox."""
    return make_web_host(make_host, database_url)


def test_a_filter_naming_nothing_is_a_404_saying_where_the_valid_ones_are(school: Host, client: Any) -> None:
    headers = token_for(school, "viewer")
    for path, params, status, said in [
        ("/api/v1/vpp/licenses", {"asset": "abc"}, 422, "adamId 'abc' is not valid: an adamId is a number (see GET /api/v1/vpp/assets)"),
        ("/api/v1/vpp/licenses", {"asset": "999999999"}, 404, "no asset 999999999 in the mirror (see GET /api/v1/vpp/assets"),
        ("/api/v1/vpp/licenses", {"device": "NOPE0000"}, 404, "is neither enrolled nor holding a license (GET /api/v1/devices lists the enrolled ones)"),
        ("/api/v1/vpp/licenses", {"user": "nobody-here"}, 404, "'nobody-here' is not a VPP user (see GET /api/v1/vpp/users)"),
        ("/api/v1/vpp/licenses", {"account": "nope"}, 404, "no VPP account named 'nope'"),
        ("/api/v1/vpp/runs", {"account": "nope"}, 404, "no VPP account named 'nope'"),
        ("/api/v1/events", {"name": "vpp_sync_finishd"}, 404, "no event named 'vpp_sync_finishd': events are named "),
    ]:
        response = client.get(path, params=params, headers=headers)
        assert response.status_code == status, (path, params, response.text)
        assert said in response.json()["error"] and "`mdm" not in response.json()["error"], response.text
    adam = client.get("/api/v1/vpp/licenses", headers=headers).json()["items"][0]["adamId"]
    found = client.get("/api/v1/vpp/licenses", params={"asset": adam, "account": "school"}, headers=headers)
    assert found.status_code == 200 and {r["adamId"] for r in found.json()["items"]} == {adam}


def test_a_known_filter_matching_nothing_is_an_empty_page(school: Host, client: Any) -> None:
    headers = token_for(school, "viewer")
    assert "device_removed" in school.events.declared()
    response = client.get("/api/v1/events", params={"name": "device_removed"}, headers=headers)
    assert response.status_code == 200 and response.json()["items"] == []


def test_the_console_says_an_event_name_is_unknown(school: Host, viewer: Any) -> None:
    response = viewer.get("/events", params={"name": "nope"})
    assert response.status_code == 404 and "no event named &#39;nope&#39;" in response.text
