"""A sync running in another process (a shell's ``mdm vpp sync``) shows its progress on this
process's console, with the age of the figures; a run that ended, or whose process died, shows
none. SQLite and PostgreSQL, as several hosts share them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from mdm_core.host import Host
from mdm_core.testing import TEST_SECRET_KEY

from .conftest import sign_in, token_for

pytestmark = pytest.mark.slow  # a real `mdm vpp sync` process, seconds each

CONFIG = "[vpp]\nmax_attempts = 1\nrequest_timeout = 120.0\n"  # a slowed answer is waited for

SHOWN = re.compile(
    r'id="run-progress">assets: \d+ pages?, \d+ rows; users: \d+ pages?, \d+ rows[^<]*\(\d+ s\)<span id="run-progress-age">, as of \d+ s ago</span>'
)


@pytest.fixture
def console(make_host: Callable[..., Host], database_url: str, simulator: Any, project_dir: Path) -> Iterator[tuple[Host, Any]]:
    """A host of this process with the account ``school`` (not synced yet), and its console signed in."""
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app
    from plugins.vpp.testing import add_simulated_account

    from .conftest import PASSWORD

    host = make_host(config=CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD)
    add_simulated_account(host, simulator, project_dir)
    with TestClient(create_app(host)) as client:
        assert sign_in(client).status_code == 303
        yield host, client


def _sync_elsewhere(project_dir: Path, database_url: str) -> subprocess.Popen[str]:
    """``mdm vpp sync school`` in a process of its own, on the test's database."""
    env = {**os.environ, "MDM_DATABASE_URL": database_url, "MDM_SECRET_KEY": TEST_SECRET_KEY}
    for name in ("MDM_CONFIG", "MDM_DISABLED_PLUGINS"):
        env.pop(name, None)
    args = [sys.executable, "-m", "mdm_core.cli", "--config", str(project_dir / "conf" / "mdm.toml"), "vpp", "sync", "school", "--no-progress"]
    return subprocess.Popen(args, env=env, cwd=project_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _until(condition: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return found


def _stored_progress(host: Host) -> Any:
    from plugins.vpp.models import VppSyncRun

    with host.db.session() as session:
        return session.execute(select(VppSyncRun.id, VppSyncRun.status, VppSyncRun.progress)).one_or_none()


def _run_page_with_progress(client: Any, sync: subprocess.Popen[str]) -> tuple[int, str]:
    """The run of the other process's sync and its page, once the page shows the sync's progress."""

    def shown() -> tuple[int, str] | None:
        assert sync.poll() is None, sync.communicate()
        match = re.search(r'href="/vpp/runs/(\d+)"', client.get("/vpp/accounts/school/runs").text)
        if match is None:
            return None
        page = client.get(f"/vpp/runs/{match.group(1)}").text
        return (int(match.group(1)), page) if SHOWN.search(page) else None

    found: tuple[int, str] = _until(shown, "the run page to show the other process's progress")
    return found


def test_a_sync_in_another_process_shows_its_progress_here_then_none_once_done(
    console: tuple[Host, Any], database_url: str, simulator: Any, project_dir: Path
) -> None:
    host, client = console
    simulator.faults.add("slow", endpoint="assignments", seconds=4, count=1)  # it stalls after the assets and users
    sync = _sync_elsewhere(project_dir, database_url)
    try:
        run_id, page = _run_page_with_progress(client, sync)
        assert 'id="run-status">running' in page
        assert 'id="run-pages">— (see Read so far)<' in page  # it said 'Pages 0' beside the pages read so far
        api = client.get(f"/api/v1/vpp/runs/{run_id}", headers=token_for(host, "viewer")).json()
        assert api["status"] == "running" and api["progress"]["account"] == "school" and api["progress"]["phase"] == "reading", api
        assert api["progress"]["datasets"]["users"]["rows"] > 0 and api["progress"]["age_s"] >= 0, api
        out, err = sync.communicate(timeout=60)
        assert sync.returncode == 0 and "school: full sync ok" in out, err
    finally:
        if sync.poll() is None:
            sync.kill()
            sync.communicate()
    page = client.get(f"/vpp/runs/{run_id}").text
    assert 'id="run-status">ok<' in page and "run-progress" not in page
    assert re.search(r'id="run-pages">[1-9]\d*<', page)
    assert client.get(f"/api/v1/vpp/runs/{run_id}", headers=token_for(host, "admin")).json()["progress"] is None
    assert _stored_progress(host) == (run_id, "ok", None)  # cleared at the end


def test_the_last_figures_of_a_sync_whose_process_died_are_not_shown_as_live(
    console: tuple[Host, Any], database_url: str, simulator: Any, project_dir: Path
) -> None:
    host, client = console
    simulator.faults.add("slow", endpoint="assignments", seconds=60, count=1)
    sync = _sync_elsewhere(project_dir, database_url)
    try:
        run_id, _ = _run_page_with_progress(client, sync)
    finally:
        sync.send_signal(signal.SIGKILL)
        sync.communicate()
    stored = _stored_progress(host)
    assert stored[:2] == (run_id, "running") and stored[2]["datasets"]["users"]["rows"] > 0  # left behind by the dead process
    page = client.get(f"/vpp/runs/{run_id}").text
    assert 'id="run-status">interrupted<' in page and "run-progress" not in page
    api = client.get("/api/v1/vpp/runs", headers=token_for(host, "viewer")).json()["items"]
    assert [(r["id"], r["status"], r["progress"]) for r in api] == [(run_id, "interrupted", None)]
