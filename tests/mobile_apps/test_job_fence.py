"""A job whose cross-host lock was lost mid-run (it was paused past the lock's expiry and another
host took it) stops before its next item: the items left stay pending, untouched at Apple, for
the lock's next holder, and the turn is a failed one in ``mdm jobs``; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from mdm_core.host import Host
from mdm_core.inventory import add_device
from mdm_core.testing import MdmRunner
from plugins.mobile_apps.models import Install, Reclaim
from plugins.mobile_apps.reclaims import create_reclaims
from plugins.mobile_apps.vpp_port import VppPort
from plugins.vpp.testing import add_simulated_account
from tests.job_fence import LOST_END, lose_lock_after_first, lost_message

from .conftest import BASE_CONFIG, fixed_assets, free_serials, holders, sync


def _setup(make_host: Any, simulator: Any, project_dir: Path, database_url: str | None, monkeypatch: Any, capsys: Any) -> tuple[Host, MdmRunner]:
    host = make_host(config=BASE_CONFIG, database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    sync(host)
    return host, MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url} if database_url else None)


def _assert_failed_turn(mdm: Callable[..., tuple[int, str, str]], job: str) -> None:
    code, _, out = mdm("jobs", "run", job)  # the failure is said on stderr
    lost = lost_message(job)
    assert code == 1 and out.startswith(f"{job}: failed in ") and lost in out, out
    assert out.rstrip().endswith(LOST_END) and out.count("\n") == 1
    rows = {r["name"]: r for r in json.loads(mdm("jobs", "--json")[1])}
    assert rows[job]["last_error"].startswith(lost) and out.rstrip().endswith(f"s: {rows[job]['last_error']}")


def test_a_reclaim_job_that_lost_its_lock_stops_before_its_next_reclaim(
    make_host: Any, simulator: Any, project_dir: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    host, mdm = _setup(make_host, simulator, project_dir, database_url, monkeypatch, capsys)
    licenses = []
    for asset in fixed_assets(simulator)[:2]:  # two assets: two calls to Apple, one per asset
        held = [lic for lic in VppPort(host).licenses(adam_id=asset["adamId"]) if lic.get("serialNumber") and lic["pricingParam"] == "STDQ"]
        licenses.append(held[0])
    assert len(create_reclaims(host, licenses, "manual")) == 2
    taken = lose_lock_after_first(host.db, monkeypatch, VppPort, "disassociate", "mobile_apps.reclaim")

    _assert_failed_turn(mdm, "mobile_apps.reclaim")
    assert simulator.requests["assets/disassociate"] == 1  # Apple was not asked about the second asset
    with host.db.session() as session:
        rows = {r.adam_id: r for r in session.execute(select(Reclaim)).scalars()}
    [left] = [lic for lic in licenses if rows[lic["adamId"]].status == "pending"]
    assert rows[left["adamId"]].attempts == 0 and left["serialNumber"] in holders(simulator, left["adamId"])
    assert [r.status for r in rows.values()].count("done") == 1

    taken[0].release()  # that host's run ended: the next holder reclaims what was left
    assert mdm("jobs", "run", "mobile_apps.reclaim")[1].startswith("mobile_apps.reclaim: ok in ")
    assert left["serialNumber"] not in holders(simulator, left["adamId"])


def test_an_installs_job_that_lost_its_lock_stops_before_its_next_install(
    make_host: Any, simulator: Any, project_dir: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    host, mdm = _setup(make_host, simulator, project_dir, database_url, monkeypatch, capsys)
    wanted = {}
    for asset in fixed_assets(simulator)[:2]:  # two assets: two calls to Apple, one per asset
        serial = free_serials(simulator, asset["adamId"])[0]
        add_device(host, serial, "iOS")
        wanted[asset["adamId"]] = serial
    host.db.run_write(
        lambda s: s.add_all(
            Install(account="school", adam_id=a, pricing_param="STDQ", kind="device", target=t, source="request", status="pending") for a, t in wanted.items()
        )
    )
    taken = lose_lock_after_first(host.db, monkeypatch, VppPort, "associate", "mobile_apps.installs")

    _assert_failed_turn(mdm, "mobile_apps.installs")
    assert simulator.requests["assets/associate"] == 1  # Apple was not asked about the second asset
    with host.db.session() as session:
        left = list(session.execute(select(Install).where(col(Install.status) == "pending")).scalars())
    assert len(left) == 1 and left[0].attempts == 0 and left[0].error is None
    assert left[0].target not in holders(simulator, left[0].adam_id)  # no license given at Apple

    taken[0].release()
    assert mdm("jobs", "run", "mobile_apps.installs")[1].startswith("mobile_apps.installs: ok in ")
    assert left[0].target in holders(simulator, left[0].adam_id)
