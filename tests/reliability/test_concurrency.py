"""Concurrency: two processes (or threads) never sync one account at the same time; a manual
sync during a running one says "already running" (exit 1) or waits with --wait; SQLite under
concurrent writers never shows "database is locked" to the user."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from mdm_core import inventory
from mdm_core.host import Host
from plugins.vpp.sync.run import sync_account

from .conftest import apple_changes, assert_converged, count_figure, runs
from .test_crash import _spawn

pytestmark = pytest.mark.slow  # processes and threads racing for one account, with slowed answers


def _no_overlap(host: Host) -> None:
    done = sorted((r["started_at"], r["finished_at"]) for r in runs(host) if r["status"] == "ok")
    for (_, end), (start, _) in pairwise(done):
        assert end <= start, "two syncs of one account overlapped"


def test_two_processes_at_the_same_instant(synced: Host, small_sim: Any, project_dir: Path) -> None:
    apple_changes(small_sim)
    small_sim.faults.add("slow", endpoint="assignments", seconds=0.15)
    children = [_spawn(project_dir, "none") for _ in range(2)]
    outs = [c.communicate(timeout=60)[0] for c in children]
    assert all(c.returncode == 0 for c in children), outs
    statuses = sorted(line.split(" ", 1)[1] for out in outs for line in out.splitlines() if line.startswith("DONE"))
    assert statuses in (["already running", "ok"], ["ok", "ok"]), statuses
    _no_overlap(synced)
    small_sim.faults.clear()
    assert_converged(synced, small_sim)
    count_figure("concurrency_cases")


@pytest.mark.parametrize("wait", [0.0, 15.0])
def test_two_threads_at_the_same_instant(synced: Host, small_sim: Any, wait: float) -> None:
    apple_changes(small_sim)
    small_sim.faults.add("slow", endpoint="assignments", seconds=0.1)
    barrier = threading.Barrier(2)

    def run() -> Mapping[str, Any]:
        barrier.wait()
        return sync_account(synced, "school", wait=wait)

    with ThreadPoolExecutor(2) as pool:
        reports = [f.result() for f in [pool.submit(run), pool.submit(run)]]
    statuses = sorted(r["status"] for r in reports)
    assert statuses == (["already running", "ok"] if wait == 0 else ["ok", "ok"]), reports
    _no_overlap(synced)
    small_sim.faults.clear()
    assert_converged(synced, small_sim)
    count_figure("concurrency_cases")


def test_manual_cli_sync_during_a_running_one(
    synced: Host, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mdm_core.cli import main
    from plugins.vpp.sync import run as sync_run

    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    monkeypatch.setenv("MDM_SECRET_KEY", "test-secret-key")
    conf = str(project_dir / "conf" / "mdm.toml")
    # the running sync holds its lock until the first command has answered: a 1-second sync
    # could end while that command was still creating its plugins' tables (a loaded machine)
    answered, apply_read = threading.Event(), sync_run.apply_read

    def held(*args: Any, **kwargs: Any) -> Any:
        answered.wait(60)
        return apply_read(*args, **kwargs)

    monkeypatch.setattr(sync_run, "apply_read", held)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(sync_account, synced, "school", full=True)
        deadline = time.monotonic() + 60  # a bound for a loaded machine: the loop ends once the sync shows as running
        while not any(r["status"] == "running" for r in runs(synced)) and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            code = main(["--config", conf, "vpp", "sync", "school"])
        finally:
            answered.set()
        out, err = capsys.readouterr()
        assert code == 1 and out == "" and "already running" in err, (out, err)
        code = main(["--config", conf, "vpp", "sync", "school", "--wait", "20"])
        out, err = capsys.readouterr()
        assert code == 0 and "sync ok" in out, (out, err)
        assert running.result()["status"] == "ok"
    _no_overlap(synced)
    count_figure("concurrency_cases")


def test_concurrent_writers_never_see_database_is_locked(synced: Host, small_sim: Any, project_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Imports, adds and syncs at once, from threads and from another process."""
    errors: list[BaseException] = []
    small_sim.faults.add("slow", seconds=0.01)

    def devices(worker: int) -> None:
        for i in range(15):
            inventory.add_devices(synced, [inventory.DeviceRow(f"W{worker}D{i:03d}X", "iOS", None, None, None)])

    def users(worker: int) -> None:
        for i in range(15):
            inventory.add_user(synced, f"w{worker}-user-{i}", email=f"w{worker}u{i}@example.org")

    def imports(worker: int) -> None:
        path = project_dir / f"devices-{worker}.csv"
        path.write_text("serial_number,platform,udid,model,user\n" + "".join(f"I{worker}D{i:04d}X,iPadOS,,,\n" for i in range(200)))
        for _ in range(3):
            inventory.import_devices(synced, path)

    def syncs(worker: int) -> None:
        for _ in range(3):
            apple_changes(small_sim, seed=worker)
            report = sync_account(synced, "school", wait=30)
            assert report["status"] == "ok", (report["error_type"], report["error"])

    def guarded(work: Any, worker: int) -> None:
        try:
            work(worker)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    child = _spawn(project_dir, "none")
    threads = [threading.Thread(target=guarded, args=(w, n)) for n, w in enumerate([devices, devices, users, imports, syncs])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    out, err = child.communicate(timeout=60)
    assert errors == [], errors
    assert "locked" not in out + err and child.returncode == 0, (out, err)
    assert "database is locked" not in caplog.text
    assert len(inventory.list_devices(synced)) >= 2 * 15 + 200
    small_sim.faults.clear()
    assert sync_account(synced, "school", wait=30)["status"] == "ok"
    assert_converged(synced, small_sim)
    count_figure("concurrency_cases")


def test_two_mdm_run_processes_never_sync_one_account_together(synced: Host, small_sim: Any, project_dir: Path) -> None:
    """Two real schedulers (`mdm run`) on one database, the account due every second."""
    import os
    import signal
    import subprocess
    import sys

    from sqlalchemy import update

    from plugins.vpp.models import VppAccount

    from .conftest import RELIABLE_CONFIG

    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text(RELIABLE_CONFIG + "min_interval = 1\n")
    synced.db.run_write(lambda s: s.execute(update(VppAccount).values(interval_seconds=1)))
    small_sim.faults.add("slow", endpoint="assignments", seconds=0.2)  # each sync takes a while
    env = {
        **os.environ,
        "MDM_DATABASE_URL": f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}",
        "MDM_SECRET_KEY": "test-secret-key",
        "MDM_DISABLED_PLUGINS": "mobile_apps,alerts",
    }
    env.pop("MDM_CONFIG", None)
    mdm = Path(sys.executable).with_name("mdm")
    before = len(runs(synced))
    hosts = [
        subprocess.Popen(
            [str(mdm), "-v", "--config", str(conf), "run", "--no-web"], env=env, cwd=project_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:  # until both have run a while and several scheduled syncs are done (start-up takes seconds on a busy machine)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len([r for r in runs(synced)[before:] if r["trigger"] == "schedule"]) < 4:
            time.sleep(0.25)
    finally:
        for proc in hosts:
            proc.send_signal(signal.SIGTERM)
        logs = [proc.communicate(timeout=30)[1] for proc in hosts]
    assert [proc.returncode for proc in hosts] == [0, 0], logs
    scheduled = [r for r in runs(synced)[before:] if r["trigger"] == "schedule"]
    assert len(scheduled) >= 3 and {r["status"] for r in scheduled} == {"ok"}, scheduled
    _no_overlap(synced)
    assert all("Traceback" not in log and "database is locked" not in log for log in logs)
    small_sim.faults.clear()
    assert_converged(synced, small_sim)
    count_figure("concurrency_cases")
