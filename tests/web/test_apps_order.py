"""``mdm apps list`` and ``GET /api/v1/apps`` list the applications in one order (by name, as
the console): the API listed them by id, the command line by name, so an admin comparing the
two, or a script checking the API against ``mdm apps list --json``, saw the same rows shuffled."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import MdmRunner

from .conftest import WEB_CONFIG, token_for


def test_the_api_and_the_command_line_list_apps_in_one_order(
    make_host: Callable[..., Host], database_url: str, simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app
    from plugins.mobile_apps.catalog import refresh_metadata
    from plugins.vpp.accounts import add_account
    from plugins.vpp.sync.run import sync_account

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url)
    assert sync_account(host, "school")["status"] == "ok"
    host.deliver_events()
    refresh_metadata(host)  # names (a manual sync may have looked them up already)
    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url})
    code, out, err = mdm("apps", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    ids = [a["id"] for a in listed]
    assert len(ids) >= 6 and ids != sorted(ids), "the names must not follow the ids for this test to tell the orders apart"
    assert [a["name"].lower() for a in listed if a["name"]] == sorted(a["name"].lower() for a in listed if a["name"])
    walked, cursor = [], None
    with TestClient(create_app(host)) as client:
        headers = token_for(host, "viewer")
        while True:  # three at a time: the cursor starts each page just after the last row sent
            page = client.get("/api/v1/apps", params={"limit": 3, **({"cursor": cursor} if cursor else {})}, headers=headers)
            assert page.status_code == 200, page.text
            walked += [a["id"] for a in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert walked == ids
        assert [a["id"] for a in client.get("/api/v1/apps", params={"limit": 1000}, headers=headers).json()["items"]] == ids
        code, out, err = mdm("apps", "list", "--json", "--offset", "2", "--limit", "3")
        assert code == 0 and [a["id"] for a in json.loads(out)] == ids[2:5], err
