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
from ..web.conftest import PASSWORD, sign_in, token_for
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
def console(make_host: Any, simulator: Any, webhook_server: Any, project_dir: Any, database: str | None) -> Iterator[dict[str, Any]]:
    """A host with account ``school`` on the simulator and a webhook ``ops``, an admin, a viewer
    signed in (``viewer``), an anonymous client, and a viewer's API token (``headers``)."""
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app
    from plugins.vpp.testing import add_simulated_account

    hook = webhook_server()
    host = make_host(
        config=FAST_VPP + '[alerts]\nsync_failures = 2\nwebhooks = { ops = { env = "OPS_URL" } }\n', environ={"OPS_URL": hook.url}, database_url=database
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
