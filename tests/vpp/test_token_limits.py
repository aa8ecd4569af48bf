"""Apple's limits are per token (issue 12 point 3): every client of one token in a process
shares 5 requests in flight, and a back-off Apple asked for is recorded in the database so
that other jobs and processes do not call Apple for that token before it expires. Run
against the simulator, which enforces 5 requests in flight per token with 9646 (HTTP 429)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mdm_core.host import Host
from mdm_core.testing import MdmRunner


def test_three_clients_of_one_token_never_have_more_than_five_requests_in_flight(vpp_host: Host, simulator: Any) -> None:
    from plugins.vpp.accounts import client_for, get_account

    simulator.faults.add("slow", endpoint="assignments", seconds=0.05)  # every page takes a while
    with vpp_host.db.session() as session:
        account = get_account(session, "school")
    clients = [client_for(vpp_host, account) for _ in range(3)]  # a sync, an install, a reclaim job
    errors: list[BaseException] = []

    def read_all(client: Any) -> None:
        try:
            for _ in client.iter_assignments():
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read_all, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for client in clients:
        client.close()
    assert not errors, errors
    assert simulator.in_flight.peak <= 5
    assert simulator.in_flight.refused == 0  # Apple never had to say 9646


def test_a_retry_after_beyond_the_budget_is_recorded_and_honoured_by_other_processes(
    project_dir: Path,
    simulator: Any,
    monkeypatch: Any,
    capsys: Any,
    make_host: Callable[..., Host],
) -> None:
    mdm = MdmRunner(project_dir, monkeypatch, capsys, config="[vpp]\nmax_attempts = 3\nmax_total_wait = 5\n")
    simulator.write_token(project_dir / "t.vpptoken")
    assert mdm("vpp", "account", "add", "school", "--token-file", str(project_dir / "t.vpptoken"), "--service-url", simulator.base_url)[0] == 0
    simulator.faults.add("rate_limit", endpoint="assets", count=1, retry_after=3600)

    code, out, err = mdm("vpp", "sync", "school")
    assert code == 1 and out == ""
    line = err.strip()
    assert "Apple asks to wait until " in line and "\n" not in line
    asked = simulator.in_flight.total

    # Another process on the same database: it does not call Apple with this token at all.
    code, out, err = mdm("vpp", "sync", "school")
    assert code == 1 and out == "" and "Apple asks to wait until " in err
    assert simulator.in_flight.total == asked
    from plugins.vpp.models import VppAccount

    host = make_host(config="")
    with host.db.session() as session:
        [account] = session.execute(select(VppAccount)).scalars().all()
        assert account.backoff_until is not None


def test_the_time_apple_asks_to_wait_until_is_utc_whatever_the_host_zone(monkeypatch: Any) -> None:
    import time as time_module
    from datetime import datetime

    from plugins.vpp.apple.limiter import format_wait_until

    monkeypatch.setenv("TZ", "America/New_York")
    time_module.tzset()
    try:
        now = datetime(2026, 11, 30, 22, 0, tzinfo=UTC).timestamp()
        assert format_wait_until(now + 30 * 60, now=now) == "22:30 UTC"  # was "17:30 EST"
        assert format_wait_until(now + 3 * 3600, now=now) == "2026-12-01 01:00 UTC"
    finally:
        monkeypatch.delenv("TZ")
        time_module.tzset()


def test_a_closed_host_is_not_kept_alive_by_its_token_gates(simulator: Any, project_dir: Path) -> None:
    """The gates are kept per host in a WeakKeyDictionary: a gate's back-off store held the host
    itself, so every host that made a client stayed in memory with its engines and caches (in
    the test suite, a quarter of all hosts, and a garbage collection that grew with them)."""
    import gc
    import weakref

    from mdm_core.host import create_host
    from mdm_core.testing import TEST_SECRET_KEY
    from plugins.vpp.accounts import client_for, get_account
    from plugins.vpp.testing import add_simulated_account

    (project_dir / "conf" / "mdm.toml").write_text("")
    url = f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"
    host = create_host(project_dir / "conf" / "mdm.toml", environ={"MDM_SECRET_KEY": TEST_SECRET_KEY}, plugins=None, database_url=url)
    add_simulated_account(host, simulator, project_dir)
    with host.db.session() as session:
        client_for(host, get_account(session, "school")).close()
    gone = weakref.ref(host)
    host.close()
    del host
    gc.collect()
    assert gone() is None, [type(r).__qualname__ for r in gc.get_referrers(gone())]
