"""The row lock of :func:`plugins.mobile_apps.installs.reserve.reserve` on PostgreSQL: two
installs of the last license, the second one's check made while the first holds the lock. The
second waits for the first to record its install, then counts it and is refused before Apple
is asked. Without the lock (``FOR UPDATE``) both read no install in flight, both record one, both
ask Apple, and the second fails later with Apple's 9709."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from plugins.mobile_apps.installs import reserve as reserve_module
from plugins.mobile_apps.installs.commands import list_installs
from plugins.mobile_apps.installs.request import Outcome, install

from .conftest import commands, holders
from .test_install_race import last_license_for_two

WAIT = 30.0  # seconds before a stuck test fails (never reached when it passes or fails as meant)


class HeldCheck:
    """The first install's licence check (``_taken``, under the lock) waits until the second
    install is either blocked on the lock (PostgreSQL says so) or in its own check (no lock)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.first_in, self.second_in = threading.Event(), threading.Event()
        self.order: list[str] = []
        self.lock = threading.Lock()

    def taken(self, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> int:
            with self.lock:
                first = not self.first_in.is_set()
                self.order.append("first" if first else "second")
            if not first:
                self.second_in.set()
                return int(real(*args, **kwargs))
            self.first_in.set()
            deadline = threading.Event()
            timer = threading.Timer(WAIT, deadline.set)
            timer.start()
            try:  # the second is on its way: look again until it waits for the lock or checks too
                while not self.second_in.wait(0.02) and not self._second_blocked():
                    assert not deadline.is_set(), "the second install neither waited for the lock nor checked its licenses"
            finally:
                timer.cancel()
            return int(real(*args, **kwargs))

        return wrapper

    def _second_blocked(self) -> bool:
        """Whether a session of the test's database waits for a lock (the second install's)."""
        with self.engine.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            return bool(conn.execute(text(query)).scalar())


@pytest.mark.slow
def test_the_second_install_of_the_last_license_waits_for_the_first_s_record(
    make_host: Any, simulator: Any, project_dir: Any, pg_url: str, monkeypatch: Any
) -> None:
    first_admin, second_admin, adam, app, (ipad, iphone) = last_license_for_two(make_host, simulator, project_dir, pg_url)
    held = HeldCheck(pg_url)
    monkeypatch.setattr(reserve_module, "_taken", held.taken(reserve_module._taken))
    results: dict[str, Outcome | BaseException] = {}

    def run(name: str, host: Any, serial: str) -> None:
        try:
            results[name] = install(host, app, serials=[serial])
        except BaseException as exc:  # noqa: BLE001  # the test reads it
            results[name] = exc

    first = threading.Thread(target=run, args=("first", first_admin, ipad))
    first.start()
    assert held.first_in.wait(WAIT), "the first install never checked its licenses"
    second = threading.Thread(target=run, args=("second", second_admin, iphone))  # started once the first holds the lock
    second.start()
    for thread in (first, second):
        thread.join(WAIT * 2)
    held.engine.dispose()

    assert held.order[:2] == ["first", "second"] and set(held.order[1:]) == {"second"}  # the second checks again if the counts moved meanwhile
    lines = {name: out.as_dicts() for name, out in results.items() if isinstance(out, Outcome)}
    assert len(lines) == 2, results
    assert [line["status"] for line in lines["first"]] == ["queued"], lines
    [refused] = lines["second"]
    assert refused["status"] == "refused" and refused["message"].startswith("not enough licenses: 0 available in account 'school'"), refused
    assert holders(simulator, adam) == {ipad} and simulator.requests["assets/associate"] == 1  # Apple asked once
    assert len(commands(first_admin, ipad)) == 1 and commands(first_admin, iphone) == []
    assert [(i["target"], i["status"]) for i in list_installs(first_admin)] == [(ipad, "queued")]
