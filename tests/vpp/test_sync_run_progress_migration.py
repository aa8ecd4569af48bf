"""vpp migration 0010: sync runs get ``progress`` (a running sync's figures, for every process),
NULL on the runs recorded before, which are kept; SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_apple_migrations import _database_at, _upgrade_then_query

ACCOUNT = (
    "INSERT INTO vpp_account (id, name, uid, service_url, token_ciphertext, token_fingerprint, token_expires_at, mdm_info_id,"
    " interval_seconds, token_state, paused, created_at, notifications) VALUES (1, 'school', 'u1', 'https://x.test/mdm/v2', 'c', 'f',"
    " '2030-01-01 00:00:00+00:00', 'm', 3600, 'valid', false, '2026-01-02 03:04:05+00:00', 'off')"
)
RUN = (
    "INSERT INTO vpp_sync_run (id, account_id, trigger, mode, status, started_at, pages, counts, holder)"
    " VALUES ({id}, 1, 'manual', 'full', '{status}', '2026-01-02 03:04:05+00:00', {pages}, '{{}}', 'host-a:4242:0badcafe')"
)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_vpp_0010_sync_runs_get_no_progress(project_dir: Path, monkeypatch: Any, capsys: Any, request: pytest.FixtureRequest, dialect: str) -> None:
    url = str(request.getfixturevalue("pg_url")) if dialect == "postgresql" else None
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"vpp": "0009"},
        [ACCOUNT, RUN.format(id=1, status="ok", pages=18), RUN.format(id=2, status="running", pages=0)],
        url=url,
    )
    [runs] = _upgrade_then_query(
        mdm, "vpp: applied 0010 (sync run progress", "SELECT id, status, pages, holder, progress FROM vpp_sync_run ORDER BY id", url=url
    )
    assert runs == [(1, "ok", 18, "host-a:4242:0badcafe", None), (2, "running", 0, "host-a:4242:0badcafe", None)]
    code, out, err = mdm("vpp", "runs", "--json")
    assert code == 0, err
    assert '"progress": null' in out and '"progress": {' not in out
