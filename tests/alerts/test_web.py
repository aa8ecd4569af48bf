"""The alerts in the console (the Alerts page) and the REST API (``GET /api/v1/alerts``): alerts
made the real way (a sync of the simulator failing, then working again; delivered through a
webhook on loopback), read through the app's test client on the real database, in each
surface's words."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from mdm_core.testing import MdmRunner
from plugins.alerts.delivery import deliver_due

from ..conftest import PG_ADMIN_URL, PG_SKIP_REASON
from ..web.conftest import PASSWORD, csrf, sign_in, token_for
from .conftest import FAST_VPP, sync

CLI_WORDS = re.compile(r"mdm |`|--")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def database(request: pytest.FixtureRequest) -> str | None:
    """None (the test's SQLite file) or the worker's PostgreSQL database."""
    if request.param == "sqlite":
        return None
    if not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def alerts_config() -> str:
    """More of ``[alerts]`` (a test parametrizes it)."""
    return ""


@pytest.fixture
def console(make_host: Any, simulator: Any, webhook_server: Any, project_dir: Any, database: str | None, alerts_config: str) -> Iterator[dict[str, Any]]:
    """A host with account ``school`` on the simulator and a webhook ``ops`` (``[alerts]`` plus
    ``alerts_config``), a viewer signed in (``viewer``), an anonymous client, and a viewer's API
    token (``headers``)."""
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app
    from plugins.vpp.testing import add_simulated_account

    hook = webhook_server()
    host = make_host(
        config=FAST_VPP + '[alerts]\nsync_failures = 2\nwebhooks = { ops = { env = "OPS_URL" } }\n' + alerts_config,
        environ={"OPS_URL": hook.url},
        database_url=database,
    )
    add_admin(host, "victor", PASSWORD, "viewer")
    add_simulated_account(host, simulator, project_dir)
    app = create_app(host)
    with TestClient(app) as anonymous, TestClient(app) as viewer:
        assert sign_in(viewer, "victor").status_code == 303
        yield {"host": host, "hook": hook, "anonymous": anonymous, "viewer": viewer, "headers": token_for(host, "viewer"), "database": database}


def table(page: Any) -> str:
    """The text of the Alerts table of a page (no tags, unescaped)."""
    assert page.status_code == 200, page.text
    return html.unescape(re.sub(r"<[^>]+>", " ", page.text.split('id="alerts">', 1)[1].split("</table>", 1)[0]))


def test_alerts_on_the_page_and_in_the_api(console, simulator, project_dir, monkeypatch, capsys):
    host, hook, viewer, headers = console["host"], console["hook"], console["viewer"], console["headers"]
    assert "No alerts: nothing has needed the admins' attention." in table(viewer.get("/alerts"))
    assert viewer.get("/api/v1/alerts", headers=headers).json() == {"items": [], "next_cursor": None}
    assert 'href="/alerts"' in viewer.get("/").text  # the navigation entry

    for _ in range(2):  # two failed syncs in a row: the sync failing alert, sent through the webhook
        simulator.faults.add("server_error", endpoint="client/config", count=1, status=503)
        assert sync(host)["status"] == "error"
    assert deliver_due(host)["sent"] == 1
    hook.statuses = [500]  # the webhook refuses the next one: pending, retried later
    assert sync(host)["status"] == "ok"  # "works again"
    assert deliver_due(host)["retrying"] == 1

    rows = table(viewer.get("/alerts"))
    assert rows.index("Sync of VPP account 'school' works again") < rows.index("Sync of VPP account 'school' failed 2 times in a row")  # newest first
    assert "its Sync runs list the failed runs; its Synchronize tries again now." in rows  # the console's words
    assert "webhook:ops:  sent , 1 attempt, sent " in rows and "webhook:ops:  pending , 1 attempt, next " in rows and "HTTP 500" in rows
    assert "Last error: " in rows and "503" in rows
    assert not CLI_WORDS.search(rows), rows

    api = viewer.get("/api/v1/alerts", headers=headers)
    assert api.status_code == 200, api.text
    items = api.json()["items"]
    runner = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": console["database"]} if console["database"] else None)
    code, out, _ = runner("alerts", "list", "--json")
    cli = json.loads(out)
    assert code == 0 and [set(i) for i in items] == [set(c) for c in cli] and len(items) == 2  # the command line's fields
    for item, row in zip(items, cli, strict=True):
        assert {k: item[k] for k in ("id", "created_at", "kind", "subject", "state", "severity", "account")} == {
            k: row[k] for k in ("id", "created_at", "kind", "subject", "state", "severity", "account")
        }
        assert [{**d, "last_error": None} for d in item["deliveries"]] == [{**d, "last_error": None} for d in row["deliveries"]]
        assert not CLI_WORDS.search(f"{item['title']}\n{item['text']}\n{item['action']}"), item
    recovered, failing = items
    assert "POST /api/v1/vpp/accounts/school/sync tries again now" in failing["action"] and "`mdm vpp sync school`" in cli[1]["action"]
    assert [(d["channel"], d["status"], d["attempts"]) for d in recovered["deliveries"]] == [("webhook:ops", "pending", 1)]
    assert "HTTP 500" in recovered["deliveries"][0]["last_error"] and failing["fields"]["failures"] == 2

    # the status filter: alerts with a delivery in that state, and only those deliveries
    def api_ids(**params: Any) -> list[int]:
        answer = viewer.get("/api/v1/alerts", headers=headers, params=params)
        assert answer.status_code == 200, answer.text
        return [i["id"] for i in answer.json()["items"]]

    assert api_ids(status="sent") == [failing["id"]] and api_ids(status="pending") == [recovered["id"]] and api_ids(status="failed") == []
    sent = table(viewer.get("/alerts?status=sent"))
    assert "failed 2 times in a row" in sent and "works again" not in sent
    assert "No alert with a failed delivery." in table(viewer.get("/alerts?status=failed"))
    bad = viewer.get("/api/v1/alerts?status=bogus", headers=headers)
    assert bad.status_code == 422 and bad.json() == {"error": "unknown delivery status 'bogus': use one of pending, sent, failed"}
    assert viewer.get("/alerts?status=bogus").status_code == 422

    # paged as the other lists: limit and the next cursor
    first = viewer.get("/api/v1/alerts?limit=1", headers=headers).json()
    assert [i["id"] for i in first["items"]] == [recovered["id"]] and first["next_cursor"]
    second = viewer.get("/api/v1/alerts", headers=headers, params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [i["id"] for i in second["items"]] == [failing["id"]] and second["next_cursor"] is None
    assert viewer.get("/api/v1/alerts?offset=1", headers=headers).status_code == 422  # not a parameter of the API's lists


def test_alerts_are_refused_without_signing_in(console):
    anonymous = console["anonymous"]
    assert anonymous.get("/api/v1/alerts").status_code == 401
    assert anonymous.get("/api/v1/alerts", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    page = anonymous.get("/alerts", follow_redirects=False)
    assert page.status_code in (302, 303) and "/login" in page.headers["location"]


def statuses(host: Any) -> dict[int, list[str]]:
    """Each alert's delivery statuses, as ``mdm alerts list --json`` has them."""
    from plugins.alerts.listing import alerts_query, with_deliveries

    with host.db.session() as session:
        rows = with_deliveries(session, [m for (m,) in session.execute(alerts_query(None))], None)
    return {row["id"]: [d["status"] for d in row["deliveries"]] for row in rows}


@pytest.mark.parametrize("alerts_config", ["max_attempts = 1\n"])
def test_failed_deliveries_are_retried_from_the_api_and_the_console(console, simulator):
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin

    host, hook, viewer, headers = console["host"], console["hook"], console["viewer"], console["headers"]
    add_admin(host, "alice", PASSWORD, "admin")
    admin_headers = token_for(host, "admin")
    failing = _failed_delivery(host, hook, simulator)
    assert statuses(host) == {failing: ["failed"]}

    # viewers can read, not retry; a typo or a bad body is refused, nothing is queued
    assert viewer.post("/api/v1/alerts/retry", headers=headers).status_code == 403
    page = viewer.get("/alerts").text
    assert "Retry failed deliveries" not in page and f'id="retry-{failing}"' not in page
    refused = viewer.post("/alerts/retry", data={"csrftoken": csrf(viewer)})
    assert refused.status_code == 403 and "can only read" in refused.text
    typo = viewer.post("/api/v1/alerts/retry", headers=admin_headers, json={"ids": [failing, failing + 100]})
    assert typo.status_code == 404 and typo.json() == {
        "error": f"alert(s) {failing + 100} not found (deleted after [alerts] keep_days, or a mistyped id): nothing was queued again "
        "(see GET /api/v1/alerts?status=failed)"
    }
    for body, status in (({"ids": ["x"]}, 422), ({"ids": 1}, 422), ({"id": [1]}, 422), ([1], 422), ("not json", 400)):
        bad = viewer.post("/api/v1/alerts/retry", headers=admin_headers, **({"content": body} if isinstance(body, str) else {"json": body}))
        assert bad.status_code == status and "\n" not in bad.json()["error"], bad.text
    assert statuses(host) == {failing: ["failed"]}

    # the API: queued again, then sent once the webhook accepts
    retried = viewer.post("/api/v1/alerts/retry", headers=admin_headers, json={"ids": [failing]})
    assert retried.status_code == 200 and retried.json() == {"queued": 1}
    assert statuses(host) == {failing: ["pending"]}
    assert deliver_due(host)["sent"] == 1 and statuses(host) == {failing: ["sent"]}
    assert viewer.post("/api/v1/alerts/retry", headers=admin_headers).json() == {"queued": 0}  # nothing failed: nothing to do

    # the console: the sync works again, its alert's delivery fails; an admin retries it
    hook.statuses = [500]
    assert sync(host)["status"] == "ok"
    assert deliver_due(host)["failed"] == 1
    recovered = max(statuses(host))
    with TestClient(viewer.app) as admin:
        assert sign_in(admin, "alice").status_code == 303
        page = admin.get("/alerts").text
        assert 'id="retry-all">Retry failed deliveries<' in page and f'id="retry-{recovered}">Retry<' in page and f'id="retry-{failing}"' not in page
        typo = admin.post("/alerts/retry", data={"alert": str(failing), "csrftoken": csrf(admin)})  # sent meanwhile
        said = f"no failed delivery of alert(s) {failing}: nothing was queued again (see the Alerts page, failed deliveries)"
        assert typo.status_code == 200 and said in html.unescape(typo.text)
        assert statuses(host) == {failing: ["sent"], recovered: ["failed"]}
        done = admin.post("/alerts/retry", data={"alert": str(recovered), "csrftoken": csrf(admin)})
        assert done.status_code == 200 and "1 failed delivery queued again, to be sent within 30 seconds" in done.text
        assert f'id="retry-{recovered}"' not in done.text and not CLI_WORDS.search(table(done))
    assert statuses(host) == {failing: ["sent"], recovered: ["pending"]}
    assert deliver_due(host)["sent"] == 1 and statuses(host) == {failing: ["sent"], recovered: ["sent"]}
    with TestClient(viewer.app) as admin:  # Retry failed deliveries with none left
        assert sign_in(admin, "alice").status_code == 303
        assert "No failed delivery to retry" in admin.post("/alerts/retry", data={"csrftoken": csrf(admin)}).text


def fields_shown(page: Any, alert: int) -> dict[str, str]:
    """An alert's Fields on the Alerts page: each key and the text shown for it (unescaped)."""
    assert page.status_code == 200, page.text
    block = page.text.split(f'id="fields-{alert}">', 1)[1].split("</details>", 1)[0]
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block)}


def test_the_page_shows_an_alerts_fields_and_never_a_token(console, simulator):
    """The page showed an alert's title, text and advice but not its fields (the failures in a
    row, since when, the error Apple gave), which only the API and `mdm alerts list --json` had."""
    host, viewer, headers = console["host"], console["viewer"], console["headers"]
    for _ in range(2):  # two failed syncs in a row: the sync failing alert
        simulator.faults.add("server_error", endpoint="client/config", count=1, status=503)
        assert sync(host)["status"] == "error"
    [item] = viewer.get("/api/v1/alerts", headers=headers).json()["items"]
    page = viewer.get("/alerts")
    shown = fields_shown(page, item["id"])
    assert set(shown) == set(item["fields"]) == {"failures", "since", "errorType", "error"}
    assert shown["failures"] == "2" and shown["since"] == item["fields"]["since"] and "503" in shown["error"]
    assert shown == {k: "—" if v is None else str(v) for k, v in item["fields"].items()}
    assert "<details" in page.text and not CLI_WORDS.search(table(page))
    token = simulator.token  # the account's token is in no alert, on no surface
    assert token not in json.dumps(item) and token not in page.text


@pytest.mark.parametrize("alerts_config", ["max_attempts = 1\n"])
def test_retry_failed_deliveries_queues_every_failed_one_and_it_is_delivered(console, simulator):
    """The page's Retry failed deliveries (no alert named) was tested only with nothing failed."""
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin

    host, hook, viewer = console["host"], console["hook"], console["viewer"]
    add_admin(host, "alice", PASSWORD, "admin")
    for _ in range(2):  # the sync failing alert; the webhook answers 500 at its one attempt: failed
        simulator.faults.add("server_error", endpoint="client/config", count=1, status=503)
        assert sync(host)["status"] == "error"
    hook.statuses = [500]
    assert deliver_due(host)["failed"] == 1
    [failing] = statuses(host)
    assert statuses(host) == {failing: ["failed"]} and len(hook.requests) == 1
    with TestClient(viewer.app) as admin:
        assert sign_in(admin, "alice").status_code == 303
        page = admin.get("/alerts")
        assert 'id="retry-all">Retry failed deliveries<' in page.text and "failed" in table(page)
        done = admin.post("/alerts/retry", data={"csrftoken": csrf(admin)})  # the form's button: no alert named
        assert done.status_code == 200 and "1 failed delivery queued again, to be sent within 30 seconds" in done.text
        assert "webhook:ops:  pending , 0 attempts" in table(done)
    assert statuses(host) == {failing: ["pending"]}
    assert deliver_due(host)["sent"] == 1 and statuses(host) == {failing: ["sent"]}  # the webhook now answers 200
    assert len(hook.requests) == 2 and hook.requests[1]["json"] == hook.requests[0]["json"]  # the same alert, delivered again


@pytest.mark.parametrize("alerts_config", ["low_licenses = 2\n"])
def test_alerts_not_sent_yet_are_listed_with_the_app_s_name_once_it_is_known(console, simulator, project_dir, monkeypatch, capsys):
    """A license alert and an install failure written before mobile_apps looked their apps up
    are stored by adamId; every listing (the page, the API, `mdm alerts list`) names the apps
    as soon as their names are known, before the alerts are sent, and they go out named."""
    from sqlalchemy import select
    from sqlmodel import col

    from mdm_core import hookimpl
    from mdm_core.events import Event
    from plugins.alerts.cli import list_alerts
    from plugins.alerts.models import AlertMessage
    from plugins.mobile_apps.catalog import refresh_metadata

    from .test_names import name_asset

    host, hook, viewer, headers = console["host"], console["hook"], console["viewer"], console["headers"]
    scarce, _ = simulator.purchase(count=4)
    failing, _ = simulator.purchase(count=2)
    name_asset(simulator, scarce, "Atlas Kids")
    name_asset(simulator, failing, "Compass")
    for serial in ("PORTAL000001", "PORTAL000002", "PORTAL000003"):
        simulator.assign_in_portal(scarce, serial_number=serial)
    assert sync(host)["status"] == "ok"  # not a manual sync: nothing looked up yet
    failure = {"id": 1, "account": "school", "adamId": failing, "pricingParam": "STDQ", "license": "device", "serialNumber": "FAILED000001"}
    refused = {"clientUserId": None, "source": "request", "error": "refused", "errorNumber": 9709}
    host.events.dispatch(Event(name="mobile_apps_install_failed", payload={**failure, **refused}))
    low = "Only 1 of 4 licenses left of {} in account 'school'"
    install = "Install of {} from account 'school' failed for device FAILED000001"
    runner = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": console["database"]} if console["database"] else None)

    def listed() -> tuple[list[str], str, str]:
        """The titles in the API (newest first), the page's table, `mdm alerts list`'s output."""
        api = viewer.get("/api/v1/alerts", headers=headers)
        assert api.status_code == 200, api.text
        code, out, _ = runner("alerts", "list")
        assert code == 0
        return [i["title"] for i in api.json()["items"]], table(viewer.get("/alerts")), out

    by_id = [install.format(f"adamId {failing} (STDQ)"), low.format(f"adamId {scarce} (STDQ, App)")]
    titles, page, out = listed()
    assert titles == by_id and all(t in page and t in out for t in by_id)

    assert refresh_metadata(host)["found"] >= 2
    named = [install.format(f"Compass (adamId {failing}, STDQ)"), low.format(f"Atlas Kids (adamId {scarce}, STDQ, App)")]
    titles, page, out = listed()
    assert titles == named and all(t in page and t in out for t in named)
    code, out, _ = runner("alerts", "list", "--json")
    assert [(a["fields"]["name"], [d["status"] for d in a["deliveries"]]) for a in json.loads(out)] == [("Compass", ["pending"]), ("Atlas Kids", ["pending"])]
    with host.db.session() as session:  # a listing writes nothing: the stored alerts are named as they go out
        assert list(session.execute(select(col(AlertMessage.title)).order_by(col(AlertMessage.id).desc())).scalars()) == by_id

    asked: list[list[str]] = []

    class Counting:
        @hookimpl
        def mdm_app_names(self, host: Any, adam_ids: list[str]) -> dict[str, str]:
            asked.append(adam_ids)
            return {}

    host.pm.register(Counting(), name="counting_names")
    assert [a["title"] for a in list_alerts(host)] == named and asked == [sorted([scarce, failing])]  # one question per listing

    assert deliver_due(host)["sent"] == 2
    assert sorted(r["json"]["title"] for r in hook.requests) == sorted(named)


def test_a_failing_jobs_advice_says_where_jobs_are_run(console):
    """The job failing alert's What to do is the command line's (`mdm jobs run NAME`); the page
    showed it as is, a command an admin in the console has no place to type. No page and no
    endpoint shows or runs scheduled jobs: both say that it is done on the host."""
    from mdm_core.errors import MdmError
    from plugins.alerts.delivery import check

    host, viewer, headers = console["host"], console["viewer"], console["headers"]

    def broken() -> None:
        raise MdmError("Apple's lookup is unreachable")

    scheduler = host.build_scheduler(inline=True)
    scheduler.add("demo.broken", 3600, broken, plugin="demo")
    scheduler.run_now("demo.broken")
    check(host)
    rows = table(viewer.get("/alerts"))
    assert "Scheduled job 'demo.broken' is failing" in rows and "Apple's lookup is unreachable" in rows
    assert "No page of the console shows or runs scheduled jobs: on the host, `mdm jobs` shows the job's last result" in rows
    assert "`mdm jobs run demo.broken` tries again now; else its next scheduled run does." in rows
    assert "; `mdm jobs run demo.broken` tries again now." not in rows  # not the command line's sentence
    [item] = viewer.get("/api/v1/alerts", headers=headers).json()["items"]
    assert "No endpoint of the API shows or runs scheduled jobs: on the host" in item["action"]
    assert "`mdm jobs run demo.broken` tries again now; else" in item["action"]


def test_without_a_channel_the_page_says_alerts_went_to_nobody(alerts_host, simulator):
    """With no channel in ``[alerts]`` the page still opened with "What was told to the admins
    by e-mail and webhooks" and offered *Retry failed deliveries*: nobody had been told
    anything, and there was nothing to retry. It now says the alerts were sent to nobody and
    where channels are set; a host with a channel keeps its words."""
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app

    host = alerts_host("")
    add_admin(host, "alice", PASSWORD, "admin")
    simulator.expire_token()
    assert sync(host)["status"] == "error"  # a critical alert, recorded
    with TestClient(create_app(host)) as admin:
        assert sign_in(admin).status_code == 303
        page = html.unescape(admin.get("/alerts").text)
    assert "VPP token of account 'school' has expired" in page
    note = re.search(r'<p id="no-channel">(.*?)</p>', page, re.S)
    assert note and "No channel is configured on this host" in note.group(1) and "sent to nobody" in note.group(1), page
    assert "What was told to the admins" not in page and 'id="retry-all"' not in page


def test_with_a_channel_the_page_says_what_was_told(console):
    page = console["viewer"].get("/alerts").text
    assert "What was told to the admins by e-mail and webhooks" in page and 'id="no-channel"' not in page


@pytest.mark.parametrize("alerts_config", ["max_attempts = 1\n"])
def test_a_double_click_on_retry_queues_once_and_says_so_twice(console, simulator):
    """Retry (an alert's, or Retry failed deliveries) sent twice: the second answered "no failed
    delivery of alert(s) N: nothing was queued again" or "No failed delivery to retry", an error
    for what the first had just done. Both now say what was queued."""
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin

    host, hook, viewer = console["host"], console["hook"], console["viewer"]
    add_admin(host, "alice", PASSWORD, "admin")
    failing = _failed_delivery(host, hook, simulator)
    with TestClient(viewer.app) as admin:
        assert sign_in(admin, "alice").status_code == 303
        page = admin.get("/alerts").text
        [(every_id, one_id)] = re.findall(r'name="form_id" value="([^"]+)"><button type="submit" id="retry-all">.*name="form_id" value="([^"]+)">', page, re.S)
        assert every_id != one_id  # every Retry form posts to /alerts/retry: each its own id
        form = {"alert": str(failing), "csrftoken": csrf(admin), "form_id": one_id}
        for answer in [admin.post("/alerts/retry", data=form) for _ in range(2)]:
            assert answer.status_code == 200 and _flashes(answer) == ["1 failed delivery queued again, to be sent within 30 seconds"], _flashes(answer)
        assert statuses(host) == {failing: ["pending"]}
        hook.statuses = [500]
        assert deliver_due(host)["failed"] == 1
        form = {"csrftoken": csrf(admin), "form_id": every_id}
        for answer in [admin.post("/alerts/retry", data=form) for _ in range(2)]:
            assert answer.status_code == 200 and _flashes(answer) == ["1 failed delivery queued again, to be sent within 30 seconds"], _flashes(answer)
        refused = admin.post("/alerts/retry", data={**form, "form_id": "<x>"})
        assert refused.status_code == 422 and "the form's id is not valid: open the Alerts page again" in html.unescape(refused.text)
    assert statuses(host) == {failing: ["pending"]}


def _failed_delivery(host: Any, hook: Any, simulator: Any) -> int:
    """The id of an alert whose delivery failed: a sync failing twice alerts, the webhook answers
    500 and, at the one attempt allowed (``max_attempts = 1``), its delivery failed."""
    for _ in range(2):
        simulator.faults.add("server_error", endpoint="client/config", count=1, status=503)
        assert sync(host)["status"] == "error"
    hook.statuses = [500]
    assert deliver_due(host)["failed"] == 1
    [failing] = statuses(host)
    return int(failing)


def _flashes(response: Any) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="flash (?:ok|error)"[^>]*>([^<]*)</p>', response.text)]


def test_a_refused_reclaims_advice_names_the_reclaims_list_of_each_surface(console, simulator):
    """A refused reclaim's alert says what to do with the command line (`mdm apps reclaims`,
    `mdm apps reclaim ADAMID`); the Alerts page says it with the console's Reclaims and the app's
    page, the API with its endpoints; mails and webhooks keep the command line's."""
    from mdm_core.events import Event

    host, viewer, headers = console["host"], console["viewer"], console["headers"]
    adam = next(a.adam_id for a in simulator.state.assets.values() if a.revocable and a.device_assignable)
    payload = {"id": 7, "account": "school", "adamId": adam, "pricingParam": "STDQ", "reason": "manual", "status": "failed", "error": "Apple refused (9706)"}
    host.events.dispatch(Event(name="mobile_apps_reclaim_finished", payload={**payload, "serialNumber": "REFUSED00001"}))
    [alert] = viewer.get("/api/v1/alerts", headers=headers).json()["items"]
    assert alert["title"].startswith("Reclaim of ") and alert["title"].endswith("from account 'school' refused for device REFUSED00001")
    assert alert["action"].startswith(
        f"See GET /api/v1/apps/reclaims; fix what Apple said, then POST /api/v1/apps/{adam}/reclaim again for these devices or users"
    )
    page = html.unescape(viewer.get("/alerts").text)
    assert "See Reclaims; fix what Apple said, then reclaim these licenses again on the app's page" in page and "`mdm apps reclaims`" not in page
    from plugins.alerts.cli import list_alerts

    [stored] = list_alerts(host)
    assert stored["action"].startswith(f"See `mdm apps reclaims`; fix what Apple said, then run `mdm apps reclaim {adam}` again")
