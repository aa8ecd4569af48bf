"""An account's whole life through ``/api/v1/vpp/accounts`` (add, renew, remove) against the
simulator, with the checks of the console's Add, Renew token and Remove; the token never in an
answer nor a log line."""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from mdm_core.host import Host

from .conftest import PASSWORD, WEB_CONFIG, csrf, sign_in, token_for

ACCOUNTS = "/api/v1/vpp/accounts"
RENEW_DISTRICT = 'PATCH /api/v1/vpp/accounts/district with the text of the new .vpptoken file as "token"'


@pytest.fixture
def api_host(make_host: Any, database_url: str) -> Host:
    """A host on SQLite or PostgreSQL with an admin and a viewer, no account yet."""
    from mdm_core.web.access import add_admin

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD, "admin")
    add_admin(host, "victor", PASSWORD, "viewer")
    return host


@pytest.fixture
def api(api_host: Host) -> Iterator[Any]:
    """A client of ``api_host`` (its requests carry an admin's API token)."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    with TestClient(create_app(api_host), headers=token_for(api_host, "admin")) as client:
        yield client


def _names(host: Host) -> list[str]:
    from plugins.vpp.accounts import list_accounts

    return [a["name"] for a in list_accounts(host)]


def _one_line_error(response: Any, status: int, secret: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert "\n" not in error and secret not in response.text and "--token-file" not in error and "--take-over" not in error, error
    return str(error)


def test_an_account_is_added_renewed_and_removed_through_the_api(api_host: Host, api: Any, simulator: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = simulator.token
    body = {"name": "district", "token": token, "service_url": simulator.base_url, "interval_seconds": 900, "notifications": "off"}
    added = api.post(ACCOUNTS, json=body)
    assert added.status_code == 201, added.text
    assert added.json() == api.get(f"{ACCOUNTS}/district").json()
    assert (added.json()["token_state"], added.json()["interval_seconds"], added.json()["notifications"]) == ("valid", 900, "off")
    assert _names(api_host) == ["district"] and simulator.state.mdm_info["name"]  # the location is claimed
    synced = api.post(f"{ACCOUNTS}/district/sync")
    assert synced.status_code == 202, synced.text
    _wait_run(api, synced.json()["id"])

    renewed = api.patch(f"{ACCOUNTS}/district", json={"token": token, "interval_seconds": 1800})
    assert renewed.status_code == 200 and (renewed.json()["token_state"], renewed.json()["interval_seconds"]) == ("valid", 1800), renewed.text

    removed = api.delete(f"{ACCOUNTS}/district")
    assert removed.status_code == 200, removed.text
    answer = removed.json()
    assert (answer["name"], answer["removed"], answer["notice"]) == ("district", True, None)
    assert answer["forgotten"]["assets"] == 10 and answer["forgotten"]["licenses"] > 0  # the mirror forgotten here; Apple keeps the licenses
    assert _names(api_host) == [] and api.get(f"{ACCOUNTS}/district").status_code == 404
    assert _one_line_error(api.delete(f"{ACCOUNTS}/district"), 404, token).startswith("no VPP account named")
    for response in (added, renewed, removed):
        assert token not in response.text
    assert token not in caplog.text and token[:40] not in caplog.text


def _wait_run(client: Any, run_id: int) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 30
    while True:
        run = client.get(f"/api/v1/vpp/runs/{run_id}").json()
        if run["status"] != "running":
            assert run["status"] == "ok", run
            return dict(run)
        assert time.monotonic() < deadline, run
        time.sleep(0.05)  # polling a background sync the way an API client does


def test_a_location_another_mdm_manages_needs_take_over_to_add_or_renew(api_host: Host, api: Any, simulator: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = simulator.token
    simulator.claim_by_other_mdm(name="RivalMDM", metadata="rival.example.com")
    body = {"name": "district", "token": token, "service_url": simulator.base_url}
    refused = api.post(ACCOUNTS, json=body)
    error = _one_line_error(refused, 409, token)
    assert "RivalMDM (rival.example.com)" in error and error.endswith('send this again with "take_over": true'), error
    assert _names(api_host) == [] and simulator.state.mdm_info["name"] == "RivalMDM"  # nothing claimed, nothing added
    assert _one_line_error(api.post(ACCOUNTS, json={**body, "take_over": False}), 409, token)
    taken = api.post(ACCOUNTS, json={**body, "take_over": True})
    assert taken.status_code == 201 and simulator.state.mdm_info["name"] != "RivalMDM", taken.text

    simulator.claim_by_other_mdm(name="RivalMDM", metadata="rival.example.com")
    refused = api.patch(f"{ACCOUNTS}/district", json={"token": token})
    error = _one_line_error(refused, 409, token)
    assert "RivalMDM (rival.example.com)" in error and error.endswith('send this again with "take_over": true'), error
    assert simulator.state.mdm_info["name"] == "RivalMDM"
    alone = _one_line_error(api.patch(f"{ACCOUNTS}/district", json={"take_over": True}), 422, token)
    assert alone == '"take_over" goes with "token": renewing the token claims the location back'
    renewed = api.patch(f"{ACCOUNTS}/district", json={"token": token, "take_over": True})
    assert renewed.status_code == 200 and simulator.state.mdm_info["name"] != "RivalMDM", renewed.text
    assert token not in caplog.text


def _expired(simulator: Any) -> str:
    fields = json.loads(base64.b64decode(simulator.token))
    fields["expDate"] = "2020-01-01T00:00:00+0000"
    return base64.b64encode(json.dumps(fields).encode()).decode()


def test_bad_adds_and_renewals_are_one_line_and_change_nothing(
    api_host: Host, api: Any, simulator: Any, caplog: pytest.LogCaptureFixture, database_url: str
) -> None:
    caplog.set_level(logging.DEBUG)
    token = simulator.token
    good = {"name": "district", "token": token, "service_url": simulator.base_url}
    assert api.post(ACCOUNTS, json=good).status_code == 201
    before = api.get(f"{ACCOUNTS}/district").json()
    expired = _expired(simulator)
    cases: list[tuple[dict[str, Any], int, str]] = [
        (good, 409, "an account named 'district' already exists: choose another name, or PATCH /api/v1/vpp/accounts/district to change it"),
        ({**good, "name": "second"}, 409, "is already account 'district': renew it with " + RENEW_DISTRICT),  # a conflict with this host's accounts
        ({**good, "name": "second", "token": "not a token"}, 422, "the token sent is not base64"),
        ({**good, "name": "second", "token": expired}, 422, "the token sent expired on 2020-01-01"),
        ({**good, "name": "second", "tokn": token}, 422, "unknown field(s): tokn; send {"),
        ({**good, "name": "second", "token": 5}, 422, "token must be the text of the .vpptoken file"),
        ({**good, "name": 5}, 422, "name 5 is not valid: give the account's name as text"),
        ({"name": "second"}, 422, "token missing: send {"),
        ({**good, "name": "second", "take_over": "yes"}, 422, 'take_over "yes" is not valid: give true or false'),
        ({**good, "name": "second", "interval_seconds": "soon"}, 422, "interval_seconds 'soon' is not valid"),
        ({**good, "name": "second", "notifications": "yes"}, 422, 'notifications "yes" is not valid: give "on" or "off"'),
        ({**good, "name": "a b"}, 422, "account name 'a b' is not valid"),
        ({**good, "name": "second", "token": "x" * 70000}, 413, "the token sent is larger than"),
    ]
    for body, status, message in cases:
        error = _one_line_error(api.post(ACCOUNTS, json=body), status, token)
        assert message in error, (body.keys(), error)
    assert _one_line_error(api.post(ACCOUNTS, content=b"{not json"), 400, token).startswith("the body is not JSON: send {")
    assert _one_line_error(api.post(ACCOUNTS, json=[good]), 422, token).startswith("send {")

    renewals: list[tuple[dict[str, Any], int, str]] = [
        ({"token": "not a token"}, 422, "the token sent is not base64"),
        ({"token": expired}, 422, "the token sent expired on 2020-01-01"),
        ({"token": token, "tokn": 1}, 422, "unknown field(s): tokn"),
        ({"token": None}, 422, "token must be the text of the .vpptoken file"),
        ({"token": token, "take_over": 1}, 422, "take_over 1 is not valid"),
        ({"token": token, "interval_seconds": 5}, 422, "interval_seconds 5 is too short"),
    ]
    for body, status, message in renewals:
        error = _one_line_error(api.patch(f"{ACCOUNTS}/district", json=body), status, token)
        assert message in error, (body.keys(), error)
    assert _one_line_error(api.patch(f"{ACCOUNTS}/nope", json={"token": token}), 404, token).startswith("no VPP account named 'nope'")

    simulator.revoke_token()  # Apple refuses the token: nothing is added, nothing renewed
    revoked = _one_line_error(api.post(ACCOUNTS, json={**good, "name": "second"}), 400, token)
    assert revoked.startswith("cannot read the location of the token sent from "), revoked
    assert _one_line_error(api.patch(f"{ACCOUNTS}/district", json={"token": token}), 400, token).startswith("cannot check the token sent: ")
    assert _names(api_host) == ["district"] and api.get(f"{ACCOUNTS}/district").json() == before
    assert token not in caplog.text


def _console(api_host: Host) -> Any:
    """A browser signed in as the admin ``alice`` (close it)."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    session = TestClient(create_app(api_host))
    assert sign_in(session, "alice").status_code == 303
    return session


def _flash(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="flash error"[^>]*>([^<]*)</p>', page)]


def test_an_account_whose_sync_runs_is_not_removed_a_conflict_in_the_api_and_the_console(api_host: Host, api: Any, simulator: Any) -> None:
    from plugins.vpp.accounts import account_lock

    body = {"name": "district", "token": simulator.token, "service_url": simulator.base_url}
    assert api.post(ACCOUNTS, json=body).status_code == 201
    before = api.get(f"{ACCOUNTS}/district").json()
    busy = "a sync of district is running: remove the account when it has finished"
    lock = account_lock(api_host, _account_id(api_host))
    lock.acquire()  # as a sync of the account, in any process, holds it
    try:
        assert _one_line_error(api.delete(f"{ACCOUNTS}/district"), 409, simulator.token) == busy
        with _console(api_host) as session:
            refused = session.post("/vpp/accounts/district/remove", data={"confirm": "district", "csrftoken": csrf(session)}, follow_redirects=False)
            assert refused.status_code == 303 and refused.headers["location"] == "/vpp"
            assert _flash(session.get("/vpp").text) == [busy]  # the Apple Volume Purchase Program page, the account still on it
        assert _names(api_host) == ["district"] and api.get(f"{ACCOUNTS}/district").json() == before  # nothing removed
    finally:
        lock.release()
    assert api.delete(f"{ACCOUNTS}/district").status_code == 200 and _names(api_host) == []


def _account_id(host: Host) -> int:
    from plugins.vpp.views import get_account

    with host.db.session() as session:
        account_id = get_account(session, "district").id
    assert account_id is not None
    return account_id


def test_a_location_already_an_account_is_a_conflict_in_the_api_and_the_console(api_host: Host, api: Any, simulator: Any) -> None:
    from sqlalchemy import update
    from sqlmodel import col

    from plugins.vpp.models import VppAccount
    from plugins.vpp.simulator import Simulator

    token = simulator.token
    assert api.post(ACCOUNTS, json={"name": "district", "token": token, "service_url": simulator.base_url}).status_code == 201
    with _console(api_host) as session:
        form = {"csrftoken": csrf(session), "name": "second", "interval": "900", "service_url": simulator.base_url}
        added = session.post("/vpp/add", data=form, files={"token_file": ("district.vpptoken", token.encode(), "application/octet-stream")})
        assert added.status_code == 409 and token not in added.text, added.text
        [error] = _flash(added.text)
        assert error == f"this token's location {simulator.state.location_name} is already account 'district': renew it with Renew token of account 'district'"
    with Simulator(seed=12, assets=2, devices=2, users=2, async_delay=0) as other:
        assert api.post(ACCOUNTS, json={"name": "annex", "token": other.token, "service_url": other.base_url}).status_code == 201
        # Apple's one service holds every location: annex's requests go where district's do
        api_host.db.run_write(lambda s: s.execute(update(VppAccount).where(col(VppAccount.name) == "annex").values(service_url=simulator.base_url)))
        before = api.get(f"{ACCOUNTS}/annex").json()
        error = _one_line_error(api.patch(f"{ACCOUNTS}/annex", json={"token": token}), 409, token)
        assert error == (
            f"the token sent belongs to location {simulator.state.location_name}, already account 'district', "
            f"not to account 'annex' ({other.state.location_name}): renew it with {RENEW_DISTRICT}"
        )
        assert api.get(f"{ACCOUNTS}/annex").json() == before and _names(api_host) == ["annex", "district"]


def test_viewers_and_strangers_cannot_add_renew_or_remove(api_host: Host, api: Any, simulator: Any) -> None:
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    body = {"name": "district", "token": simulator.token, "service_url": simulator.base_url}
    assert api.post(ACCOUNTS, json=body).status_code == 201
    app = create_app(api_host)
    with TestClient(app) as anonymous, TestClient(app, headers=token_for(api_host, "viewer")) as viewer, TestClient(app) as session:
        assert sign_in(session, "alice").status_code == 303
        writes = (
            ("POST", ACCOUNTS, {**body, "name": "other"}),
            ("PATCH", f"{ACCOUNTS}/district", {"token": simulator.token}),
            ("DELETE", f"{ACCOUNTS}/district", None),
        )
        for method, path, sent in writes:
            assert anonymous.request(method, path, json=sent).status_code == 401
            refused = viewer.request(method, path, json=sent)
            assert refused.status_code == 403 and "can only read" in refused.json()["error"] and simulator.token not in refused.text
            assert session.request(method, path, json=sent).status_code == 403  # a signed-in browser without the CSRF token
    assert _names(api_host) == ["district"]


def test_a_service_url_with_a_password_or_query_is_refused_by_the_api_and_the_console_as_by_the_cli(
    api_host: Host, api: Any, simulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The API's and the console's Add took any ``service_url``: one with a user name and
    password (or a query) at a working service was added and stored, and one Apple could not be
    reached at echoed the password in the error. Both now refuse it as ``--service-url`` does,
    in one line showing ``***``, before Apple is called; nothing added."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    caplog.set_level(logging.DEBUG)
    token, base = simulator.token, simulator.base_url
    with_password = base.replace("://", "://admin:hunter2@")
    bad = [with_password, base + "?key=hunter2", base + "#hunter2", "ftp://apple.example/mdm/v2", "http://"]
    requests_before = sum(simulator.requests.values())
    for url in bad:
        error = _one_line_error(api.post(ACCOUNTS, json={"name": "district", "token": token, "service_url": url}), 422, token)
        assert "is not an http(s) URL of a host and a path (no user name, password, query or fragment)" in error, error
        assert error.startswith("the account's service_url ") and "hunter2" not in error, error
    with TestClient(create_app(api_host)) as browser:
        assert sign_in(browser, "alice").status_code == 303
        form = {"csrftoken": browser.cookies.get("csrftoken"), "name": "district", "interval": "900", "service_url": with_password}
        page = browser.post("/vpp/add", data=form, files={"token_file": ("district.vpptoken", token.encode())})
        assert page.status_code == 422 and "the account&#39;s Service URL http://***@" in page.text and "hunter2" not in page.text, page.text
    assert _names(api_host) == [] and sum(simulator.requests.values()) == requests_before  # nothing added, Apple never called
    assert "hunter2" not in caplog.text
    assert api.post(ACCOUNTS, json={"name": "district", "token": token, "service_url": base + "/"}).status_code == 201  # a trailing slash is fine
