"""Scheduled syncs: one job per account at its interval, following account changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col

from plugins.vpp.accounts import add_account, remove_account, set_account
from plugins.vpp.simulator import Simulator
from plugins.vpp.sync.run import recent_runs
from plugins.vpp.testing import assert_mirror_equals_apple


def _due(scheduler: Any, name: str) -> None:
    scheduler.make_due(name)


def _now() -> datetime:
    return datetime.now(UTC)


def test_jobs_registered_at_account_interval(school: Any) -> None:
    set_account(school, "school", interval=600)
    scheduler = school.build_scheduler(inline=True)
    assert scheduler.jobs["vpp.sync.school"].seconds == 600
    assert scheduler.jobs["vpp.sync.school"].plugin == "vpp"
    assert "vpp.accounts" in scheduler.jobs
    assert scheduler.jobs["vpp.accounts"].seconds == 30
    assert scheduler.next_run("vpp.sync.school") <= _now()  # never synced: at once


def test_scheduled_sync_runs_and_is_recorded(school: Any, simulator: Any) -> None:
    scheduler = school.build_scheduler(inline=True)
    _due(scheduler, "vpp.sync.school")
    scheduler.run_pending()
    runs = recent_runs(school, "school")
    assert len(runs) == 1 and runs[0]["trigger"] == "schedule" and runs[0]["status"] == "ok"
    assert_mirror_equals_apple(school, simulator)
    assert scheduler.jobs["vpp.sync.school"].runs == 1 and scheduler.jobs["vpp.sync.school"].last_error is None
    # back on its interval
    assert scheduler.next_run("vpp.sync.school") > _now() + timedelta(seconds=3500)


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
        assert scheduler.next_run("vpp.sync.school") <= _now() + timedelta(seconds=300)
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
    code, out, err = cli("vpp", "account", "remove", "school", "--yes")
    assert code == 0, err
    _due(scheduler, "vpp.accounts")
    scheduler.run_pending()
    assert not [j for j in scheduler.jobs if j.startswith("vpp.sync.")]


def _set_last_sync(host: Any, name: str, when: datetime) -> None:
    from sqlalchemy import update

    from plugins.vpp.models import VppAccount

    host.db.run_write(lambda s: s.execute(update(VppAccount).where(col(VppAccount.name) == name).values(last_sync_at=when)))


def test_restart_continues_from_the_last_sync_and_mdm_jobs_shows_it(school: Any, cli: Any) -> None:
    """A restarted `mdm run` does not delay the account a full interval; `mdm jobs` agrees."""
    import json

    last = _now() - timedelta(seconds=3000)
    _set_last_sync(school, "school", last)  # synced 50 minutes ago, every hour
    scheduler = school.build_scheduler(inline=True)
    expected = last + timedelta(seconds=3600)
    assert abs((scheduler.next_run("vpp.sync.school") - expected).total_seconds()) < 1
    code, out, err = cli("jobs", "--json")
    assert code == 0, err
    shown = {r["name"]: r for r in json.loads(out)}["vpp.sync.school"]
    assert abs((datetime.fromisoformat(shown["next_run"]) - expected).total_seconds()) < 1
    _set_last_sync(school, "school", _now() - timedelta(seconds=7200))  # overdue: at once
    scheduler = school.build_scheduler(inline=True)
    assert scheduler.next_run("vpp.sync.school") <= _now()


def test_a_manual_sync_meanwhile_moves_the_scheduled_one(school: Any, cli: Any) -> None:
    scheduler = school.build_scheduler(inline=True)  # never synced: due now
    assert cli("vpp", "sync", "school")[0] == 0  # another process syncs first
    scheduler.run_pending()
    assert [r["trigger"] for r in recent_runs(school, "school")] == ["manual"]  # not synced twice
    assert scheduler.next_run("vpp.sync.school") > _now() + timedelta(seconds=3590)


def test_a_sync_by_another_host_while_the_due_job_waits_for_a_worker_is_not_repeated(school: Any, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accounts due together wait for a free worker: if another host syncs the account in
    that wait, the job does nothing when a worker takes it (the start-up race of hosts that
    all planned a never-synced account)."""
    from mdm_core.scheduler import HostScheduler

    scheduler = school.build_scheduler(inline=True)  # never synced: due now
    run = HostScheduler._run

    def after_a_wait_for_a_worker(self: HostScheduler, state: Any, *args: Any) -> None:
        if state.name == "vpp.sync.school":
            assert cli("vpp", "sync", "school")[0] == 0  # another host, meanwhile
        run(self, state, *args)

    monkeypatch.setattr(HostScheduler, "_run", after_a_wait_for_a_worker)
    scheduler.run_pending()
    assert [r["trigger"] for r in recent_runs(school, "school")] == ["manual"]  # not synced twice
    assert scheduler.jobs["vpp.sync.school"].last_error is None


def test_a_job_made_due_on_purpose_syncs_even_just_after_a_sync(school: Any, cli: Any) -> None:
    scheduler = school.build_scheduler(inline=True)
    assert cli("vpp", "sync", "school")[0] == 0
    _due(scheduler, "vpp.sync.school")  # "run now": not a plan that another sync answered already
    scheduler.run_pending()
    assert [r["trigger"] for r in recent_runs(school, "school")] == ["schedule", "manual"]


def test_an_account_that_cannot_be_scheduled_does_not_stop_the_others(school: Any, simulator: Any, project_dir: Path, cli: Any, caplog: Any) -> None:
    """An interval stored before it was validated: that account is logged and skipped."""
    import json
    import logging

    from sqlalchemy import update

    from plugins.vpp.models import VppAccount

    with Simulator(seed=31, assets=3, devices=3, users=3, async_delay=0) as other:
        add_account(school, "college", str(other.write_token(project_dir / "college.vpptoken")), service_url=other.base_url, interval=900)
        school.db.run_write(lambda s: s.execute(update(VppAccount).where(col(VppAccount.name) == "school").values(interval_seconds=1_000_000_000_000)))
        with caplog.at_level(logging.ERROR):
            scheduler = school.build_scheduler(inline=True)
        assert "vpp.sync.college" in scheduler.jobs and "vpp.sync.school" not in scheduler.jobs
        assert any("school is not scheduled" in r.getMessage() and "--interval" in r.getMessage() for r in caplog.records)
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            _due(scheduler, "vpp.accounts")
            scheduler.run_pending()  # the refresh every 30 s does not log it again
        assert not [r for r in caplog.records if "not scheduled" in r.getMessage()]
        code, out, err = cli("jobs", "--json")
        assert code == 0, err
        assert "vpp.sync.college" in {r["name"] for r in json.loads(out)}


def test_numbers_are_checked_where_they_enter(school: Any, cli: Any) -> None:
    cli("vpp", "runs")  # (plugins used for the first time here create their tables)
    for args in (
        ("vpp", "account", "set", "school", "--interval", "1000000000000"),
        ("vpp", "account", "set", "school", "--interval", "0"),
        ("vpp", "sync", "school", "--wait", "nan"),
        ("vpp", "sync", "school", "--wait", "-1"),
        ("vpp", "sync", "school", "--wait", "inf"),
        ("vpp", "runs", "--limit", "0"),
    ):
        code, out, err = cli(*args)
        assert code == 2, (args, out, err)
        assert len(err.strip().splitlines()) == 1 and args[-2] in err, err
    import pytest

    from mdm_core.errors import UsageError

    with pytest.raises(UsageError, match="wait must be a finite number"):
        school.pm.hook.mdm_vpp_sync(host=school, account="school", full=False, trigger="manual", wait=float("nan"))
    with pytest.raises(UsageError, match="not valid"):
        set_account(school, "school", interval=10**12)


def test_a_failed_manual_sync_is_printed_once(school: Any, simulator: Any, cli: Any) -> None:
    """The report line says it; no log line repeats it (a scheduled sync's failure is logged)."""
    simulator.expire_token()
    cli("vpp", "runs")  # (plugins used for the first time here create their tables)
    code, out, err = cli("vpp", "sync", "school")
    assert code == 1 and err.startswith("school: error: ") and "expired" in err
    assert out == "" and len(err.splitlines()) == 1
    code, out, err = cli("-q", "vpp", "sync", "school")  # -q silences successes, never failures
    assert code == 1 and err.startswith("school: ") and out == ""
