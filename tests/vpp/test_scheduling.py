"""Scheduled syncs: one job per account at its interval, following account changes."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from plugins.vpp.accounts import add_account, remove_account, set_account
from plugins.vpp.sync.run import recent_runs
from plugins.vpp.simulator import Simulator

from plugins.vpp.testing import assert_mirror_equals_apple


def _due(scheduler: Any, name: str) -> None:
    scheduler.jobs[name].job.next_run = datetime.now() - timedelta(seconds=1)


def test_jobs_registered_at_account_interval(school: Any) -> None:
    set_account(school, "school", interval=600)
    scheduler = school.build_scheduler(inline=True)
    assert scheduler.jobs["vpp.sync.school"].seconds == 600
    assert scheduler.jobs["vpp.sync.school"].plugin == "vpp"
    assert "vpp.accounts" in scheduler.jobs
    assert scheduler.jobs["vpp.accounts"].seconds == 30
    nxt = scheduler.next_run("vpp.sync.school")
    assert timedelta(seconds=590) < nxt - datetime.now() <= timedelta(seconds=600)


def test_scheduled_sync_runs_and_is_recorded(school: Any, simulator: Any) -> None:
    scheduler = school.build_scheduler(inline=True)
    _due(scheduler, "vpp.sync.school")
    scheduler.run_pending()
    runs = recent_runs(school, "school")
    assert len(runs) == 1 and runs[0]["trigger"] == "schedule" and runs[0]["status"] == "ok"
    assert_mirror_equals_apple(school, simulator)
    assert scheduler.jobs["vpp.sync.school"].runs == 1 and scheduler.jobs["vpp.sync.school"].last_error is None
    # back on its interval
    assert scheduler.next_run("vpp.sync.school") > datetime.now() + timedelta(seconds=3000)


def test_refresh_follows_account_changes(school: Any, simulator: Any, project_dir: Path) -> None:
    scheduler = school.build_scheduler(inline=True)
    assert scheduler.jobs["vpp.sync.school"].seconds == 3600
    set_account(school, "school", interval=300)
    with Simulator(seed=31, assets=3, devices=3, users=3, async_delay=0) as other:
        add_account(school, "college", str(other.write_token(project_dir / "college.vpptoken")), service_url=other.base_url, interval=900)
        _due(scheduler, "vpp.accounts")
        scheduler.run_pending()
        assert scheduler.jobs["vpp.sync.school"].seconds == 300
        assert scheduler.jobs["vpp.sync.college"].seconds == 900
        assert scheduler.next_run("vpp.sync.school") <= datetime.now() + timedelta(seconds=300)
        remove_account(school, "college")
        _due(scheduler, "vpp.accounts")
        scheduler.run_pending()
    assert "vpp.sync.college" not in scheduler.jobs
    assert "vpp.sync.school" in scheduler.jobs


def test_scheduled_sync_failure_is_recorded_then_paused(school: Any, simulator: Any, request_counter: Any) -> None:

    from mdm_core.models import JobRun

    scheduler = school.build_scheduler(inline=True)
    simulator.expire_token()
    _due(scheduler, "vpp.sync.school")
    scheduler.run_pending()
    state = scheduler.jobs["vpp.sync.school"]
    assert state.failures == 1 and "expired" in (state.last_error or "")
    seen = request_counter.seen
    for _ in range(3):  # paused: the job runs but does not call Apple, and is not a failure
        _due(scheduler, "vpp.sync.school")
        scheduler.run_pending()
    assert request_counter.seen == seen
    assert state.failures == 1 and state.runs == 4
    with school.db.session() as session:
        row = session.get(JobRun, "vpp.sync.school")
    assert row is not None and row.runs == 4 and row.failures == 1
    assert [r["status"] for r in recent_runs(school, "school")] == ["error"]


def test_cli_set_interval_picked_up_without_restart(school: Any, cli: Any) -> None:
    scheduler = school.build_scheduler(inline=True)
    code, out, err = cli("vpp", "account", "set", "school", "--interval", "120")
    assert code == 0, err
    _due(scheduler, "vpp.accounts")
    scheduler.run_pending()
    assert scheduler.jobs["vpp.sync.school"].seconds == 120
    code, out, err = cli("vpp", "account", "remove", "school")
    assert code == 0, err
    _due(scheduler, "vpp.accounts")
    scheduler.run_pending()
    assert not [j for j in scheduler.jobs if j.startswith("vpp.sync.")]
