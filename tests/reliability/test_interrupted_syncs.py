"""What an interrupted `mdm vpp sync` says (a day-two walk): the syncs that finished before the
interruption are shown, and the last line says what was stopped: a sync (rolled back) or a
wait for another process's sync (nothing written). Real processes, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from plugins.vpp.simulator.api import endpoint_for
from plugins.vpp.sync.run import recent_runs
from plugins.vpp.testing import add_simulated_account

from . import test_integrity
from .conftest import mirror_dump
from .test_integrity import HeldPage, _account_id, _configure_children

database_url, synced_on = test_integrity.database_url, test_integrity.synced_on  # its fixtures

pytestmark = pytest.mark.slow  # real `mdm` processes


def _mdm(project_dir: Path, database_url: str, *args: str) -> subprocess.Popen[str]:
    """A real ``mdm`` process; one still running when the test ends (hung, or the test failed
    before it ended) is killed and waited for then (``tests.children``)."""
    env = {**os.environ, "MDM_DATABASE_URL": database_url, "MDM_SECRET_KEY": "test-secret-key", "MDM_DISABLED_PLUGINS": "mobile_apps"}
    env.pop("MDM_CONFIG", None)
    mdm = Path(sys.executable).with_name("mdm")
    command = [str(mdm), "--config", str(project_dir / "conf" / "mdm.toml"), *args]
    return subprocess.Popen(command, env=env, cwd=project_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


STOPPED = "the sync of school stopped: what it was writing was rolled back (`mdm vpp runs` shows it interrupted)"


def _assert_interrupted(child: subprocess.Popen[str], err: str, stopped: str) -> None:
    """The child exited with 130, its last line saying what the interruption stopped."""
    assert child.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"mdm: interrupted (SIGINT): {stopped}", err


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
    _assert_interrupted(child, err, STOPPED)
    assert re.fullmatch(r"district: full sync ok in [0-9.]+s, \d+ pages: .*\n", out), out
    latest = {run["account"]: run["status"] for run in reversed(recent_runs(synced_on))}
    assert latest == {"district": "ok", "school": "interrupted"}


def _threads(pid: int) -> list[int]:
    """The ids of the process's threads other than its main thread."""
    return sorted(int(task.name) for task in Path(f"/proc/{pid}/task").iterdir() if int(task.name) != pid)


def _last_page_answered(sim: Any, endpoint: str) -> threading.Event:
    """Set once the simulator has answered the last page of ``endpoint``'s listing."""
    answered, handle = threading.Event(), sim.api.handle

    def watched(method: str, path: str, *args: Any) -> Any:
        response = handle(method, path, *args)
        if endpoint_for(path) == endpoint and isinstance(response.payload, dict) and "nextPageIndex" not in response.payload:
            answered.set()
        return response

    sim.api.handle = watched
    return answered


def _main_thread_waits(pid: int) -> None:
    """Until the process's main thread sleeps (state S: here, waiting for the reading threads)."""
    while Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "S":
        pass


def test_an_interrupt_another_thread_received_stops_the_sync_at_once(synced_on: Host, small_sim: Any, project_dir: Path, database_url: str) -> None:
    """The kernel hands a process's SIGINT to any of its threads that does not block it (a
    loaded machine gave a sync's to one of its reading threads). Python runs the handler in the
    main thread only, and the main thread, waiting for the thread that reads the assignments,
    itself waiting for Apple's answer to a page, noticed nothing until that answer came: Ctrl-C
    did nothing for as long as Apple took (up to the request timeout, here 120 s). Now the main
    thread is woken: the sync stops at once, rolled back, its run interrupted, exit 130."""
    _configure_children(project_dir, request_timeout=120.0)  # the held page is waited for, not retried
    page = HeldPage(small_sim, "assignments", after=1)
    assets_read = _last_page_answered(small_sim, "assets")  # read by the main thread, which then waits for the assignments
    child = _mdm(project_dir, database_url, "vpp", "sync", "school", "--full")
    try:
        assert page.entered.wait(120), "the sync of school never asked for its second page of assignments"
        assert assets_read.wait(120), "the sync of school never read its last page of assets"
        _main_thread_waits(child.pid)
        os.kill(_threads(child.pid)[-1], signal.SIGINT)  # to that thread: the kernel gives it to no other
        _, err = child.communicate(timeout=30)  # (a hang detector: the page is held 120 s)
    finally:
        page.release()
    _assert_interrupted(child, err, STOPPED)
    assert recent_runs(synced_on)[0]["status"] == "interrupted"


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
        _, rest = child.communicate(timeout=30)
    finally:
        other.release()
    _assert_interrupted(child, rest, "stopped while waiting for the running sync of school: nothing was written by this command")
    assert recent_runs(synced_on) == runs_before and mirror_dump(synced_on) == before
