"""The assets an incremental sync reads again: their pages are read while their mirrored
licenses are read on a thread of its own, and compared with them once both are in."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from plugins.vpp.sync import read as read_module
from plugins.vpp.sync import run
from plugins.vpp.sync.run import sync_account
from plugins.vpp.testing import assert_mirror_equals_apple, mirror_state

GATE_TIMEOUT = 30  # a broken gate fails the test instead of hanging it


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The AppleRead of each sync's apply."""
    reads: list[Any] = []
    original = run.apply_read

    def recording(host: Any, account: Any, run_id: int, read: Any, lock: Any, *more: Any) -> Any:
        reads.append(read)
        return original(host, account, run_id, read, lock, *more)

    monkeypatch.setattr(run, "apply_read", recording)
    return reads


def _changed(simulator: Any, before: dict[str, Any]) -> set[str]:
    """Licenses removed from several assets (which the sync must read again: a removal shows in
    no delta), licenses added and kept; returns the adamIds of the assets with removals."""
    summary = simulator.mutate_fraction(0.3, seed=5)
    assert summary["assignments_removed"] and summary["assignments_added"]
    after = set(simulator.snapshot()["assignments"])
    removed = {k[0] for k in set(before["assignments"]) - after}
    kept = {k[0] for k in set(before["assignments"]) & after}
    assert len(removed & kept) >= 2, "the change should leave licenses of several changed assets in place"
    return removed


@pytest.mark.parametrize("arrival", ["after-its-pages", "after-its-first-page"])
def test_the_pages_of_an_asset_wait_for_its_mirrored_licenses(
    synced: Any, simulator: Any, applied: list[Any], monkeypatch: pytest.MonkeyPatch, arrival: str
) -> None:
    """Every asset's mirrored licenses arrive only once its pages have all been read, or once
    its first page has (its next pages are read once they are in): its rows wait, then are
    compared; removed, added and kept licenses are all mirrored exactly."""
    removed = _changed(simulator, mirror_state(synced))
    events: dict[tuple[str, str], threading.Event] = {}
    pages: dict[str, int] = {}
    lock = threading.Lock()

    def event(adam_id: str, what: str) -> threading.Event:
        with lock:
            return events.setdefault((adam_id, what), threading.Event())

    from plugins.vpp.apple.client import AppsBooksClient

    original_iter = AppsBooksClient.iter_assignments

    def iter_assignments(self: Any, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        adam_id = kwargs.get("adam_id")
        for index, page in enumerate(original_iter(self, *args, **kwargs)):
            if adam_id:
                pages[adam_id] = index + 1
            if adam_id and index == 1 and arrival == "after-its-first-page":
                assert event(adam_id, "in").wait(GATE_TIMEOUT)
            yield page
            if adam_id and index == 0:
                event(adam_id, "first").set()
        if adam_id:
            event(adam_id, "all").set()

    original_sets = read_module.mirrored_licenses

    def gated(conn: Any, account_id: Any, adam_ids: list[str], first: int = 1, sizes: Any = None) -> Iterator[Any]:
        for adam_id, licenses in original_sets(conn, account_id, adam_ids, first, sizes):
            assert event(adam_id, "first" if arrival == "after-its-first-page" else "all").wait(GATE_TIMEOUT), f"the pages of {adam_id} were not read"
            yield adam_id, licenses
            event(adam_id, "in").set()  # resumed once the licenses were handed over

    monkeypatch.setattr(AppsBooksClient, "iter_assignments", iter_assignments)
    monkeypatch.setattr(read_module, "mirrored_licenses", gated)
    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    assert_mirror_equals_apple(synced, simulator)
    (read,) = applied
    assert removed <= set(read.reread) and set(read.diffed) == set(read.reread)
    assert read.removed and report["counts"]["licenses"]["removed"] == len(read.removed)
    assert any(pages[a] > 1 for a in read.diffed), "an asset of several pages should be compared"


def test_an_asset_read_again_past_diff_limit_is_staged_whole_among_compared_ones(
    synced: Any, simulator: Any, applied: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With DIFF_LIMIT between the sizes of the assets read again, the larger ones are staged
    whole (their rows no longer wait past DIFF_LIMIT for their mirrored licenses: they are
    then read at once) and the others compared; the mirror is exact either way."""
    before = mirror_state(synced)
    changed = _changed(simulator, before)
    sizes = sorted({sum(1 for k in before["assignments"] if k[0] == a) for a in changed})
    assert len(sizes) >= 2
    monkeypatch.setattr(read_module, "DIFF_LIMIT", sizes[0])
    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    assert_mirror_equals_apple(synced, simulator)
    (read,) = applied
    whole = set(read.reread) - set(read.diffed)
    assert read.diffed and whole, (read.reread, read.diffed)
    assert all(sum(1 for k in before["assignments"] if k[0] == a) > sizes[0] for a in whole)


def test_a_failed_read_of_the_mirrored_licenses_fails_the_sync_with_nothing_written(synced: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mirrored licenses fail after the first asset: the sync fails with that error, the
    mirror is as before, no re-reading thread is left, and the next sync converges."""
    _changed(simulator, mirror_state(synced))
    before = mirror_state(synced)
    original_sets = read_module.mirrored_licenses

    def failing(conn: Any, account_id: Any, adam_ids: list[str], first: int = 1, sizes: Any = None) -> Iterator[Any]:
        sets = original_sets(conn, account_id, adam_ids, first, sizes)
        yield next(sets)
        sets.close()
        raise OperationalError("SELECT", {}, Exception("the mirror went away"))

    monkeypatch.setattr(read_module, "mirrored_licenses", failing)
    report = sync_account(synced, "school")
    assert report["status"] == "error" and "the mirror went away" in report["error"], report
    assert mirror_state(synced) == before
    assert not [t for t in threading.enumerate() if t.name.startswith("vpp-reread")]
    monkeypatch.undo()
    assert sync_account(synced, "school")["status"] == "ok"
    assert_mirror_equals_apple(synced, simulator)


def added_count_reads(host: Any) -> list[str]:
    """The reads of the staged licenses the mirror lacks (per asset) from now on."""
    from sqlalchemy import event

    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        flat = " ".join(statement.split()).lower()
        if flat.startswith("select vpp_stage_license.adam_id") and "count(distinct(" in flat and "not (exists" in flat:
            seen.append(flat)

    event.listen(host.db.engine, "before_cursor_execute", record)
    return seen


def test_the_reconcile_reads_the_staged_licenses_the_mirror_lacks_once(synced: Any, simulator: Any, applied: list[Any]) -> None:
    """Assets read again after the first count check: the second check reuses the first one's
    count of the staged licenses the mirror lacks (those of assets not read again do not
    change), instead of joining the staged licenses with the mirror again; the mirror is exact."""
    _changed(simulator, mirror_state(synced))
    reads = added_count_reads(synced)
    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    (read,) = applied
    assert read.reread, "the change should make the sync read assets again"
    assert len(reads) == 1
    assert_mirror_equals_apple(synced, simulator)


def test_the_mirrored_licenses_are_read_ahead_once_the_re_reading_threads_run(
    synced: Any, simulator: Any, applied: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread reading the mirrored licenses reads those of one asset per re-reading thread,
    then waits until every re-reading thread runs before it reads on (their first requests go
    out at once: reading on, its parsing held up the start of each). Here each re-reading
    thread starts only once the reader read on, or after a moment: it must have waited for
    them all; the mirror is exact."""
    _changed(simulator, mirror_state(synced))
    read_on = threading.Event()
    running: list[tuple[int, int]] = []  # (re-reading threads running, their number) when reading on
    original_sets = read_module.mirrored_licenses

    def counted(conn: Any, account_id: Any, adam_ids: list[str], first: int = 1, sizes: Any = None) -> Iterator[Any]:
        for index, item in enumerate(original_sets(conn, account_id, adam_ids, first, sizes)):
            if index == first:
                me = threading.current_thread()
                running.append((sum(1 for t in threading.enumerate() if t.name.startswith("vpp-reread") and t is not me), first))
                read_on.set()
            yield item

    class SlowToStart(read_module.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            if getattr(fn, "__name__", "") == "worker":  # a re-reading thread
                read_on.wait(0.2)
            return super().submit(fn, *args, **kwargs)

    original_reread = read_module.SyncReader.reread_assets

    def two_threads(self: Any, adam_ids: list[str]) -> None:  # fewer threads than assets read again
        self.client.max_parallel_pages = 2
        original_reread(self, adam_ids)

    monkeypatch.setattr(read_module, "mirrored_licenses", counted)
    monkeypatch.setattr(read_module, "ThreadPoolExecutor", SlowToStart)
    monkeypatch.setattr(read_module.SyncReader, "reread_assets", two_threads)
    report = sync_account(synced, "school")
    assert report["status"] == "ok" and report["mode"] == "incremental", report
    assert_mirror_equals_apple(synced, simulator)
    (read,) = applied
    ((others, workers),) = running
    assert len(read.diffed) > workers > 1
    assert others == workers
