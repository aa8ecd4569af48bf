"""The writes of an incremental sync's apply (one transaction), on SQLite and PostgreSQL:
each row written once, by as few statements as the change needs, the mirror exact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import recorded_statements
from plugins.vpp.sync.run import sync_account
from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple

from .conftest import FAST_CONFIG


@pytest.fixture
def synced(make_host: Callable[..., Host], project_dir: Path, database_url: str | None, simulator: Any) -> Host:
    """A host on SQLite or PostgreSQL with the account ``school``, after a first (full) sync."""
    import plugins.vpp.plugin

    host = make_host(plugins=[plugins.vpp.plugin], config=FAST_CONFIG, database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    assert sync_account(host, "school")["status"] == "ok"
    return host


def test_an_incremental_sync_writes_each_changed_asset_once_with_its_license_count(synced: Any, simulator: Any) -> None:
    """Licenses added and taken back in one sync move their assets' stored counts by the sum,
    written by the one statement that writes the changed assets' new values: each asset row
    written once (a second ``UPDATE`` of ``license_count`` by delta wrote every such row again,
    a new row version each on PostgreSQL), not once per statement that inserted or deleted
    licenses; the counts are exact."""
    summary = simulator.mutate_fraction(0.3, seed=11)
    assert summary["assignments_removed"] and summary["assignments_added"]
    with recorded_statements(synced.db.write_engine) as statements:
        report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental"
    assert report["counts"]["licenses"]["added"] and report["counts"]["licenses"]["removed"]
    assert report["counts"]["assets"]["changed"] > 1
    flat = [s.sql.replace('"', "") for s in statements]
    asset_writes = [s for s in flat if s.startswith("UPDATE vpp_asset SET") and "(SELECT count(*)" not in s]
    assert len(asset_writes) == 1, asset_writes
    (written,) = asset_writes
    assert written.startswith("UPDATE vpp_asset SET product_type") and "license_count" in written, written
    assert_mirror_equals_apple(synced, simulator)  # the stored counts included


def test_an_incremental_sync_whose_write_is_run_again_moves_each_count_once(synced: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The apply's transaction rolled back by another writer (SQLite busy, a PostgreSQL
    deadlock) after its assets were compared, and run again: the changed assets and their
    license counts are written once, by the second run alone; the mirror is Apple's."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from mdm_core.db import engine
    from plugins.vpp.sync.apply import MirrorUpdate

    simulator.mutate_fraction(0.3, seed=11)
    original = MirrorUpdate._apply_users
    calls: list[int] = []

    def busy_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE vpp_user", {}, sqlite3.OperationalError("database is locked"))  # a busy file: run again
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MirrorUpdate, "_apply_users", busy_once)
    monkeypatch.setattr(engine.time, "sleep", lambda seconds: None)
    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    assert len(calls) == 2, calls
    assert_mirror_equals_apple(synced, simulator)  # the stored counts included
