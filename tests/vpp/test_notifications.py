"""Apple's notifications end to end over loopback: the simulator posts them to this host's
endpoint, which records them and acts on them (the mirror, the events), with a sync's rules."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlmodel import col

from mdm_core.errors import MdmError
from mdm_core.host import Host
from mdm_core.testing import EventRecorder
from mdm_core.web.settings import WebSettings
from plugins.vpp.accounts import account_lock
from plugins.vpp.models import VppAccount
from plugins.vpp.notifications.act import MAX_ATTEMPTS, process_pending
from plugins.vpp.notifications.inbox import receive
from plugins.vpp.testing import assert_mirror_equals_apple, mirror_state

from .conftest import FAST_CONFIG, account_row
from .notify_helpers import Endpoint, act_until, inbox, settle


@pytest.fixture
def host(make_host: Callable[..., Host], recorder: EventRecorder, request: pytest.FixtureRequest) -> Host:
    """The VPP tests' host (``tests/vpp/conftest.py``), on SQLite unless a test asks for
    ``postgresql`` (``parametrize("host", ..., indirect=True)``)."""
    import plugins.vpp.plugin

    url = request.getfixturevalue("pg_url") if getattr(request, "param", "sqlite") == "postgresql" else None
    return make_host(plugins=[plugins.vpp.plugin, recorder], config=FAST_CONFIG, database_url=url)


BOTH_DATABASES = pytest.mark.parametrize("host", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def endpoint(host: Host, simulator: Any) -> Iterator[Endpoint]:
    """This host's endpoint on loopback, given as ``[web] public_url``; the simulator retries fast."""
    running = Endpoint(host, simulator)
    simulator.notifier.retry_delays = (0.05, 0.1)
    yield running
    running.close()


@pytest.fixture
def notified(synced: Host, endpoint: Endpoint, simulator: Any, recorder: EventRecorder) -> Host:
    """``synced`` with Apple's notifications on (``mdm vpp account set school --notifications on``)."""
    from plugins.vpp.accounts import set_account

    set_account(synced, "school", notifications=True)
    settle(synced, simulator)
    recorder.clear()
    return synced


def _runs(host: Host) -> int:
    from plugins.vpp.models import VppSyncRun

    with host.db.session() as session:
        return int(session.execute(select(func.count()).select_from(VppSyncRun)).scalar_one())


def _pending(host: Host) -> int:
    from plugins.vpp.models import VppPendingSecret

    with host.db.session() as session:
        return int(session.execute(select(func.count()).select_from(VppPendingSecret)).scalar_one())


def _client(host: Host) -> Any:
    from plugins.vpp.accounts import client_for

    return client_for(host, account_row(host))


# --------------------------------------------------------------------------- configuring


def test_turning_notifications_on_gives_apple_our_url_and_a_fresh_secret(synced: Host, endpoint: Endpoint, simulator: Any, cli: Any) -> None:
    from plugins.vpp.accounts import set_account

    described = set_account(synced, "school", notifications=True)
    assert described["notifications"] == "on"
    row = account_row(synced)
    secret = synced.secrets.decrypt(row.notification_secret)
    assert len(secret) >= 43 and _pending(synced) == 0  # 32 random bytes, base64; nothing left pending
    config = simulator.api.client_config()
    assert config["notificationUrl"] == f"{endpoint.public_url}/apple/apps-books/notify/{row.mdm_info_id}" == row.notification_url
    assert config["notificationAuthToken"] == secret
    assert config["subscribedNotificationTypes"] == ["ASSET_MANAGEMENT", "ASSET_COUNT", "USER_MANAGEMENT", "USER_ASSOCIATED"]
    [test] = inbox(synced)  # Apple's test came in while the request was under way
    assert (test.notification_type, test.status) == ("TEST_NOTIFICATION", "done")
    config = f'{FAST_CONFIG}[web]\npublic_url = "{endpoint.public_url}"\n'  # the commands' configuration is the endpoint's
    code, out, _ = cli("vpp", "account", "list", config=config)
    assert code == 0 and "notifications" in out.splitlines()[0] and " on " in out.splitlines()[1]
    assert secret not in out
    code, out, _ = cli("vpp", "account", "list", "--json", config=config)
    assert '"notifications": "on"' in out and '"last_notification_at": "20' in out and secret not in out


def test_an_unreachable_endpoint_is_one_line_naming_the_url_and_changes_nothing(synced: Host, endpoint: Endpoint, simulator: Any) -> None:
    from plugins.vpp.accounts import set_account

    endpoint.close()
    with pytest.raises(MdmError) as caught:
        set_account(synced, "school", notifications=True)
    message = str(caught.value)
    assert "9728" in message and f"{endpoint.public_url}/apple/apps-books/notify/" in message and "mdm run" in message
    assert "\n" not in message
    row = account_row(synced)
    assert (row.notifications, row.notification_secret, _pending(synced)) == ("off", None, 0)
    assert "notificationUrl" not in simulator.api.client_config()


def test_a_changed_public_url_shows_the_notifications_misdirected_until_set_again(notified: Host, endpoint: Endpoint, simulator: Any, cli: Any) -> None:
    """[web] public_url changed (a new host name) after the notifications were turned on:
    Apple kept posting to the old URL while `account list` said `on`."""
    from mdm_core.web.settings import WebSettings
    from plugins.vpp.accounts import list_accounts

    old_url = account_row(notified).notification_url
    for public_url, says in (("https://mdm.example.org", "not to [web] public_url https://mdm.example.org: run"), (None, "[web] public_url is not set")):
        notified.config.section("web", WebSettings).public_url = public_url
        assert [a["notifications"] for a in list_accounts(notified)] == ["misdirected"]  # was: "on"
        web = "" if public_url is None else f'[web]\npublic_url = "{public_url}"\n'
        code, out, err = cli("vpp", "account", "list", config=FAST_CONFIG + web)
        assert code == 0 and " misdirected " in out.splitlines()[1], out + err
        assert f"school: Apple posts its notifications to {old_url}, " in out and says in out
    notified.config.section("web", WebSettings).public_url = endpoint.public_url
    assert [a["notifications"] for a in list_accounts(notified)] == ["on"]


@BOTH_DATABASES
def test_list_json_and_the_api_say_where_apple_posts_and_what_to_do_as_the_table_does(notified: Host, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The table said where Apple posts the misdirected notifications and what to do, while
    `mdm vpp account list --json` and GET /api/v1/vpp/accounts said "action": "nothing to do"
    and neither. All three now say the table's action (the API in its words), with the URL."""
    from mdm_core.web.access import create_token
    from mdm_core.web.wording import reword

    monkeypatch.setenv("MDM_DATABASE_URL", notified.db.url.render_as_string(hide_password=False))  # the commands on the host's database
    row = account_row(notified)
    secret = notified.secrets.decrypt(row.notification_secret)
    notified.config.section("web", WebSettings).public_url = "https://mdm.example.org"
    config = FAST_CONFIG + '[web]\npublic_url = "https://mdm.example.org"\n'
    code, table, err = cli("vpp", "account", "list", config=config)
    assert code == 0, err
    [said] = [line.removeprefix("school: ") for line in table.splitlines() if line.startswith("school: ")]
    assert said.startswith(f"Apple posts its notifications to {row.notification_url}, not to [web] public_url https://mdm.example.org: run"), table
    code, out, err = cli("vpp", "account", "list", "--json", config=config)
    [listed] = json.loads(out)
    assert code == 0 and listed["action"] == said, out + err  # was: "nothing to do"
    assert (listed["notifications"], listed["notification_url"]) == ("misdirected", row.notification_url)
    bearer = {"Authorization": "Bearer " + create_token(notified, "monitoring")["token"]}
    with _console(notified) as client:
        wording = client.app.state.registry.wording
        answers = [client.get("/api/v1/vpp/accounts", headers=bearer).json()["items"][0], client.get("/api/v1/vpp/accounts/school", headers=bearer).json()]
        page = client.get("/vpp").text
    for answer in answers:
        assert answer["action"] == reword(said, wording, "api"), answer  # was: "nothing to do"
        assert answer["action"].endswith(': PATCH /api/v1/vpp/accounts/school {"notifications": "on"} gives Apple this URL (or "off" to sync by polling)')
        assert (answer["notifications"], answer["notification_url"]) == ("misdirected", row.notification_url)
    assert _what_to_do(page) == reword(said, wording, "console")
    for shown in (table, out, json.dumps(answers), page):
        assert secret not in shown and row.notification_secret not in shown


def test_a_token_to_renew_and_misdirected_notifications_are_both_said(notified: Host, cli: Any) -> None:
    """An account whose token expires soon and whose notifications go astray: one action, the
    token's then the notifications', in the table and in --json alike."""
    from datetime import timedelta

    from mdm_core.models import utcnow

    notified.db.run_write(lambda session: session.execute(update(VppAccount).values(token_expires_at=utcnow() + timedelta(days=10), token_state="expiring_14")))
    code, table, err = cli("vpp", "account", "list", config=FAST_CONFIG)  # no [web] public_url
    [said] = [line.removeprefix("school: ") for line in table.splitlines() if line.startswith("school: ")]
    token_action = "renew the token before it expires: mdm vpp account set school --token-file NEW.vpptoken"
    assert code == 0 and said.startswith(f"{token_action}; Apple posts its notifications to "), table + err
    assert said.endswith("but [web] public_url is not set: set it again, or run mdm vpp account set school --notifications off")
    code, out, err = cli("vpp", "account", "list", "--json", config=FAST_CONFIG)
    assert code == 0 and json.loads(out)[0]["action"] == said, out + err


def test_mdm_status_says_the_token_and_the_notifications_each_on_its_own_line(notified: Host, capsys: pytest.CaptureFixture[str]) -> None:
    """``mdm status``'s token line ended with the notifications' advice when both needed the
    admin (the account's whole What to do), and said nothing of misdirected notifications
    when the token was fine. Each line now says its own advice, once."""
    import argparse
    from datetime import timedelta

    from mdm_core.cli import cmd_status
    from mdm_core.models import utcnow

    def warnings() -> list[str]:
        assert cmd_status(notified, argparse.Namespace(json=False)) == 0  # warnings: the exit code is unchanged
        return [line.removeprefix("warning: ") for line in capsys.readouterr().out.splitlines() if line.startswith("warning: ")]

    old_url = account_row(notified).notification_url
    notified.config.section("web", WebSettings).public_url = "https://mdm.example.org"
    notice = f"Apple posts its notifications to {old_url}, not to [web] public_url https://mdm.example.org: "
    notice += "run mdm vpp account set school --notifications on (or off)"
    assert warnings() == [f"VPP account 'school': {notice}"]  # was: nothing
    notified.db.run_write(lambda session: session.execute(update(VppAccount).values(token_expires_at=utcnow() + timedelta(days=10), token_state="expiring_14")))
    expires = account_row(notified).token_expires_at.date().isoformat()
    token = f"VPP account 'school': token expiring in 10 days (on {expires}): "
    token += "renew the token before it expires: mdm vpp account set school --token-file NEW.vpptoken"
    assert warnings() == [token, f"VPP account 'school': {notice}"]  # the token's line ended with the notice too
    notified.config.section("web", WebSettings).public_url = None
    [said] = [line for line in warnings() if "notifications" in line]
    assert said.endswith("but [web] public_url is not set: set it again, or run mdm vpp account set school --notifications off")


@contextmanager
def _console(host: Host, role: str = "admin") -> Iterator[Any]:
    """A console client logged in with ``role``."""
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app

    add_admin(host, "alice", "correct horse battery staple", role)
    with TestClient(create_app(host)) as client:
        client.get("/login")
        form = {"name": "alice", "password": "correct horse battery staple", "next": "/vpp", "csrftoken": client.cookies.get("csrftoken")}
        assert client.post("/login", data=form, follow_redirects=False).status_code == 303
        yield client


def _notifications_cell(page: str) -> str:
    """The account's Apple's notifications as the console says them (without its buttons)."""
    return html.unescape(page.split('id="notifications-school">', 1)[1].split("</td>", 1)[0].split("<form", 1)[0])


def _turn(client: Any, value: str) -> Any:
    """The console's Turn on / Turn off of the account's Apple's notifications."""
    return client.post("/vpp/accounts/school/notifications", data={"notifications": value, "csrftoken": client.cookies.get("csrftoken")})


def _what_to_do(page: str) -> str:
    """The account's What to do on the console's VPP page."""
    return html.unescape(page.split('id="token-action-school">', 1)[1].split("</td>", 1)[0])


def _error_line(page: Any) -> str:
    return html.unescape(page.text.split('id="error">', 1)[1].split("<", 1)[0])


def test_the_console_and_the_api_show_misdirected_notifications_too(notified: Host) -> None:
    """The console said "on — last received ..." and the API "on" while Apple posted to a URL
    this host no longer answers at (only the command line said misdirected)."""
    from mdm_core.web.access import create_token
    from mdm_core.web.settings import WebSettings

    old_url = account_row(notified).notification_url
    notified.config.section("web", WebSettings).public_url = "https://mdm.example.org"
    bearer = {"Authorization": "Bearer " + create_token(notified, "monitoring")["token"]}
    with _console(notified) as client:
        assert [a["notifications"] for a in client.get("/api/v1/vpp/accounts", headers=bearer).json()["items"]] == ["misdirected"]
        assert client.get("/api/v1/vpp/accounts/school", headers=bearer).json()["notifications"] == "misdirected"
        page = client.get("/vpp").text
    assert f"misdirected</span> — Apple posts them to {old_url} (see What to do)" in _notifications_cell(page), page
    assert _what_to_do(page).startswith(f"Apple posts its notifications to {old_url}, not to [web] public_url https://mdm.example.org"), page


def test_the_console_says_what_it_can_do_about_misdirected_notifications(notified: Host, endpoint: Endpoint, simulator: Any) -> None:
    """The console told its admin to "run mdm vpp account set school --notifications on (or
    off)", then to ask an administrator of the host: it had no control for them. It now names
    its Turn on and Turn off, which work: Turn on gives Apple [web] public_url again, Turn off
    stops Apple's notifications, without public_url too."""
    from mdm_core.web.settings import WebSettings

    def work(session: Any) -> None:  # turned on while [web] public_url was another
        session.execute(update(VppAccount).values(notification_url="https://old.example.org/apple/apps-books/notify/x"))

    notified.db.run_write(work)
    with _console(notified) as client:
        page = client.get("/vpp").text
        advice = _what_to_do(page)
        assert "misdirected" in _notifications_cell(page)
        assert advice.endswith(": click Turn on beside its Apple's notifications to give Apple this URL, or Turn off to sync by polling"), advice
        assert "mdm " not in advice and "--" not in advice and "administrator" not in advice, advice
        assert 'id="notifications-on-school">Turn on<' in page and 'id="notifications-off-school">Turn off<' in page
        turned = _turn(client, "on")
        assert turned.status_code == 200, turned.text
        assert _notifications_cell(turned.text).startswith("on — ") and "school: Apple's notifications on" in html.unescape(turned.text)
        assert simulator.api.client_config()["notificationUrl"] == account_row(notified).notification_url
        assert account_row(notified).notification_url == f"{endpoint.public_url}/apple/apps-books/notify/{account_row(notified).mdm_info_id}"
        notified.config.section("web", WebSettings).public_url = None
        advice = _what_to_do(client.get("/vpp").text)
        assert "[web] public_url is not set: ask the host's operator to set it again, or click Turn off beside its Apple's notifications" in advice, advice
        assert "mdm " not in advice and "--" not in advice, advice
        turned = _turn(client, "off")  # needs no public_url
        assert turned.status_code == 200 and _notifications_cell(turned.text).startswith("off: "), turned.text
    assert simulator.api.client_config()["subscribedNotificationTypes"] == []
    assert (account_row(notified).notifications, account_row(notified).notification_secret) == ("off", None)


@BOTH_DATABASES
def test_the_console_turns_notifications_off_and_on(notified: Host, endpoint: Endpoint, simulator: Any) -> None:
    """The console could change an account's interval and token but not its notifications: an
    admin had to ask an administrator of the host to run the command."""
    from mdm_core.web.settings import WebSettings

    with _console(notified) as client:
        page = client.get("/vpp").text
        assert 'id="notifications-off-school">Turn off<' in page and 'id="notifications-on-school"' not in page  # on: only Turn off
        turned = _turn(client, "off")
        assert turned.status_code == 200 and _notifications_cell(turned.text).startswith("off: changes at Apple are found by the scheduled sync")
        assert simulator.api.client_config()["subscribedNotificationTypes"] == []  # Apple posts nothing more
        assert 'id="notifications-on-school">Turn on<' in turned.text and 'id="notifications-off-school"' not in turned.text
        turned = _turn(client, "on")
        assert turned.status_code == 200 and _notifications_cell(turned.text).startswith("on — "), turned.text
        row = account_row(notified)
        config = simulator.api.client_config()
        assert config["notificationUrl"] == f"{endpoint.public_url}/apple/apps-books/notify/{row.mdm_info_id}" == row.notification_url
        assert config["notificationAuthToken"] == notified.secrets.decrypt(row.notification_secret)
        assert config["subscribedNotificationTypes"] == ["ASSET_MANAGEMENT", "ASSET_COUNT", "USER_MANAGEMENT", "USER_ASSOCIATED"]
        bad = _turn(client, "maybe")
        assert bad.status_code == 422 and _error_line(bad) == 'notifications "maybe" is not valid: give "on" or "off"', bad.text
        assert _turn(client, "off").status_code == 200
        notified.config.section("web", WebSettings).public_url = None
        refused = _turn(client, "on")
    assert refused.status_code == 422
    assert _error_line(refused) == (
        "notifications need [web] public_url: ask the host's operator to set it to the https URL by which Apple reaches this host "
        "(where this console is served), then try again"
    ), refused.text
    assert (account_row(notified).notifications, account_row(notified).notification_secret, _pending(notified)) == ("off", None, 0)
    assert simulator.api.client_config()["subscribedNotificationTypes"] == []


def test_turning_them_on_in_the_console_when_apple_cannot_reach_the_host_changes_nothing(synced: Host, endpoint: Endpoint, simulator: Any) -> None:
    endpoint.close()
    with _console(synced) as client:
        refused = _turn(client, "on")
    assert refused.status_code == 400 and "Nothing was changed" in refused.text
    line = _error_line(refused)
    assert f"Apple could not deliver a test notification to {endpoint.public_url}/apple/apps-books/notify/" in line, line
    assert line.endswith(
        "this host's web server must be running, serving [web] public_url and reachable from the internet, with the same database "
        "and key; or leave the account's Apple's notifications off (Turn off, or off in Add an account) to sync by polling"
    ), line
    assert (account_row(synced).notifications, _pending(synced)) == ("off", 0) and "notificationUrl" not in simulator.api.client_config()


def test_a_viewer_cannot_turn_notifications_off(notified: Host, simulator: Any) -> None:
    from mdm_core.web.access import create_token

    viewer = {"Authorization": "Bearer " + create_token(notified, "monitoring")["token"]}
    with _console(notified, "viewer") as client:
        page = client.get("/vpp").text
        assert "notifications-off-school" not in page and "/vpp/accounts/school/notifications" not in page
        assert _turn(client, "off").status_code == 403
        assert client.patch("/api/v1/vpp/accounts/school", headers=viewer, json={"notifications": "off"}).status_code == 403
    assert account_row(notified).notifications == "on"
    assert simulator.api.client_config()["subscribedNotificationTypes"] != []


@BOTH_DATABASES
def test_the_api_turns_notifications_off_and_on(notified: Host, endpoint: Endpoint, simulator: Any) -> None:
    """PATCH /api/v1/vpp/accounts/{name} took only "interval_seconds"."""
    from mdm_core.web.access import create_token
    from mdm_core.web.settings import WebSettings

    admin = {"Authorization": "Bearer " + create_token(notified, "ops", "admin")["token"]}
    interval = account_row(notified).interval_seconds
    with _console(notified) as client:

        def patch(body: Any) -> Any:
            return client.patch("/api/v1/vpp/accounts/school", headers=admin, json=body)

        answer = patch({"notifications": "off"})
        assert answer.status_code == 200 and answer.json()["notifications"] == "off", answer.text
        assert simulator.api.client_config()["subscribedNotificationTypes"] == []
        answer = patch({"notifications": "on", "interval_seconds": 900})
        assert answer.status_code == 200 and (answer.json()["notifications"], answer.json()["interval_seconds"]) == ("on", 900), answer.text
        row = account_row(notified)
        assert simulator.api.client_config()["notificationUrl"] == f"{endpoint.public_url}/apple/apps-books/notify/{row.mdm_info_id}" == row.notification_url
        for sent, shown in (("yes", '"yes"'), (True, "true"), (None, "null"), ("ON", '"ON"')):
            bad = patch({"notifications": sent})
            assert bad.status_code == 422 and bad.json() == {"error": f'notifications {shown} is not valid: give "on" or "off"'}, bad.text
        bad = patch({"notification": "off"})
        assert bad.status_code == 422 and "unknown field(s): notification" in bad.json()["error"] and '"notifications"' in bad.json()["error"]
        assert patch({"notifications": "off"}).status_code == 200
        notified.config.section("web", WebSettings).public_url = None
        refused = patch({"notifications": "on", "interval_seconds": interval})
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "notifications need [web] public_url: ask the host's operator to set it to the https URL by which Apple reaches this host "
        "(where this API is served), then send this again"
    }
    assert (account_row(notified).notifications, account_row(notified).interval_seconds) == ("off", 900)  # nothing written
    assert simulator.api.client_config()["subscribedNotificationTypes"] == []


def test_the_api_names_its_notifications_field_in_the_command_lines_advice(notified: Host) -> None:
    """The API's words for the command line's advice about notifications name the PATCH field
    (they said to ask an administrator of the host), the console's its Turn on / Turn off."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app
    from mdm_core.web.settings import WebSettings
    from mdm_core.web.wording import reword
    from plugins.vpp.notifications.configure import misdirected

    account = account_row(notified)
    notified.config.section("web", WebSettings).public_url = "https://mdm.example.org"
    moved = misdirected(notified, account)
    notified.config.section("web", WebSettings).public_url = None
    unset = misdirected(notified, account)
    with TestClient(create_app(notified)) as client:
        wording = client.app.state.registry.wording  # type: ignore[attr-defined]
    assert moved and unset
    assert reword(moved, wording, "api").endswith(
        ': PATCH /api/v1/vpp/accounts/school {"notifications": "on"} gives Apple this URL (or "off" to sync by polling)'
    )
    assert reword(unset, wording, "api").endswith(
        'is not set: ask the host\'s operator to set it again, or PATCH /api/v1/vpp/accounts/school {"notifications": "off"}'
    )
    removed = "to stop it, add the location again and run `mdm vpp account set school --notifications off`"
    assert reword(removed, wording, "api") == 'to stop it, add the location again and PATCH /api/v1/vpp/accounts/school {"notifications": "off"}'
    assert reword(removed, wording, "console") == "to stop it, add the location again and click Turn off beside its Apple's notifications"


def test_notifications_need_public_url(synced: Host) -> None:
    from mdm_core.errors import UsageError
    from plugins.vpp.accounts import set_account

    with pytest.raises(UsageError, match=r"\[web\] public_url"):
        set_account(synced, "school", notifications=True)


def test_turning_them_off_unsubscribes_and_refuses_the_old_secret(notified: Host, simulator: Any) -> None:
    from plugins.vpp.accounts import set_account

    row = account_row(notified)
    secret = notified.secrets.decrypt(row.notification_secret)
    assert set_account(notified, "school", notifications=False)["notifications"] == "off"
    assert simulator.api.client_config()["subscribedNotificationTypes"] == []
    simulator.purchase(count=2)
    assert simulator.wait_notifications(30)
    assert [n["notificationType"] for n in simulator.notifications()][-1] == "TEST_NOTIFICATION"  # nothing more was sent
    late = receive(notified, row.mdm_info_id, f"Bearer {secret}", b"{}", max_bytes=4096)
    assert late.status == 401


def test_removing_the_account_tells_apple_to_stop_posting(notified: Host, simulator: Any, cli: Any) -> None:
    """Before, `account remove` told Apple nothing: it kept posting to an account that no longer
    existed, each post refused (401) and logged, for good."""
    web = f'[web]\npublic_url = "{notified.config.section("web", WebSettings).public_url}"\n'
    code, out, err = cli("vpp", "account", "remove", "school", "--dry-run", config=FAST_CONFIG + web)
    assert code == 0 and "Apple's notifications are turned off, nothing else changes at Apple" in out, out + err
    code, out, err = cli("vpp", "account", "remove", "school", "--yes")
    assert (code, err) == (0, ""), out + err
    config = simulator.api.client_config()
    assert config["subscribedNotificationTypes"] == [] and config["mdmInfo"]["id"]  # stopped; the location stays this host's
    simulator.purchase(count=2)
    assert simulator.wait_notifications(30)
    assert [n["notificationType"] for n in simulator.notifications()][-1] == "TEST_NOTIFICATION"  # nothing more was sent


def test_an_account_is_removed_even_when_apple_cannot_be_told_and_the_admin_is_warned(notified: Host, simulator: Any, cli: Any) -> None:
    url = account_row(notified).notification_url
    simulator.faults.add("server_error", endpoint="client/config", status=503, retry_after=0)
    code, out, err = cli("vpp", "account", "remove", "school", "--yes")
    assert code == 0 and "removed account school" in out, out + err
    [warning] = [line for line in err.splitlines() if "could not be told" in line]  # once
    assert warning.startswith(f"warning: Apple could not be told to stop posting notifications to {url} (") and "HTTP 503" in warning, err
    assert warning.endswith("add the location again and run `mdm vpp account set school --notifications off`"), warning
    assert simulator.api.client_config()["subscribedNotificationTypes"] != []
    code, out, _ = cli("vpp", "account", "list", "--json")
    assert json.loads(out) == []  # removed all the same


def test_a_renewed_token_gives_apple_a_new_secret_and_the_old_one_stops_working(notified: Host, simulator: Any, token_file: Path) -> None:
    from plugins.vpp.accounts import set_account

    old = notified.secrets.decrypt(account_row(notified).notification_secret)
    set_account(notified, "school", token_file=str(token_file))
    row = account_row(notified)
    new = notified.secrets.decrypt(row.notification_secret)
    assert new != old and simulator.api.client_config()["notificationAuthToken"] == new
    assert receive(notified, row.mdm_info_id, f"Bearer {old}", b"{}", max_bytes=4096).status == 401


def test_taking_the_location_back_gives_apple_a_new_secret_and_our_url(notified: Host, simulator: Any, token_file: Path) -> None:
    """Another MDM claimed the location and subscribed its own URL: ``--take-over`` (with the
    token renewed) claims it back with our URL and a fresh secret; the old one stops working."""
    from plugins.vpp.accounts import set_account
    from plugins.vpp.sync.run import sync_account

    row = account_row(notified)
    old = notified.secrets.decrypt(row.notification_secret)
    simulator.claim_by_other_mdm(name="RivalMDM", metadata="rival.example.com")
    with simulator.state.lock:  # the other MDM wants no notifications: Apple stops sending ours
        simulator.state.notification_url = simulator.state.notification_auth_token = None
    assert sync_account(notified, "school")["status"] == "error" and account_row(notified).token_state == "taken_over"
    with pytest.raises(MdmError, match="RivalMDM"):
        set_account(notified, "school", token_file=str(token_file))
    set_account(notified, "school", token_file=str(token_file), take_over=True)
    row = account_row(notified)
    new = notified.secrets.decrypt(row.notification_secret)
    config = simulator.api.client_config()
    assert new != old and (row.notifications, row.token_state) == ("on", "valid")
    assert (config["mdmInfo"]["id"], config["notificationUrl"], config["notificationAuthToken"]) == (row.mdm_info_id, row.notification_url, new)
    assert receive(notified, row.mdm_info_id, f"Bearer {old}", b"{}", max_bytes=4096).status == 401
    key = simulator.purchase(count=2)
    settle(notified, simulator)
    assert key in mirror_state(notified)["assets"]  # Apple's notifications reach us again


def test_adding_an_account_turns_them_on_and_answers_apples_test_while_it_is_added(host: Host, endpoint: Endpoint, simulator: Any, token_file: Path) -> None:
    from plugins.vpp.accounts import add_account

    added = add_account(host, "school", str(token_file), service_url=simulator.base_url)
    assert added["notifications"] == "on" and not added["paused"]
    assert added["last_notification_at"]  # Apple's test arrived: `mdm vpp account list` says when
    [test] = simulator.notifications()
    assert (test["notificationType"], test["status"], test["answers"]) == ("TEST_NOTIFICATION", "delivered", [200])
    assert inbox(host) == [] and _pending(host) == 0  # nothing to act on; the secret is the account's now
    simulator.purchase(count=1)
    settle(host, simulator)
    assert [n.notification_type for n in inbox(host)] == ["ASSET_COUNT"]


def test_adding_an_account_apple_cannot_reach_leaves_no_account(host: Host, endpoint: Endpoint, simulator: Any, token_file: Path) -> None:
    from plugins.vpp.accounts import add_account, list_accounts

    simulator.faults.add("notification_drop", type="TEST_NOTIFICATION", count=1)
    with pytest.raises(MdmError, match="9728"):
        add_account(host, "school", str(token_file), service_url=simulator.base_url)
    assert list_accounts(host) == [] and "mdmInfo" not in simulator.api.client_config()
    added = add_account(host, "school", str(token_file), service_url=simulator.base_url, notifications=False)
    assert added["notifications"] == "off"


def _add(client: Any, token_file: Path, service_url: str, notifications: str) -> Any:
    """The console's Add an account, its Apple's notifications chosen."""
    form = {"csrftoken": client.cookies.get("csrftoken"), "name": "school", "interval": "900", "service_url": service_url, "notifications": notifications}
    return client.post("/vpp/add", data=form, files={"token_file": ("school.vpptoken", token_file.read_bytes())})


def _chosen(page: str) -> str:
    """The Add an account form's Apple's notifications as it comes (the selected option)."""
    select = page.split('id="account-notifications">', 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="(on|off)" selected>', select)[0]


@BOTH_DATABASES
def test_the_console_adds_an_account_with_notifications_off_or_on(host: Host, endpoint: Endpoint, simulator: Any, token_file: Path) -> None:
    """The Add an account form had no notifications choice: with [web] public_url set, an
    account was always added with them on, so the 9728 advice (leave them off) could not be
    followed there. It offers on (the command line's default here) and off."""
    from plugins.vpp.accounts import remove_account

    with _console(host) as client:
        form = client.get("/vpp/add").text
        assert _chosen(form) == "on" and f"Apple posts its changes to {endpoint.public_url}" in form
        added = _add(client, token_file, simulator.base_url, "off")
        assert added.status_code == 200 and _notifications_cell(added.text).startswith("off: "), added.text
        row = account_row(host)
        assert (row.notifications, row.notification_url, row.notification_secret, _pending(host)) == ("off", None, None, 0)
        config = simulator.api.client_config()
        assert config["subscribedNotificationTypes"] == [] and "notificationUrl" not in config and config["mdmInfo"]["id"] == row.mdm_info_id
        assert simulator.notifications() == []  # Apple had nothing to test
        remove_account(host, "school")
        added = _add(client, token_file, simulator.base_url, "on")
    assert added.status_code == 200 and _notifications_cell(added.text).startswith("on — "), added.text
    row = account_row(host)
    config = simulator.api.client_config()
    assert config["notificationUrl"] == f"{endpoint.public_url}/apple/apps-books/notify/{row.mdm_info_id}" == row.notification_url
    assert config["subscribedNotificationTypes"] == ["ASSET_MANAGEMENT", "ASSET_COUNT", "USER_MANAGEMENT", "USER_ASSOCIATED"]
    assert config["notificationAuthToken"] == host.secrets.decrypt(row.notification_secret)


@BOTH_DATABASES
@pytest.mark.parametrize("choice", ["on", "off"])
def test_confirming_a_take_over_adds_the_account_with_the_add_forms_notifications(
    host: Host, endpoint: Endpoint, simulator: Any, token_file: Path, choice: str
) -> None:
    """Add an account with a token another MDM uses asks to confirm the take-over; the
    confirmation keeps the Add form's Apple's notifications choice (on and off alike)."""
    from plugins.vpp.accounts import list_accounts

    simulator.state.mdm_info = {"id": "other-id", "name": "Jamf Pro", "metadata": "jamf.example.edu"}  # another MDM claimed it
    with _console(host) as client:
        asked = _add(client, token_file, simulator.base_url, choice)
        assert asked.status_code == 409 and "Take over from Jamf Pro" in asked.text and list_accounts(host) == []
        hidden = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', asked.text))
        assert hidden["notifications"] == choice and simulator.token not in asked.text
        confirmed = client.post("/vpp/add", data={**hidden, "take_over": "yes"})  # the confirmation page's form, its box ticked
        assert confirmed.status_code == 200 and _notifications_cell(confirmed.text).startswith("on — " if choice == "on" else "off: "), confirmed.text
    row = account_row(host)
    config = simulator.api.client_config()
    assert row.notifications == choice and config["mdmInfo"]["id"] == row.mdm_info_id != "other-id"  # taken over
    if choice == "on":
        assert config["notificationUrl"] == f"{endpoint.public_url}/apple/apps-books/notify/{row.mdm_info_id}" == row.notification_url
        assert config["notificationAuthToken"] == host.secrets.decrypt(row.notification_secret)
    else:
        assert (row.notification_url, row.notification_secret, _pending(host)) == (None, None, 0)
        assert config["subscribedNotificationTypes"] == [] and "notificationUrl" not in config


def test_the_console_refuses_a_notifications_choice_it_cannot_follow_and_adds_nothing(host: Host, endpoint: Endpoint, simulator: Any, token_file: Path) -> None:
    """A bad value, on without [web] public_url and on when Apple cannot deliver its test are one
    line in the console's words; no account, nothing claimed at Apple, no secret left pending."""
    from plugins.vpp.accounts import list_accounts

    def nothing_written() -> None:
        assert list_accounts(host) == [] and _pending(host) == 0 and "mdmInfo" not in simulator.api.client_config()

    with _console(host) as client:
        bad = _add(client, token_file, simulator.base_url, "maybe")
        assert bad.status_code == 422 and _error_line(bad) == 'notifications "maybe" is not valid: give "on" or "off"', bad.text
        nothing_written()
        simulator.faults.add("notification_drop", type="TEST_NOTIFICATION", count=1)
        refused = _add(client, token_file, simulator.base_url, "on")
        assert refused.status_code == 400 and "Nothing was changed" in refused.text
        line = _error_line(refused)
        assert "error 9728" in line and line.endswith(
            "or leave the account's Apple's notifications off (Turn off, or off in Add an account) to sync by polling"
        )
        assert "mdm " not in line and "--" not in line, line
        nothing_written()
        host.config.section("web", WebSettings).public_url = None
        assert _chosen(client.get("/vpp/add").text) == "off"  # the command line's default without it
        refused = _add(client, token_file, simulator.base_url, "on")
        assert refused.status_code == 422 and _error_line(refused) == (
            "notifications need [web] public_url: ask the host's operator to set it to the https URL by which Apple reaches this host "
            "(where this console is served), then try again"
        ), refused.text
        nothing_written()
        assert _add(client, token_file, simulator.base_url, "off").status_code == 200
    assert [a["notifications"] for a in list_accounts(host)] == ["off"]


# --------------------------------------------------------------------------- acting


def test_a_purchase_is_in_the_mirror_at_once_without_a_sync(notified: Host, simulator: Any, recorder: EventRecorder) -> None:
    runs = _runs(notified)
    key = simulator.purchase(count=7, supported_platforms=("iOS", "macOS"))
    settle(notified, simulator)
    assert mirror_state(notified)["assets"][key]["totalCount"] == 7
    assert_mirror_equals_apple(notified, simulator)
    [added] = recorder.named("vpp_assets_added")
    assert added["assets"][0]["adamId"] == key[0] and added["account"] == "school"
    assert _runs(notified) == runs  # no sync ran: the notification did it
    [row] = [n for n in inbox(notified) if n.notification_type == "ASSET_COUNT"]
    assert row.status == "done" and "added" in row.detail


def test_more_licenses_a_transfer_and_a_refund_change_the_asset_at_once(notified: Host, simulator: Any, recorder: EventRecorder) -> None:
    from plugins.vpp.models import VppAsset

    with notified.db.session() as session:
        asset = session.execute(select(VppAsset).where(col(VppAsset.revocable).is_(True), col(VppAsset.assigned_count) > 0)).scalars().first()
    key = (asset.adam_id, asset.pricing_param)
    simulator.purchase(adam_id=key[0], pricing_param=key[1], count=4)
    settle(notified, simulator)
    assert mirror_state(notified)["assets"][key]["totalCount"] == asset.total_count + 4
    simulator.transfer(key[0], key[1], count=-1)
    settle(notified, simulator)
    assert mirror_state(notified)["assets"][key]["totalCount"] == asset.total_count + 3
    assert [e["assets"][0]["totalCount"] for e in recorder.named("vpp_assets_changed")] == [asset.total_count + 4, asset.total_count + 3]
    simulator.remove_asset(key[0], key[1])  # refunded: gone with its licenses
    settle(notified, simulator)
    assert key not in mirror_state(notified)["assets"]
    assert recorder.named("vpp_assets_removed")[0]["assets"][0]["adamId"] == key[0]
    gone = [e for e in recorder.named("vpp_licenses_disassociated") if e["adamId"] == key[0]]
    assert sum(len(e["serialNumbers"]) + len(e["clientUserIds"]) for e in gone) == asset.assigned_count
    assert_mirror_equals_apple(notified, simulator)


def test_a_purchase_is_published_as_an_app_at_once(make_host: Any, simulator: Any, project_dir: Path) -> None:
    from plugins.vpp.accounts import set_account
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    host = make_host()  # every installed plugin: mobile_apps publishes
    add_simulated_account(host, simulator, project_dir)
    sync_account(host, "school")
    endpoint = Endpoint(host, simulator)
    try:
        set_account(host, "school", notifications=True)
        key = simulator.purchase(count=3, supported_platforms=("iOS",))
        settle(host, simulator)
    finally:
        endpoint.close()
    from plugins.mobile_apps.models import MobileApp

    with host.db.session() as session:
        published = session.execute(select(MobileApp).where(MobileApp.adam_id == key[0])).scalars().all()
    assert [(a.platform, a.state) for a in published] == [("iOS", "published")]


def test_an_associate_completes_from_its_notification(notified: Host, simulator: Any, recorder: EventRecorder) -> None:
    from plugins.vpp.models import VppAsset

    with notified.db.session() as session:
        asset = session.execute(select(VppAsset).where(col(VppAsset.device_assignable).is_(True), col(VppAsset.available_count) > 2)).scalars().first()
    with _client(notified) as client:  # asked of Apple directly: only the notification tells the mirror
        [event_id] = client.associate_assets([(asset.adam_id, asset.pricing_param)], serial_numbers=["NOTIFY00001", "NOTIFY00002"])
    settle(notified, simulator)
    [event] = recorder.named("vpp_licenses_associated")
    assert (event["adamId"], event["source"], sorted(event["serialNumbers"])) == (asset.adam_id, "request", ["NOTIFY00001", "NOTIFY00002"])
    [changed] = recorder.named("vpp_assets_changed")  # the counts moved: subscribers hear it as from a sync
    assert [(a["adamId"], a["assignedCount"], a["availableCount"]) for a in changed["assets"]] == [
        (asset.adam_id, asset.assigned_count + 2, asset.available_count - 2)
    ]
    assert_mirror_equals_apple(notified, simulator)  # licenses and counts
    [row] = [n for n in inbox(notified) if n.notification_type == "ASSET_MANAGEMENT"]
    assert row.event_id == event_id and row.status == "done"


def test_a_disassociate_and_a_revoke_complete_from_their_notifications(notified: Host, simulator: Any, recorder: EventRecorder) -> None:
    """Licenses removed at Apple by this host's requests leave the mirror when Apple's
    ASSET_MANAGEMENT notifications arrive, with the events a sync would send."""
    revocable = {key for key, asset in mirror_state(notified)["assets"].items() if asset["revocable"]}
    licenses = sorted((a[3], a[0], a[1]) for a in simulator.snapshot()["assignments"] if a[2] == "serialNumber" and (a[0], a[1]) in revocable)
    taken, adam_id, pricing = licenses[0]
    revoked = next(serial for serial, _, _ in licenses if serial != taken)
    held = {(a, p) for serial, a, p in licenses if serial == revoked}
    with _client(notified) as client:  # asked of Apple directly: only the notifications tell the mirror
        [gone] = client.disassociate_assets([(adam_id, pricing)], serial_numbers=[taken])
        [revoke] = client.revoke_assets(serial_numbers=[revoked])
    settle(notified, simulator)
    events = recorder.named("vpp_licenses_disassociated")
    assert {(e["adamId"], e["source"]) for e in events if taken in e["serialNumbers"]} == {(adam_id, "request")}
    assert {(e["adamId"], e["pricingParam"]) for e in events if revoked in e["serialNumbers"]} == held
    assert not any(
        a[3] in (taken, revoked) and (a[0], a[1]) in held | {(adam_id, pricing)} for a in mirror_state(notified)["assignments"] if a[2] == "serialNumber"
    )
    assert_mirror_equals_apple(notified, simulator)  # licenses and counts
    managed = {n.event_id: n for n in inbox(notified) if n.notification_type == "ASSET_MANAGEMENT"}
    assert managed[gone].status == managed[revoke].status == "done"
    assert managed[gone].body["notification"]["type"] == "DISASSOCIATE" and managed[revoke].body["notification"]["type"] == "REVOKE"


def test_a_failed_associate_reports_apples_error_and_changes_nothing(notified: Host, simulator: Any, recorder: EventRecorder) -> None:
    key = simulator.purchase(count=1)
    settle(notified, simulator)
    recorder.clear()
    with _client(notified) as client:
        client.associate_assets([key], serial_numbers=["FAIL0000001", "FAIL0000002"])
    settle(notified, simulator)
    managed = {n.body["notification"]["result"]: n for n in inbox(notified) if n.notification_type == "ASSET_MANAGEMENT"}
    assert "9709" in managed["FAILURE"].detail and "1 target" in managed["FAILURE"].detail
    [event] = recorder.named("vpp_licenses_associated")  # the one license Apple granted
    assert len(event["serialNumbers"]) == 1
    assert_mirror_equals_apple(notified, simulator)


def test_users_created_and_invitations_accepted_reach_the_mirror(notified: Host, simulator: Any, recorder: EventRecorder) -> None:
    with _client(notified) as client:
        client.create_users([{"clientUserId": "notified-1", "email": "n1@example.org"}])
    settle(notified, simulator)
    [added] = recorder.named("vpp_users_added")
    assert added["users"][0]["clientUserId"] == "notified-1" and added["users"][0]["status"] == "Registered"
    [invited] = recorder.named("vpp_user_invited")
    assert invited["clientUserId"] == "notified-1"
    recorder.clear()
    simulator.accept_invite("notified-1")
    settle(notified, simulator)
    [changed] = recorder.named("vpp_users_changed")
    assert changed["users"][0]["status"] == "Associated" and changed["users"][0]["idHash"]
    assert recorder.named("vpp_user_invited") == []
    assert_mirror_equals_apple(notified, simulator)


def test_an_updated_user_is_changed_at_once(notified: Host, simulator: Any, recorder: EventRecorder) -> None:
    user = sorted(mirror_state(notified)["users"])[0]
    with _client(notified) as client:
        client.update_users([{"clientUserId": user, "email": "renamed@example.org"}])
    settle(notified, simulator)
    [changed] = recorder.named("vpp_users_changed")
    assert [(u["clientUserId"], u["email"]) for u in changed["users"]] == [(user, "renamed@example.org")]
    assert mirror_state(notified)["users"][user]["email"] == "renamed@example.org"
    assert_mirror_equals_apple(notified, simulator)
    [row] = [n for n in inbox(notified) if n.notification_type == "USER_MANAGEMENT"]
    assert (row.body["notification"]["type"], row.status) == ("UPDATE", "done")


def test_a_retired_user_leaves_with_its_revocable_licenses(notified: Host, simulator: Any, recorder: EventRecorder) -> None:
    users = {a[3] for a in simulator.snapshot()["assignments"] if a[2] == "clientUserId"}
    user = sorted(users)[0]
    with _client(notified) as client:
        client.retire_users([user])
    settle(notified, simulator)
    [retired] = recorder.named("vpp_users_retired")
    assert retired["users"][0]["clientUserId"] == user
    assert_mirror_equals_apple(notified, simulator)


def test_a_repeated_notification_is_acted_on_once(notified: Host, simulator: Any, recorder: EventRecorder) -> None:
    simulator.faults.add("notification_duplicate", type="ASSET_COUNT", count=1)
    key = simulator.purchase(count=2)
    settle(notified, simulator)
    sent = [n for n in simulator.notifications() if n["notificationType"] == "ASSET_COUNT"]
    assert len(sent) == 2 and all(n["status"] == "delivered" for n in sent)
    assert len([n for n in inbox(notified) if n.notification_type == "ASSET_COUNT"]) == 1
    assert [e["assets"][0]["adamId"] for e in recorder.named("vpp_assets_added")] == [key[0]]


def test_a_notification_older_than_the_last_sync_is_skipped(notified: Host, simulator: Any, recorder: EventRecorder, endpoint: Endpoint) -> None:
    from plugins.vpp.sync.run import sync_account

    lock = account_lock(notified, account_row(notified).id)
    lock.acquire()  # like a sync holding the account: nothing is acted on
    try:
        simulator.purchase(count=2)
        assert simulator.wait_notifications(30)
        endpoint.wait_idle()  # its try found the account busy (else it could act once the lock is released)
        assert process_pending(notified)["busy"] == 1
        [waiting] = [n for n in inbox(notified) if n.notification_type == "ASSET_COUNT"]
        assert waiting.status == "received"
    finally:
        lock.release()
    assert sync_account(notified, "school")["status"] == "ok"  # started after the notification arrived
    added = len(recorder.named("vpp_assets_added"))
    process_pending(notified)
    [row] = [n for n in inbox(notified) if n.notification_type == "ASSET_COUNT"]
    assert row.status == "skipped" and len(recorder.named("vpp_assets_added")) == added == 1
    assert_mirror_equals_apple(notified, simulator)


def test_apple_unreachable_moves_the_counts_by_the_delta_and_the_sync_confirms(notified: Host, simulator: Any, skipped_waits: Any) -> None:
    from plugins.vpp.sync.run import sync_account

    key, asset = next((k, a) for k, a in mirror_state(notified)["assets"].items() if a["availableCount"] >= 0)
    simulator.faults.add("server_error", endpoint="assets", status=503, retry_after=0)
    simulator.purchase(adam_id=key[0], pricing_param=key[1], count=5)
    settle(notified, simulator)
    now = mirror_state(notified)["assets"][key]
    assert (now["totalCount"], now["availableCount"]) == (asset["totalCount"] + 5, asset["availableCount"] + 5)
    [row] = [n for n in inbox(notified) if n.notification_type == "ASSET_COUNT"]
    assert "could not be reached" in row.detail
    simulator.faults.clear()
    assert sync_account(notified, "school")["status"] == "ok"
    assert_mirror_equals_apple(notified, simulator)


def test_an_impossible_delta_with_apple_unreachable_is_retried_then_left_to_the_sync(notified: Host, simulator: Any, skipped_waits: Any) -> None:
    from plugins.vpp.settings import VppSettings
    from plugins.vpp.sync.run import sync_account

    notified.config.section("vpp", VppSettings).max_attempts = 1  # each try of the notification asks Apple once (no back-off waited)
    key = simulator.purchase(count=2)  # unknown to the mirror: no delta can be applied
    simulator.faults.add("server_error", endpoint="assets", status=503, retry_after=0)
    assert simulator.wait_notifications(30)
    counted = lambda: [n for n in inbox(notified) if n.notification_type == "ASSET_COUNT"]  # noqa: E731
    act_until(notified, lambda: counted()[0].status != "received")
    [row] = counted()
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS) and "left to the next sync" in row.detail
    simulator.faults.clear()
    sync_account(notified, "school")
    assert key in mirror_state(notified)["assets"]


def test_a_lost_notification_is_caught_by_the_scheduled_sync(notified: Host, simulator: Any) -> None:
    from plugins.vpp.jobs import _scheduled_sync

    simulator.faults.add("notification_drop", type="ASSET_COUNT", count=1)
    key = simulator.purchase(count=4)
    settle(notified, simulator)
    assert key not in mirror_state(notified)["assets"]  # Apple's notification never came
    _scheduled_sync(notified, "school")  # the safety net at the account's interval
    assert key in mirror_state(notified)["assets"]
    assert_mirror_equals_apple(notified, simulator)


def test_the_notifications_job_acts_on_what_was_left_and_housekeeping_forgets_old_ones(notified: Host, simulator: Any) -> None:
    from datetime import timedelta

    from mdm_core.housekeeping import housekeeping
    from mdm_core.models import utcnow
    from plugins.vpp.models import VppNotification
    from plugins.vpp.notifications.act import notifications_job

    lock = account_lock(notified, account_row(notified).id)
    lock.acquire()
    key = simulator.purchase(count=1)
    assert simulator.wait_notifications(30)
    lock.release()

    def acted() -> bool:
        notifications_job(notified)
        return key in mirror_state(notified)["assets"]

    act_until(notified, acted)
    old = utcnow() - timedelta(days=31)
    notified.db.run_write(lambda s: s.execute(update(VppNotification).values(processed_at=old)))
    acted_on = len(inbox(notified))
    assert acted_on and {n.status for n in inbox(notified)} <= {"done", "skipped"}
    notifications_job(notified)
    assert len(inbox(notified)) == acted_on  # the job no longer deletes: housekeeping does
    lock.acquire()  # one more, left waiting: it stays whatever its age
    simulator.purchase(count=1)
    assert simulator.wait_notifications(30)
    assert housekeeping(notified)["vpp_notification"] == acted_on
    assert [n.status for n in inbox(notified)] == ["received"]
    assert housekeeping(notified, utcnow() + timedelta(days=3650))["vpp_notification"] == 0
    lock.release()


# --------------------------------------------------------------------------- the HTTP endpoint


def test_the_endpoint_over_http_checks_the_bearer_the_size_and_the_body(notified: Host, endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging
    import uuid

    import requests

    row = account_row(notified)
    secret = notified.secrets.decrypt(row.notification_secret)
    url = f"{endpoint.public_url}/apple/apps-books/notify/{row.mdm_info_id}"
    body = json.dumps({"notificationId": str(uuid.uuid4()), "notificationType": "TEST_NOTIFICATION", "notification": {}}).encode()
    with caplog.at_level(logging.INFO):
        wrong = requests.post(url, data=body, headers={"Authorization": "Bearer nope", "Content-Type": "application/json"}, timeout=10)
        assert (wrong.status_code, wrong.headers.get("WWW-Authenticate")) == (401, "Bearer")
        unknown = requests.post(
            f"{endpoint.public_url}/apple/apps-books/notify/{uuid.uuid4()}", data=body, headers={"Authorization": f"Bearer {secret}"}, timeout=10
        )
        assert unknown.status_code == 401
        auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        huge = requests.post(url, data=b"x" * (2 * 1024 * 1024), headers=auth, timeout=10)
        assert huge.status_code == 413
        bad = requests.post(url, data=b"{nope", headers=auth, timeout=10)
        assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
        ok = requests.post(url, data=body, headers=auth, timeout=10)
        assert (ok.status_code, ok.json()) == (200, {"status": "recorded"})
        again = requests.post(url, data=body, headers=auth, timeout=10)
        assert (again.status_code, again.json()) == (200, {"status": "already recorded"})
        assert requests.get(url, timeout=10).status_code == 405
    assert secret not in caplog.text
    assert len([n for n in inbox(notified) if n.notification_type == "TEST_NOTIFICATION"]) == 2  # configuring's, and this one


# --------------------------------------------------------------------------- requests waiting for Apple's events


@pytest.mark.slow  # waits for the real back-off of the polls (4 s)
def test_a_request_waiting_for_its_event_is_woken_by_the_notification(notified: Host, simulator: Any, recorder: EventRecorder) -> None:
    """An associate followed for up to 30 s: Apple's event ends while the request's polls have
    backed off to seconds apart; the notification makes it ask again at once."""
    import threading
    import time

    from plugins.vpp.models import VppAsset

    with notified.db.session() as session:
        asset = session.execute(select(VppAsset).where(col(VppAsset.device_assignable).is_(True), col(VppAsset.available_count) > 2)).scalars().first()
    simulator.state.async_delay = 600  # Apple takes its time: the event ends only when the test says so
    polls = simulator.faults.add("slow", endpoint="status", seconds=0)  # counts the status requests
    ended: list[float] = []

    def apple_finishes_later() -> None:
        # the request has polled at 0, .25, .75, 1.75 and 3.75 s: the next poll is 4 s away. The fifth
        # poll is counted before it is answered: wait for the answer (the request leaves the
        # in-flight count first), else the event could end before it and the fifth poll see it
        while polls.seen < 5 or simulator.in_flight.current:
            time.sleep(0.01)
        with simulator.state.lock:
            simulator.state.process_due(now=time.monotonic() + 1200)
        ended.append(time.monotonic())

    finisher = threading.Thread(target=apple_finishes_later)
    finisher.start()
    result = notified.pm.hook.mdm_vpp_associate(
        host=notified, account="school", adam_id=asset.adam_id, pricing_param=asset.pricing_param, serial_numbers=["WOKEN000001"], client_user_ids=[], wait=30
    )
    returned = time.monotonic()
    finisher.join()
    assert result["status"] == "COMPLETE" and result["succeeded"]["serialNumbers"] == ["WOKEN000001"]
    assert returned - ended[0] < 3.0, "the request waited for its next poll (4 s away) instead of the notification"
    assert polls.seen == 6  # one more status request, right after the notification, to confirm
    settle(notified, simulator)
    assert len(recorder.named("vpp_licenses_associated")) == 1  # the request and the notification wrote it once between them
    assert_mirror_equals_apple(notified, simulator)


def test_the_inbox_waiter_wakes_as_soon_as_a_notification_about_the_event_is_recorded(notified: Host) -> None:
    import json
    import threading
    import time
    import uuid

    from plugins.vpp.notifications.inbox import wait_for_event

    row = account_row(notified)
    secret = notified.secrets.decrypt(row.notification_secret)
    body = json.dumps(
        {
            "notificationId": str(uuid.uuid4()),
            "notificationType": "ASSET_MANAGEMENT",
            "notification": {
                "type": "ASSOCIATE",
                "result": "FAILURE",
                "eventId": "event-42",
                "assignments": [{"serialNumber": "S1"}],
                "error": {"errorNumber": 9709, "errorMessage": "not enough licenses"},
            },
        }
    ).encode()
    timer = threading.Timer(0.3, lambda: receive(notified, row.mdm_info_id, f"Bearer {secret}", body, max_bytes=4096))
    started = time.monotonic()
    timer.start()
    newest = wait_for_event(notified, row.id, "event-42", 30)
    timer.join()
    assert newest > 0 and time.monotonic() - started < 10  # not the 30 s it was allowed
    assert wait_for_event(notified, row.id, "event-42", 0.2, after=newest) == 0  # nothing newer: waits, then says so


# --------------------------------------------------------------------------- the secret


def test_the_notification_secret_never_shows(
    synced: Host,
    endpoint: Endpoint,
    simulator: Any,
    cli: Any,
    token_file: Path,
    project_dir: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every secret given to Apple (turning them on, a renewal, one Apple refused with 9728) is
    absent from the commands' output and the logs at -vv (the endpoint's too) and from the
    database file, which holds it encrypted."""
    import logging
    import secrets as random

    from .notify_helpers import HOST_PATIENCE

    made: list[str] = []
    real = random.token_urlsafe

    def recorded(n: int | None = None) -> str:
        made.append(real(n))
        return made[-1]

    monkeypatch.setattr(random, "token_urlsafe", recorded)
    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text(conf.read_text().replace("request_timeout = 10", f"request_timeout = {HOST_PATIENCE}") + f'\n[web]\npublic_url = "{endpoint.public_url}"\n')
    caplog.set_level(logging.DEBUG)
    outputs: list[str] = []

    def run(*args: str, code: int = 0) -> None:
        got, out, err = cli("-vv", *args)
        assert got == code, err[-2000:]
        outputs.extend((out, err))

    run("vpp", "account", "set", "school", "--notifications", "on")
    run("vpp", "account", "set", "school", "--token-file", str(token_file))
    simulator.purchase(count=2)
    settle(synced, simulator)
    run("vpp", "account", "list")
    run("vpp", "account", "list", "--json")
    run("status")
    run("vpp", "sync", "school", "--json")
    endpoint.close()
    run("vpp", "account", "set", "school", "--token-file", str(token_file), code=1)
    assert "9728" in outputs[-1]
    assert len(made) == 3 and account_row(synced).notification_secret
    db = Path(str(synced.db.url.database))
    stored = b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())
    for secret in made:
        for place in (*outputs, caplog.text):
            assert secret not in place
        assert secret.encode() not in stored


def test_without_public_url_the_console_shows_turn_on_disabled_and_why(synced: Host, endpoint: Endpoint) -> None:
    """The console's Turn on could only fail (422) on a host without ``[web] public_url``: it is
    shown disabled, with the line that says what must be set first, and where."""
    with _console(synced) as client:
        page = client.get("/vpp").text
        assert 'id="notifications-on-school">Turn on<' in page and 'id="notifications-need-url-school"' not in page  # public_url set: enabled
        synced.config.section("web", WebSettings).public_url = None
        page = client.get("/vpp").text
    button = page.split('id="notifications-on-school"', 1)[1].split(">", 1)[0]
    assert "disabled" in button, button
    line = html.unescape(page.split('id="notifications-need-url-school">', 1)[1].split("<", 1)[0])
    assert line == "Turn on needs [web] public_url: the host's operator sets it in conf/mdm.toml (see \"Apple's notifications\" in the README).", line


@BOTH_DATABASES
def test_a_new_interval_calls_apple_not_at_all_so_an_undeliverable_test_notification_cannot_refuse_it(
    notified: Host, endpoint: Endpoint, simulator: Any, request_counter: Any, token_file: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mdm vpp account set NAME --interval N` (the console's Save, the API's PATCH) re-sent
    the client config with [web] public_url whenever the notifications were on, so Apple's
    error 9728 (its test notification undelivered) refused a change Apple holds nothing of.
    Only a renewed token or --notifications still ask Apple, and still refuse cleanly."""
    from mdm_core.web.access import create_token
    from plugins.vpp.accounts import set_account
    from plugins.vpp.models import VppPendingSecret

    before, config = account_row(notified), simulator.api.client_config()
    simulator.faults.add("notification_drop", type="TEST_NOTIFICATION", count=100)  # Apple cannot deliver its test
    seen = request_counter.seen
    monkeypatch.setenv("MDM_DATABASE_URL", notified.db.url.render_as_string(hide_password=False))  # the command on the host's database
    code, out, err = cli("vpp", "account", "set", "school", "--interval", "1200", config=f'{FAST_CONFIG}[web]\npublic_url = "{endpoint.public_url}"\n')
    assert code == 0 and "sync every 1200s, notifications on" in out, out + err  # was: error 9728, exit 1
    admin = {"Authorization": "Bearer " + create_token(notified, "ops", "admin")["token"]}
    with _console(notified) as client:
        answer = client.patch("/api/v1/vpp/accounts/school", headers=admin, json={"interval_seconds": 1500})
        assert answer.status_code == 200 and answer.json()["interval_seconds"] == 1500, answer.text
        saved = client.post("/vpp/accounts/school/interval", data={"interval_seconds": "1800", "csrftoken": client.cookies.get("csrftoken")})
        assert saved.status_code == 200 and "Nothing was changed" not in saved.text, saved.text
        assert request_counter.seen == seen  # Apple was not called at all
        refused = client.patch("/api/v1/vpp/accounts/school", headers=admin, json={"notifications": "on", "interval_seconds": 2400})
    assert refused.status_code == 400 and "Apple could not deliver a test notification to" in refused.json()["error"], refused.text
    with pytest.raises(MdmError, match="9728") as caught:  # a renewed token gives Apple a new secret: still asked, still refused
        set_account(notified, "school", interval=3000, token_file=str(token_file))
    assert "\n" not in str(caught.value)
    after = account_row(notified)
    assert (after.interval_seconds, after.notifications, after.notification_url) == (1800, "on", before.notification_url)
    assert after.notification_secret == before.notification_secret and after.token_ciphertext == before.token_ciphertext
    assert simulator.api.client_config()["notificationAuthToken"] == config["notificationAuthToken"]  # Apple kept what it had
    with notified.db.session() as session:
        assert session.execute(select(func.count()).select_from(VppPendingSecret)).scalar_one() == 0
