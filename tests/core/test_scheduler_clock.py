"""The scheduler plans on a UTC clock: a host in New York keeps its intervals through the
daylight-saving changes (a controlled clock, with TZ set, no sleeps)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mdm_core.scheduler import HostScheduler

NEW_YORK = ZoneInfo("America/New_York")


class Clock:
    """The one time everything in the process sees: naive ``now()`` is New York's wall time."""

    def __init__(self, utc: dt.datetime):
        self.utc = utc

    def advance(self, seconds: float) -> None:
        self.utc += dt.timedelta(seconds=seconds)


@pytest.fixture
def new_york_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dt.datetime], Clock]]:
    """Set TZ to America/New_York and replace ``datetime.datetime.now`` by a controlled clock."""
    real = dt.datetime
    clocks: list[Clock] = []

    class FakeDatetime(real):  # type: ignore[misc,valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> dt.datetime:
            utc = clocks[-1].utc
            return utc.astimezone(NEW_YORK).replace(tzinfo=None) if tz is None else utc.astimezone(tz)

    def make(start: dt.datetime) -> Clock:
        clocks.append(Clock(start))
        return clocks[-1]

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    monkeypatch.setattr(dt, "datetime", FakeDatetime)
    try:
        yield make
    finally:
        monkeypatch.undo()
        time.tzset()


def _gaps(runs: list[dt.datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in pairwise(runs)]


def test_a_60_second_job_keeps_running_through_the_autumn_change(new_york_clock: Callable[[dt.datetime], Clock]) -> None:
    # 2024-11-03 06:00 UTC: New York's clocks go back from 02:00 EDT to 01:00 EST
    clock = new_york_clock(dt.datetime(2024, 11, 3, 5, 57, 30, tzinfo=dt.UTC))
    runs: list[dt.datetime] = []
    scheduler = HostScheduler(inline=True)
    scheduler.add("tick", 60, lambda: runs.append(clock.utc), plugin="p")
    for _ in range(60):  # ten minutes across the change, in 10-second steps
        scheduler.run_pending()
        clock.advance(10)
    assert len(runs) >= 9, runs  # not stalled for an hour at 06:00 UTC
    assert max(_gaps(runs)) <= 70


def test_an_hourly_job_does_not_run_early_in_spring(new_york_clock: Callable[[dt.datetime], Clock]) -> None:
    # 2024-03-10 07:00 UTC: New York's clocks jump from 02:00 EST to 03:00 EDT
    clock = new_york_clock(dt.datetime(2024, 3, 10, 5, 45, tzinfo=dt.UTC))
    runs: list[dt.datetime] = []
    scheduler = HostScheduler(inline=True)
    scheduler.add("hourly", 3600, lambda: runs.append(clock.utc), plugin="p")
    for _ in range(3 * 60 + 5):  # three hours across the change, minute by minute
        scheduler.run_pending()
        clock.advance(60)
    assert len(runs) >= 3, runs
    assert min(_gaps(runs)) >= 3600, [r.isoformat() for r in runs]  # never half an hour early


def test_next_runs_are_utc_whatever_the_host_zone(new_york_clock: Callable[[dt.datetime], Clock]) -> None:
    clock = new_york_clock(dt.datetime(2024, 11, 3, 5, 59, tzinfo=dt.UTC))
    last = clock.utc - dt.timedelta(seconds=30)
    scheduler = HostScheduler(inline=True, history=lambda name: last)
    scheduler.add("job", 120, lambda: None, plugin="p")
    assert scheduler.next_run("job") == dt.datetime(2024, 11, 3, 6, 0, 30, tzinfo=dt.UTC)
    assert scheduler.idle_seconds() == 90
