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


def _run_turns(host: Host, monkeypatch: pytest.MonkeyPatch, turns: int, each: Callable[[int], None]) -> None:
    """``host.run``'s loop for ``turns`` turns, ``each(turn)`` called at each (its event delivery)."""
    real_deliver = host.deliver_events
    count = [0]

    def deliver() -> int:
        count[0] += 1
        each(count[0])
        if count[0] >= turns:
            host.stop_event.set()
        return real_deliver()

    monkeypatch.setattr(host, "deliver_events", deliver)
    thread = threading.Thread(target=lambda: host.run(max_sleep=0.001, install_signal_handlers=False))
    thread.start()
    thread.join(60)
    assert not thread.is_alive()


def test_a_burst_then_silence_logs_its_count_at_the_loops_next_turn_once_the_window_ends(
    make_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A burst of forged POSTs, then nothing: the count of those not logged waited for the next
    one, which never came (repeats.Throttled only told it then). Now `mdm run`'s loop tells it at
    its first turn after the five minutes, once."""
    from mdm_core.repeats import Throttled

    host = make_host(plugins=[])
    now = [1000.0]
    throttled = Throttled(logging.getLogger("tests.repeats.burst"), clock=lambda: now[0])
    for n in range(10):
        throttled.warning("401", "notification refused (401): %s", f"try {n}")
        now[0] += 1.0
    counted: list[int] = []

    def each(turn: int) -> None:
        if turn == 3:
            now[0] = 1000.0 + 300.0
        if any(r.name == "tests.repeats.burst" and "like this" in r.getMessage() for r in caplog.records) and not counted:
            counted.append(turn)

    with caplog.at_level(logging.WARNING, logger="tests.repeats.burst"):
        _run_turns(host, monkeypatch, 6, each)
    lines = [r.getMessage() for r in caplog.records if r.name == "tests.repeats.burst"]
    assert lines == ["notification refused (401): try 0", "notification refused (401): try 9 (9 like this in the last 300 s were not logged)"]
    assert counted == [4], counted  # the turn after the window ended, not at shutdown


def test_a_count_not_told_yet_is_told_when_mdm_run_stops(
    make_host: Callable[..., Host], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopped within the five minutes of a burst: its count was never logged. Now at shutdown."""
    from mdm_core.repeats import Throttled

    host = make_host(plugins=[])
    now = [1000.0]
    throttled = Throttled(logging.getLogger("tests.repeats.burst"), clock=lambda: now[0])
    for _ in range(5):
        throttled.error("unreadable", "a notification secret cannot be decrypted")
        now[0] += 2.0
    with caplog.at_level(logging.WARNING, logger="tests.repeats.burst"):
        _run_turns(host, monkeypatch, 2, lambda turn: None)
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "tests.repeats.burst"] == [
        ("ERROR", "a notification secret cannot be decrypted"),
        ("ERROR", "a notification secret cannot be decrypted (4 like this in the last 10 s were not logged)"),
    ]
