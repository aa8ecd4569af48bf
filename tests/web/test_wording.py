"""Errors shared with the command line say what to do in the console's and the API's own
terms (a field, a button, an API parameter), never a command-line flag; the command line keeps
its wording."""

from __future__ import annotations

import html
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from mdm_core.host import Host
from mdm_core.testing import MdmRunner

from .conftest import csrf, token_for

CLI_ADVICE = re.compile(r"--service-url|--take-over|--token-file|`mdm ")


def _closed_port_url() -> str:
    """An address where nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/mdm/v2"


def _finished_run(client: Any, headers: dict[str, str], run_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        run = client.get(f"/api/v1/vpp/runs/{run_id}", headers=headers).json()
        if run["status"] != "running" or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def _sync_through_api(host: Host, client: Any) -> tuple[dict[str, Any], str]:
    """A sync of ``school`` started through the API: its run as the API and as the console's
    run page show it."""
    headers = token_for(host, "admin")
    started = client.post("/api/v1/vpp/accounts/school/sync", headers=headers)
    assert started.status_code == 202, started.text
    run = _finished_run(client, headers, started.json()["id"])
    assert run["status"] == "error"
    return run, html.unescape(client.get(f"/vpp/runs/{run['id']}").text)


def test_unreachable_service_url_is_the_service_url_field_in_the_console_and_the_api(
    school: Host, admin: Any, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from plugins.vpp.models import VppAccount

    closed = _closed_port_url()
    token = simulator.write_token(project_dir / "t.vpptoken")
    page = admin.post(
        "/vpp/add",
        data={"csrftoken": csrf(admin), "name": "second", "interval": "900", "service_url": closed},
        files={"token_file": ("t.vpptoken", token.read_bytes(), "application/octet-stream")},
    )
    text = html.unescape(page.text)
    assert page.status_code == 400 and "check the account's Service URL and the network" in text, text
    assert not CLI_ADVICE.search(text)

    with school.db.session() as session:  # the service moved: every sync fails to connect
        session.execute(update(VppAccount).where(col(VppAccount.name) == "school").values(service_url=closed))
        session.commit()
    run, run_page = _sync_through_api(school, admin)
    assert "check the account's service_url and the network" in run["error"] and not CLI_ADVICE.search(run["error"])
    assert "check the account's Service URL and the network" in run_page and not CLI_ADVICE.search(run_page)

    code, _, err = MdmRunner(project_dir, monkeypatch, capsys)("vpp", "account", "add", "third", "--token-file", str(token), "--service-url", closed)
    assert code == 1 and "check --service-url and the network" in err  # the command line keeps its flag


def test_a_location_another_mdm_claimed_is_renew_token_and_take_over_in_the_console_and_the_api(
    school: Host, admin: Any, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.claim_by_other_mdm(name="RivalMDM", metadata="rival.example.com")
    run, run_page = _sync_through_api(school, admin)
    renew = "Renew token on the Apple Volume Purchase Program page, confirming the take-over"
    api_renew = 'PATCH /api/v1/vpp/accounts/school with the text of the new .vpptoken file as "token" and "take_over": true'
    assert run["error"].endswith(f"then take the location back with {api_renew}"), run["error"]  # the API renews a token itself
    assert f"then take the location back with {renew}" in run_page
    assert not CLI_ADVICE.search(run["error"]) and not CLI_ADVICE.search(run_page)

    code, out, _ = MdmRunner(project_dir, monkeypatch, capsys)("vpp", "runs", "--json")
    assert code == 0 and "take the location back with `mdm vpp account set school --token-file FILE --take-over`" in out  # the command line's words, naming it


def test_an_expired_token_s_sync_is_renew_token_in_the_console_and_the_api(
    school: Host, admin: Any, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.expire_token()
    run, run_page = _sync_through_api(school, admin)
    download = "download a new token from Apple School Manager or Apple Business Manager (Settings > Apps and Books), then "
    assert download + 'PATCH /api/v1/vpp/accounts/school with the text of the new .vpptoken file as "token"' in run["error"], run["error"]
    assert download + "Renew token on the Apple Volume Purchase Program page" in run_page
    assert not CLI_ADVICE.search(run["error"]) and not CLI_ADVICE.search(run_page)

    code, out, _ = MdmRunner(project_dir, monkeypatch, capsys)("vpp", "runs", "--json")
    assert code == 0 and download + "`mdm vpp account set school --token-file NEW.vpptoken`" in out  # the command line's words


def test_a_disabled_vpp_plugin_is_the_hosts_configuration_in_the_console_and_the_api(
    make_host: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An app published while the VPP plugin was enabled, installed from the console and the
    API once it is disabled: refused, naming who enables it rather than `mdm plugins`."""
    from fastapi.testclient import TestClient

    from mdm_core.inventory import add_device
    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app
    from plugins.mobile_apps.models import MobileApp

    from .conftest import PASSWORD, WEB_CONFIG, sign_in

    host = make_host(config=WEB_CONFIG, environ={"MDM_DISABLED_PLUGINS": "vpp"})
    add_admin(host, "alice", PASSWORD, "admin")
    add_device(host, "WEBDEV000009", "iOS")
    with host.db.session() as session:
        session.add(MobileApp(account="school", adam_id="100", pricing_param="STDQ", platform="iOS", kind="app", product_type="Application"))
        session.commit()
    said = "the VPP plugin is not loaded (it is disabled or failed to load on this host: the host's operator enables it in the configuration)"
    with TestClient(create_app(host)) as client:
        api = client.post("/api/v1/apps/1/install", headers=token_for(host, "admin"), json={"devices": ["WEBDEV000009"]})
        assert api.status_code == 409 and api.json()["error"].startswith(said)
        assert sign_in(client).status_code == 303
        page = client.post("/apps/1/install", data={"csrftoken": csrf(client), "serials": "WEBDEV000009"})
        text = html.unescape(page.text)
        assert page.status_code == 409 and said in text and not CLI_ADVICE.search(text), text

    code, _, err = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DISABLED_PLUGINS": "vpp"})("apps", "install", "1", "--device", "WEBDEV000009")
    assert code == 1 and "the VPP plugin is not loaded (see `mdm plugins`)" in err, err  # the command line's words


def test_an_install_error_recorded_from_the_cli_s_words_is_the_api_s_in_the_api(
    school: Host, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pending install whose retry could not reach Apple records the client's error (with
    `--service-url`): the API's installs list says service_url, the command line its flag."""
    from fastapi.testclient import TestClient

    from mdm_core.inventory import add_device
    from mdm_core.web.app import create_app
    from plugins.mobile_apps.installs.pending import retry_pending
    from plugins.mobile_apps.models import Install
    from plugins.vpp.models import VppAccount, VppAsset

    add_device(school, "WEBDEV000010", "iOS")
    with school.db.session() as session:
        asset = session.execute(select(VppAsset)).scalars().first()
        assert asset is not None
        session.add(
            Install(
                account="school",
                adam_id=asset.adam_id,
                pricing_param=asset.pricing_param,
                kind="device",
                target="WEBDEV000010",
                source="request",
                status="pending",
            )
        )
        session.execute(update(VppAccount).where(col(VppAccount.name) == "school").values(service_url=_closed_port_url()))
        session.commit()
    retry_pending(school)
    with TestClient(create_app(school)) as client:
        (row,) = client.get("/api/v1/apps/installs", headers=token_for(school, "admin")).json()["items"]
    assert "check the account's service_url and the network" in row["error"] and not CLI_ADVICE.search(row["error"]), row

    code, out, err = MdmRunner(project_dir, monkeypatch, capsys)("apps", "installs", "--json")
    assert code == 0 and "check --service-url and the network" in out, out + err  # the command line keeps its flag


def test_a_subscriber_failure_s_error_is_the_api_s_words_in_the_api(
    make_host: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A device removed while the VPP plugin is disabled: mobile_apps' delivery waits, its error
    naming who enables the plugin in the API (and the console), `mdm plugins` on the command line."""
    from fastapi.testclient import TestClient

    from mdm_core.inventory import add_device, remove_device
    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app

    from .conftest import PASSWORD, WEB_CONFIG, sign_in

    host = make_host(config=WEB_CONFIG, environ={"MDM_DISABLED_PLUGINS": "vpp"})
    add_admin(host, "alice", PASSWORD, "admin")
    add_device(host, "WEBDEV000011", "iOS")
    remove_device(host, "WEBDEV000011")
    said = "the VPP plugin is not loaded (it is disabled or failed to load on this host: the host's operator enables it in the configuration)"
    with TestClient(create_app(host)) as client:
        items = client.get("/api/v1/events/failures", headers=token_for(host, "admin")).json()["items"]
        (failure,) = [f for f in items if f["plugin"] == "mobile_apps"]
        assert said in failure["error"] and not CLI_ADVICE.search(failure["error"]), failure
        assert sign_in(client).status_code == 303
        page = html.unescape(client.get("/events").text)
        assert said in page and not CLI_ADVICE.search(page)

    code, out, err = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DISABLED_PLUGINS": "vpp"})("events", "failures", "--json")
    assert code == 0 and "the VPP plugin is not loaded (see `mdm plugins`)" in out, out + err


def test_a_token_another_mdm_took_over_says_renew_token_on_the_account_page(school: Host, admin: Any) -> None:
    """What to do about a taken-over token, in the console's words (token_state.WORDING, once
    a table of its own): upload it with Renew token, not the command line's --take-over."""
    from plugins.vpp.models import VppAccount

    school.db.run_write(lambda s: s.execute(update(VppAccount).values(token_state="taken_over")))
    page = html.unescape(admin.get("/vpp").text)
    advice = re.search(r'id="token-action-school">([^<]+)<', page)
    assert advice is not None and advice.group(1) == (
        "another MDM claimed this location: stop it using the token, then upload it with Renew token and confirm the take-over (or remove the account)"
    )
    assert not CLI_ADVICE.search(page) and "mdm vpp account set" not in page


def test_a_token_s_what_to_do_is_the_api_s_words_in_the_api(
    school: Host, admin: Any, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account's ``action`` in the API (its list, the account, a PATCH's answer) names the
    API's own renewal (PATCH the account with ``"token"``; it named the console's Renew token
    when the API could not renew), never the command line's `mdm vpp account set ...
    --token-file`; `mdm vpp account list --json` keeps the command."""
    from plugins.vpp.models import VppAccount

    headers = token_for(school, "admin")
    simulator.claim_by_other_mdm(name="RivalMDM", metadata="rival.example.com")
    started = admin.post("/api/v1/vpp/accounts/school/sync", headers=headers)
    assert _finished_run(admin, headers, started.json()["id"])["status"] == "error"
    (row,) = admin.get("/api/v1/vpp/accounts", headers=headers).json()["items"]
    assert row["token_state"] == "taken_over" and row["action"] == (
        "another MDM claimed this location: stop it using the token, "
        'then send its text as "token" in PATCH /api/v1/vpp/accounts/school with "take_over": true (or remove the account)'
    ), row
    code, out, _ = MdmRunner(project_dir, monkeypatch, capsys)("vpp", "account", "list", "--json")
    assert code == 0 and "mdm vpp account set school --token-file NEW.vpptoken --take-over" in out  # the command line's words

    for state, expires in (("expired", -3), ("revoked", 90), ("invalid", 90), ("valid", 5), ("valid", 20)):  # 5, 20: expiring_7, _30
        change = update(VppAccount).values(token_state=state, token_expires_at=datetime.now(UTC) + timedelta(days=expires))

        def work(session: Any, change: Any = change) -> None:
            session.execute(change)

        school.db.run_write(work)
        answers = [
            admin.get("/api/v1/vpp/accounts", headers=headers).json()["items"][0],
            admin.get("/api/v1/vpp/accounts/school", headers=headers).json(),
            admin.patch("/api/v1/vpp/accounts/school", headers=headers, json={"interval_seconds": 3600}).json(),
        ]
        for answer in answers:
            assert 'send its text as "token" in PATCH /api/v1/vpp/accounts/school' in answer["action"], answer
            assert "mdm " not in answer["action"] and "--" not in answer["action"], answer


def test_a_book_installed_on_devices_is_refused_in_each_surface_s_words(
    school: Host, admin: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """mobile_apps' refusals go through the same rewording as every error (its WORDING, once
    a console-only second wording): the console's install form and the API name a user to
    choose or give, the command line its --user."""
    from mdm_core.inventory import add_device
    from plugins.mobile_apps.catalog import list_apps

    add_device(school, "WEBDEV000012", "iOS")
    book = next(a for a in list_apps(school) if a["kind"] == "book")
    page = admin.post(f"/apps/{book['id']}/install", data={"csrftoken": csrf(admin), "serials": "WEBDEV000012"})
    text = html.unescape(page.text)
    assert page.status_code == 400 and "Apple licenses books to users only: choose a user in the install form" in text, text
    api = admin.post(f"/api/v1/apps/{book['id']}/install", headers=token_for(school, "admin"), json={"devices": ["WEBDEV000012"]})
    error = api.json()["error"]
    assert api.status_code == 400 and 'Apple licenses books to users only: give "users" instead of "devices"' in error, error
    assert not CLI_ADVICE.search(text) and not CLI_ADVICE.search(error) and "--user" not in text + error

    code, _, err = MdmRunner(project_dir, monkeypatch, capsys)("apps", "install", str(book["id"]), "--device", "WEBDEV000012")
    assert code == 1 and "give --user MDM_USER" in err, err  # the command line's words


def test_alerts_advice_is_worded_for_the_console_and_the_api(app: Any) -> None:
    """An alert's What to do names commands ('`mdm vpp sync school` tries again now', 'free
    unused ones: mdm apps reclaim 1 --unused'); the alerts plugin adds its rewordings to the
    web registry, so the console and the API say the page or the endpoint wherever they show
    an alert (mails and webhooks keep the command line's words)."""
    from mdm_core.web.wording import reword
    from plugins.alerts.rules import MAX_LISTED, install_alert, license_alert, license_digest, reclaim_alert, sync_failing_alert, token_alert
    from plugins.alerts.settings import Threshold

    asset: Any = {"adamId": "1", "pricingParam": "STDQ", "productType": "App", "availableCount": 0, "totalCount": 5, "assignedCount": 5, "retiredCount": 0}
    none = license_alert("school", asset, "ok", "none", Threshold(count=5))
    assert none is not None
    failed = [{"license": "device", "target": f"S{i}", "error": "refused", "errorNumber": 9709} for i in range(MAX_LISTED + 1)]
    alerts = [
        sync_failing_alert("school", 3, datetime(2026, 6, 1, tzinfo=UTC), "VppError", "boom"),
        none,
        license_digest("school", [none, none]),
        install_alert("school", "1", "STDQ", failed),
        install_alert("school", "1", "STDQ", [{**failed[0], "errorNumber": 9609}]),
        install_alert("school", "1", "STDQ", [{**failed[0], "errorNumber": 9600}]),
        token_alert("school", "valid", "expired", expires="2026-06-01T00:00:00+00:00", detail=None, action=None, now=datetime(2026, 7, 1, tzinfo=UTC)),
        reclaim_alert("school", "*", "*", failed[:1]),  # a refused revoke of licenses the mirror did not know
    ]
    said = {surface: [reword(f"{a.text}\n{a.action}", app.state.registry.wording, surface) for a in alerts if a] for surface in ("console", "api")}
    for text in said["console"] + said["api"]:
        assert "mdm " not in text and "`" not in text and "--" not in text, text
    assert said["console"][0].endswith("its Sync runs list the failed runs; its Synchronize tries again now.")
    assert "POST /api/v1/vpp/accounts/school/sync tries again now" in said["api"][0]
    assert "or free those no longer used: Reclaim licenses on the app's page" in said["console"][1]
    assert 'or free those no longer used: POST /api/v1/apps/1/reclaim {"unused": true}' in said["api"][1]
    assert "(Install status, failed)" in said["console"][3] and "then POST /api/v1/apps/1/install again for these targets" in said["api"][3]
    assert "see the account's VPP users" in said["console"][4] and "See GET /api/v1/apps/installs?status=failed" in said["api"][5]
    assert "once a sync shows the licenses they hold, reclaiming each app's unused licenses on its page takes them back" in said["console"][7]
    assert 'once a sync shows the licenses they hold, POST /api/v1/apps/reclaim {"unused": true} takes them back' in said["api"][7]
    assert "mdm apps reclaim 1 --unused" in f"{none.action}"  # the mails' and webhooks' words


def test_an_unknown_app_is_a_404_in_the_api_s_words(
    school: Host, admin: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``POST /api/v1/apps/{app}/install`` and ``/reclaim`` of an app the selector does not find
    answered 404 with the command line's advice (see `mdm apps list`; run `mdm vpp sync`)."""
    headers = token_for(school, "admin")
    for action in ("install", "reclaim"):
        response = admin.post(f"/api/v1/apps/com.example.nothing/{action}", headers=headers, json={"devices": ["WEBDEV000012"]})
        error = response.json()["error"]
        assert response.status_code == 404 and error.startswith("no application 'com.example.nothing': "), error
        assert (
            "(see GET /api/v1/apps; after a purchase, synchronize its VPP account: POST /api/v1/vpp/accounts/NAME/sync, NAME one of GET /api/v1/vpp/accounts)"
            in error
        ), error
        assert not CLI_ADVICE.search(error), error
    code, _, err = MdmRunner(project_dir, monkeypatch, capsys)("apps", "install", "com.example.nothing", "--device", "WEBDEV000012")
    assert code != 0 and "(see `mdm apps list`; run `mdm vpp sync` after a purchase)" in err, err  # the command line's words


def test_no_api_rewording_names_an_endpoint_with_a_placeholder_left_in(app: Any) -> None:
    """The API's answer to Apple's 9709 printed `POST /api/v1/apps/{app}/reclaim` and
    `POST /api/v1/vpp/accounts/{name}/sync` literally: a path to copy must name the app or the
    account (``\\1`` of the advice that names it), never a template's ``{field}``."""
    for rewording in app.state.registry.wording:
        assert not re.search(r"\{\w+\}", rewording.api), (rewording.cli.pattern, rewording.api)


def test_a_9709_recorded_before_its_advice_named_the_app_is_worded_without_placeholders(school: Host, admin: Any) -> None:
    """An install failed for want of licenses before the advice named the app and the account
    (its recorded ``error`` says `mdm apps reclaim` and `mdm vpp sync` alone): the console and the
    API still say it in their words, the API pointing to the install's own fields."""
    from plugins.mobile_apps.installs.wording import OLD_BUY_OR_RECLAIM, OLD_STALE_COUNTS
    from plugins.mobile_apps.models import Install

    error = f"Apple refused the license: Not enough licenses (Apple error 9709); nothing queued{OLD_BUY_OR_RECLAIM}{OLD_STALE_COUNTS}"
    with school.db.session() as session:
        session.add(
            Install(account="school", adam_id="1", pricing_param="STDQ", kind="device", target="OLD9709DEV01", source="request", status="failed", error=error)
        )
        session.commit()
    (row,) = admin.get("/api/v1/apps/installs", headers=token_for(school, "admin")).json()["items"]
    assert "take licenses back with POST /api/v1/apps/ADAM_ID/reclaim (ADAM_ID: the install's adam_id)" in row["error"], row
    assert "POST /api/v1/vpp/accounts/ACCOUNT/sync refreshes them (ACCOUNT: the install's account)" in row["error"], row
    assert not CLI_ADVICE.search(row["error"]) and "{" not in row["error"], row
    page = html.unescape(admin.get("/apps/installs").text)
    assert "Reclaim licenses on the app's page; the app's counts are as of the last synchronization" in page and "`mdm " not in page, page


def test_a_9709_recorded_before_its_reclaim_advice_said_unused_is_worded_as_the_new_one(app: Any) -> None:
    """The advice `mdm apps reclaim ADAMID` (a usage error as written: it needs --unused, --device
    or --user) is now `mdm apps reclaim ADAMID --unused`; an install's error recorded with the
    former is said in the console's and the API's words as the latter is, naming the account."""
    from mdm_core.web.wording import reword
    from plugins.mobile_apps.installs.commands import apple_reason

    new = apple_reason({"errorNumber": 9709, "errorMessage": "Not enough licenses"}, account="school", adam_id="1")
    recorded = new.replace("reclaim unused ones with `mdm apps reclaim 1 --unused`", "reclaim with `mdm apps reclaim 1`")
    assert "`mdm apps reclaim 1 --unused`" in new and recorded != new
    for surface in ("console", "api"):
        said = {reword(text, app.state.registry.wording, surface) for text in (new, recorded)}
        assert len(said) == 1 and not CLI_ADVICE.search(said.pop()), said
    console = reword(new, app.state.registry.wording, "console")
    assert console.endswith("synchronize the VPP account 'school' (Apple Volume Purchase Program › Synchronize) to refresh them"), console


def test_a_refusal_counting_installs_in_progress_is_worded_for_the_console_and_the_api(app: Any) -> None:
    """The refusal of an install whose last licenses other installs are asking Apple for names
    `mdm apps installs`; the console points to Install status, the API to its endpoint."""
    from mdm_core.web.wording import reword
    from plugins.mobile_apps.installs.wording import not_enough_licenses

    cli = not_enough_licenses(0, "school", "1", 1, taken=1).cli
    settles = "mdm jobs run mobile_apps.installs asks Apple again now for those an interrupted request left)"
    assert f"(1 more being licensed by other installs: see `mdm apps installs`; `{settles.replace(' asks', '` asks')}" in cli
    said = {surface: reword(cli, app.state.registry.wording, surface) for surface in ("console", "api")}
    assert f"(1 more being licensed by other installs: see Install status; on the host, {settles}" in said["console"], said
    assert f"(1 more being licensed by other installs: see GET /api/v1/apps/installs; on the host, {settles}" in said["api"], said
    assert not any(CLI_ADVICE.search(text) for text in said.values()), said


def test_an_account_s_last_sync_error_is_in_the_console_s_and_the_api_s_words(school: Host, admin: Any, simulator: Any) -> None:
    """The account's card (Last sync) and GET /api/v1/vpp/accounts showed the failed sync's
    error as the command line has it (`mdm vpp account set school --token-file NEW.vpptoken`),
    where the run's own page said Renew token; and the rewording ate the colon before Apple's
    own words ("...page Token expired")."""
    simulator.expire_token()
    run, run_page = _sync_through_api(school, admin)
    renew = "then Renew token on the Apple Volume Purchase Program page: Token expired"
    api_renew = 'then PATCH /api/v1/vpp/accounts/school with the text of the new .vpptoken file as "token": Token expired'
    assert renew in run_page and api_renew in run["error"], (run_page, run["error"])

    card = html.unescape(admin.get("/vpp").text)
    last_sync = re.search(r'id="last-sync-school">(.*?)</td>', card, re.S)
    assert last_sync and renew in last_sync.group(1) and not CLI_ADVICE.search(last_sync.group(1)), last_sync
    headers = token_for(school, "viewer")
    for account in (admin.get("/api/v1/vpp/accounts", headers=headers).json()["items"][0], admin.get("/api/v1/vpp/accounts/school", headers=headers).json()):
        assert api_renew in account["last_sync_result"] and not CLI_ADVICE.search(account["last_sync_result"]), account


def test_the_service_url_the_advice_points_to_is_on_the_account_s_card(school: Host, admin: Any, viewer: Any, simulator: Any) -> None:
    """A sync that could not connect said "check the account's Service URL and the network",
    but no page showed an account's Service URL: the admin could not check it. The account's
    card now shows it (and says when it is Apple's)."""
    from plugins.vpp.apple.client import DEFAULT_SERVICE_URL
    from plugins.vpp.models import VppAccount

    closed = _closed_port_url()
    with school.db.session() as session:
        session.execute(update(VppAccount).where(col(VppAccount.name) == "school").values(service_url=closed))
        session.commit()
    _, run_page = _sync_through_api(school, admin)
    assert "check the account's Service URL and the network" in run_page
    for who in (admin, viewer):
        shown = re.search(r'<th>Service URL</th><td id="service-url-school">([^<]*)</td>', who.get("/vpp").text)
        assert shown and shown.group(1) == closed, shown
    with school.db.session() as session:
        session.execute(update(VppAccount).where(col(VppAccount.name) == "school").values(service_url=DEFAULT_SERVICE_URL))
        session.commit()
    assert f'id="service-url-school">{DEFAULT_SERVICE_URL} (Apple\'s)</td>' in admin.get("/vpp").text


def test_an_unknown_account_on_a_host_without_any_says_how_to_add_one_in_each_surface_s_words(web_host: Host, admin: Any, client: Any) -> None:
    """With no VPP account at all (a new host, the last one removed), an account's address and
    ``?account=`` answered "(add one with `mdm vpp account add`)" in the console and the API."""
    page = admin.get("/vpp/accounts/school/assets")
    said = html.unescape(page.text)
    assert page.status_code == 404 and "no VPP account named 'school' (add one with Add an account on the Apple Volume Purchase Program page)" in said
    assert not CLI_ADVICE.search(said)
    headers = token_for(web_host, "viewer")
    for path in ("/api/v1/vpp/assets?account=school", "/api/v1/vpp/accounts/school"):
        error = client.get(path, headers=headers).json()["error"]
        assert error == "no VPP account named 'school' (add one with POST /api/v1/vpp/accounts)", error


def test_entering_a_token_again_after_a_lost_key_is_the_key_lost_consent_in_the_console_and_the_api() -> None:
    """The advice naming --key-lost (the key reads none of the stored tokens) is Renew token
    confirming that the key is lost, and the API's ``"key_lost": true``, for the first token
    (was: the host's command line, which the console and the API could not give), never a
    plain Renew token the key refuses, nor a stray flag."""
    from mdm_core.secrets import token_again
    from mdm_core.web.wording import CORE, Rewording, reword
    from plugins.vpp.accounts import unreadable_action
    from plugins.vpp.web import WORDING

    rules = [Rewording(re.compile(cli), said, said) for cli, said in CORE] + [Rewording(re.compile(c), s, a) for c, s, a in WORDING]
    for text in (unreadable_action("school", True), f"run `mdm secrets new-key`, then enter each token again with {token_again(True)}"):
        for surface in ("console", "api"):
            said = reword(text, rules, surface)
            assert "--token-file" not in said and "`" not in said.partition("new-key`")[2], said
            assert "--key-lost" not in said, said
            assert ("confirming that the key is lost" if surface == "console" else 'with "key_lost": true') in said, said


def test_a_platform_mismatch_names_the_fix_in_each_surface_s_words(app: Any) -> None:
    """A device whose platform the app does not support was refused naming the mismatch only; the
    line now says what to do: another device, or an app for this one, where each surface lists them."""
    from mdm_core.web.wording import reword
    from plugins.mobile_apps.installs.wording import platform_mismatch

    said = platform_mismatch("iPadOS", "iOS", "Words Pro (1422705769)", ["macOS"])
    facts = "platform mismatch: the device runs iPadOS, Words Pro (1422705769) supports macOS: install it on a device that runs macOS; "
    assert said.cli == facts + "for this device, choose an app `mdm apps list --platform iOS` lists"
    assert said.next == ("Mobile Applications", "/apps?platform=iOS")
    assert reword(said.cli, app.state.registry.wording, "console") == facts + "for this device, choose an app Mobile Applications lists for iOS"
    assert reword(said.cli, app.state.registry.wording, "api") == facts + "for this device, choose an app GET /api/v1/apps?platform=iOS lists"
    assert "device that runs iOS or iPadOS" in platform_mismatch("macOS", "macOS", "Words Pro (1422705769)", ["iOS"]).cli
