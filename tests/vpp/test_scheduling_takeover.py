"""Several hosts share the accounts: when an account's owner disappears, the surviving host syncs
it when ``mdm jobs`` says, not at the later plan it made while the owner was alive (on a clock
the test controls)."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import update
from sqlmodel import col

from mdm_core.cluster import HOST_TTL, Cluster
from mdm_core.host import Host
from mdm_core.testing import EventRecorder, MdmRunner
from plugins.vpp.models import VppAccount
from plugins.vpp.sync.run import recent_runs
from tests.conftest import PG_ADMIN_URL, PG_SKIP_REASON

from .conftest import FAST_CONFIG

INTERVAL = 120  # the non-owner waits a grace of 60 s past the due time


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "postgres" and not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    return request.getfixturevalue("pg_url") if request.param == "postgres" else None


@pytest.fixture
def host(make_host: Callable[..., Host], recorder: EventRecorder, db_url: str | None) -> Host:
    """The surviving host, on SQLite and on PostgreSQL."""
    import plugins.vpp.plugin

    return make_host(plugins=[plugins.vpp.plugin, recorder], config=FAST_CONFIG, database_url=db_url)


@pytest.fixture
def cli(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_url: str | None) -> MdmRunner:
    """``mdm`` on the host's database."""
    environ = {"MDM_DISABLED_PLUGINS": "mobile_apps"} | ({"MDM_DATABASE_URL": db_url} if db_url else {})
    return MdmRunner(project_dir, monkeypatch, capsys, environ=environ)


def _join_as(cluster: Cluster, holder: str, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """``cluster`` joined under a chosen id (the ids' order decides the owners)."""
    with monkeypatch.context() as m:
        m.setattr("mdm_core.cluster.new_holder", lambda: holder)
        cluster.join()
    return cluster


def _killed(cluster: Cluster) -> None:
    """The host stops as if SIGKILLed: no more refreshes, no leaving (its row stays until it
    expires); on PostgreSQL its database session, and the advisory lock in it, ends."""
    cluster._stop.set()
    assert cluster._thread is not None
    cluster._thread.join()
    assert cluster.lock is not None
    cluster.lock._drop_session_lock()


class _Clock:
    """The frozen clock of the test's hosts, released while ``mdm jobs`` runs (the command loads
    its plugins afresh, which a frozen ``datetime`` breaks)."""

    def __init__(self, at: datetime):
        self.at = at
        self._frozen: Any = freeze_time(at)
        self._frozen.start()

    def move_to(self, at: datetime) -> None:
        self.stop()
        self.at = at
        self._frozen = freeze_time(at)
        self._frozen.start()

    def stop(self) -> None:
        if self._frozen is not None:
            self._frozen.stop()
            self._frozen = None

    def next_run_shown(self, cli: Callable[..., tuple[int, str, str]]) -> datetime:
        """``mdm jobs --json``'s next run of the account's sync, on the real clock: still before
        the account falls due, so it shows the plan itself."""
        self.stop()
        try:
            code, out, err = cli("jobs", "--json")
        finally:
            self.move_to(self.at)
        assert code == 0, err
        return datetime.fromisoformat({r["name"]: r for r in json.loads(out)}["vpp.sync.school"]["next_run"])


def test_the_survivor_syncs_the_dead_owners_account_when_mdm_jobs_says(school: Any, cli: Any, monkeypatch: pytest.MonkeyPatch, db_url: str | None) -> None:
    """The walk's case: the owner of `school` SIGKILLed; `mdm jobs` said the due time, the
    survivor ran it half an interval later (the plan it made as a non-owner)."""
    start = datetime.now(UTC).replace(microsecond=0)
    school.db.run_write(lambda s: s.execute(update(VppAccount).where(col(VppAccount.name) == "school").values(last_sync_at=start, interval_seconds=INTERVAL)))
    due = start + timedelta(seconds=INTERVAL)
    clock = _Clock(start + timedelta(seconds=10))
    try:
        owner = _join_as(Cluster(school.db), "host-a:1:00000000", monkeypatch)  # sorts first: owns the one account
        survivor = _join_as(school.cluster, "host-b:2:00000000", monkeypatch)
        try:
            scheduler = school.build_scheduler(inline=True)
            scheduler.run_pending()
            assert scheduler.next_run("vpp.sync.school") == due + timedelta(seconds=INTERVAL / 2)  # waits for its owner
            assert clock.next_run_shown(cli) == due  # the owner's plan

            _killed(owner)
            gone = 1 if db_url else HOST_TTL + 1  # known at once on PostgreSQL (its session ended), once its row expired on SQLite
            clock.move_to(clock.at + timedelta(seconds=gone))
            scheduler.run_pending()
            assert scheduler.next_run("vpp.sync.school") == due == clock.next_run_shown(cli)

            clock.move_to(due - timedelta(seconds=1))
            scheduler.run_pending()
            assert recent_runs(school, "school") == []
            clock.move_to(due)
            scheduler.run_pending()
            assert [r["trigger"] for r in recent_runs(school, "school")] == ["schedule"]
            assert scheduler.next_run("vpp.sync.school") == clock.next_run_shown(cli) > due
        finally:
            owner.leave()
            survivor.leave()
    finally:
        clock.stop()


def test_a_host_given_an_account_by_a_removal_syncs_it_when_due(host: Host, monkeypatch: pytest.MonkeyPatch, project_dir: Path) -> None:
    """The walk's case: the accounts are shared over the hosts in their names' order, so removing
    one moved the accounts after it to other owners; their new owner kept the plan it made as a
    non-owner and synced them half an interval late (a gap of 15 s in a 10 s interval)."""
    from plugins.vpp.accounts import remove_account
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.testing import add_simulated_account

    with ExitStack() as stack:
        for i, name in enumerate(["alpha", "beta", "gamma"]):
            sim = stack.enter_context(Simulator(seed=20 + i, assets=2, devices=3, users=2, page_size=5, async_delay=0))
            add_simulated_account(host, sim, project_dir, name=name, interval=INTERVAL)
        start = datetime.now(UTC).replace(microsecond=0)
        host.db.run_write(lambda s: s.execute(update(VppAccount).values(last_sync_at=start)))
        due = start + timedelta(seconds=INTERVAL)
        clock = _Clock(start + timedelta(seconds=10))
        try:
            other = _join_as(Cluster(host.db), "host-a:1:00000000", monkeypatch)  # owns alpha and gamma, then alpha
            me = _join_as(host.cluster, "host-b:2:00000000", monkeypatch)  # owns beta, then gamma
            try:
                scheduler = host.build_scheduler(inline=True)
                scheduler.run_pending()
                assert scheduler.next_run("vpp.sync.gamma") == due + timedelta(seconds=INTERVAL / 2)  # waits for its owner
                remove_account(host, "beta")
                scheduler.run_now("vpp.accounts")  # its next refresh of the accounts ([vpp] accounts_refresh)
                assert "vpp.sync.beta" not in scheduler.jobs
                assert scheduler.next_run("vpp.sync.gamma") == due
                clock.move_to(due)
                scheduler.run_pending()
                assert [r["trigger"] for r in recent_runs(host, "gamma")] == ["schedule"]
            finally:
                other.leave()
                me.leave()
        finally:
            clock.stop()


def test_mdm_jobs_says_which_host_runs_a_job_now(school: Any, cli: Any) -> None:
    """With several hosts, `mdm jobs` showed when each job last finished and its result, and
    nothing of who runs what: a sync running on another host looked like one not running."""
    from mdm_core.locks import DbLock
    from mdm_core.output import format_time

    lock = DbLock(school.db, "job.vpp.sync.school", ttl=300, holder="host-b.example:4242:abcdef01")
    lock.acquire()
    try:
        code, out, err = cli("jobs", "--json")
        assert code == 0, err
        running = {r["name"]: r["running"] for r in json.loads(out)}
        assert running["vpp.sync.school"]["by"] == "process 4242 on host-b.example"
        assert running["vpp.sync.school"]["holder"] == "host-b.example:4242:abcdef01"
        assert [name for name, by in running.items() if by] == ["vpp.sync.school"]
        since = datetime.fromisoformat(running["vpp.sync.school"]["since"])
        code, out, err = cli("jobs")
        [line] = [line for line in out.splitlines() if line.startswith("vpp.sync.school ")]
        assert f" process 4242 on host-b.example since {format_time(since)} " in line
    finally:
        lock.release()
    code, out, err = cli("jobs", "--json")
    assert {r["name"]: r["running"] for r in json.loads(out)}["vpp.sync.school"] is None
