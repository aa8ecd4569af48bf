"""mobile_apps migration 0012: the failed reclaims recorded before it that a later reclaim of the
same license (or revoke) followed are superseded by the first such one, so that `mdm apps
reclaims` no longer lists them open; the others stay as they were. A downgrade to 0011 drops the
column and keeps every reclaim; an upgrade marks them again. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import database_param
from tests.test_apple_migrations import _database_at, _downgrade, _upgrade_then_query
from tests.test_ids_never_reused import CASES, _insert

APPLIED = "mobile_apps: applied 0012 (reclaim superseded"
RECLAIMS = "SELECT id, target, adam_id, status, superseded_by FROM mobile_apps_reclaim ORDER BY id"
#: (target, adamId, status) of reclaims 1 to 7, in the order they were recorded
RECORDED = [
    ("S1", "111", "failed"),  # followed by 2: superseded by it
    ("S1", "111", "failed"),  # followed by 3 (done)
    ("S1", "111", "done"),
    ("S2", "111", "failed"),  # the only reclaim of S2's license: open
    ("S1", "222", "failed"),  # another asset of S1: another license, open
    ("S1", "111", "failed"),  # the latest of S1's: open
    ("S3", "*", "failed"),  # a revoke, followed by another revoke (7)
]
EXPECTED = [
    (1, "S1", "111", "failed", 2),
    (2, "S1", "111", "failed", 3),
    (3, "S1", "111", "done", None),
    (4, "S2", "111", "failed", None),
    (5, "S1", "222", "failed", None),
    (6, "S1", "111", "failed", None),
    (7, "S3", "*", "failed", 8),
    (8, "S3", "*", "pending", None),
]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_mobile_apps_0012_supersedes_the_failed_reclaims_a_later_one_followed(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, kind: str
) -> None:
    url = None if kind == "sqlite" else database_param(request, project_dir, kind)
    row = CASES["mobile_apps_reclaim"][3]
    rows = []
    for n, (target, adam_id, status) in enumerate([*RECORDED, ("S3", "*", "pending")], start=1):
        pricing = "'*'" if adam_id == "*" else row["pricing_param"]
        values = {**row, "target": f"'{target}'", "adam_id": f"'{adam_id}'", "pricing_param": pricing, "status": f"'{status}'"}
        rows.append(_insert("mobile_apps_reclaim", values, n))
    mdm = _database_at(project_dir, monkeypatch, capsys, {"mobile_apps": "0011"}, rows, url)
    assert _upgrade_then_query(mdm, APPLIED, RECLAIMS, url=url) == [EXPECTED]
    code, out, _ = mdm("apps", "reclaims")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:-1]] == ["4", "5", "6", "8"], out
    assert out.splitlines()[-1].startswith("4 done, canceled or superseded reclaim(s) not shown")

    _downgrade(mdm, "mobile_apps", "0011", url)
    assert _upgrade_then_query(mdm, APPLIED, RECLAIMS, url=url) == [EXPECTED]
