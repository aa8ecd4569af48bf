"""The console's bounded pool for background work (a sync started from a page, acting on
Apple's notifications)."""

from __future__ import annotations

import threading

import pytest

from mdm_core.web.helpers import BackgroundWork, WebError


def test_one_task_more_than_the_workers_is_refused_and_waiting_for_idle_sees_the_tasks_end() -> None:
    work = BackgroundWork(1)
    release = threading.Event()
    try:
        running = work.submit(release.wait)
        with pytest.raises(WebError) as refused:
            work.submit(lambda: None)
        assert refused.value.status == 503 and "already running 1 background task" in str(refused.value)
        assert work.wait_idle(0.05) is False  # the task still runs
        release.set()
        assert work.wait_idle(5) is True and running.done()
        assert work.submit(lambda: 42).result(5) == 42  # its slot is free again
    finally:
        release.set()
        work.shutdown()
