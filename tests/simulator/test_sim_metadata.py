"""The content metadata lookup (mdm-lockup) with and without the itvt cookie."""

from __future__ import annotations

import re


def _lookup(client, ids, cookie=True, **params):
    url = client.get("service/config").json()["urls"]["contentMetadataLookup"]
    query = {"version": 2, "id": ",".join(ids), "p": "mdm-lockup", "caller": "MDM", "platform": "volumestore", "cc": "us", "l": "en", **params}
    cookies = {"itvt": client.sim.token} if cookie else {}
    return client.session.get(url, params=query, cookies=cookies, timeout=5)


def test_lookup_with_cookie(sim, client):
    assets = sim.snapshot()["assets"]
    app = next(a for a in assets.values() if a["productType"] == "App" and a["supportedPlatforms"] == ["iOS"])
    mac = next(a for a in assets.values() if a["supportedPlatforms"] == ["macOS"])
    book = next(a for a in assets.values() if a["productType"] == "Book")
    response = _lookup(client, [app["adamId"], mac["adamId"], book["adamId"], "123"])
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 2 and body["isAuthenticated"] is False
    assert body["meta"] == {"storefront": {"id": "143441", "cc": "US"}, "language": {"tag": "en-us"}}
    results = body["results"]
    assert set(results) == {app["adamId"], mac["adamId"], book["adamId"]}
    record = results[app["adamId"]]
    assert record["id"] == app["adamId"] and record["name"]
    assert re.fullmatch(r"[a-z0-9.]+", record["bundleId"])
    assert record["kind"] == "iosSoftware"
    assert set(record["deviceFamilies"]) == {"iphone", "ipad", "ipod"}
    assert record["artwork"]["url"].startswith("https://") and record["artwork"]["url"].endswith("{w}x{h}bb.{f}")
    assert record["artwork"]["width"] > 0 and record["artwork"]["height"] > 0
    version = record["offers"][0]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version["display"]) and isinstance(version["externalId"], int)
    assert results[mac["adamId"]]["kind"] == "macSoftware"
    assert results[mac["adamId"]]["deviceFamilies"] == ["mac"]
    assert results[book["adamId"]]["kind"] == "ebook" and "bundleId" not in results[book["adamId"]]


def test_public_apps_are_answered_without_the_cookie_as_apple_does(sim, client):
    adam_id = next(iter(sim.snapshot()["assets"]))[0]
    assert set(_lookup(client, [adam_id], cookie=False).json()["results"]) == {adam_id}
    url = client.get("service/config").json()["urls"]["contentMetadataLookup"]
    wrong = client.session.get(url, params={"version": 2, "id": adam_id, "p": "mdm-lockup"}, cookies={"itvt": "nope"}, timeout=5)
    assert wrong.status_code == 200 and set(wrong.json()["results"]) == {adam_id}


def test_custom_apps_need_the_organizations_cookie(fresh):
    adam_id, _ = fresh.sim.purchase(custom=True)
    assert _lookup(fresh, [adam_id], cookie=False).json()["results"] == {}
    assert set(_lookup(fresh, [adam_id]).json()["results"]) == {adam_id}
    fresh.sim.revoke_token()
    assert _lookup(fresh, [adam_id]).json()["results"] == {}
    fresh.sim.restore_token()
    assert set(_lookup(fresh, [adam_id]).json()["results"]) == {adam_id}


def test_mac_app_store_platform_answers_the_mac_build_of_a_universal_app(fresh):
    adam_id, _ = fresh.sim.purchase(supported_platforms=("iOS", "macOS"))
    ios = _lookup(fresh, [adam_id]).json()["results"][adam_id]
    mac = _lookup(fresh, [adam_id], platform="macappstore").json()["results"][adam_id]
    assert ios["kind"] == "iosSoftware" and mac["kind"] == "macSoftware"
    assert mac["bundleId"] != ios["bundleId"]
    assert mac["offers"][0]["version"]["display"] != ios["offers"][0]["version"]["display"]
