"""Tests for plugins.vpp.apple.client: errors, retries, mdmInfo, config cache, writes, lookup, secrecy."""

from __future__ import annotations

import base64
import json
import logging
import random
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from freezegun import freeze_time

from plugins.vpp.apple import errors as E
from plugins.vpp.apple.client import AppsBooksClient, RetryPolicy, parse_response
from plugins.vpp.apple.stoken import SToken

from .test_errors import APPLE_ERROR_CASES

INNER = "INNER-SECRET-5e6f7a"
RAW = base64.b64encode(json.dumps({"token": INNER, "expDate": "2030-11-08T22:33:22+0000", "orgName": "Example School"}).encode()).decode()
BASE = "https://vpp.test/mdm/v2"
LOOKUP = "https://uclient.test/WebObjects/MZStorePlatform.woa/wa/lookup"
INVITE = "https://buy.test/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?inviteCode=%25inviteCode%25&mt=8"
URLS = {
    "clientConfig": f"{BASE}/client/config",
    "getAssets": f"{BASE}/assets",
    "getAssignments": f"{BASE}/assignments",
    "getUsers": f"{BASE}/users",
    "associateAssets": f"{BASE}/assets/associate",
    "disassociateAssets": f"{BASE}/assets/disassociate",
    "revokeAssets": f"{BASE}/assets/revoke",
    "createUsers": f"{BASE}/users/create",
    "updateUsers": f"{BASE}/users/update",
    "retireUsers": f"{BASE}/users/retire",
    "eventStatus": f"{BASE}/status",
    "contentMetadataLookup": LOOKUP,
    "invitationEmail": INVITE,
}
COMMON = {"uId": "2049025000431439", "tokenExpirationDate": "2030-11-08T22:33:22+0000"}


def service_config(**limits: int) -> dict:
    return {
        "urls": URLS,
        "limits": {
            "maxAssets": 25,
            "maxSerialNumbers": 1000,
            "maxClientUserIds": 1000,
            "maxUsers": 100,
            "maxRevokeSerialNumbers": 100,
            "maxRevokeClientUserIds": 100,
            **limits,
        },
        "errorCodes": [{"errorNumber": 9621, "errorMessage": "Token expired"}],
        "notificationTypes": ["ASSET_MANAGEMENT", "ASSET_COUNT", "USER_MANAGEMENT", "USER_ASSOCIATED"],
    }


class FakeClock:
    """Injected sleep + monotonic: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


class MaxRng(random.Random):
    """uniform() returns its upper bound, so jittered waits are predictable."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json=service_config())
        yield mock


def make_client(clock: FakeClock, **kwargs) -> AppsBooksClient:
    kwargs.setdefault("rng", MaxRng())
    return AppsBooksClient(SToken.parse(RAW), BASE, sleep=clock.sleep, monotonic=clock.monotonic, **kwargs)


def calls_to(mock: responses.RequestsMock, url: str) -> list:
    return [c for c in mock.calls if c.request.url.split("?")[0] == url]


# ------------------------------------------------------------------ basics


def test_auth_header_and_service_config_has_no_auth(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], json={**COMMON, "locationName": "Main"})
    client = make_client(clock)
    assert client.get_client_config()["locationName"] == "Main"
    (config_call,) = calls_to(rsps, f"{BASE}/service/config")
    assert "Authorization" not in config_call.request.headers
    (call,) = calls_to(rsps, URLS["clientConfig"])
    assert call.request.headers["Authorization"] == f"Bearer {RAW}"


def test_timeout_is_passed_on_every_request(clock) -> None:
    seen: list = []

    class Spy(requests.Session):
        def request(self, *args, **kwargs):
            seen.append(kwargs.get("timeout"))
            return super().request(*args, **kwargs)

    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json=service_config())
        mock.add(responses.GET, URLS["clientConfig"], json=COMMON)
        client = make_client(clock, session=Spy(), timeout=(1.5, 9.0))
        client.get_client_config()
    assert seen == [(1.5, 9.0), (1.5, 9.0)]


def test_service_config_cached_then_reread_after_ttl(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], json=COMMON)
    client = make_client(clock, service_config_ttl=300)
    config = client.service_config()
    assert config.urls["getAssets"] == URLS["getAssets"]
    assert config.limit("maxAssets", 1) == 25
    assert config.limit("missing", 7) == 7
    assert config.error_codes == {9621: "Token expired"}
    assert "ASSET_COUNT" in config.notification_types
    client.get_client_config()
    clock.now += 299
    client.get_client_config()
    assert len(calls_to(rsps, f"{BASE}/service/config")) == 1
    clock.now += 2
    client.get_client_config()
    assert len(calls_to(rsps, f"{BASE}/service/config")) == 2


def test_every_url_comes_from_service_config(clock) -> None:
    moved = {k: v.replace("https://vpp.test/mdm/v2", "https://moved.test/x") for k, v in URLS.items()}
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json={"urls": moved})
        mock.add(responses.GET, "https://moved.test/x/client/config", json=COMMON)
        assert make_client(clock).get_client_config() == COMMON


def test_service_config_without_urls_is_malformed(clock) -> None:
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json={"limits": {}})
        with pytest.raises(E.MalformedResponseError, match="urls"):
            make_client(clock).service_config()


def test_missing_url_key(clock) -> None:
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json={"urls": {"clientConfig": URLS["clientConfig"]}})
        with pytest.raises(E.MalformedResponseError, match="getAssets"):
            make_client(clock).url("getAssets")


def test_refuses_to_send_token_over_plain_http(clock) -> None:
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json={"urls": {**URLS, "clientConfig": "http://evil.test/client/config"}})
        with pytest.raises(E.TransportError, match="non-HTTPS"):
            make_client(clock).get_client_config()
        assert len(mock.calls) == 1


# ------------------------------------------------------------------ error mapping


@pytest.mark.parametrize("use_real_status", [True, False], ids=["http-status", "http-200"])
@pytest.mark.parametrize("number,status,cls", APPLE_ERROR_CASES)
def test_error_codes(rsps, clock, number, status, cls, use_real_status) -> None:
    body = {"errorNumber": number, "errorMessage": f"message {number}", "errorInfo": {"serialNumbers": ["C02X"]}}
    rsps.add(responses.GET, URLS["clientConfig"], json=body, status=status if use_real_status else 200)
    client = make_client(clock, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(cls) as info:
        client.get_client_config()
    err = info.value
    assert err.error_number == number
    assert err.http_status == (status if use_real_status else 200)
    assert err.error_info == {"serialNumbers": ["C02X"]}
    assert f"message {number}" in str(err)
    assert "/mdm/v2/client/config" in str(err)


@pytest.mark.parametrize(
    "status,cls",
    [
        (429, E.RateLimitedError),
        (500, E.ServerError),
        (502, E.ServerError),
        (503, E.ServerError),
        (401, E.TokenInvalidError),
        (403, E.TokenInvalidError),
        (404, E.RequestRejectedError),
        (415, E.RequestRejectedError),
    ],
)
@pytest.mark.parametrize("body", [b"", b"<html>oops</html>", b'{"unrelated": 1}'])
def test_http_status_without_error_number(status, cls, body) -> None:
    with pytest.raises(cls) as info:
        parse_response(status, {}, body, url=f"{BASE}/assets")
    assert info.value.http_status == status
    assert info.value.error_number is None


def test_empty_5xx_is_server_error_not_malformed() -> None:
    with pytest.raises(E.ServerError):
        parse_response(503, {"Retry-After": "5"}, b"", url=f"{BASE}/assets")


@pytest.mark.parametrize("body", [b"", b"not json", b"[1,2]", b'"str"', b"null", b"\xff\xfe"])
def test_malformed_2xx(body) -> None:
    with pytest.raises(E.MalformedResponseError):
        parse_response(200, {}, body, url=f"{BASE}/assets")


def test_parse_response_ok_and_zero_error_number() -> None:
    assert parse_response(200, {}, b'{"a": 1, "errorNumber": 0}', url="u") == {"a": 1, "errorNumber": 0}
    with pytest.raises(E.TokenExpiredError):
        parse_response(200, {}, b'{"errorNumber": "9621"}', url="u")
    with pytest.raises(E.MalformedResponseError):
        parse_response(200, {}, b'{"errorNumber": [1]}', url="u")


def test_retry_after_header_kept_on_error() -> None:
    with pytest.raises(E.RateLimitedError) as info:
        parse_response(429, {"retry-after": "12"}, b"", url="u")
    assert info.value.retry_after == "12"


# ------------------------------------------------------------------ retries


def test_retry_after_seconds_honoured(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], status=429, headers={"Retry-After": "7"}, json={"errorNumber": 9646, "errorMessage": "Too many requests"})
    rsps.add(responses.GET, URLS["clientConfig"], status=503, headers={"Retry-After": "120"}, body="")
    rsps.add(responses.GET, URLS["clientConfig"], json=COMMON)
    assert make_client(clock).get_client_config() == COMMON
    assert clock.sleeps == [7.0, 120.0]


@freeze_time("2024-03-01 12:00:00")
def test_retry_after_http_date_honoured(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], status=503, headers={"Retry-After": "Fri, 01 Mar 2024 12:00:45 GMT"}, json={"errorNumber": 9603})
    rsps.add(responses.GET, URLS["clientConfig"], json=COMMON)
    assert make_client(clock).get_client_config() == COMMON
    assert clock.sleeps == [45.0]


def test_retry_after_longer_than_the_budget_ends_with_the_time_apple_asks_for(rsps, clock) -> None:
    # Apple: calling before Retry-After only prolongs the block; capping it to 30 s and
    # retrying (the old behaviour) was calling Apple early.
    rsps.add(responses.GET, URLS["clientConfig"], status=429, headers={"Retry-After": "5000"}, body="")
    rsps.add(responses.GET, URLS["clientConfig"], json=COMMON)
    client = make_client(clock, retry=RetryPolicy(max_total_wait=100), wall_clock=lambda: 1_700_000_000.0)
    with pytest.raises(E.RateLimitedError) as info:
        client.get_client_config()
    assert clock.sleeps == []
    assert len(calls_to(rsps, URLS["clientConfig"])) == 1
    message = str(info.value)
    assert "Apple asks to wait until " in message and "\n" not in message
    assert info.value.retry_at == 1_700_005_000.0
    # the same client (and any sharing its gate) does not call Apple before then either
    with pytest.raises(E.RateLimitedError, match="Apple asks to wait until"):
        client.get_client_config()
    assert len(calls_to(rsps, URLS["clientConfig"])) == 1


def test_retry_after_zero_still_waits_the_back_off_floor(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], status=503, headers={"Retry-After": "0"}, json={"errorNumber": 9603})
    rsps.add(responses.GET, URLS["clientConfig"], json=COMMON)
    make_client(clock, retry=RetryPolicy(base_delay=1.5)).get_client_config()
    assert clock.sleeps == [0.75]  # the floor of the back-off: half the base delay


def test_backoff_never_retries_at_almost_zero_seconds() -> None:
    from plugins.vpp.apple.transport import backoff_delay

    class MinRng(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return a

    policy = RetryPolicy(base_delay=1, max_delay=60)
    assert [backoff_delay(policy, i, MinRng()) for i in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_clients_sharing_a_gate_share_the_back_off(rsps, clock) -> None:
    from plugins.vpp.apple.limiter import TokenGate

    gate = TokenGate()
    rsps.add(responses.GET, URLS["clientConfig"], status=429, headers={"Retry-After": "20"}, json={"errorNumber": 9646})
    first = make_client(clock, gate=gate, wall_clock=lambda: clock.now, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(E.RateLimitedError):  # one attempt only: Apple's 20 s stay recorded in the gate
        first.get_client_config()
    clock.now += 5  # 5 s later, another job of the same token
    rsps.add(responses.GET, URLS["clientConfig"], json=COMMON)
    other = make_client(clock, gate=gate, wall_clock=lambda: clock.now)
    sleeps_before = len(clock.sleeps)
    assert other.get_client_config() == COMMON
    assert clock.sleeps[sleeps_before:] == [15]  # it waited for the rest of Apple's back-off, once


def test_retry_after_beyond_total_budget_raises_at_once(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], status=429, headers={"Retry-After": "400"}, body="")
    with pytest.raises(E.RateLimitedError):
        make_client(clock).get_client_config()
    assert clock.sleeps == []
    assert len(calls_to(rsps, URLS["clientConfig"])) == 1


def test_exponential_backoff_bounded_by_max_attempts(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], status=500, json={"errorNumber": 9603})
    client = make_client(clock, retry=RetryPolicy(max_attempts=5, base_delay=1, max_delay=5))
    with pytest.raises(E.ServerError):
        client.get_client_config()
    assert clock.sleeps == [1, 2, 4, 5]  # upper bounds of full jitter, capped at max_delay
    assert len(calls_to(rsps, URLS["clientConfig"])) == 5


def test_full_jitter_stays_within_bounds(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], status=502, body="bad gateway")
    client = make_client(clock, rng=random.Random(42), retry=RetryPolicy(max_attempts=6, base_delay=2))
    with pytest.raises(E.ServerError):
        client.get_client_config()
    assert len(clock.sleeps) == 5
    for index, wait in enumerate(clock.sleeps):
        assert 0 <= wait <= 2 * 2**index
    assert len(set(clock.sleeps)) == 5  # jittered, not fixed


def test_backoff_bounded_by_max_total_wait(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], status=429, json={"errorNumber": 9646})
    client = make_client(clock, retry=RetryPolicy(max_attempts=50, base_delay=1, max_total_wait=10))
    with pytest.raises(E.RateLimitedError):
        client.get_client_config()
    assert clock.sleeps == [1, 2, 4]  # the next wait (8) would pass the 10 s budget
    assert len(calls_to(rsps, URLS["clientConfig"])) == 4


def test_total_wait_counts_elapsed_request_time(rsps, clock) -> None:
    def slow(request):
        clock.now += 8  # each request takes 8 s
        return 503, {}, ""

    rsps.add_callback(responses.GET, URLS["clientConfig"], callback=slow)
    client = make_client(clock, retry=RetryPolicy(max_attempts=50, base_delay=1, max_total_wait=18))
    with pytest.raises(E.ServerError):
        client.get_client_config()
    assert clock.sleeps == [1]  # 8 + 1 + 8 = 17 s spent; + 2 would exceed 18


@pytest.mark.parametrize(
    "exc,reason",
    [
        (requests.ConnectionError("[Errno 111] Connection refused"), "connection refused"),
        (requests.ConnectionError("Connection reset by peer"), "connection reset"),
        (requests.ConnectionError("Failed to resolve 'vpp.test' (Name or service not known)"), "DNS lookup failed"),
        (requests.ReadTimeout("read timed out"), "timed out"),
        (requests.exceptions.ChunkedEncodingError("broken"), "connection broken"),
    ],
)
def test_transport_errors_are_retried(rsps, clock, exc, reason) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], body=exc)
    rsps.add(responses.GET, URLS["clientConfig"], json=COMMON)
    assert make_client(clock).get_client_config() == COMMON
    assert len(clock.sleeps) == 1
    rsps.add(responses.GET, URLS["clientConfig"], body=exc)
    with pytest.raises(E.TransportError) as info:
        make_client(clock, retry=RetryPolicy(max_attempts=1)).get_client_config()
    assert reason in str(info.value)
    assert "vpp.test" in str(info.value) and "--service-url" in str(info.value)


def test_ssl_error_not_retried(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(E.TransportError, match="TLS"):
        make_client(clock).get_client_config()
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "number,status", [(9621, 401), (9625, 401), (9601, 401), (9622, 200), (9722, 401), (9721, 400), (9650, 400), (9602, 400), (None, 403), (None, 404)]
)
def test_never_retried(rsps, clock, number, status) -> None:
    body = {"errorNumber": number} if number else {}
    rsps.add(responses.GET, URLS["clientConfig"], status=status, json=body, headers={"Retry-After": "1"})
    with pytest.raises(E.VppError) as info:
        make_client(clock).get_client_config()
    assert not E.is_retryable(info.value)
    assert len(calls_to(rsps, URLS["clientConfig"])) == 1
    assert clock.sleeps == []


def test_retry_is_logged_at_info_without_secrets(rsps, clock, caplog) -> None:
    rsps.add(responses.GET, URLS["eventStatus"], status=503, body="")
    rsps.add(responses.GET, URLS["eventStatus"], json={**COMMON, "eventStatus": "PENDING"})
    with caplog.at_level(logging.DEBUG, logger="plugins.vpp"):
        make_client(clock).event_status("evt-1")
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 1 and retries[0].levelno == logging.INFO  # shown with -v; the final error is what users see
    text = retries[0].getMessage()
    assert "/mdm/v2/status" in text and "ServerError" in text and "retry 1 of 4" in text
    assert "evt-1" not in text  # no query string
    assert RAW not in caplog.text


# ------------------------------------------------------------------ mdmInfo


def test_mdm_conflict_names_other_mdm(rsps, clock) -> None:
    other = {"id": "their-id", "name": "Other MDM", "metadata": "other.example.com v3"}
    rsps.add(responses.GET, URLS["clientConfig"], json={**COMMON, "mdmInfo": other})
    client = make_client(clock, mdm_info_id="our-id")
    with pytest.raises(E.MdmConflictError) as info:
        client.get_client_config()
    err = info.value
    assert (err.other_id, err.other_name, err.other_metadata) == ("their-id", "Other MDM", "other.example.com v3")
    assert "Other MDM" in str(err) and "other.example.com v3" in str(err)
    assert len(calls_to(rsps, URLS["clientConfig"])) == 1


def test_mdm_conflict_on_any_authenticated_response(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["eventStatus"], json={**COMMON, "eventStatus": "COMPLETE", "mdmInfo": {"id": "x", "name": "X", "metadata": ""}})
    with pytest.raises(E.MdmConflictError):
        make_client(clock, mdm_info_id="our-id").event_status("e")


@pytest.mark.parametrize("extra", [{}, {"mdmInfo": {"id": "our-id", "name": "Us", "metadata": "m"}}, {"mdmInfo": None}])
def test_mdm_info_absent_or_own_is_fine(rsps, clock, extra) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], json={**COMMON, **extra})
    assert make_client(clock, mdm_info_id="our-id").get_client_config()["uId"] == COMMON["uId"]


def test_no_mdm_check_without_own_id(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], json={**COMMON, "mdmInfo": {"id": "x", "name": "X"}})
    assert make_client(clock).get_client_config()["mdmInfo"]["id"] == "x"


# ------------------------------------------------------------------ client config


def test_post_client_config_sends_only_given_keys(rsps, clock) -> None:
    rsps.add(responses.POST, URLS["clientConfig"], json={**COMMON, "mdmInfo": {"id": "our-id"}})
    client = make_client(clock, mdm_info_id="our-id")
    client.post_client_config(mdm_info={"id": "our-id", "name": "mdm-host", "metadata": "host"}, notification_types=["ASSET_MANAGEMENT"])
    (call,) = calls_to(rsps, URLS["clientConfig"])
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.body) == {
        "mdmInfo": {"id": "our-id", "name": "mdm-host", "metadata": "host"},
        "notificationTypes": ["ASSET_MANAGEMENT"],
    }


def test_post_client_config_validation(clock) -> None:
    client = make_client(clock)
    with pytest.raises(ValueError):
        client.post_client_config()
    with pytest.raises(ValueError):
        client.post_client_config(notification_url="https://x.test/n")
    with pytest.raises(ValueError):
        client.post_client_config(mdm_info={"id": "x"})


def test_notification_auth_token_never_leaks(rsps, clock, caplog) -> None:
    secret = "NOTIFY-SECRET-91c2"
    rsps.add(responses.POST, URLS["clientConfig"], status=503, body="")
    rsps.add(
        responses.POST,
        URLS["clientConfig"],
        status=400,
        json={"errorNumber": 9711, "errorMessage": f"too long: {secret}", "errorInfo": {"notificationAuthToken": secret}},
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(E.RequestRejectedError) as info:
        make_client(clock).post_client_config(notification_url="https://mdm.test/n", notification_auth_token=secret)
    assert secret not in str(info.value) and secret not in repr(info.value.error_info)
    assert secret not in caplog.text
    assert json.loads(calls_to(rsps, URLS["clientConfig"])[0].request.body)["notificationAuthToken"] == secret


# ------------------------------------------------------------------ writes


def event_callback(bodies: list):
    def callback(request):
        bodies.append(json.loads(request.body))
        return 200, {}, json.dumps({**COMMON, "eventId": f"evt-{len(bodies)}"})

    return callback


def test_associate_chunks_by_limits_and_splits_serials_from_users(clock) -> None:
    bodies: list = []
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json=service_config(maxAssets=2, maxSerialNumbers=3, maxClientUserIds=2))
        mock.add_callback(responses.POST, URLS["associateAssets"], callback=event_callback(bodies))
        assets = [("1", "STDQ"), ("2", "STDQ"), ("3", "PLUS"), ("1", "STDQ")]
        events = make_client(clock).associate_assets(assets, serial_numbers=["S1", "S2", "S3", "S4"], client_user_ids=["u1", "u2", "u3"])
        for call in mock.calls[1:]:
            assert call.request.headers["Content-Type"] == "application/json"
    assert events == [f"evt-{i}" for i in range(1, 9)]
    pairs = set()
    for body in bodies:
        assert ("serialNumbers" in body) != ("clientUserIds" in body)
        assert 1 <= len(body["assets"]) <= 2
        targets = body.get("serialNumbers") or body["clientUserIds"]
        assert len(targets) <= (3 if "serialNumbers" in body else 2)
        pairs |= {(a["adamId"], a["pricingParam"], t) for a in body["assets"] for t in targets}
    assert len(pairs) == 3 * 7


def test_disassociate_uses_its_url(rsps, clock) -> None:
    bodies: list = []
    rsps.add_callback(responses.POST, URLS["disassociateAssets"], callback=event_callback(bodies))
    assert make_client(clock).disassociate_assets([("9", "STDQ")], client_user_ids=["u"]) == ["evt-1"]
    assert bodies == [{"assets": [{"adamId": "9", "pricingParam": "STDQ"}], "clientUserIds": ["u"]}]


def test_revoke_chunks_by_revoke_limits(clock) -> None:
    bodies: list = []
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json=service_config(maxRevokeSerialNumbers=2, maxRevokeClientUserIds=1))
        mock.add_callback(responses.POST, URLS["revokeAssets"], callback=event_callback(bodies))
        events = make_client(clock).revoke_assets(serial_numbers=["a", "b", "c"], client_user_ids=["x", "y"])
    assert len(events) == 4
    assert bodies == [{"serialNumbers": ["a", "b"]}, {"serialNumbers": ["c"]}, {"clientUserIds": ["x"]}, {"clientUserIds": ["y"]}]


def test_users_chunk_by_max_users(clock) -> None:
    bodies: list = []
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json=service_config(maxUsers=2))
        for key in ("createUsers", "updateUsers", "retireUsers"):
            mock.add_callback(responses.POST, URLS[key], callback=event_callback(bodies))
        client = make_client(clock)
        users = [{"clientUserId": f"u{i}", "email": f"u{i}@x.test"} for i in range(5)]
        assert len(client.create_users(users)) == 3
        assert len(client.update_users([{"clientUserId": "u1", "managedAppleId": "a@x.test"}])) == 1
        assert len(client.retire_users(["u1", "u2", "u3"])) == 2
    assert [len(b["users"]) for b in bodies] == [2, 2, 1, 1, 2, 1]
    assert bodies[-1] == {"users": [{"clientUserId": "u3"}]}


def test_write_input_validation(clock) -> None:
    client = make_client(clock)
    with pytest.raises(ValueError):
        client.associate_assets([], serial_numbers=["S"])
    with pytest.raises(ValueError):
        client.associate_assets([("1", "STDQ")])
    with pytest.raises(ValueError):
        client.associate_assets([("1",)], serial_numbers=["S"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        client.associate_assets([("1", "STDQ")], serial_numbers="S1")
    with pytest.raises(ValueError):
        client.revoke_assets()
    with pytest.raises(ValueError):
        client.create_users([])
    with pytest.raises(ValueError):
        client.create_users([{"email": "x@y"}])
    with pytest.raises(ValueError):
        client.create_users([{"clientUserId": "a", "bogus": 1}])
    with pytest.raises(ValueError):
        client.create_users([{"clientUserId": "a"}, {"clientUserId": "a"}])
    with pytest.raises(ValueError):
        client.retire_users([])


def test_partial_chunk_failure_reports_submitted_events(clock) -> None:
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{BASE}/service/config", json=service_config(maxSerialNumbers=1))
        mock.add(responses.POST, URLS["associateAssets"], json={**COMMON, "eventId": "evt-a"})
        mock.add(responses.POST, URLS["associateAssets"], status=400, json={"errorNumber": 9707})
        with pytest.raises(E.RequestRejectedError) as info:
            make_client(clock).associate_assets([("1", "STDQ")], serial_numbers=["S1", "S2"])
    assert info.value.submitted_event_ids == ["evt-a"]


def test_write_without_event_id_is_malformed(rsps, clock) -> None:
    rsps.add(responses.POST, URLS["retireUsers"], json=COMMON)
    with pytest.raises(E.MalformedResponseError, match="eventId"):
        make_client(clock).retire_users(["u"])


# ------------------------------------------------------------------ events


def test_wait_for_event_polls_until_complete(rsps, clock) -> None:
    for state in ("PENDING", "PENDING", "COMPLETE"):
        rsps.add(responses.GET, URLS["eventStatus"], json={**COMMON, "eventStatus": state, "eventType": "ASSOCIATE", "numRequested": 1})
    status = make_client(clock).wait_for_event("evt-9", poll_interval=0.5)
    assert status["eventStatus"] == "COMPLETE"
    assert clock.sleeps == [0.5, 0.5]
    assert parse_qs(urlsplit(rsps.calls[-1].request.url).query) == {"eventId": ["evt-9"]}


def test_wait_for_event_failed(rsps, clock) -> None:
    failed = {**COMMON, "eventStatus": "FAILED", "failures": [{"errorNumber": 9709}]}
    rsps.add(responses.GET, URLS["eventStatus"], json=failed)
    client = make_client(clock)
    assert client.wait_for_event("e")["eventStatus"] == "FAILED"
    with pytest.raises(E.EventFailedError) as info:
        client.wait_for_event("e", raise_on_failure=True)
    assert info.value.error_info == [{"errorNumber": 9709}]


def test_wait_for_event_timeout(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["eventStatus"], json={**COMMON, "eventStatus": "PENDING"})
    with pytest.raises(E.EventTimeoutError, match="still PENDING"):
        make_client(clock).wait_for_event("e", timeout=3, poll_interval=1)
    assert sum(clock.sleeps) <= 3


def test_event_status_requires_event_status_field(rsps, clock) -> None:
    rsps.add(responses.GET, URLS["eventStatus"], json=COMMON)
    with pytest.raises(E.MalformedResponseError):
        make_client(clock).event_status("e")


# ------------------------------------------------------------------ metadata / invitation


def test_lookup_metadata_uses_itvt_cookie_and_batches(rsps, clock) -> None:
    def callback(request):
        ids = parse_qs(urlsplit(request.url).query)["id"][0].split(",")
        return 200, {}, json.dumps({"results": {i: {"id": i, "name": f"App {i}"} for i in ids if i != "3"}, "version": 2, "isAuthenticated": False})

    rsps.add_callback(responses.GET, LOOKUP, callback=callback)
    result = make_client(clock).lookup_metadata(["1", "2", "3", "1"], platform="volumestore", country="US", batch_size=2)
    assert set(result) == {"1", "2"}
    assert result["2"]["name"] == "App 2"
    calls = calls_to(rsps, LOOKUP)
    assert len(calls) == 2
    for call in calls:
        assert call.request.headers["Cookie"] == f"itvt={RAW}"
        assert "Authorization" not in call.request.headers
        assert RAW not in call.request.url
        query = parse_qs(urlsplit(call.request.url).query)
        assert {k: v[0] for k, v in query.items() if k != "id"} == {
            "version": "2",
            "p": "mdm-lockup",
            "caller": "MDM",
            "platform": "volumestore",
            "cc": "us",
            "l": "en",
        }
    assert make_client(clock).lookup_metadata([], platform="volumestore", country="us") == {}


def test_invitation_url(rsps, clock) -> None:
    url = make_client(clock).invitation_url("abc/123")
    assert url == ("https://buy.test/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?inviteCode=abc%2F123&mt=8")


# ------------------------------------------------------------------ secrecy


def test_token_never_in_repr_errors_or_logs(rsps, clock, caplog) -> None:
    rsps.add(responses.GET, URLS["clientConfig"], status=503, body="")
    rsps.add(
        responses.GET,
        URLS["clientConfig"],
        status=401,
        json={"errorNumber": 9622, "errorMessage": f"Invalid authentication token {RAW} {INNER}", "errorInfo": {"token": RAW}},
    )
    client = make_client(clock)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(E.TokenInvalidError) as info:
            client.get_client_config()
        logging.getLogger("test").error("failed: %s %r %r", info.value, info.value, client)
    for text in (str(info.value), repr(info.value), repr(info.value.error_info), repr(client), str(client), caplog.text):
        assert RAW not in text
        assert INNER not in text
    assert "Example School" in repr(client)
