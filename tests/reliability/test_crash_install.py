"""Killing ``mdm apps install`` at the wrong moment (issue 17 point 7): the install is recorded
before Apple is asked, so a process SIGKILLed after Apple licensed the devices leaves a record,
and the installs job finishes what it started (asks Apple again, queues the commands). And a
database that cannot be written stops the install before Apple is called (point 9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import MdmRunner

from .conftest import count_figure, database_param, make_read_only

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[vpp]
max_attempts = 2
max_total_wait = 2.0

[mobile_apps]
interrupted_after = 0
"""
POINTS = ["intent-recorded", "associate-sent", "event-followed", "mirror-written", "queueing"]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    """SQLite, unless a test asks for ``postgresql`` (indirect parametrization)."""
    return database_param(request, project_dir, getattr(request, "param", "sqlite"))


@pytest.fixture
def installing(make_host: Callable[..., Host], project_dir: Path, database_url: str) -> Any:
    """A synced account on a simulator, two enrolled iPads and an app with licenses left."""
    from mdm_core.inventory import add_device
    from plugins.vpp.accounts import add_account
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=7, assets=6, devices=12, users=4, page_size=50, async_delay=0) as sim:
        host = make_host(config=CONFIG, database_url=database_url)
        add_account(host, "school", str(sim.write_token(project_dir / "t.vpptoken")), service_url=sim.base_url)
        [report] = host.pm.hook.mdm_vpp_sync(host=host, account="school", full=True, trigger="test", wait=0)
        assert report["status"] == "ok"
        adam_id, pricing = next(
            k for k, a in sim.state.assets.items() if a.product_type == "App" and a.device_assignable and a.available > 3 and "iOS" in a.platforms
        )
        held = {k[3] for k in sim.snapshot()["assignments"] if k[0] == adam_id}
        serials = [s for s in sim.state.device_serials() if s not in held][:2]
        for serial in serials:
            add_device(host, serial, "iPadOS")
        from plugins.mobile_apps.catalog import list_apps

        [app] = [str(a["id"]) for a in list_apps(host) if (a["adamId"], a["pricingParam"], a["platform"]) == (adam_id, pricing, "iOS")]
        yield host, sim, app, adam_id, pricing, serials


def _licensed(sim: Any, adam_id: str, pricing: str, serial: str) -> bool:
    return (adam_id, pricing, "serialNumber", serial) in sim.snapshot()["assignments"]


@pytest.mark.slow  # a real install process, killed
@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("point", POINTS)
def test_an_install_killed_at_any_point_is_finished_by_the_installs_job(installing: Any, project_dir: Path, point: str, database_url: str) -> None:
    from mdm_core.inventory import list_commands
    from plugins.mobile_apps.installs.commands import list_installs
    from plugins.mobile_apps.jobs import installs_job

    host, sim, app, adam_id, pricing, serials = installing
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MDM_DATABASE_URL": database_url, "MDM_SECRET_KEY": "test-secret-key"}
    child = subprocess.run(
        [sys.executable, "-m", "tests.reliability.crash_install", str(project_dir / "conf" / "mdm.toml"), point, app, *serials],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, (child.stdout, child.stderr)
    assert "READY" in child.stdout and "DONE" not in child.stdout

    installs = {i["target"]: i for i in list_installs(host)}
    for serial in serials:  # nothing licensed at Apple without a record here
        assert serial in installs, f"{point}: {serial} has no install record"
        if _licensed(sim, adam_id, pricing, serial):
            assert installs[serial]["status"] in ("associating", "pending", "queued")

    counts = installs_job(host)  # interrupted_after = 0: every "associating" install is taken as interrupted
    assert counts["queued"] == len([i for i in installs.values() if i["status"] != "queued"]), (point, counts)  # what it did, said
    for serial in serials:
        assert _licensed(sim, adam_id, pricing, serial), f"{point}: {serial} was not licensed in the end"
        commands = [c for c in list_commands(host, serial) if c["request_type"] == "InstallApplication" and c["status"] == "queued"]
        assert len(commands) == 1, f"{point}: {serial} has {len(commands)} InstallApplication"
    assert {i["target"]: (i["status"], i["error"]) for i in list_installs(host)} == {s: ("queued", None) for s in serials}  # not "asking again"
    count_figure("install_cases")


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_read_only_database_stops_the_install_before_apple_is_asked(
    installing: Any, project_dir: Path, monkeypatch: Any, capsys: Any, database_url: str
) -> None:
    """Every connection the command opens is read-only (SQLite ``PRAGMA query_only``: the same
    "attempt to write a readonly database" as a file mode, which root would ignore; PostgreSQL
    read-only transactions, as on a standby)."""
    host, sim, app, adam_id, pricing, serials = installing
    host.close()
    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url})
    events_before = sim.state._event_counter
    make_read_only(monkeypatch)
    code, out, err = mdm("apps", "install", app, "--device", serials[0])
    assert code == 1
    assert err.startswith(f"mdm: error: cannot record the install: database {database_url.split(':')[0]}") and "nothing was asked of Apple" in err
    assert "is read-only" in err and len(err.strip().splitlines()) == 1 and "SQL" not in err and "INSERT" not in err
    assert sim.state._event_counter == events_before  # no associate reached Apple
    assert not _licensed(sim, adam_id, pricing, serials[0])
    count_figure("install_cases")
