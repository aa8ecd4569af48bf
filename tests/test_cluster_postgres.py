"""Several hosts share the work: three real `mdm run` processes on one PostgreSQL database with
six accounts due every few seconds. Every account is synced once per interval across the hosts
(not once per host), never twice at a time; the accounts spread over the hosts; when one host
is killed (SIGKILL), the others take its accounts within one interval.

Runs when ``MDM_TEST_POSTGRES_URL`` is set (``.ci/run`` starts PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mdm_core.host import Host
from mdm_core.testing import TEST_SECRET_KEY

from .conftest import PG_ADMIN_URL, PG_SKIP_REASON

pytestmark = [pytest.mark.skipif(not PG_ADMIN_URL, reason=PG_SKIP_REASON), pytest.mark.slow]  # three real `mdm run` processes

INTERVAL = 4  # seconds between two syncs of an account
ACCOUNTS = 6
HOSTS = 3
SLACK = 3.0  # seconds of scheduling and start-up latency allowed on a busy 2-core machine
CONFIG = """
[plugins]
disabled = ["mobile_apps", "alerts", "demo"]

[vpp]
min_interval = 1
lock_ttl = 3.0
request_timeout = 2.0
accounts_refresh = 2
"""


def _runs(host: Host) -> list[dict[str, Any]]:
    with host.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT r.*, a.name AS account FROM vpp_sync_run r JOIN vpp_account a ON a.id = r.account_id ORDER BY r.id"))
        return [dict(r._mapping) for r in rows]


def _members(host: Host) -> list[str]:
    with host.db.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT holder FROM core_lock WHERE name LIKE 'host.%' AND expires_at > now()"))]


def _pid(holder: str) -> int:
    return int(holder.rsplit(":", 2)[1])


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_three_hosts_share_six_accounts_and_take_over_a_killed_one(make_host: Callable[..., Host], pg_url: str, project_dir: Path) -> None:
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.testing import add_simulated_account

    host = make_host(config=CONFIG, database_url=pg_url)
    procs: list[subprocess.Popen[str]] = []
    with ExitStack() as stack:
        sims = [stack.enter_context(Simulator(seed=100 + i, assets=3, devices=6, users=5, page_size=5, async_delay=0)) for i in range(ACCOUNTS)]
        for i, sim in enumerate(sims):
            add_simulated_account(host, sim, project_dir, name=f"site{i}", interval=INTERVAL)
        env = {**os.environ, "MDM_DATABASE_URL": pg_url, "MDM_SECRET_KEY": TEST_SECRET_KEY}
        for name in ("MDM_CONFIG", "MDM_DISABLED_PLUGINS"):
            env.pop(name, None)
        mdm = Path(sys.executable).with_name("mdm")
        conf = project_dir / "conf" / "mdm.toml"
        try:
            procs = [
                subprocess.Popen(
                    [str(mdm), "-v", "--config", str(conf), "run", "--listen", "127.0.0.1:0"],
                    env=env,
                    cwd=project_dir,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(HOSTS)
            ]
            _wait(lambda: len(_members(host)) == HOSTS, 90, "the three hosts to join")
            joined = datetime.now(UTC)
            # steady state: every account synced several times with the three hosts up
            _wait(
                lambda: all(
                    sum(1 for r in _runs(host) if r["account"] == f"site{i}" and r["status"] == "ok" and r["started_at"] > joined) >= 3 for i in range(ACCOUNTS)
                ),
                60 + 4 * INTERVAL,
                "three syncs of every account",
            )
            victim = procs[0]
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            killed = datetime.now(UTC)
            _wait(
                lambda: all(any(r["account"] == f"site{i}" and r["status"] == "ok" and r["started_at"] > killed for r in _runs(host)) for i in range(ACCOUNTS)),
                2 * INTERVAL + 30,
                "a sync of every account after the kill",
            )
            time.sleep(2 * INTERVAL)  # a few more intervals with two hosts
        finally:
            for proc in procs[1:]:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            logs = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs[1:]] == [0, 0], logs
    assert all("Traceback" not in log for log in logs), logs
    runs = [r for r in _runs(host) if r["trigger"] == "schedule"]
    pids = [proc.pid for proc in procs]

    for i in range(ACCOUNTS):
        mine = sorted((r for r in runs if r["account"] == f"site{i}" and r["status"] in ("ok", "error")), key=lambda r: r["started_at"])
        # never two syncs of one account at a time, and once per interval across the hosts:
        # the next sync starts one interval after the previous one finished, whichever host runs it
        for before, after in pairwise(mine):
            assert after["started_at"] >= before["finished_at"] + timedelta(seconds=INTERVAL - 0.5), (i, before, after)
        # the killed host's accounts were taken over within one interval (plus scheduling latency)
        later = [r for r in mine if r["started_at"] > killed]
        assert later and later[0]["started_at"] <= killed + timedelta(seconds=INTERVAL + SLACK), (i, later[:1], killed)
        assert all(_pid(r["holder"]) != pids[0] for r in later)

    # the work spread over the hosts: in the steady state each ran its share of the accounts
    steady = [r for r in runs if joined + timedelta(seconds=INTERVAL) < r["started_at"] < killed and r["status"] == "ok"]
    per_host = {pid: sum(1 for r in steady if _pid(r["holder"]) == pid) for pid in pids}
    assert all(n >= 2 for n in per_host.values()), per_host
    accounts_per_host = {pid: {r["account"] for r in steady if _pid(r["holder"]) == pid} for pid in pids}
    assert sum(len(a) for a in accounts_per_host.values()) <= ACCOUNTS + HOSTS, accounts_per_host  # each account mostly on one host
    after_kill = [r for r in runs if r["started_at"] > killed + timedelta(seconds=INTERVAL + SLACK)]
    assert {_pid(r["holder"]) for r in after_kill} == set(pids[1:]), "both surviving hosts share the work"
