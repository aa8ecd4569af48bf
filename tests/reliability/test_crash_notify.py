"""A crash between recording a notification and acting on it loses nothing: the process that
answered Apple dies (SIGKILL) as it starts acting; the notification is in the database, and the
next ``vpp.notifications`` job (any process) acts on it once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from mdm_core.host import Host
from mdm_core.testing import EventRecorder
from plugins.vpp.sync.run import sync_account
from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple, mirror_state

from .conftest import RELIABLE_CONFIG, count_figure

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a real process, killed
def test_a_notification_recorded_then_the_process_killed_is_acted_on_by_the_next_job(
    make_host: Callable[..., Host], recorder: EventRecorder, small_sim: Any, project_dir: Path
) -> None:
    import plugins.vpp.plugin
    from mdm_core.web.settings import WebSettings
    from plugins.vpp.accounts import set_account
    from plugins.vpp.models import VppNotification
    from plugins.vpp.notifications.act import notifications_job

    host = make_host(plugins=[plugins.vpp.plugin, recorder], config=RELIABLE_CONFIG)
    add_simulated_account(host, small_sim, project_dir)
    assert sync_account(host, "school")["status"] == "ok"
    small_sim.notifier.retry_delays = (0.05, 0.05)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_notify", str(project_dir / "conf" / "mdm.toml"), f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line[:1] == ["URL"], (line, child.stderr.read() if child.poll() is not None else "")
        host.config.section("web", WebSettings).public_url = line[1]  # Apple reaches the child
        set_account(host, "school", notifications=True)  # its test notification needs no act: the child lives on
        recorder.clear()
        key = small_sim.purchase(count=3)
        assert child.wait(timeout=30) == -signal.SIGKILL  # it died acting on the ASSET_COUNT it had recorded
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout and child.stdout.close()
        child.stderr and child.stderr.close()
    with host.db.session() as session:
        [row] = session.execute(select(VppNotification).where(col(VppNotification.notification_type) == "ASSET_COUNT")).scalars().all()
    assert row.status == "received" and key not in mirror_state(host)["assets"]  # recorded, not acted on
    small_sim.wait_notifications(30)
    notifications_job(host)  # the next round, in another process: nothing was lost
    assert key in mirror_state(host)["assets"]
    assert [e["assets"][0]["adamId"] for e in recorder.named("vpp_assets_added")] == [key[0]]
    notifications_job(host)  # and it is not acted on twice
    assert len(recorder.named("vpp_assets_added")) == 1
    assert_mirror_equals_apple(host, small_sim)
    count_figure("notification_crashes")
