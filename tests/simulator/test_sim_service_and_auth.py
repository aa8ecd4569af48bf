"""service/config, client/config, authentication and transport errors."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta

import pytest
import requests

from plugins.vpp.simulator import Simulator
from plugins.vpp.simulator.metadata import LOOKUP_PATH

URL_KEYS = {
    "clientConfig",
    "getAssets",
    "getAssignments",
    "associateAssets",
    "disassociateAssets",
    "revokeAssets",
    "getUsers",
    "createUsers",
    "updateUsers",
    "retireUsers",
    "eventStatus",
    "contentMetadataLookup",
    "invitationEmail",
}
V2_CODES = {9601, 9602, 9603, 9609, 9621, 9622, 9625, 9634, 9646, 9650, *range(9700, 9729)}


def test_service_config_shape_without_auth(sim, client):
    response = requests.get(f"{sim.base_url}/service/config", timeout=5)
    assert response.status_code == 200
    config = response.json()
    assert set(config) == {"errorCodes", "limits", "notificationTypes", "urls"}
    assert {e["errorNumber"] for e in config["errorCodes"]} >= V2_CODES
    assert all(set(e) == {"errorNumber", "errorMessage"} for e in config["errorCodes"])
    assert config["limits"] == {
        "maxAssets": 25,
        "maxUsers": 100,
        "maxClientUserIds": 1000,
        "maxSerialNumbers": 1000,
        "maxRevokeClientUserIds": 100,
        "maxRevokeSerialNumbers": 100,
        "maxNotificationLength": 512,
        "maxMdmIdLength": 100,
        "maxMdmNameLength": 100,
        "maxMdmMetadataLength": 255,
    }
    assert set(config["notificationTypes"]) == {"ASSET_MANAGEMENT", "USER_MANAGEMENT", "USER_ASSOCIATED", "ASSET_COUNT"}
    urls = config["urls"]
    assert set(urls) == URL_KEYS
    assert all(url.startswith(sim.root_url + "/") for url in urls.values())
    assert urls["getAssets"] == sim.base_url + "/assets"
    assert urls["eventStatus"] == sim.base_url + "/status"
    assert urls["contentMetadataLookup"] == sim.root_url + LOOKUP_PATH
    assert "inviteCode=%25inviteCode%25" in urls["invitationEmail"]
    # the discovered URLs really are served
    assert client.session.get(urls["getAssignments"], headers=client.auth, timeout=5).status_code == 200


def test_limits_are_overridable(make_client):
    api = make_client(limits={"maxAssets": 3, "maxSerialNumbers": 5})
    limits = api.get("service/config").json()["limits"]
    assert limits["maxAssets"] == 3 and limits["maxSerialNumbers"] == 5 and limits["maxUsers"] == 100


def test_common_fields_on_authenticated_responses(client):
    for endpoint in ("client/config", "assets", "assignments", "users"):
        body = client.get(endpoint).json()
        assert re.fullmatch(r"\d{16}", body["uId"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", body["tokenExpirationDate"])
        assert "mdmInfo" not in body


def _error(response: requests.Response) -> int:
    return response.json()["errorNumber"]


def test_auth_errors(fresh):
    sim = fresh.sim
    missing = fresh.get("assets", headers={})
    assert (missing.status_code, _error(missing)) == (401, 9722)
    for header in ("Basic abc", "Bearer", "Bearer a b", sim.token):
        bad = fresh.get("assets", headers={"Authorization": header})
        assert (bad.status_code, _error(bad)) == (401, 9722), header
    other = base64.b64encode(json.dumps({"token": "x", "expDate": "2030-01-01T00:00:00+0000", "orgName": "Other"}).encode()).decode()
    unknown = fresh.get("assets", headers={"Authorization": f"Bearer {other}"})
    assert (unknown.status_code, _error(unknown)) == (401, 9622)
    # whitespace around the file content is tolerated
    assert fresh.get("assets", headers={"Authorization": f"Bearer  {sim.token} "}).status_code == 200
    sim.expire_token()
    expired = fresh.get("assets")
    assert (expired.status_code, _error(expired)) == (401, 9621)
    sim.revoke_token()
    revoked = fresh.get("client/config")
    assert (revoked.status_code, _error(revoked)) == (401, 9625)
    assert fresh.get("service/config", headers={}).status_code == 200
    sim.restore_token()
    assert fresh.get("assets").status_code == 200


def test_expired_by_date(make_client):
    api = make_client(token_expires_at=datetime.now(UTC) - timedelta(days=1))
    response = api.get("users")
    assert (response.status_code, _error(response)) == (401, 9621)


def test_a_naive_expiry_is_utc(make_client):
    """An expiry read back from a database column without a zone is UTC, as the sToken writes it."""
    api = make_client(token_expires_at="2027-11-30 10:00:00.000000")
    response = api.get("client/config")
    assert response.status_code == 200 and response.json()["tokenExpirationDate"] == "2027-11-30T10:00:00+0000"
    expired = make_client(token_expires_at=(datetime.now(UTC) - timedelta(days=1)).replace(tzinfo=None).isoformat())
    assert _error(expired.get("users")) == 9621


def test_wrong_method_and_content_type(client):
    wrong = client.post("assets", {})
    assert (wrong.status_code, _error(wrong)) == (405, 9726)
    wrong = client.get("assets/associate")
    assert (wrong.status_code, _error(wrong)) == (405, 9726)
    plain = client.session.post(f"{client.sim.base_url}/client/config", data=b"{}", headers={**client.auth, "Content-Type": "text/plain"}, timeout=5)
    assert (plain.status_code, _error(plain)) == (415, 9727)
    no_type = client.session.post(f"{client.sim.base_url}/users/create", data=b"{}", headers=client.auth, timeout=5)
    assert (no_type.status_code, _error(no_type)) == (415, 9727)
    garbage = client.session.post(f"{client.sim.base_url}/users/create", data=b"{nope", headers={**client.auth, "Content-Type": "application/json"}, timeout=5)
    assert (garbage.status_code, _error(garbage)) == (400, 9602)


def test_client_config_get_and_post(fresh, receiver):
    config = fresh.get("client/config").json()
    assert config["countryISO2ACode"] == "US"
    assert config["defaultPlatform"] == "volumestore"
    assert config["locationName"]
    assert config["websiteURL"].startswith("https://")
    assert "mdmInfo" not in config
    mdm_info = {"id": "ours-123", "name": "mdm-host", "metadata": "mdm.example.org"}
    posted = fresh.post(
        "client/config",
        {"mdmInfo": mdm_info, "notificationUrl": receiver.url, "notificationAuthToken": "s3cret", "notificationTypes": ["ASSET_MANAGEMENT", "ASSET_COUNT"]},
    )
    assert posted.status_code == 200, posted.text
    body = posted.json()
    assert body["mdmInfo"] == mdm_info
    assert body["notificationUrl"] == receiver.url
    assert body["notificationAuthToken"] == "s3cret"
    assert body["subscribedNotificationTypes"] == ["ASSET_MANAGEMENT", "ASSET_COUNT"]
    assert fresh.get("client/config").json()["mdmInfo"] == mdm_info
    assert fresh.get("assets").json()["mdmInfo"] == mdm_info


def test_client_config_validation(fresh):
    good = {"id": "a", "name": "b", "metadata": "c"}
    cases = [
        ({"mdmInfo": {"id": "a", "name": "b"}}, 9723),
        ({"mdmInfo": {**good, "id": "x" * 101}}, 9724),
        ({"mdmInfo": {**good, "name": "x" * 101}}, 9725),
        ({"mdmInfo": {**good, "metadata": "x" * 256}}, 9713),
        ({"notificationUrl": "https://a.example/n"}, 9710),
        ({"notificationAuthToken": "t"}, 9710),
        ({"notificationUrl": "https://a.example/" + "x" * 600, "notificationAuthToken": "t"}, 9711),
        ({"notificationUrl": "http://a.example/n", "notificationAuthToken": "t"}, 9712),
    ]
    for body, code in cases:
        response = fresh.post("client/config", body)
        assert (response.status_code, _error(response)) == (400, code), body
    assert "mdmInfo" not in fresh.get("client/config").json()


def test_stoken_format_and_secrecy(tmp_path):
    one, two = Simulator(seed=3), Simulator(seed=3)
    assert one.token == two.token != Simulator(seed=4).token
    decoded = json.loads(base64.b64decode(one.token))
    assert set(decoded) == {"token", "expDate", "orgName"}
    assert decoded["orgName"] == "Springfield Schools"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", decoded["expDate"])
    with one:
        for text in (repr(one), repr(one.state), repr(one.faults), repr(one._token), str(one.api)):
            assert one.token not in text and decoded["token"] not in text
        path = one.write_token(tmp_path / "sub" / "sim.vpptoken")
        assert path.read_text() == one.token
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700  # a folder it makes is its owner's only


@pytest.mark.slow  # requests held 2 s to overlap
def test_more_than_five_requests_of_one_token_at_once_get_9646(fresh):
    """Apple's limit is per organization: a sixth request in flight is refused (429, 9646)."""
    import threading

    fresh.sim.faults.add("slow", endpoint="assets", seconds=2.0)  # long enough for 8 threads to overlap on a loaded machine
    results: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        import requests

        response = requests.get(f"{fresh.sim.base_url}/assets", headers=fresh.auth, timeout=10)
        with lock:
            results.append(response.status_code if response.status_code == 200 else response.json()["errorNumber"])

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] * 5 + [9646] * 3
    assert fresh.sim.in_flight.peak == 5 and fresh.sim.in_flight.refused == 3


def test_unlimited_assets_follow_the_unlimited_parameter(fresh):
    adam_id, pricing = fresh.sim.purchase(unlimited=True)

    def listed(**params):
        pages = fresh.all_pages("assets", params)
        return (
            [a for p in pages for a in p["assets"] if a["adamId"] == adam_id],
            [a for p in pages for a in p.get("unlimitedAssets", []) if a["adamId"] == adam_id],
        )

    [plain], [] = listed()
    assert plain["totalCount"] == 2147483647
    assert listed(unlimited="false") == ([], [])
    [], [apart] = listed(unlimited="true")
    assert not {"availableCount", "retiredCount", "totalCount"} & set(apart)
    assert apart["adamId"] == adam_id and apart["pricingParam"] == pricing
