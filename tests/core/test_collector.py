"""The host's use of the cyclic garbage collector (mdm_core.collector)."""

from __future__ import annotations

import gc
import threading

import pytest

from mdm_core.collector import BULK_THRESHOLD, fewer_collections


def test_bulk_work_collects_the_young_generation_less_often_and_restores_the_thresholds() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == (BULK_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before


def test_the_thresholds_come_back_when_the_work_raises() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("failed sync")
    assert gc.get_threshold() == before


def test_a_higher_threshold_already_set_is_kept() -> None:
    before = gc.get_threshold()
    gc.set_threshold(BULK_THRESHOLD * 2, *before[1:])
    try:
        with fewer_collections():
            assert gc.get_threshold()[0] == BULK_THRESHOLD * 2
    finally:
        gc.set_threshold(*before)


def test_overlapping_works_of_several_threads_restore_the_thresholds_once_the_last_ends() -> None:
    """Two accounts syncing at once in one process: the first to end must not restore the
    default under the second, and the last restores what was there before either began."""
    before = gc.get_threshold()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def first() -> None:
        with fewer_collections():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with fewer_collections():
            second_in.set()
            first_out.wait(5)
            seen["after the first ended"] = gc.get_threshold()[0]

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"after the first ended": BULK_THRESHOLD}
    assert gc.get_threshold() == before
