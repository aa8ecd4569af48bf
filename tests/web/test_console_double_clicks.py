"""A console form sent twice at once (a double-click on its button, the second request sent
before the first answer came back) does its work once, and both answers say what it did: the
page the browser shows is the second's (see ``mdm_core.web.once``)."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mdm_core.host import Host

from .conftest import csrf
from .test_api_tokens_console import _signed_in_admin

FORM_ID_RE = re.compile(r'<input type="hidden" name="form_id" value="([^"]+)">')


def _twice_at_once(send: Callable[[], Any]) -> list[Any]:
    """``send()`` from two threads at once, as a double-click sends a form: both answers."""
    answers: list[Any] = []
    threads = [threading.Thread(target=lambda: answers.append(send())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 2, "a request did not end"
    return answers


def _flash(response: Any) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="flash (?:ok|error)"[^>]*>([^<]*)</p>', response.text)]


def test_a_double_click_on_add_account_adds_it_once_and_says_so_twice(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> None:
    """Add sent twice at once: the first added the account, the second answered 409 "an account
    named 'district' already exists", the page the admin saw after adding it. Both now say it
    was added; Apple is asked once."""
    from plugins.vpp.accounts import list_accounts

    host, admin = _signed_in_admin(make_host, database_url)
    token = simulator.write_token(project_dir / "t.vpptoken").read_bytes()
    with admin:
        (form_id,) = FORM_ID_RE.findall(admin.get("/vpp/add").text)
        form = {"csrftoken": csrf(admin), "name": "district", "interval": "900", "service_url": simulator.base_url, "form_id": form_id}
        simulator.faults.add("slow", endpoint="client/config", seconds=0.5, count=1)  # the first is under way when the second comes
        answers = _twice_at_once(lambda: admin.post("/vpp/add", data=form, files={"token_file": ("t.vpptoken", token)}))
        for answer in answers:
            assert answer.status_code == 200 and "already exists" not in answer.text, _flash(answer)
            assert _flash(answer) == ["account district added: click Synchronize to read its assets now, or wait for the interval"]
        assert simulator.requests["client/config"] == 2  # one read, one claim: one add
        refused = admin.post("/vpp/add", data={**form, "form_id": "not an id"}, files={"token_file": ("t.vpptoken", token)})
        assert refused.status_code == 422 and "the form&#39;s id is not valid" in refused.text
    assert [a["name"] for a in list_accounts(host)] == ["district"]


def test_a_double_click_on_renew_token_asks_apple_once(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> None:
    """Renew sent twice: Apple was asked twice (the location read and claimed again, a new
    notification secret each time). Now once; both answers say the token was renewed."""
    from plugins.vpp.accounts import add_account

    host, admin = _signed_in_admin(make_host, database_url)
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url)
    token = simulator.write_token(project_dir / "renewed.vpptoken").read_bytes()
    with admin:
        (form_id,) = set(FORM_ID_RE.findall(admin.get("/vpp").text))
        before = simulator.requests["client/config"]
        answers = [
            admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin), "form_id": form_id}, files={"token_file": ("r.vpptoken", token)})
            for _ in range(2)
        ]
        twice = simulator.requests["client/config"] - before
        for answer in answers:
            assert answer.status_code == 200 and _flash(answer)[0].startswith("token of school renewed: valid until"), _flash(answer)
        (other,) = set(FORM_ID_RE.findall(admin.get("/vpp").text))  # the page opened again: a new form, renewed again
        before = simulator.requests["client/config"]
        again = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin), "form_id": other}, files={"token_file": ("r.vpptoken", token)})
        assert again.status_code == 200 and twice == simulator.requests["client/config"] - before > 0  # the double-click asked as one renewal does


def _school_app_page(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> tuple[Host, Any]:
    """A signed-in admin on ``database_url`` with the account ``school`` synced."""
    from plugins.vpp.accounts import add_account
    from plugins.vpp.sync.run import sync_account

    host, admin = _signed_in_admin(make_host, database_url)
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url)
    assert sync_account(host, "school")["status"] == "ok"
    return host, admin


def _lines(response: Any) -> list[str]:
    return re.findall(r"<tr><td>[^<]*</td><td class=\"status-[^>]*>.*?</tr>", response.text.replace("\n", ""))


def test_a_double_click_on_install_asks_apple_once_and_shows_the_install_twice(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> None:
    """Install sent twice at once asked Apple twice for the license (the second answer: "already
    queued", as if an earlier install had); now once, and both answers show the install made."""
    from mdm_core import inventory

    from .test_apps_console import _ios_app

    host, admin = _school_app_page(make_host, database_url, simulator, project_dir)
    inventory.add_device(host, "WEBDEV000001", "iOS", model="iPhone15,2")
    app_id, _ = _ios_app(host, simulator)
    with admin:
        (form_id,) = set(FORM_ID_RE.findall(admin.get(f"/apps/{app_id}").text))
        form = {"devices": ["WEBDEV000001"], "csrftoken": csrf(admin), "form_id": form_id}
        simulator.faults.add("slow", endpoint="assets/associate", seconds=0.5, count=1)  # the first is under way when the second comes
        first, second = _twice_at_once(lambda: admin.post(f"/apps/{app_id}/install", data=form))
        assert first.status_code == second.status_code == 200 and _lines(first) == _lines(second)
        [line] = _lines(first)
        assert "InstallApplication queued (command" in line and "license associated" in line and "already" not in line
    assert simulator.requests["assets/associate"] == 1
    assert [c["request_type"] for c in inventory.list_commands(host, "WEBDEV000001")] == ["InstallApplication"]


def test_a_double_click_on_reclaim_asks_apple_once_and_says_reclaimed_twice(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> None:
    """Reclaim sent twice asked Apple twice, or, the second after the first, answered "holds no
    license of this app", the page the admin saw after reclaiming it. Both now say it was."""
    from .test_apps_console import _app_with_holders, _held

    host, admin = _school_app_page(make_host, database_url, simulator, project_dir)
    app_id, key, holders = _app_with_holders(host, simulator, revocable=True, kind="serialNumber")
    with admin:
        (form_id,) = set(FORM_ID_RE.findall(admin.get(f"/apps/{app_id}").text))
        form = {"serials": holders[0], "confirm": "yes", "csrftoken": csrf(admin), "form_id": form_id}
        simulator.faults.add("slow", endpoint="assets/disassociate", seconds=0.5, count=1)
        answers = [*_twice_at_once(lambda: admin.post(f"/apps/{app_id}/reclaim", data=form)), admin.post(f"/apps/{app_id}/reclaim", data=form)]
        for answer in answers:  # the third: sent again once the first had answered (a reload of its page)
            assert answer.status_code == 200 and _lines(answer) == [
                f'<tr><td>{holders[0]}</td><td class="status-done">done</td><td>license reclaimed</td></tr>'
            ]
    assert simulator.requests["assets/disassociate"] == 1 and not _held(simulator, key, holders[0])


def test_a_double_click_on_rename_or_remove_says_done_twice_not_404(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> None:
    """Rename (new name school2) and Remove (confirm school2) each sent twice: the second answered
    404 for the account the first had just renamed or removed. Both now say what was done."""
    from plugins.vpp.accounts import add_account, list_accounts

    host, admin = _signed_in_admin(make_host, database_url)
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url)
    with admin:
        (form_id,) = set(FORM_ID_RE.findall(admin.get("/vpp").text))
        form = {"csrftoken": csrf(admin), "new_name": "school2", "form_id": form_id}
        for answer in [admin.post("/vpp/accounts/school/rename", data=form) for _ in range(2)]:
            assert answer.status_code == 200 and _flash(answer) == ["account school renamed to school2"], (answer.status_code, _flash(answer))
        assert [a["name"] for a in list_accounts(host)] == ["school2"]
        (form_id,) = FORM_ID_RE.findall(admin.get("/vpp/accounts/school2/remove").text)
        form = {"csrftoken": csrf(admin), "confirm": "school2", "form_id": form_id}
        for answer in [admin.post("/vpp/accounts/school2/remove", data=form) for _ in range(2)]:
            assert answer.status_code == 200 and _flash(answer) == ["account school2 removed with its assets, users and licenses"], answer.status_code
        gone = admin.post("/vpp/accounts/school2/remove", data={**form, "form_id": ""})  # no form id: a request of its own
        assert gone.status_code == 404
    assert list_accounts(host) == []


def test_a_double_click_on_synchronize_shows_the_run_it_started_twice(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> None:
    """Synchronize sent twice: the second answered "a sync of school is already running" (an
    error, for the sync the first had just started). Both now show that run; one sync ran."""
    from plugins.vpp.accounts import add_account
    from plugins.vpp.sync.run import get_run, recent_runs

    host, admin = _signed_in_admin(make_host, database_url)
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url)
    with admin:
        (form_id,) = set(FORM_ID_RE.findall(admin.get("/vpp").text))
        simulator.faults.add("slow", endpoint="assignments", seconds=1.0, count=1)  # the sync still runs when the second comes
        form = {"csrftoken": csrf(admin), "form_id": form_id}
        answers = [admin.post("/vpp/accounts/school/sync", data=form) for _ in range(2)]
        assert [(a.status_code, a.url.path, _flash(a)) for a in answers] == [(200, answers[0].url.path, ["synchronization of school started"])] * 2
        run_id = int(answers[0].url.path.rsplit("/", 1)[1])
        deadline = time.monotonic() + 60
        while (get_run(host, run_id) or {}).get("status") == "running" and time.monotonic() < deadline:
            time.sleep(0.05)  # the sync runs in the console's worker: its end is not the test's to control
    assert [(r["id"], r["status"]) for r in recent_runs(host, "school", 5)] == [(run_id, "ok")]


def test_a_double_click_on_turn_on_asks_apple_once(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> None:
    """Turn on (Apple's notifications) sent twice gave Apple a new notification secret twice;
    at once, the secret stored could be the first's while Apple kept the second's, and every
    notification was refused. Now Apple is asked once and keeps the secret stored."""
    from plugins.vpp.models import VppAccount

    with _notifications_off(make_host, database_url, simulator, project_dir) as (host, admin, form_id):
        before = simulator.requests["client/config"]
        form = {"csrftoken": csrf(admin), "notifications": "on", "form_id": form_id}
        answers = _twice_at_once(lambda: admin.post("/vpp/accounts/school/notifications", data=form))
        assert [(a.status_code, _flash(a)) for a in answers] == [(200, ["school: Apple's notifications on"])] * 2
        twice = simulator.requests["client/config"] - before
        with host.db.session() as session:
            [account] = session.execute(select(VppAccount)).scalars()
            assert host.secrets.decrypt(account.notification_secret) == simulator.state.notification_auth_token
        for wanted in ("off", "on"):  # the page opened again each time: a new form, done again
            (other,) = set(FORM_ID_RE.findall(admin.get("/vpp").text))
            before = simulator.requests["client/config"]
            again = admin.post("/vpp/accounts/school/notifications", data={**form, "notifications": wanted, "form_id": other})
            assert again.status_code == 200 and _flash(again) == [f"school: Apple's notifications {wanted}"]
        assert twice == simulator.requests["client/config"] - before > 0  # the double-click asked as one Turn on does


def test_a_double_click_on_save_interval_sets_it_twice_to_the_same_value(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> None:
    """Save (the Account Synchronization Interval) carries no one-time id: it sets a value here,
    Apple is not asked, so sent twice at once it sets the same value twice and both answers say so."""
    from plugins.vpp.accounts import add_account, list_accounts

    host, admin = _signed_in_admin(make_host, database_url)
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url)
    with admin:
        page = admin.get("/vpp").text
        assert 'action="/vpp/accounts/school/interval"' in page
        before = dict(simulator.requests)
        form = {"csrftoken": csrf(admin), "interval_seconds": "1200"}
        answers = _twice_at_once(lambda: admin.post("/vpp/accounts/school/interval", data=form))
        assert [(a.status_code, _flash(a)) for a in answers] == [(200, ["school: Account Synchronization Interval set to 1200 seconds"])] * 2
        assert dict(simulator.requests) == before  # nothing asked of Apple
    assert [a["interval_seconds"] for a in list_accounts(host)] == [1200]


def test_turn_on_then_turn_off_from_one_page_does_both(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> None:
    """Turn on and Turn off are two buttons of one form (both shown while Apple posts elsewhere):
    with the page's one id for both, Turn off clicked right after Turn on was answered with Turn
    on's outcome ("notifications on") and never done. Each button now has its own: done both."""
    from plugins.vpp.accounts import list_accounts

    with _notifications_off(make_host, database_url, simulator, project_dir) as (host, admin, form_id):
        form = {"csrftoken": csrf(admin), "form_id": form_id}
        answers = [admin.post("/vpp/accounts/school/notifications", data={**form, "notifications": wanted}) for wanted in ("on", "off")]
        assert [(a.status_code, _flash(a)) for a in answers] == [(200, ["school: Apple's notifications on"]), (200, ["school: Apple's notifications off"])]
        assert [a["notifications"] for a in list_accounts(host)] == ["off"]


@contextmanager
def _notifications_off(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> Iterator[tuple[Host, Any, str]]:
    """An account with Apple's notifications off, an endpoint taking Apple's posts, an admin
    signed in on the VPP page: the host, the admin's client (open) and the page's form id."""
    from plugins.vpp.accounts import add_account
    from tests.vpp.notify_helpers import Endpoint

    host, admin = _signed_in_admin(make_host, database_url)
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url, notifications=False)
    endpoint = Endpoint(host, simulator)
    try:
        with admin:
            (form_id,) = set(FORM_ID_RE.findall(admin.get("/vpp").text))
            yield host, admin, form_id
    finally:
        endpoint.close()
