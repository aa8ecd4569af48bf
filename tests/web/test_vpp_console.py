"""The Apple Volume Purchase Program pages and /api/v1/vpp against the simulator: what an
admin sees and does, and how bad input is refused without changing anything."""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col

from mdm_core.host import Host
from mdm_core.testing import MdmRunner

from .conftest import csrf, token_for


def _upload(client: Any, data: bytes, name: str = "second", **fields: str) -> Any:
    form = {"csrftoken": csrf(client), "name": name, "interval": "900", **fields}
    return client.post("/vpp/add", data=form, files={"token_file": ("x.vpptoken", data, "application/octet-stream")})


def _accounts(host: Host) -> list[str]:
    from plugins.vpp.accounts import list_accounts

    return [a["name"] for a in list_accounts(host)]


def test_accounts_page_shows_token_state_last_sync_and_interval(school: Host, admin: Any) -> None:
    page = admin.get("/vpp").text
    assert "Apple Volume Purchase Program" in page
    assert re.search(r"expires in \d+ days", page)
    assert "UTC" in page and "ok (full)" in page  # last sync, with its time zone
    assert 'name="interval_seconds"' in page and 'value="3600"' in page
    assert re.search(r'id="notifications-school">off: changes at Apple are found by the scheduled sync<', page)
    from sqlalchemy import update

    from mdm_core.models import utcnow
    from mdm_core.web.settings import WebSettings
    from plugins.vpp.models import VppAccount
    from plugins.vpp.notifications.configure import NOTIFY_PATH

    school.config.section("web", WebSettings).public_url = "https://mdm.example.org"  # notifications on, posted where this host answers
    url = "https://mdm.example.org" + NOTIFY_PATH + VppAccount.mdm_info_id  # the column: SQL concatenation
    school.db.run_write(lambda s: s.execute(update(VppAccount).values(notifications="on", notification_url=url, last_notification_at=utcnow())))
    assert re.search(r'id="notifications-school">on — last received \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC<', admin.get("/vpp").text)


@pytest.mark.parametrize(
    "hours, shown, advice",
    [
        (
            10 * 24 - 1,  # 9 days 23 hours left: rounded up
            "expiring soon — expires in 10 days (",
            "renew the token before it expires: download a new .vpptoken from Apple School/Business Manager and upload it with Renew token",
        ),
        (-3 * 24, "expired — expired ", "download a new .vpptoken from Apple School/Business Manager and upload it with Renew token"),
    ],
)
def test_a_token_to_renew_says_what_to_do_in_the_console(
    school: Host, admin: Any, simulator: Any, project_dir: Path, hours: int, shown: str, advice: str
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from mdm_core.models import utcnow
    from plugins.vpp.models import VppAccount

    school.db.run_write(lambda s: s.execute(update(VppAccount).values(token_expires_at=utcnow() + timedelta(hours=hours))))
    page = admin.get("/vpp").text
    state = html.unescape(re.search(r'id="token-state-school">([^<]+)<', page).group(1))
    assert state.startswith(shown) and "expiring in" not in state  # said once
    assert html.unescape(re.search(r'id="token-action-school">([^<]+)<', page).group(1)) == advice
    assert "mdm vpp account set" not in page  # the console's way, not the command line's
    token = simulator.write_token(project_dir / "renewed.vpptoken").read_bytes()
    renewed = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin)}, files={"token_file": ("r.vpptoken", token)})
    assert renewed.status_code == 200 and re.search(r'id="token-state-school">valid — expires in \d+ days \(', renewed.text)
    assert 'id="token-action-school"' not in renewed.text


def test_a_token_apple_refuses_before_its_date_is_not_said_to_expire_in_days(school: Host, admin: Any, simulator: Any) -> None:
    """Apple answers 'token expired' (9621) for a token whose file gives a date a year ahead:
    the page said 'expired — expires in 364 days'."""
    from plugins.vpp.sync.run import sync_account

    simulator.expire_token()
    assert sync_account(school, "school")["status"] == "error"
    state = html.unescape(re.search(r'id="token-state-school">([^<]+)<', admin.get("/vpp").text).group(1))
    assert state.startswith("expired — Apple refuses it, though its file gave 20") and "expires in" not in state, state


def test_a_token_this_host_cannot_decrypt_says_so(school: Host, make_host: Any, simulator: Any, project_dir: Path) -> None:
    """A host started with another secret key (a second host set up without the first one's
    key, say) shows the account's token as unreadable and how to fix it, on the page and in
    the API, as `mdm vpp account list` does. Uploading the token again with Renew token is
    refused: that key reads none of the stored tokens, and a token stored with it would be
    unreadable once the right key is back (restore it, or confirm that it is lost)."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    from .conftest import WEB_CONFIG, sign_in

    other = make_host(config=WEB_CONFIG, environ={"MDM_SECRET_KEY": "another host's key"})
    with TestClient(create_app(other)) as admin:
        assert sign_in(admin).status_code == 303
        page = admin.get("/vpp").text
        assert re.search(r'id="token-state-school">unreadable \(wrong or missing secret key\)', page)
        assert "give it the key the token was stored with" in html.unescape(re.search(r'id="token-action-school">([^<]+)<', page).group(1))
        [row] = admin.get("/api/v1/vpp/accounts").json()["items"]
        assert row["token_state"] == "unreadable"
        token = simulator.write_token(project_dir / "again.vpptoken").read_bytes()
        renewed = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin)}, files={"token_file": ("t.vpptoken", token)})
        said = html.unescape(renewed.text)
        assert renewed.status_code == 409 and "reads none of the 1 stored secret(s)" in said and "if it is lost, confirm it below" in said, said[-1500:]
        assert admin.get("/api/v1/vpp/accounts").json()["items"][0]["token_state"] == "unreadable"


def test_add_an_account_by_upload(web_host: Host, admin: Any, simulator: Any, project_dir: Path) -> None:
    token = simulator.write_token(project_dir / "t.vpptoken").read_bytes()
    response = _upload(admin, token, name="district", service_url=simulator.base_url)
    assert response.status_code == 200 and "account district added" in response.text
    assert _accounts(web_host) == ["district"]
    assert not list((project_dir / "var").glob(".upload-*"))  # the uploaded token is not left on disk


def test_adding_a_name_taken_is_a_conflict_in_the_console_and_one_line_at_the_command_line(
    school: Host, admin: Any, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name already an account was 422 in the console (the API's 409): a conflict with what
    exists, 409 there too, in one line pointing to the page; `mdm vpp account add` keeps exit 2."""
    token = simulator.write_token(project_dir / "t.vpptoken")
    response = _upload(admin, token.read_bytes(), name="school", service_url=simulator.base_url)
    assert response.status_code == 409, response.text
    assert _error(response) == "an account named 'school' already exists: choose another name, or change that account on the Apple Volume Purchase Program page"
    add = ("vpp", "account", "add", "school", "--token-file", str(token), "--service-url", simulator.base_url)
    code, out, err = MdmRunner(project_dir, monkeypatch, capsys)(*add)
    assert (code, out, err) == (2, "", "mdm: error: an account named 'school' already exists: choose another name or `mdm vpp account set school`\n")
    assert _accounts(school) == ["school"]


@pytest.mark.parametrize(
    "content, status, message",
    [
        (b"this is not a token", 422, "not"),
        (b"x" * 70000, 413, "larger than"),
    ],
)
def test_bad_token_uploads_change_nothing(school: Host, admin: Any, content: bytes, status: int, message: str) -> None:
    response = _upload(admin, content)
    assert response.status_code == status, response.text
    error = re.search(r'id="error">([^<]*)<', response.text).group(1)
    assert message in error and "\n" not in error
    assert _accounts(school) == ["school"]


def _error(response: Any) -> str:
    return html.unescape(re.search(r'id="error">([^<]*)<', response.text).group(1))


def test_upload_errors_name_the_uploaded_file_never_a_server_path(school: Host, admin: Any, simulator: Any, project_dir: Path) -> None:
    """A refused upload names the file the admin chose; it used to name the server's temporary
    copy (var/.upload-….vpptoken) and, for a location already added, advised
    `mdm vpp account set … --token-file` with that path, gone once the request ended."""
    expired = json.loads(base64.b64decode(simulator.token))
    expired["expDate"] = "2020-01-01T00:00:00+0000"
    cases = [
        ("garbage", b"\x89PNG garbage", 422, "is not base64"),
        ("expired", base64.b64encode(json.dumps(expired).encode()), 422, "expired on 2020-01-01"),
        ("second", simulator.write_token(project_dir / "again.vpptoken").read_bytes(), 409, "renew it with Renew token of account 'school'"),  # a conflict
    ]
    for name, content, status, message in cases:
        form = {"csrftoken": csrf(admin), "name": name, "interval": "900", "service_url": simulator.base_url}
        response = admin.post("/vpp/add", data=form, files={"token_file": ("district.vpptoken", content)})
        error = _error(response)
        assert response.status_code == status and message in error, error
        assert ".upload-" not in error and str(project_dir) not in error and "--token-file" not in error
        if name != "second":
            assert error.startswith("the uploaded file 'district.vpptoken' ")
    forged = base64.b64encode(json.dumps({**expired, "expDate": "2099-01-01T00:00:00+0000", "token": "not-a-real-token"}).encode())
    renewal = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin)}, files={"token_file": ("renewed.vpptoken", forged)})
    assert renewal.status_code == 400 and _error(renewal).startswith("cannot check the uploaded file 'renewed.vpptoken': ")
    assert _accounts(school) == ["school"]


def test_an_expired_token_upload_is_refused(school: Host, admin: Any, simulator: Any) -> None:
    expired = json.loads(base64.b64decode(simulator.token))
    expired["expDate"] = "2020-01-01T00:00:00+0000"
    response = _upload(admin, base64.b64encode(json.dumps(expired).encode()), service_url=simulator.base_url)
    assert response.status_code == 422 and "expired" in response.text
    assert _accounts(school) == ["school"]


def test_taking_over_a_location_asks_for_confirmation_naming_the_other_mdm(web_host: Host, admin: Any, simulator: Any, project_dir: Path) -> None:
    simulator.state.mdm_info = {"id": "other-id", "name": "Jamf Pro", "metadata": "jamf.example.edu"}  # another MDM claimed it
    token = simulator.write_token(project_dir / "t.vpptoken").read_bytes()
    response = _upload(admin, token, name="district", service_url=simulator.base_url)
    assert response.status_code == 409
    assert "Jamf Pro (jamf.example.edu)" in response.text and "Take over from" in response.text
    assert "--take-over" not in response.text  # the CLI's option: the console asks with its checkbox
    assert _accounts(web_host) == []
    pending = re.search(r'name="pending" value="([^"]+)"', response.text).group(1)
    assert simulator.token not in response.text  # only the server can read the pending token
    form = {"csrftoken": csrf(admin), "pending": pending, "name": "district", "interval": "900", "service_url": simulator.base_url}
    assert admin.post("/vpp/add", data=form).status_code == 409  # without the explicit confirmation
    confirmed = admin.post("/vpp/add", data={**form, "take_over": "yes"})
    assert confirmed.status_code == 200 and _accounts(web_host) == ["district"]


@pytest.mark.parametrize("value", ["10", "99999999", "soon", "", "²", "3600²"])  # '²' is a digit to str.isdigit, not to int(): it was a 500
def test_interval_out_of_range_is_refused(school: Host, admin: Any, value: str) -> None:
    response = admin.post("/vpp/accounts/school/interval", data={"interval_seconds": value, "csrftoken": csrf(admin)})
    assert response.status_code == 422 and "Account Synchronization Interval (sec)" in response.text
    from plugins.vpp.accounts import list_accounts

    assert list_accounts(school)[0]["interval_seconds"] == 3600


@pytest.mark.parametrize("value", ["-1", "-5", "0"])
def test_an_interval_under_the_minimum_is_too_short_in_the_console_the_api_and_the_cli(
    school: Host, admin: Any, client: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """One wording for one mistake: the console's form said "'-1' is not valid: give whole
    seconds ..." where `--interval -5` and the API's -5 said "is too short", naming the minimum."""
    from plugins.vpp.accounts import list_accounts

    def too_short(what: str) -> str:
        return f"{what} {value} is too short: the Account Synchronization Interval is at least 60 seconds ([vpp] min_interval)"

    page = admin.post("/vpp/accounts/school/interval", data={"interval_seconds": value, "csrftoken": csrf(admin)})
    assert page.status_code == 422 and _error(page) == too_short("Account Synchronization Interval (sec)"), _error(page)
    headers = token_for(school, "admin")
    for sent in (int(value), value):  # a JSON number, or text as a form sends it
        api = client.patch("/api/v1/vpp/accounts/school", headers=headers, json={"interval_seconds": sent})
        assert api.status_code == 422 and api.json() == {"error": too_short("interval_seconds")}, api.text
    code, out, err = MdmRunner(project_dir, monkeypatch, capsys)("vpp", "account", "set", "school", "--interval", value)
    assert (code, out, err) == (2, "", f"mdm: error: {too_short('--interval')}\n")
    assert list_accounts(school)[0]["interval_seconds"] == 3600


def test_unknown_account_and_asset(school: Host, admin: Any, client: Any) -> None:
    assert admin.get("/vpp/accounts/nope/assets").status_code == 404
    assert "no VPP account named 'nope'" in html.unescape(admin.get("/vpp/accounts/nope/assets").text)
    assert admin.get("/vpp/accounts/school/assets/1/STDQ").status_code == 404
    headers = token_for(school, "admin")
    assert client.get("/api/v1/vpp/assets?account=nope", headers=headers).status_code == 404
    assert client.post("/api/v1/vpp/accounts/nope/sync", headers=headers).json()["error"].startswith("no VPP account named")
    assert client.get("/api/v1/vpp/runs/999999", headers=headers).status_code == 404
    assert client.get("/api/v1/vpp/licenses?cursor=@@@", headers=headers).status_code == 400
    assert client.get("/api/v1/vpp/assets?limit=0", headers=headers).status_code == 422
    assert client.patch("/api/v1/vpp/accounts/school", headers=headers, json={"interval_seconds": 5}).status_code == 422
    for sent, shown in ((True, "true"), ("²", "'²'"), (600.5, "600.5")):  # as sent, in JSON (it said Python's True; '²' was a 500)
        bad = client.patch("/api/v1/vpp/accounts/school", headers=headers, json={"interval_seconds": sent})
        assert bad.status_code == 422 and bad.json()["error"].startswith(f"interval_seconds {shown} is not valid: give whole seconds"), bad.text
    # the console's page points to the console, the API to the API (the page said "see GET /api/v1/vpp/runs")
    page = admin.get("/vpp/runs/999999")
    assert page.status_code == 404 and _error(page) == "no sync run 999999: see an account's Sync runs"
    assert client.get("/api/v1/vpp/runs/999999", headers=headers).json() == {"error": "no sync run 999999: see GET /api/v1/vpp/runs"}


def test_a_table_of_one_row_counts_it_in_the_singular(school: Host, admin: Any) -> None:
    """The pager said '1 sync runs', '1 assets'."""
    assert re.search(r'<p class="pager">\s*1 sync run\s', admin.get("/vpp/accounts/school/runs").text)
    adam = re.search(r"/vpp/accounts/school/assets/(\d+)/", admin.get("/vpp/accounts/school/assets").text).group(1)
    assert re.search(r'<p class="pager">\s*1 asset\s', admin.get("/vpp/accounts/school/assets", params={"q": adam}).text)
    assert re.search(r'<p class="pager">\s*\d+ assets\s', admin.get("/vpp/accounts/school/assets").text)


def _wait_run(client: Any, run_id: int, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/vpp/runs/{run_id}", headers=headers).json()
        if run["status"] != "running":
            return dict(run)
        time.sleep(0.05)  # polling a background sync the way an API client does
    raise AssertionError("the sync did not finish")


def test_sync_through_the_api_returns_202_with_a_run_id(school: Host, client: Any, simulator: Any) -> None:
    headers = token_for(school, "admin")
    key = simulator.purchase(count=7, product_type="App", device_assignable=True, revocable=True, supported_platforms=("iOS",))
    response = client.post("/api/v1/vpp/accounts/school/sync", headers=headers)
    assert response.status_code == 202
    run = _wait_run(client, response.json()["id"], headers)
    assert run["status"] == "ok" and run["counts"]["assets"]["added"] == 1 and run["trigger"] == "api"
    # someone waits for this sync: the new app's name is looked up with it, not at the next metadata job
    from plugins.vpp.web import asset_label

    deadline = time.monotonic() + 30
    while asset_label(school, key[0])[0] is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the lookup follows the run record, in the sync's event delivery
    assert asset_label(school, key[0])[0] == simulator.state.assets[key].name


def test_synchronize_while_a_sync_runs_says_already_running(school: Host, admin: Any, client: Any) -> None:
    lock = school.lock(f"vpp.sync.{_account_id(school)}", ttl=60)
    lock.acquire(wait=0)  # another process is syncing this account
    try:
        page = admin.post("/vpp/accounts/school/sync", data={"csrftoken": csrf(admin)})
        assert "already running" in page.text
        api = client.post("/api/v1/vpp/accounts/school/sync", headers=token_for(school, "admin"))
        assert api.status_code == 409 and "already running" in api.json()["error"]
    finally:
        lock.release()


def _account_id(host: Host) -> int:
    from sqlalchemy import select

    from plugins.vpp.models import VppAccount

    with host.db.session() as session:
        return int(session.execute(select(col(VppAccount.id))).scalar_one())


def test_synchronize_button_shows_progress_then_the_report(school: Host, admin: Any) -> None:
    page = admin.post("/vpp/accounts/school/sync", data={"csrftoken": csrf(admin)})
    assert "synchronization of school started" in page.text
    run_url = str(page.url.path)
    deadline = time.monotonic() + 60
    while "running…" in page.text and time.monotonic() < deadline:
        assert '<meta http-equiv="refresh"' in page.text  # the page refreshes itself, without a script
        page = admin.get(run_url)
    assert 'id="run-status">ok<' in page.text and "Assets" in page.text


def test_assets_search_sort_and_paging(school: Host, admin: Any, simulator: Any) -> None:
    from plugins.mobile_apps.catalog import refresh_metadata

    refresh_metadata(school)
    page = admin.get("/vpp/accounts/school/assets?sort=total&dir=desc").text
    totals = [int(t) for t in re.findall(r'<td class="num">\d+</td><td class="num">\d+</td><td class="num">\d+</td><td class="num">(\d+)</td>', page)]
    assert totals == sorted(totals, reverse=True) and len(totals) >= 10
    name = simulator.state.assets[next(iter(simulator.state.assets))].name
    found = admin.get(f"/vpp/accounts/school/assets?q={name[:5]}").text
    assert name in found and found.count('class="asset-link"') < len(totals)


def test_asset_page_counts_chart_and_license_tabs(school: Host, admin: Any, simulator: Any) -> None:
    snap = simulator.snapshot()
    adam, pricing = next((a[0], a[1]) for a in snap["assignments"] if a[2] == "serialNumber")
    page = admin.get(f"/vpp/accounts/school/assets/{adam}/{pricing}?tab=device").text
    serials = {a[3] for a in snap["assignments"] if a[0] == adam and a[1] == pricing and a[2] == "serialNumber"}
    shown = set(re.findall(r"<tr><td>([A-Z0-9]{12})</td><td>(?:yes|no)</td>", page))
    assert shown == serials
    assert '<svg class="chart"' in page and "<polyline" in page
    users = admin.get(f"/vpp/accounts/school/assets/{adam}/{pricing}?tab=user").text
    assert 'id="user-licenses"' in users


def test_license_tabs_link_licenses_to_the_inventory(school: Host, admin: Any, simulator: Any) -> None:
    """Device licenses say whether the device is enrolled here and whose it is; user licenses
    show the VPP user's email and the MDM user they belong to."""
    from mdm_core import inventory

    snap = simulator.snapshot()
    adam, pricing = next(
        (a[0], a[1])
        for a in snap["assignments"]
        if a[2] == "serialNumber"
        and sum(1 for b in snap["assignments"] if (b[0], b[1], b[2]) == (a[0], a[1], "serialNumber")) >= 2
        and any((b[0], b[1], b[2]) == (a[0], a[1], "clientUserId") for b in snap["assignments"])
    )
    serials = sorted(a[3] for a in snap["assignments"] if (a[0], a[1], a[2]) == (adam, pricing, "serialNumber"))
    users = sorted(a[3] for a in snap["assignments"] if (a[0], a[1], a[2]) == (adam, pricing, "clientUserId"))
    email = {u["clientUserId"]: u.get("email") or "" for u in simulator.state.user_records()}
    inventory.add_user(school, users[0], email="kid@example.org", name="Kid")
    inventory.add_device(school, serials[0], "iOS", owner=users[0])
    page = admin.get(f"/vpp/accounts/school/assets/{adam}/{pricing}?tab=device").text
    rows = dict((r[0], r[1:]) for r in re.findall(r"<tr><td>([A-Z0-9]{12})</td><td>(yes|no)</td><td>([^<]*)</td></tr>", page))
    assert rows == {s: ("yes", users[0]) if s == serials[0] else ("no", "") for s in serials}
    page = admin.get(f"/vpp/accounts/school/assets/{adam}/{pricing}?tab=user").text
    rows = dict((r[0], r[1:]) for r in re.findall(r"<tr><td>([^<]+)</td><td>([^<]*)</td><td>([^<]+)</td></tr>", page))
    assert rows == {u: (email[u], users[0] if u == users[0] else "not in the MDM") for u in users}


def test_license_tabs_page_through_every_license(school: Host, admin: Any, simulator: Any) -> None:
    import plugins.vpp.web as vpp_web

    snap = simulator.snapshot()
    adam, pricing = max({(a[0], a[1]) for a in snap["assignments"]}, key=lambda k: sum(1 for a in snap["assignments"] if (a[0], a[1]) == k))
    expected = {a[3] for a in snap["assignments"] if (a[0], a[1]) == (adam, pricing) and a[2] == "clientUserId"}
    old = vpp_web.PAGE_SIZE
    vpp_web.PAGE_SIZE = 2
    try:
        seen: list[str] = []
        url = f"/vpp/accounts/school/assets/{adam}/{pricing}?tab=user"
        while url:
            page = admin.get(url).text
            seen += re.findall(r"<tr><td>([^<]+)</td><td>[^<]*</td><td>", page)
            nxt = re.search(r'<a rel="next" href="([^"]+)">', page)
            url = html.unescape(nxt.group(1)) if nxt else ""
    finally:
        vpp_web.PAGE_SIZE = old
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))


def test_counts_are_recorded_at_each_sync_that_changes_them(school: Host, simulator: Any, client: Any) -> None:
    from plugins.vpp.sync.run import sync_account

    headers = token_for(school, "viewer")
    adam, pricing = next(iter(simulator.state.assets))
    before = client.get(f"/api/v1/vpp/assets/{adam}/history?account=school&pricing={pricing}", headers=headers).json()["items"]
    assert len(before) == 1  # the first sync recorded the asset
    assert sync_account(school, "school")["status"] == "ok"  # nothing changed: nothing recorded
    assert len(client.get(f"/api/v1/vpp/assets/{adam}/history?account=school&pricing={pricing}", headers=headers).json()["items"]) == 1
    snap = simulator.snapshot()
    holder = next(a for a in snap["assignments"] if (a[0], a[1]) == (adam, pricing) and a[2] == "serialNumber")
    simulator.remove_in_portal(adam, pricing, serial_number=holder[3])
    assert sync_account(school, "school")["status"] == "ok"
    after = client.get(f"/api/v1/vpp/assets/{adam}/history?account=school&pricing={pricing}", headers=headers).json()["items"]
    assert len(after) == 2 and after[1]["assignedCount"] == before[0]["assignedCount"] - 1
    assert after[1]["availableCount"] == before[0]["availableCount"] + 1


def test_an_asset_history_takes_its_pricing_in_any_case(school: Host, client: Any, admin: Any, simulator: Any) -> None:
    """``pricing=stdq`` answered 404 "asset ... (stdq) is not in account": Apple's values are
    STDQ and PLUS, and a value neither is now named as such."""
    headers = token_for(school, "viewer")
    adam, pricing = next(k for k in simulator.state.assets if k[1] == "STDQ")
    history = f"/api/v1/vpp/assets/{adam}/history?account=school&pricing="
    items = client.get(history + "STDQ", headers=headers).json()["items"]
    assert items
    for given in ("stdq", "Stdq", " STDQ"):
        answer = client.get(history + given, headers=headers)
        assert answer.status_code == 200 and answer.json()["items"] == items, given
    answer = client.get(history + "gold", headers=headers)
    assert answer.status_code == 422 and answer.json() == {"error": "unknown pricing 'gold': use STDQ or PLUS (any case)"}
    page = admin.get(f"/vpp/accounts/school/assets/{adam}/stdq")  # the console's asset page (its chart: this history)
    assert page.status_code == 200 and "pricing STDQ" in page.text


def test_remove_needs_the_name_typed(school: Host, admin: Any) -> None:
    assert "Type the account name" in admin.get("/vpp/accounts/school/remove").text
    refused = admin.post("/vpp/accounts/school/remove", data={"confirm": "schol", "csrftoken": csrf(admin)})
    assert refused.status_code == 422 and _accounts(school) == ["school"]
    done = admin.post("/vpp/accounts/school/remove", data={"confirm": "school", "csrftoken": csrf(admin)})
    assert done.status_code == 200 and "account school removed" in done.text and _accounts(school) == []


def test_renew_token_by_upload(school: Host, admin: Any, simulator: Any, project_dir: Path) -> None:
    token = simulator.write_token(project_dir / "renewed.vpptoken").read_bytes()
    response = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin)}, files={"token_file": ("r.vpptoken", token)})
    assert response.status_code == 200 and "token of school renewed" in response.text


def test_api_uses_the_cli_field_names_and_pages(school: Host, client: Any, simulator: Any) -> None:
    headers = token_for(school, "viewer")
    [account] = client.get("/api/v1/vpp/accounts", headers=headers).json()["items"]
    assert {"name", "locationName", "tokenExpirationDate", "token_state", "interval_seconds", "last_sync_at"} <= set(account)
    assets = client.get("/api/v1/vpp/assets?account=school&limit=3", headers=headers).json()
    assert len(assets["items"]) == 3 and assets["next_cursor"]
    assert {
        "adamId",
        "pricingParam",
        "productType",
        "assignedCount",
        "availableCount",
        "retiredCount",
        "totalCount",
        "deviceAssignable",
        "supportedPlatforms",
    } <= set(assets["items"][0])
    seen, cursor = [], None
    while True:
        page = client.get("/api/v1/vpp/licenses", params={"account": "school", "limit": 7, **({"cursor": cursor} if cursor else {})}, headers=headers).json()
        seen += [
            (r["adamId"], r["pricingParam"], "serialNumber" if "serialNumber" in r else "clientUserId", r.get("serialNumber") or r["clientUserId"])
            for r in page["items"]
        ]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(seen) == set(simulator.snapshot()["assignments"]) and len(seen) == len(set(seen))
    users = client.get("/api/v1/vpp/users?account=school", headers=headers).json()["items"]
    assert users and {"clientUserId", "email", "status", "mdmUser"} <= set(users[0])
    doc = client.get("/api/v1/openapi.json", headers=headers).json()
    assert "/api/v1/vpp/accounts/{name}/sync" in doc["paths"] and "/api/v1/apps/{app}/install" in doc["paths"]
    assert not any(p.startswith("/vpp") for p in doc["paths"])  # console pages are not API


def _single_pricing(simulator: Any) -> list[Any]:
    """The simulator's assets whose adamId has one pricing only."""
    assets = list(simulator.state.assets.values())
    return [a for a in assets if sum(1 for b in assets if b.adam_id == a.adam_id) == 1]


def test_asset_names_and_icons_come_from_the_plugin_that_knows_them(school: Host, admin: Any, simulator: Any) -> None:
    """The VPP pages join the label source ``mdm_vpp_asset_labels`` gives: mobile_apps answers
    with the metadata it stored (looked up after the manual sync, never while a page is drawn),
    so names are searched and sorted in the database; a failing source leaves the names out
    without breaking the page."""
    from sqlalchemy import select

    apps = [a for a in _single_pricing(simulator) if a.product_type == "App"]  # Apple names an adamId, not a pricing
    source = school.pm.hook.mdm_vpp_asset_labels(host=school)
    with school.db.session() as session:
        stored = dict(session.execute(select(source.c.adam_id, source.c.name)).all())
    assert {a.adam_id: a.name for a in apps}.items() <= stored.items()
    page = admin.get("/vpp/accounts/school/assets?sort=name").text
    shown = re.findall(r'class="asset-link">([^<]+)</a>', page)
    assert [n for n in shown if not n.startswith("adamId ")] == sorted((n for n in shown if not n.startswith("adamId ")), key=str.lower)
    one = apps[0]
    assert re.search(r'<img class="icon" src="https://[^"]+\.png" alt="">\s*</td>\s*<td><a href="/vpp/accounts/school/assets/' + one.adam_id, page)
    found = admin.get(f"/vpp/accounts/school/assets?q={one.name.split()[0].lower()}").text  # the name, in the database's search
    assert html.escape(one.name) in found and found.count('class="asset-link"') < len(shown)

    from mdm_core import hookimpl

    class Broken:  # a source that fails: the pages fall back to adamIds
        @hookimpl(tryfirst=True)
        def mdm_vpp_asset_labels(self, host: Host) -> Any:
            raise RuntimeError("catalogue down")

    school.pm.register(Broken(), name="broken")
    response = admin.get("/vpp/accounts/school/assets?sort=name")
    assert response.status_code == 200 and f"adamId {one.adam_id}" in response.text and html.escape(one.name) not in response.text


def test_without_mobile_apps_another_plugin_can_name_the_assets(make_host: Any, simulator: Any, project_dir: Path) -> None:
    """The label source is a hook: a plugin with its own catalogue of names answers it when
    mobile_apps is disabled, and its selectable is joined like mobile_apps' one."""
    from fastapi.testclient import TestClient
    from sqlalchemy import literal, select, union_all

    from mdm_core import hookimpl
    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app
    from plugins.vpp.testing import add_simulated_account

    from .conftest import PASSWORD, WEB_CONFIG, sign_in

    named = sorted(_single_pricing(simulator), key=lambda a: a.adam_id)[:2]

    class Catalogue:
        @hookimpl
        def mdm_vpp_asset_labels(self, host: Host) -> Any:
            rows = [
                select(literal(a.adam_id).label("adam_id"), literal(f"Catalogue {a.adam_id}").label("name"), literal(None).label("icon_url")) for a in named
            ]
            return union_all(*rows).subquery("catalogue")

    host = make_host(config=WEB_CONFIG, environ={"MDM_DISABLED_PLUGINS": "mobile_apps"})
    host.pm.register(Catalogue(), name="catalogue")
    add_admin(host, "alice", PASSWORD)
    add_simulated_account(host, simulator, project_dir)
    from plugins.vpp.sync.run import sync_account

    assert sync_account(host, "school")["status"] == "ok"
    with TestClient(create_app(host)) as client:
        assert sign_in(client).status_code == 303
        page = client.get("/vpp/accounts/school/assets?sort=name").text
        shown = re.findall(r'class="asset-link">([^<]+)</a>', page)
        assert shown[:2] == [f"Catalogue {a.adam_id}" for a in named]  # named ones first, by name
        assert all(n.startswith("adamId ") for n in shown[2:])
        detail = client.get(f"/vpp/accounts/school/assets/{named[0].adam_id}/{named[0].pricing_param}").text
        assert f"Catalogue {named[0].adam_id}" in detail


def test_console_syncs_run_on_a_bounded_pool_and_show_their_progress(make_host: Any, simulator: Any, project_dir: Path) -> None:
    """Synchronize goes through the sync hook on ``[web] background_workers`` threads: while
    a sync reads, its run page shows the pages read so far; one more sync than there are
    workers is refused (503) instead of queued; a second click on the same account says
    "already running"; once the sync has ended (its events delivered), the worker takes the next one."""
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app
    from plugins.vpp.accounts import add_account
    from plugins.vpp.simulator import Simulator

    from .conftest import PASSWORD, WEB_CONFIG, sign_in

    host = make_host(config=WEB_CONFIG + "\n[web]\nbackground_workers = 1\n")
    add_admin(host, "alice", PASSWORD)
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url)
    from plugins.vpp.sync import progress

    reached, release = threading.Event(), threading.Event()

    def hold(sync: Any) -> None:  # the sync's thread waits here, after its first page of assets
        if sync.account == "school" and sync.pages.get("assets") == 1 and not release.is_set():
            reached.set()
            release.wait(60)

    with Simulator(seed=12, assets=3, devices=4, users=3, async_delay=0) as other, progress.listening(hold):
        add_account(host, "college", str(other.write_token(project_dir / "college.vpptoken")), service_url=other.base_url)
        try:
            with TestClient(create_app(host)) as admin:
                assert sign_in(admin).status_code == 303
                page = admin.post("/vpp/accounts/school/sync", data={"csrftoken": csrf(admin)})
                assert "synchronization of school started" in page.text
                run_url = str(page.url.path)
                assert reached.wait(60)
                page = admin.get(run_url)
                # the users and the assignments are read beside the assets: their pages may show already
                listing = r"(; users: \d+ pages?, \d+ rows)?(; assignments: \d+ pages?, \d+ rows)?"
                assert re.search(r'id="run-progress">assets: 1 page, 7 rows' + listing + r" \(\d+ s\)", page.text), page.text
                busy = admin.post("/vpp/accounts/college/sync", data={"csrftoken": csrf(admin)})
                assert busy.status_code == 503 and "already running 1 background task(s)" in busy.text
                again = admin.post("/vpp/accounts/school/sync", data={"csrftoken": csrf(admin)})
                assert "a sync of school is already running (run " in html.unescape(again.text)
                release.set()
                deadline = time.monotonic() + 60
                while 'id="run-status">running' in page.text and time.monotonic() < deadline:
                    page = admin.get(run_url)
                assert 'id="run-status">ok<' in page.text
                done = admin.post("/vpp/accounts/college/sync", data={"csrftoken": csrf(admin)})
                while done.status_code == 503 and time.monotonic() < deadline:  # the worker still delivers the sync's events
                    done = admin.post("/vpp/accounts/college/sync", data={"csrftoken": csrf(admin)})
                assert done.status_code == 200 and "synchronization of college started" in done.text
        finally:
            release.set()  # never leave the sync waiting


@pytest.mark.parametrize(
    "argv, path",
    [
        (["vpp", "account", "list", "--json"], "/api/v1/vpp/accounts"),
        (["vpp", "assets", "--json"], "/api/v1/vpp/assets"),
        (["vpp", "licenses", "--json"], "/api/v1/vpp/licenses"),
        (["vpp", "users", "--json"], "/api/v1/vpp/users"),
        (["vpp", "runs", "--json"], "/api/v1/vpp/runs"),
        (["apps", "list", "--json"], "/api/v1/apps"),
        (["devices", "list", "--json"], "/api/v1/devices"),
        (["users", "list", "--json"], "/api/v1/users"),
    ],
)
def test_api_rows_are_the_cli_json_rows(school: Host, client: Any, project_dir: Path, monkeypatch: Any, capsys: Any, argv: list[str], path: str) -> None:
    """What a script reads from the API is what it read from ``mdm ... --json``: the same rows
    with the same field names and values."""
    from mdm_core import inventory
    from mdm_core.testing import MdmRunner

    inventory.add_user(school, "kid-1", email="kid-1@example.org", name="Kid One")
    inventory.add_device(school, "CLIJSON00001", "iOS", model="iPhone15,2", owner="kid-1")
    code, out, err = MdmRunner(project_dir, monkeypatch, capsys)(*argv)
    assert code == 0, err
    cli = json.loads(out)
    api = client.get(path, params={"limit": 1000}, headers=token_for(school, "viewer")).json()["items"]

    def by_key(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        identity = ("id", "name", "adamId", "pricingParam", "serialNumber", "clientUserId", "account")
        return {json.dumps([r.get(k) for k in identity]): r for r in rows}

    assert len(api) == len(cli) >= 1
    api_rows, cli_rows = by_key(api), by_key(cli)
    assert api_rows.keys() == cli_rows.keys()
    for key, row in api_rows.items():
        differ = {f: (row.get(f), cli_rows[key].get(f)) for f in set(row) | set(cli_rows[key]) if row.get(f, "absent") != cli_rows[key].get(f, "absent")}
        assert not differ, (key, differ)


RUN_KEYS = [
    "id",
    "account",
    "trigger",
    "mode",
    "status",
    "started_at",
    "finished_at",
    "duration_s",
    "pages",
    "counts",
    "error_type",
    "error",
    "holder",
    "progress",
]


def test_a_run_lists_its_keys_in_one_order_in_the_cli_and_the_api(school: Host, client: Any, project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    """``mdm vpp runs --json`` and ``GET /api/v1/vpp/runs`` (and one run) give a run's keys in
    the same logical order: id and account first, progress last."""
    from mdm_core.testing import MdmRunner

    code, out, err = MdmRunner(project_dir, monkeypatch, capsys)("vpp", "runs", "--json")
    assert code == 0, err
    [cli] = json.loads(out)
    headers = token_for(school, "viewer")
    [api] = client.get("/api/v1/vpp/runs", headers=headers).json()["items"]
    one = client.get(f"/api/v1/vpp/runs/{cli['id']}", headers=headers).json()
    assert list(cli) == list(api) == list(one) == RUN_KEYS
    assert cli["duration_s"] == api["duration_s"] >= 0 and cli["status"] == "ok"


def test_the_console_writes_a_runs_changes_as_the_cli_does(school: Host, admin: Any, project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    """``licenses +N -M`` in ``mdm vpp sync`` and on the console's pages alike (the console said
    ``licenses +N ~0 -M``: a license is added or removed, never changed)."""
    from mdm_core.testing import MdmRunner

    code, out, err = MdmRunner(project_dir, monkeypatch, capsys)("vpp", "sync", "school", "--full")
    assert code == 0, err
    changes = re.search(r"pages: (.*licenses \+\d+ -\d+)", out)
    assert changes is not None, out
    runs = admin.get("/vpp/accounts/school/runs").text
    assert f"<td>{changes.group(1)}</td>" in runs and "licenses +0 ~" not in runs
    accounts = admin.get("/vpp").text
    assert f"full; {changes.group(1)}</a>" in accounts and "licenses +0 ~" not in accounts
    run_id = re.search(r'href="/vpp/runs/(\d+)"', runs)
    assert run_id is not None
    run = admin.get(f"/vpp/runs/{run_id.group(1)}").text
    assert re.search(r"<th>Licenses</th><td>\+0 added, -0 removed", run), run


def test_licenses_are_filtered_by_asset_device_and_user(school: Host, client: Any, simulator: Any) -> None:
    headers = token_for(school, "viewer")
    snap = sorted(simulator.snapshot()["assignments"])

    def licenses(**params: str) -> set[tuple[str, str, str]]:
        rows = client.get("/api/v1/vpp/licenses", params={"limit": 1000, **params}, headers=headers).json()["items"]
        return {(r["adamId"], r["pricingParam"], r.get("serialNumber") or r["clientUserId"]) for r in rows}

    serial = next(a[3] for a in snap if a[2] == "serialNumber")
    user = next(a[3] for a in snap if a[2] == "clientUserId")
    adam = snap[0][0]
    assert licenses(account="school", device=serial) == {(a[0], a[1], a[3]) for a in snap if a[2] == "serialNumber" and a[3] == serial}
    assert licenses(user=user) == {(a[0], a[1], a[3]) for a in snap if a[2] == "clientUserId" and a[3] == user}
    assert licenses(asset=adam) == {(a[0], a[1], a[3]) for a in snap if a[0] == adam}
    assert licenses(asset=adam, device=serial) == {(a[0], a[1], a[3]) for a in snap if a[0] == adam and a[3] == serial}
    unknown = client.get("/api/v1/vpp/licenses", params={"device": "NOSUCHSERIAL"}, headers=headers)  # naming no device: 404, not an empty page
    assert unknown.status_code == 404 and "device NOSUCHSERIAL is neither enrolled nor holding a license" in unknown.json()["error"]


def test_a_bad_renewal_changes_nothing(school: Host, admin: Any, project_dir: Path) -> None:
    from sqlalchemy import select

    from plugins.vpp.models import VppAccount

    def stored() -> tuple[str, Any]:
        with school.db.session() as session:
            account = session.execute(select(VppAccount)).scalar_one()
            return account.token_ciphertext, account.token_expires_at

    before = stored()
    for content, status in ((b"garbage", 422), (b"x" * 70000, 413)):
        response = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin)}, files={"token_file": ("r.vpptoken", content)})
        assert response.status_code == status, response.text
        assert "\n" not in re.search(r'id="error">([^<]*)<', response.text).group(1)
    missing = admin.post("/vpp/accounts/nope/renew", data={"csrftoken": csrf(admin)}, files={"token_file": ("r.vpptoken", b"x")})
    assert missing.status_code == 404
    assert stored() == before


def test_renewing_a_location_another_mdm_claimed_asks_to_take_it_over(school: Host, admin: Any, simulator: Any, project_dir: Path) -> None:
    simulator.state.mdm_info = {"id": "other-id", "name": "Jamf Pro", "metadata": "jamf.example.edu"}
    token = simulator.write_token(project_dir / "renewed.vpptoken").read_bytes()
    asked = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin)}, files={"token_file": ("r.vpptoken", token)})
    assert asked.status_code == 409 and "Jamf Pro (jamf.example.edu)" in asked.text and "Take over from" in asked.text
    assert simulator.state.mdm_info["name"] == "Jamf Pro"  # nothing claimed yet
    pending = re.search(r'name="pending" value="([^"]+)"', asked.text).group(1)
    assert re.search(r'<form[^>]+action="/vpp/accounts/school/renew"', asked.text)
    done = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin), "pending": pending, "take_over": "yes"})
    assert done.status_code == 200 and "token of school renewed" in done.text
    assert simulator.state.mdm_info["name"] != "Jamf Pro"  # this MDM manages the location again


def test_a_renewed_token_s_message_says_what_comes_next(school: Host, admin: Any, simulator: Any, project_dir: Path) -> None:
    """After *Renew token* of an account whose sync failed for its expired token, the page said
    only "token of school renewed" above a Last sync still reading "error: ... token expired",
    which looked as if the renewal had not worked. The message now gives the new token's state
    and says that the last sync shown is from before, and how to sync now."""
    from plugins.vpp.sync.run import sync_account

    simulator.expire_token()
    assert sync_account(school, "school")["status"] == "error"
    simulator.restore_token()
    token = simulator.write_token(project_dir / "renewed.vpptoken").read_bytes()
    renewed = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin)}, files={"token_file": ("r.vpptoken", token)})
    [said] = [html.unescape(m) for m in re.findall(r'<p class="flash ok"[^>]*>([^<]*)</p>', renewed.text)]
    assert re.fullmatch(
        r"token of school renewed: valid until \d{4}-\d\d-\d\d; the Last sync shown is from before it: "
        r"click Synchronize to sync now, or wait for the interval",
        said,
    ), said
    assert "token expired" in html.unescape(re.search(r'id="last-sync-school">(.*?)</td>', renewed.text, re.S).group(1))  # what the message explains


def test_a_viewer_is_told_an_admin_does_what_the_token_needs(school: Host, admin: Any, viewer: Any, simulator: Any) -> None:
    """A viewer's account card said "upload it with Renew token" and "scheduled syncs paused
    until you act", with no Renew token for them (their role only reads): nothing told them to
    ask an admin. The viewer's card now says an admin does it; the admin's keeps its words."""
    from plugins.vpp.sync.run import sync_account

    simulator.expire_token()
    assert sync_account(school, "school")["status"] == "error"
    seen = html.unescape(viewer.get("/vpp").text)
    action = re.search(r'id="token-action-school">([^<]+)<', seen)
    assert action and action.group(1).endswith("upload it with Renew token (an admin of the console does this: your role, viewer, only reads)"), action
    assert "scheduled syncs paused until an admin acts" in seen and "Renew</button>" not in seen
    own = html.unescape(admin.get("/vpp").text)
    assert re.search(r'id="token-action-school">[^<]+upload it with Renew token<', own) and "scheduled syncs paused until you act" in own
