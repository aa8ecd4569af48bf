"""Every list of the REST API and the console is paged by the database: walking the pages of a
list, a few rows at a time, gives each row exactly once and in the order of one big page; a
cursor that was not given by the server is refused in one line; console tables count and
number their pages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl

import pytest

from mdm_core import inventory
from mdm_core.host import Host

from .conftest import token_for


@pytest.fixture
def busy(school: Host, simulator: Any, project_dir: Path) -> Host:
    """``school`` with enrolled devices and users, a second sync, an install, reclaims, a failed
    delivery and a second account."""
    from mdm_core import hookimpl
    from plugins.mobile_apps.catalog import list_apps
    from plugins.mobile_apps.installs.request import install
    from plugins.mobile_apps.reclaims import create_reclaims
    from plugins.mobile_apps.vpp_port import VppPort
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    serials = simulator.state.device_serials()
    inventory.add_devices(school, [inventory.DeviceRow(s, "iOS", None, "iPhone15,2", None) for s in serials])
    inventory.add_users(school, [inventory.UserRow(u["clientUserId"], u.get("email"), None, None) for u in simulator.state.user_records()])

    class Grumpy:  # a subscriber that refuses device enrolments: failed deliveries to list
        @hookimpl
        def mdm_device_enrolled(self, host: Host, event: Any) -> None:
            raise RuntimeError("no")

    school.pm.register(Grumpy(), name="grumpy")
    inventory.add_devices(school, [inventory.DeviceRow(f"PAGING{i:06d}", "iOS", None, None, None) for i in range(5)])
    school.deliver_events()
    school.pm.unregister(name="grumpy")
    adam, pricing = next(k for k, a in simulator.state.assets.items() if a.product_type == "App" and a.device_assignable and "iOS" in a.platforms)
    simulator.remove_in_portal(
        adam, pricing, serial_number=next(a[3] for a in simulator.snapshot()["assignments"] if (a[0], a[1]) == (adam, pricing) and a[2] == "serialNumber")
    )
    assert sync_account(school, "school")["status"] == "ok"
    app = next(a for a in list_apps(school) if (a["adamId"], a["pricingParam"], a["platform"]) == (adam, pricing, "iOS"))
    install(school, str(app["id"]), serials=["PAGING000001", "PAGING000002"])
    held = [lic for lic in VppPort(school).licenses(account="school") if lic["adamId"] != adam and lic.get("serialNumber")]
    create_reclaims(school, held[:3], "manual")  # three open reclaims to list (never sent to Apple here)
    with Simulator(seed=12, assets=2, devices=2, users=2, async_delay=0) as other:
        add_simulated_account(school, other, project_dir, "college")
    _alerts(school)
    _tokens(school)
    return school


def _tokens(host: Host) -> None:
    """API tokens, two of one name (the first revoked): ordered by name, then age."""
    from mdm_core.web.access import create_token, revoke_token

    for name in ("ci", "backup", "deploy"):
        create_token(host, name)
    revoke_token(host, "ci", "cli:test")
    create_token(host, "ci", "admin")


def _alerts(host: Host) -> None:
    """Four alerts, recorded as the alerts plugin records them (its store)."""
    from datetime import UTC, datetime

    from plugins.alerts.rules import sync_failing_alert, sync_recovered_alert
    from plugins.alerts.store import enqueue, write

    since = datetime(2026, 6, 1, tzinfo=UTC)

    def record(session: Any) -> None:
        for alert in (sync_failing_alert("school", 3, since, "VppError", "boom"), sync_recovered_alert("school", 3, since)) * 2:
            enqueue(host, session, alert)

    write(host, record)


#: Every REST list, with the query that selects a non-trivial list and how a row is identified.
LISTS = {
    "/api/v1/devices": lambda r: r["serial_number"],
    "/api/v1/users": lambda r: r["id"],
    "/api/v1/events": lambda r: r["id"],
    "/api/v1/events/failures": lambda r: r["id"],
    "/api/v1/vpp/accounts": lambda r: r["name"],
    "/api/v1/vpp/runs?account=school": lambda r: r["id"],
    "/api/v1/vpp/assets?account=school": lambda r: (r["adamId"], r["pricingParam"]),
    "/api/v1/vpp/licenses?account=school": lambda r: (r["adamId"], r["pricingParam"], r.get("serialNumber"), r.get("clientUserId")),
    "/api/v1/vpp/users?account=school": lambda r: r["clientUserId"],
    "/api/v1/apps": lambda r: r["id"],
    "/api/v1/apps/installs": lambda r: r["id"],
    "/api/v1/apps/reclaims": lambda r: r["id"],
    "/api/v1/alerts": lambda r: r["id"],
    "/api/v1/api-tokens": lambda r: (r["name"], r["role"], r["created_at"]),
}


def _get(client: Any, path: str, headers: dict[str, str], **params: Any) -> Any:
    base, _, query = path.partition("?")
    return client.get(base, params={**dict(parse_qsl(query)), **params}, headers=headers)


def _walk(client: Any, path: str, headers: dict[str, str], limit: int) -> list[Any]:
    rows, cursor = [], None
    while True:
        response = _get(client, path, headers, limit=limit, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        assert set(body) == {"items", "next_cursor"}, path
        assert len(body["items"]) <= limit
        rows += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return rows


def test_every_rest_list_is_paged_by_the_database(busy: Host, client: Any) -> None:
    headers = token_for(busy, "viewer")
    routes = {r.path for r in client.app.state.route_table if r.kind == "api" and "GET" in r.methods}
    listed = {path.split("?")[0] for path in LISTS}
    paged = {path for path in routes if "{" not in path and path not in ("/api/v1/me", "/api/v1/openapi.json")}
    assert paged == listed, "a REST list without a paging test"
    for path, key in LISTS.items():
        whole = _get(client, path, headers, limit=1000).json()
        assert whole["next_cursor"] is None and len(whole["items"]) >= 2, path
        walked = _walk(client, path, headers, 2)
        assert [key(r) for r in walked] == [key(r) for r in whole["items"]], path  # each row once, in the same order
        assert len({repr(key(r)) for r in walked}) == len(walked), path


def test_an_asset_history_is_paged_too(busy: Host, client: Any, simulator: Any) -> None:
    headers = token_for(busy, "viewer")
    adam, pricing = next(k for k, a in simulator.state.assets.items() if a.product_type == "App" and a.device_assignable and "iOS" in a.platforms)
    path = f"/api/v1/vpp/assets/{adam}/history?account=school&pricing={pricing}"
    walked = _walk(client, path, headers, 1)
    assert walked == _get(client, path, headers, limit=1000).json()["items"]
    # oldest first: the first sync, the license removed in Apple's portal (found by the second
    # sync), the install on two devices (this host's license request moves the counts too)
    assert [r["assignedCount"] - walked[0]["assignedCount"] for r in walked] == [0, -1, 1]
    assert [r["at"] for r in walked] == sorted(r["at"] for r in walked)


@pytest.mark.parametrize("cursor", ["not-a-cursor", "eyJhZnRlciI6IDF9", "eyJhZnRlciI6W3RydWVdfQ", "W10"])
def test_a_cursor_the_server_did_not_give_is_refused(busy: Host, client: Any, cursor: str) -> None:
    response = client.get("/api/v1/vpp/licenses", params={"account": "school", "cursor": cursor}, headers=token_for(busy, "viewer"))
    assert response.status_code == 400
    assert response.json() == {"error": "cursor is not valid: pass the next_cursor of the previous page unchanged"}


@pytest.mark.parametrize("after", [[10**23], ["x"]])
def test_a_cursor_holding_a_value_its_column_cannot_is_refused(school: Host, client: Any, after: list[Any]) -> None:
    """An integer past 64 bits overflowed SQLite's (a 500); text for an integer key matched
    every row on SQLite and failed on PostgreSQL."""
    from mdm_core.web.paging import encode_cursor

    response = client.get("/api/v1/vpp/runs", params={"cursor": encode_cursor({"after": after})}, headers=token_for(school, "viewer"))
    assert response.status_code == 400 and response.json() == {"error": "cursor is not valid: pass the next_cursor of the previous page unchanged"}


#: a cursor of each list with text keys, its text replaced by BAD (the shape of its key: ``paging.keyset``)
TEXT_KEYS: dict[str, list[Any]] = {
    "/api/v1/devices": ["BAD"],
    "/api/v1/users": ["BAD"],
    "/api/v1/vpp/accounts": ["BAD"],
    "/api/v1/api-tokens": ["BAD", 1],
    "/api/v1/vpp/assets": [1, "BAD", "STDQ"],
    "/api/v1/vpp/users": [1, "BAD"],
    "/api/v1/vpp/licenses": [1, "1", "STDQ", "device", "BAD"],
    "/api/v1/apps": ["BAD", "1", "STDQ", "iOS", 1],
}


def test_a_cursor_holding_text_no_column_holds_is_refused_on_both_databases(make_host: Any, database_url: str) -> None:
    """A NUL (PostgreSQL refuses it in any text) or a lone surrogate (not UTF-8) in a cursor's
    text reached the database: a 500 on PostgreSQL, and for a surrogate on SQLite too."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app
    from mdm_core.web.paging import encode_cursor

    from .conftest import WEB_CONFIG

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    headers = token_for(host, "viewer")
    with TestClient(create_app(host), raise_server_exceptions=False) as client:
        for path, shape in TEXT_KEYS.items():
            for bad in ("a\x00b", "\ud800"):
                cursor = encode_cursor({"after": [bad if v == "BAD" else v for v in shape]})
                response = client.get(path, params={"cursor": cursor}, headers=headers)
                assert response.status_code == 400, (path, repr(bad), response.text)
                assert response.json() == {"error": "cursor is not valid: pass the next_cursor of the previous page unchanged"}


def test_a_query_parameter_the_api_does_not_take_is_refused(school: Host, client: Any) -> None:
    """``offset`` and a misspelt filter were ignored: the first page, or every account's rows,
    answered as if they were what was asked."""
    headers = token_for(school, "admin")
    routes = client.app.state.route_table
    lists = [r.path for r in routes if r.kind == "api" and "GET" in r.methods and "{" not in r.path and r.path not in ("/api/v1/me", "/api/v1/openapi.json")]
    assert "/api/v1/vpp/assets" in lists
    for path in lists:
        response = client.get(path, params={"limit": 2, "offset": 2}, headers=headers)
        assert response.status_code == 422, path
        error = response.json()["error"]
        assert error.startswith("unknown query parameter offset: it takes ") and "page with cursor" in error, error
    typo = client.get("/api/v1/vpp/assets", params={"acount": "nope"}, headers=headers)
    assert typo.status_code == 422 and typo.json() == {"error": "unknown query parameter acount: it takes account, cursor, limit"}
    sync = client.post("/api/v1/vpp/accounts/school/sync", params={"ful": "true"}, headers=headers)
    assert sync.status_code == 422 and sync.json() == {"error": "unknown query parameter ful: it takes full"}
    assert client.get("/api/v1/me", params={"x": "1"}, headers=headers).json() == {"error": "unknown query parameter x: it takes none"}
    assert client.get("/api/v1/vpp/assets", params={"account": "school", "limit": 2}, headers=headers).status_code == 200
    # a filter given twice answered the last value's rows alone, as if that were what was asked
    twice = client.get("/api/v1/vpp/assets", params=[("account", "school"), ("account", "other"), ("limit", "2")], headers=headers)
    assert twice.status_code == 422 and twice.json() == {"error": "query parameter account is given more than once: it takes one value"}
    # an empty filter (a script's unset variable) filtered nothing: every license
    empty = client.get("/api/v1/vpp/licenses", params={"device": "", "limit": 5}, headers=headers)
    assert empty.status_code == 422 and empty.json() == {"error": "query parameter device is empty: give a value or leave it out"}
    both = client.get("/api/v1/vpp/licenses", params={"device": "", "user": " ", "limit": 5}, headers=headers)
    assert both.json() == {"error": "query parameters device, user are empty: give a value or leave it out"}
    twice = client.get("/api/v1/vpp/licenses", params=[("device", "A"), ("device", "B"), ("user", "u"), ("user", "v")], headers=headers)
    assert twice.json() == {"error": "query parameters device, user are given more than once: each takes one value"}


def test_a_filter_with_spaces_around_it_is_taken_trimmed(school: Host, client: Any) -> None:
    """``?device=%20SERIAL`` (a serial pasted with a space) matched nothing: an empty page, as if
    the device held no license, where a serial given to an install is taken trimmed."""
    headers = token_for(school, "viewer")
    licenses = client.get("/api/v1/vpp/licenses", params={"limit": 100}, headers=headers).json()["items"]
    serial = next(row["serialNumber"] for row in licenses if "serialNumber" in row)
    wanted = client.get("/api/v1/vpp/licenses", params={"device": serial}, headers=headers).json()
    assert wanted["items"]
    for given in (f" {serial}", f"{serial}\t", f"\n{serial} "):
        response = client.get("/api/v1/vpp/licenses", params={"device": given, "account": " school "}, headers=headers)
        assert response.status_code == 200 and response.json() == wanted, (repr(given), response.text)


def test_console_tables_number_their_pages(busy: Host, admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import mdm_core.web.paging as paging

    monkeypatch.setitem(cast(dict, paging.numbered.__kwdefaults__), "size", 3)  # three rows a page
    for path, cell in (("/devices", r"<tr><td>([A-Z0-9]+)</td>"), ("/vpp/accounts/school/users", r"<tr><td>(user-\d+)</td>")):
        first = admin.get(path).text
        total, pages = map(int, re.search(r"(\d+) \w+(?: \w+)? · page 1 of (\d+)", first).groups())
        assert pages == -(-total // 3)
        seen = []
        for page in range(1, pages + 1):
            seen += re.findall(cell, admin.get(f"{path}?page={page}").text)
        assert len(seen) == total == len(set(seen))
        assert seen == sorted(seen)
