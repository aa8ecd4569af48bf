"""The three listings of a sync (assets, users, assignments) are read at the same time, and
the one that fails is the error the sync reports."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from plugins.vpp.apple.client import AppsBooksClient
from plugins.vpp.sync.run import sync_account
from plugins.vpp.testing import assert_mirror_equals_apple, mirror_state

from ..conftest import database_param
from .conftest import FAST_CONFIG


@pytest.fixture(params=["sqlite", "postgresql"])
def school(request: pytest.FixtureRequest, make_host: Callable[..., Host], simulator: Any, token_file: Path, project_dir: Path) -> Host:
    """An account ``school`` on ``simulator``, not synced, on SQLite and on PostgreSQL."""
    import plugins.vpp.plugin
    from plugins.vpp.accounts import add_account

    host = make_host(plugins=[plugins.vpp.plugin], config=FAST_CONFIG, database_url=database_param(request, project_dir))
    add_account(host, "school", str(token_file), service_url=simulator.base_url)
    return host


@pytest.fixture
def assignments_first(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The asset list waits (5 s at most) for the assignments' first request: each entry says
    whether that request was made while the asset list was being read."""
    started = threading.Event()
    overlapped: list[bool] = []
    iter_assets, iter_assignments = AppsBooksClient.iter_assets, AppsBooksClient.iter_assignments

    def assets(self: AppsBooksClient, **filters: Any) -> Generator[dict[str, Any], None, None]:
        overlapped.append(started.wait(timeout=5))
        yield from iter_assets(self, **filters)

    def assignments(self: AppsBooksClient, **kwargs: Any) -> Generator[dict[str, Any], None, None]:
        started.set()
        yield from iter_assignments(self, **kwargs)

    monkeypatch.setattr(AppsBooksClient, "iter_assets", assets)
    monkeypatch.setattr(AppsBooksClient, "iter_assignments", assignments)
    return overlapped


def test_the_assignments_are_not_read_after_the_asset_list(school: Host, simulator: Any, assignments_first: list[bool]) -> None:
    report = sync_account(school, "school")
    assert report["status"] == "ok", report.get("error")
    assert assignments_first[0], "the assignments were read only once the asset list was read"

    simulator.purchase(count=5)
    adam_id, pricing = next(iter(simulator.snapshot()["assets"]))
    simulator.purchase(adam_id=adam_id, pricing_param=pricing, count=3)
    assignments_first.clear()
    report = sync_account(school, "school")
    assert (report["status"], report["mode"]) == ("ok", "incremental"), report.get("error")
    assert assignments_first[0], "the assignments' changes were read only once the asset list was read"
    assert_mirror_equals_apple(school, simulator)


@pytest.mark.parametrize("endpoint", ["assignments", "assets", "users"])
def test_the_listing_that_fails_is_the_error_reported_and_nothing_is_written(school: Host, simulator: Any, endpoint: str) -> None:
    before = mirror_state(school)
    simulator.faults.add("server_error", endpoint=endpoint, status=500, retry_after=0)
    report = sync_account(school, "school")
    assert report["status"] == "error"
    assert "stopped" not in report["error"], report["error"]
    assert "500" in report["error"] or "server" in report["error"].lower(), report["error"]
    assert mirror_state(school) == before


def test_an_incremental_syncs_counts_are_read_beside_the_asset_lists_check(school: Host, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """After its listings, an incremental sync checks with a request whether the asset list
    moved and reads the counts it compares with Apple's (the staged licenses, the mirrored
    ones, those the mirror lacks): the counts are read while the request runs (nothing else runs
    at that point of the sync), not after it. The request waits (5 s at most) for the counts'
    costliest read to begin; the mirror is Apple's after the sync."""
    from plugins.vpp.sync.read import SyncReader

    assert sync_account(school, "school")["status"] == "ok"
    simulator.mutate_fraction(0.3, seed=11)
    started = threading.Event()
    overlapped: list[bool] = []
    refresh, added = SyncReader.refresh_assets, SyncReader._added_counts

    def refresh_assets(self: SyncReader, *args: Any) -> Any:
        overlapped.append(started.wait(timeout=5))
        return refresh(self, *args)

    def added_counts(self: SyncReader) -> Any:
        started.set()
        return added(self)

    monkeypatch.setattr(SyncReader, "refresh_assets", refresh_assets)
    monkeypatch.setattr(SyncReader, "_added_counts", added_counts)
    report = sync_account(school, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report.get("error")
    assert overlapped and overlapped[0], "the counts were read only once the asset list was checked"
    assert report["counts"]["licenses"]["reread_assets"] > 0  # the counts found the changed assets
    assert_mirror_equals_apple(school, simulator)
