"""`mdm run`'s loop logs a failure that repeats every turn (the database unreachable) once, not
every second, and says when it works again."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from mdm_core.host import Host


def test_a_database_outage_is_logged_once_per_failure_and_its_end_once(
    make_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The walk's case: for a 20-second cut of PostgreSQL each host logged 40 ERROR lines (two
    a turn), and nothing when the database was back."""
    from mdm_core.errors import MdmError

    host = make_host(plugins=[])
    turns = {"delivery": 0, "retry": 0}
    down = 30  # turns of the loop the database stays unreachable
    stop_after = 40
    real_deliver, real_retry = host.deliver_events, host.events.retry_due

    def deliver() -> int:
        turns["delivery"] += 1
        if turns["delivery"] >= stop_after:
            host.stop_event.set()
        if 1 < turns["delivery"] <= down + 1:  # (the first is the start's)
            raise MdmError("the database cannot be reached: check that the database server runs")
        return real_deliver()

    def retry(*args: Any, **kwargs: Any) -> tuple[int, int]:
        turns["retry"] += 1
        if 1 < turns["retry"] <= down + 1:
            raise MdmError("the database cannot be reached: check that the database server runs")
        return real_retry(*args, **kwargs)

    monkeypatch.setattr(host, "deliver_events", deliver)
    monkeypatch.setattr(host.events, "retry_due", retry)
    with caplog.at_level(logging.DEBUG, logger="mdm_core.host"):
        thread = threading.Thread(target=lambda: host.run(max_sleep=0.001, install_signal_handlers=False))
        thread.start()
        thread.join(60)
    assert not thread.is_alive()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "event delivery failed, retrying later: MdmError: the database cannot be reached: check that the database server runs",
        "failed deliveries could not be retried, retrying later: MdmError: the database cannot be reached: check that the database server runs",
    ]
    again = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [line.split(" after ")[0] for line in again] == ["event delivery works again", "failed deliveries are retried again"]
    assert all(line.endswith(f"({down} failed tries)") for line in again)


def test_a_failure_that_lasts_is_logged_again_every_five_minutes_and_when_its_message_changes(caplog: pytest.LogCaptureFixture) -> None:
    from mdm_core.repeats import Repeated

    now = [0.0]
    repeated = Repeated(logging.getLogger("mdm_core.host"), "event delivery failed", "event delivery works again", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="mdm_core.host"):
        for second in range(0, 601):
            now[0] = float(second)
            repeated.failed("the database cannot be reached" if second < 500 else "the disk is full")
        repeated.succeeded()
    assert [r.getMessage() for r in caplog.records] == [
        "event delivery failed, retrying later: the database cannot be reached",
        "event delivery failed, retrying later (failing for 300 s, 301 tries): the database cannot be reached",
        "event delivery failed, retrying later (failing for 500 s, 501 tries): the disk is full",
        "event delivery works again after 600 s (601 failed tries)",
    ]
