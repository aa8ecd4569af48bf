"""vpp migration 0013: the runs still running are found by a partial index (every sync's
preamble looks for them), the runs recorded before kept; SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_apple_migrations import _database_at, _upgrade_then_query

from .test_sync_run_progress_migration import ACCOUNT, RUN


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_vpp_0013_running_runs_are_indexed(project_dir: Path, monkeypatch: Any, capsys: Any, request: pytest.FixtureRequest, dialect: str) -> None:
    url = str(request.getfixturevalue("pg_url")) if dialect == "postgresql" else None
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"vpp": "0012"},
        [ACCOUNT, *(RUN.format(id=i, status="ok", pages=18) for i in range(1, 40)), RUN.format(id=40, status="running", pages=0)],
        url=url,
    )
    if dialect == "sqlite":
        plan = "EXPLAIN QUERY PLAN SELECT id FROM vpp_sync_run WHERE account_id = 1 AND status = 'running'"
        index = "SELECT sql FROM sqlite_master WHERE name = 'ix_vpp_sync_run_running'"
    else:
        plan = "SELECT indexname FROM pg_indexes WHERE tablename = 'vpp_sync_run'"  # 40 runs: the planner would scan the table
        index = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_vpp_sync_run_running'"
    runs, [(definition,)], steps = _upgrade_then_query(
        mdm, "vpp: applied 0013 (running sync runs index", "SELECT count(*), max(id) FROM vpp_sync_run WHERE status = 'ok'", index, plan, url=url
    )
    assert runs == [(39, 39)]
    assert "status" in definition and "running" in definition, definition
    assert any("ix_vpp_sync_run_running" in str(step) for step in steps), steps
    code, out, err = mdm("vpp", "runs", "--json")
    assert code == 0, err
    assert '"id": 40' in out
