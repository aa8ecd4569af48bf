"""A sync that fails while a page request is in flight: `mdm vpp sync` exits 1 at once, without
waiting for Apple's answer to that page (up to ``[vpp] request_timeout``). Real processes,
SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from plugins.vpp.simulator.api import Response, endpoint_for
from plugins.vpp.simulator.errors import error_body
from plugins.vpp.sync.run import recent_runs

from . import test_integrity
from .conftest import stage_rows
from .test_integrity import HeldPage, _configure_children
from .test_interrupted_syncs import _mdm

database_url, synced_on = test_integrity.database_url, test_integrity.synced_on  # its fixtures

pytestmark = pytest.mark.slow  # real `mdm` processes

TIMEOUT = 60.0  # the children's request timeout: what a wait for the held page would take
PROMPT = TIMEOUT / 4  # the failed sync must have exited well before


def _assets_fail_once(sim: Any, held: HeldPage) -> None:
    """The asset listing's request fails (Apple's 500, not retried) once ``held`` holds its page:
    the sync fails while that page is in flight."""
    answer = sim.api.handle

    def handle(method: str, path: str, *args: Any) -> Any:
        if endpoint_for(path) == "assets":
            assert held.entered.wait(120), "the held page was never asked for"
            return Response(500, error_body(9603))
        return answer(method, path, *args)

    sim.api.handle = handle


def test_a_sync_that_fails_while_a_page_is_in_flight_exits_at_once(synced_on: Host, small_sim: Any, project_dir: Path, database_url: str) -> None:
    """The assets fail while the assignments' second page is held (the simulator answers it only
    when the test ends): the command says the sync failed and exits 1, long before the request
    timeout (60 s) would have ended the wait for that page."""
    _configure_children(project_dir, request_timeout=TIMEOUT, max_attempts=1)
    page = HeldPage(small_sim, "assignments", after=1)
    _assets_fail_once(small_sim, page)
    child = _mdm(project_dir, database_url, "vpp", "sync", "school", "--full")
    try:
        out, err = child.communicate(timeout=PROMPT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the failed sync had not exited after {PROMPT:.0f}s: it waits for the page in flight") from None
    finally:
        page.release()
    assert child.returncode == 1, err
    assert "school" in err and "9603" in err, err
    assert recent_runs(synced_on)[0]["status"] == "error"
    assert stage_rows(synced_on) == 0  # nothing the failed run staged is left behind
