"""``mdm jobs run mobile_apps.reclaim`` on a host that never runs ``mdm run`` (cron): the
pending reclaim is retried against the simulator, the run recorded where ``mdm run`` plans
from, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from mdm_core.inventory import add_device, remove_device
from mdm_core.models import OutboxEvent, utcnow
from mdm_core.testing import MdmRunner
from plugins.mobile_apps.models import Reclaim
from plugins.mobile_apps.reclaims import list_reclaims
from plugins.vpp.testing import add_simulated_account

from .conftest import BASE_CONFIG, fixed_assets, holders, sync


def _pending_reclaim(
    make_host: Any, simulator: Any, project_dir: Path, database_url: str | None, monkeypatch: Any, capsys: Any
) -> tuple[Any, MdmRunner, str, str]:
    """A synced host whose device left while Apple was unreachable: its reclaim waits (pending).
    Returns the host, an ``mdm`` runner on its database, the asset's adamId and the serial."""
    host = make_host(config=BASE_CONFIG, database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    sync(host)
    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url} if database_url else None)
    adam_id = fixed_assets(simulator)[0]["adamId"]
    serial = sorted(s for s in holders(simulator, adam_id) if s in simulator.state.device_serials())[0]
    add_device(host, serial, "iOS")
    simulator.faults.add("drop", endpoint="assets/revoke")
    remove_device(host, serial)  # Apple unreachable: the reclaim waits for the job (retried in reclaim_retry seconds)
    return host, mdm, adam_id, serial


def test_jobs_run_retries_a_pending_reclaim_and_records_the_run(
    make_host: Any, simulator: Any, project_dir: Path, database_url: str | None, monkeypatch: Any, capsys: Any
) -> None:
    host, mdm, adam_id, serial = _pending_reclaim(make_host, simulator, project_dir, database_url, monkeypatch, capsys)
    assert [r["status"] for r in list_reclaims(host) if r["target"] == serial and r["adam_id"] == adam_id] == ["pending"]
    simulator.faults.clear()
    host.db.run_write(lambda s: s.execute(update(Reclaim).values(next_attempt_at=utcnow() - timedelta(seconds=1))))

    code, out, err = mdm("jobs", "run", "mobile_apps.reclaim", "--json")
    assert code == 0, err
    [row] = json.loads(out)
    assert row["name"] == "mobile_apps.reclaim" and row["status"] == "ok" and row["error"] is None
    assert row["result"]["done"] >= 1 and row["result"]["pending"] == 0
    assert serial not in holders(simulator, adam_id)  # the license went back to the pool at Apple
    assert [r for r in list_reclaims(host) if r["target"] == serial and r["status"] == "pending"] == []
    with host.db.session() as session:
        finished = session.execute(select(OutboxEvent).where(col(OutboxEvent.name) == "mobile_apps_reclaim_finished")).scalars().all()
    assert finished and all(e.delivered_at is not None for e in finished)

    rows = {r["name"]: r for r in json.loads(mdm("jobs", "--json")[1])}
    assert rows["mobile_apps.reclaim"]["last_finished_at"] and rows["mobile_apps.reclaim"]["last_error"] is None
    assert rows["mobile_apps.installs"]["last_finished_at"] is None  # only the job named
    # `mdm run` on any host plans the next retry one interval after this run
    interval = host.build_scheduler(inline=True).jobs["mobile_apps.reclaim"].seconds
    assert host.build_scheduler(inline=True).next_run("mobile_apps.reclaim") > datetime.now(UTC) + timedelta(seconds=interval - 30)


def test_jobs_run_retries_a_pending_reclaim_at_once_and_a_scheduled_run_keeps_its_back_off(
    make_host: Any, simulator: Any, project_dir: Path, database_url: str | None, monkeypatch: Any, capsys: Any
) -> None:
    """Apple back, the admin runs the job: its pending reclaims go back now, not after their
    back-off (it said ``done 0, pending 0`` while `mdm apps reclaims` listed them pending)."""
    from plugins.mobile_apps.reclaims import process

    host, mdm, adam_id, serial = _pending_reclaim(make_host, simulator, project_dir, database_url, monkeypatch, capsys)
    simulator.faults.clear()

    assert process(host)["pending"] == 0  # a scheduled run: not due yet, Apple not asked
    assert serial in holders(simulator, adam_id)
    code, out, err = mdm("jobs", "run", "mobile_apps.reclaim")
    assert code == 0, err
    assert "pending 0" in out and "done 0" not in out, out
    assert serial not in holders(simulator, adam_id)
    assert [r for r in list_reclaims(host) if r["target"] == serial] == []  # none left open
