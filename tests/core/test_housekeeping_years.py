"""Two years of a small fleet, a week at a time (a controlled clock): devices enrolled and
removed, apps installed, updated and reclaimed, syncs, the host's jobs, and housekeeping. No
table grows without bound: what the second year ends with is about what the first did."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import func, inspect, select, table

from mdm_core.host import Host
from mdm_core.housekeeping import housekeeping
from mdm_core.inventory import add_device, list_commands, remove_device_with_event, set_command_status
from mdm_core.testing import MdmRunner

START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
#: the weeks of the run, the devices of the fleet and the configuration: two years on SQLite
#: with the default retentions; on PostgreSQL (a week costs it several times more) 32 weeks, 4
#: devices (one leaves every week from the fifth) and retentions of 2 to 4 weeks, so that the
#: second half is past every one of them, as the second year is past the defaults
RUNS = {
    "sqlite": (104, 12, "[vpp]\nmax_attempts = 1\n[mobile_apps]\nreclaim_wait = 2.0\n"),
    "postgresql": (
        32,
        4,
        "[core]\nevent_retention_days = 14\ncommand_retention_days = 21\n"
        "[vpp]\nmax_attempts = 1\nsync_run_retention_days = 21\nasset_count_retention_days = 28\n"
        "[mobile_apps]\nreclaim_wait = 2.0\nhistory_retention_days = 28\n[alerts]\nkeep_days = 30\n",
    ),
}


def rows_by_table(host: Host) -> dict[str, int]:
    with host.db.engine.connect() as conn:
        names = [n for n in inspect(conn).get_table_names() if not n.endswith("alembic_version")]
        return {n: conn.execute(select(func.count()).select_from(table(n))).scalar_one() for n in sorted(names)}


def a_week(host: Host, mdm: MdmRunner, sim: Any, week: int, serials: list[str], app: str, adam_id: str) -> None:
    """One device of the fleet leaves (its licenses are reclaimed) and enrols again with the app
    installed; every fourth week a new version is published and installed; the devices
    acknowledge what they were sent; the due jobs run (syncs, alerts, mobile_apps), every eighth
    week with Apple failing (alerts of a failing sync and jobs, resolved the week after), and so
    does housekeeping."""
    serial = serials[week % len(serials)]
    if week >= len(serials):
        remove_device_with_event(host, serial)
        host.deliver_events()
    add_device(host, serial, "iPadOS")
    code, out, err = mdm("apps", "install", app, "--device", serial, "--wait", "5")
    assert code == 0, out + err
    if week % 4 == 0:
        sim.publish_version(adam_id)
        assert mdm("apps", "check-updates")[0] == 0
    for command in list_commands(host):
        if command["status"] == "queued":
            set_command_status(host, command["uuid"], "acknowledged")
    failing = week % 8 == 5  # Apple answers errors all this week's jobs: the sync and jobs failing are alerted, resolved the next week
    if failing:
        sim.faults.add("server_error")
    code, out, err = mdm("jobs", "run", "--due")
    sim.faults.clear()
    assert code == (1 if failing else 0), out + err
    host.deliver_events()
    housekeeping(host)


@pytest.mark.slow  # two years a week at a time: about a minute (PostgreSQL: 32 weeks, as long)
def test_two_years_of_a_small_fleet_leave_no_table_growing(
    make_host: Callable[..., Host], project_dir: Path, monkeypatch: Any, capsys: Any, database_url: str | None
) -> None:
    """Before: every acknowledged InstallApplication an update replaced, every ended install and
    reclaim were kept for ever (core_command, mobile_apps_install and mobile_apps_reclaim about
    doubled in the second year). Apple fails every eighth week, so that alerts are written and
    resolved: without them the alerts' retention was never exercised (alerts_message 0 and 0),
    and with its prune removed this fails naming alerts_message 12 -> 26."""
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.testing import add_simulated_account

    from ..mobile_apps.conftest import app_id, fixed_assets, free_serials

    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=50, async_delay=0, token_expires_at=START + timedelta(days=1000)) as sim:
        weeks, fleet, config = RUNS["postgresql" if database_url else "sqlite"]
        host = make_host(config=config, database_url=database_url)  # today: the clock is controlled from next week
        add_simulated_account(host, sim, project_dir)
        asset = fixed_assets(sim)[0]
        sim.purchase(adam_id=asset["adamId"], count=20)
        mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url} if database_url else None)
        assert mdm("vpp", "sync", "school")[0] == 0
        assert mdm("apps", "refresh-metadata")[0] == 0
        app, serials = app_id(host, asset["adamId"]), free_serials(sim, asset["adamId"])[:fleet]
        counted: dict[int, dict[str, int]] = {}
        for week in range(weeks):
            with freeze_time(START + timedelta(weeks=week), tick=True):
                a_week(host, mdm, sim, week, serials, app, asset["adamId"])
            if week + 1 in (weeks // 2, weeks):
                counted[week + 1] = rows_by_table(host)

    first, second = counted[weeks // 2], counted[weeks]
    assert first["alerts_message"] and second["alerts_message"], "no alert written: the alerts' retention is not exercised"
    grown = {t: (first[t], n) for t, n in second.items() if n > first[t] * 1.25 + 5}
    assert not grown, f"tables that grew in the second year (first year, second): {grown}"
