"""An incremental sync reads the asset list, the users' delta and the assignments' delta at
once (on SQLite and PostgreSQL); a full sync reads them in turn."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from plugins.vpp.apple.client import AppsBooksClient
from plugins.vpp.sync.run import sync_account
from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple, mirror_state
from tests.conftest import PG_ADMIN_URL, PG_SKIP_REASON

WAIT = 5.0  # seconds a listing waits for the others to begin (read in turn, they never do)
LISTINGS = ("iter_assets", "iter_users", "iter_assignments")


@pytest.fixture(params=["sqlite", "postgres"])
def db_synced(request: pytest.FixtureRequest, make_host: Callable[..., Host], simulator: Any, project_dir: Path) -> Host:
    """A host on SQLite or PostgreSQL with the account ``school`` after a first (full) sync."""
    if request.param == "postgres" and not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    host = make_host(database_url=request.getfixturevalue("pg_url") if request.param == "postgres" else None)
    add_simulated_account(host, simulator, project_dir)
    assert sync_account(host, "school")["status"] == "ok"
    return host


def gate_listings(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """From now on, the first traversal of each listing waits (``WAIT`` at most) until the
    first traversals of the three have all begun; returns whether each saw them all begin."""
    began = {name: threading.Event() for name in LISTINGS}
    saw: dict[str, bool] = {}

    def gated(name: str, original: Callable[..., Iterator[dict[str, Any]]]) -> Callable[..., Iterator[dict[str, Any]]]:
        def pages(self: Any, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
            if name not in saw and not kwargs.get("adam_id"):
                saw[name] = False
                began[name].set()
                saw[name] = all(event.wait(WAIT) for event in began.values())
            yield from original(self, *args, **kwargs)

        return pages

    for name in LISTINGS:
        monkeypatch.setattr(AppsBooksClient, name, gated(name, getattr(AppsBooksClient, name)))
    return saw


def test_an_incremental_sync_reads_the_three_listings_at_once(db_synced: Host, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each listing's first page is requested once the other two listings have begun (one at a
    time, each of their few pages left most of Apple's request slots idle); the mirror is exact."""
    simulator.mutate_fraction(0.2, seed=3)
    saw = gate_listings(monkeypatch)
    report = sync_account(db_synced, "school")
    assert (report["status"], report["mode"]) == ("ok", "incremental"), report
    assert saw == dict.fromkeys(LISTINGS, True)
    assert not [t for t in threading.enumerate() if t.name.startswith("vpp-read_")]
    assert_mirror_equals_apple(db_synced, simulator)


def test_a_failed_listing_fails_the_incremental_sync_with_its_own_error(db_synced: Host, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The users' delta fails while the other listings are read: the sync fails with that
    error (not the stop it caused in the others), nothing is written, and the next sync
    converges."""
    simulator.mutate_fraction(0.2, seed=3)
    saw = gate_listings(monkeypatch)
    simulator.faults.add("malformed_json", endpoint="users", count=1)
    before = mirror_state(db_synced)
    report = sync_account(db_synced, "school")
    assert (report["status"], report["error_type"]) == ("error", "MalformedResponseError"), report
    assert mirror_state(db_synced) == before
    assert saw == dict.fromkeys(LISTINGS, True)
    monkeypatch.undo()
    assert sync_account(db_synced, "school")["status"] == "ok"
    assert_mirror_equals_apple(db_synced, simulator)
