"""mobile_apps migration 0010: the question a manual sync's metadata lookup asks first (was any
application published since the sync started?) is answered by an index on ``published_at``, not
by a scan of every application; the applications published before are kept with their ids, and
a downgrade to 0009 removes the index (an upgrade makes it again). SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdm_core.testing import MdmRunner
from tests.conftest import database_param
from tests.test_apple_migrations import _database_at, _downgrade, _indexes, _upgrade_then_query
from tests.test_ids_never_reused import CASES, _insert

INDEX = "ix_mobile_apps_app_published"
APPLIED = "mobile_apps: applied 0010 (application published index"
APPS = "SELECT id, adam_id, published_at IS NOT NULL FROM mobile_apps_app ORDER BY id"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_mobile_apps_0010_indexes_published_at_and_downgrades_without_it(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, kind: str
) -> None:
    mdm, url = apps_at(project_dir, monkeypatch, capsys, request, kind, "0009")
    kept = [(1, "100", True), (2, "200", True), (3, "300", True)]
    assert _upgrade_then_query(mdm, APPLIED, APPS, url=url) == [kept]
    database = url or f"sqlite:///{mdm.db}"
    assert _indexes(database, "mobile_apps_app")[INDEX] == ["published_at"]
    _downgrade(mdm, "mobile_apps", "0009", url)
    assert INDEX not in _indexes(database, "mobile_apps_app")
    assert _upgrade_then_query(mdm, APPLIED, APPS, url=url) == [kept]
    assert INDEX in _indexes(database, "mobile_apps_app")


def apps_at(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, kind: str, revision: str
) -> tuple[MdmRunner, str | None]:
    """A database (``kind``: sqlite or postgresql) whose mobile_apps history is at ``revision``,
    holding applications 1 to 3 (adamIds 100, 200, 300): its runner and its URL (None: the
    project's SQLite file)."""
    url = None if kind == "sqlite" else database_param(request, project_dir, kind)
    apps = [_insert("mobile_apps_app", CASES["mobile_apps_app"][3], n) for n in (1, 2, 3)]
    return _database_at(project_dir, monkeypatch, capsys, {"mobile_apps": revision}, apps, url), url
