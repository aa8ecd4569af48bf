"""``GET /api/v1/apps?kind=book`` is ``mdm apps list --kind book --json``: the API refused the
filter the command line has (422 "unknown query parameter kind"), so a script listing books had
to fetch every application and filter them itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import MdmRunner

from .conftest import token_for


@pytest.fixture
def mdm(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> MdmRunner:
    return MdmRunner(project_dir, monkeypatch, capsys)


def _pages(client: Any, headers: dict[str, str], query: str) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        page = client.get(f"/api/v1/apps?{query}&limit=7" + (f"&cursor={cursor}" if cursor else ""), headers=headers)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def test_the_api_filters_apps_by_kind_as_the_command_line_does(school: Host, client: Any, mdm: MdmRunner) -> None:
    viewer = token_for(school, "viewer")
    for kind in ("book", "app"):
        code, out, err = mdm("apps", "list", "--kind", kind, "--json")
        assert code == 0, err
        listed = json.loads(out)
        assert listed and {a["kind"] for a in listed} == {kind}
        assert sorted(_pages(client, viewer, f"kind={kind}"), key=lambda a: a["id"]) == sorted(listed, key=lambda a: a["id"])
    books = _pages(client, viewer, "kind=book&platform=iOS&state=published")
    assert books and all(a["kind"] == "book" and a["platform"] == "iOS" for a in books)


def test_an_unknown_kind_is_refused_naming_the_known_ones(school: Host, client: Any) -> None:
    answer = client.get("/api/v1/apps?kind=magazine", headers=token_for(school, "viewer"))
    assert answer.status_code == 422 and answer.json() == {"error": "unknown kind 'magazine': use app or book"}
