"""What an interrupted `mdm vpp sync` says (a day-two walk): the syncs that finished before the
interruption are shown, and the last line says what was stopped: a sync (rolled back) or a
wait for another process's sync (nothing written). Real processes, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from plugins.vpp.sync.run import recent_runs
from plugins.vpp.testing import add_simulated_account

from . import test_integrity
from .conftest import mirror_dump
from .test_integrity import HeldPage, _account_id, _configure_children

database_url, synced_on = test_integrity.database_url, test_integrity.synced_on  # its fixtures

pytestmark = pytest.mark.slow  # real `mdm` processes


def _mdm(project_dir: Path, database_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MDM_DATABASE_URL": database_url, "MDM_SECRET_KEY": "test-secret-key", "MDM_DISABLED_PLUGINS": "mobile_apps"}
    env.pop("MDM_CONFIG", None)
    mdm = Path(sys.executable).with_name("mdm")
    command = [str(mdm), "--config", str(project_dir / "conf" / "mdm.toml"), *args]
    return subprocess.Popen(command, env=env, cwd=project_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_an_interrupted_sync_of_every_account_still_shows_the_syncs_that_finished(
    synced_on: Host, small_sim: Any, project_dir: Path, database_url: str
) -> None:
    """`mdm vpp sync` interrupted during `school`'s sync printed only "what was being written
    was rolled back", though `district` had synced (its run recorded ok): its report was lost.
    Now its line is printed, then the line of the sync that stopped."""
    from plugins.vpp.simulator import Simulator

    _configure_children(project_dir, request_timeout=120.0)  # the held page is waited for, not retried
    with Simulator(seed=12, assets=2, devices=3, users=2, async_delay=0) as other:
        add_simulated_account(synced_on, other, project_dir, name="district")  # synced first: names in order
        page = HeldPage(small_sim, "assignments", after=1)
        child = _mdm(project_dir, database_url, "vpp", "sync", "--full")
        try:
            assert page.entered.wait(120), "the sync of school never asked for its second page of assignments"
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=30)
        finally:
            page.release()
    assert child.returncode == 130, (out, err)
    assert re.fullmatch(r"district: full sync ok in [0-9.]+s, \d+ pages: .*\n", out), out
    assert err.strip().splitlines()[-1] == (
        "mdm: interrupted (SIGINT): the sync of school stopped: what it was writing was rolled back (`mdm vpp runs` shows it interrupted)"
    ), err
    latest = {run["account"]: run["status"] for run in reversed(recent_runs(synced_on))}
    assert latest == {"district": "ok", "school": "interrupted"}


def test_an_interrupted_wait_for_a_running_sync_says_nothing_was_written(synced_on: Host, project_dir: Path, database_url: str) -> None:
    """`mdm vpp sync school --wait 60` interrupted while another process held the account's
    lock said "what was being written was rolled back": nothing was. It now says it stopped
    while waiting, and writes nothing (no run, the mirror unchanged)."""
    before, runs_before = mirror_dump(synced_on), recent_runs(synced_on)
    other = synced_on.lock(f"vpp.sync.{_account_id(synced_on)}")  # another process's running sync
    other.acquire()
    child = _mdm(project_dir, database_url, "-v", "vpp", "sync", "school", "--wait", "60")
    try:
        assert child.stderr is not None
        for line in child.stderr:  # -v: the line it logs once it waits
            if "account school: waiting up to 60s for the running sync" in line:
                break
        else:
            raise AssertionError("the sync never said it waits")
        child.send_signal(signal.SIGINT)
        out, rest = child.communicate(timeout=30)
    finally:
        other.release()
    assert child.returncode == 130, (out, rest)
    assert rest.strip().splitlines()[-1] == (
        "mdm: interrupted (SIGINT): stopped while waiting for the running sync of school: nothing was written by this command"
    ), rest
    assert recent_runs(synced_on) == runs_before and mirror_dump(synced_on) == before
