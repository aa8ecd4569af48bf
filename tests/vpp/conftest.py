"""Fixtures for the VPP integration tests: a host with an event recorder, the CLI, and the
mirror-versus-Apple comparison (``plugins.vpp.testing``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col

from mdm_core.host import Host
from mdm_core.testing import EventRecorder, MdmRunner
from plugins.vpp.testing import SkippedWaits, skip_client_waits

#: Fast failure: one retry at most, no long back-off (faults use retry_after=0).
FAST_CONFIG = """
[vpp]
max_attempts = 2
max_total_wait = 2
request_timeout = 10
"""


@pytest.fixture
def recorder() -> EventRecorder:
    """Every VPP event delivered by the test's hosts, heard on its own hook as a plugin would."""
    from plugins.vpp.payloads import EVENT_PAYLOADS

    return EventRecorder(events=EVENT_PAYLOADS)


@pytest.fixture
def host(make_host: Callable[..., Host], recorder: EventRecorder) -> Host:
    """A host with the VPP plugin, the recorder and fast retries (no account yet)."""
    import plugins.vpp.plugin

    return make_host(plugins=[plugins.vpp.plugin, recorder], config=FAST_CONFIG)


@pytest.fixture
def token_file(simulator: Any, project_dir: Path) -> Path:
    return simulator.write_token(project_dir / "school.vpptoken")


@pytest.fixture
def school(host: Host, simulator: Any, token_file: Path, recorder: EventRecorder) -> Host:
    """``host`` with the account ``school`` on ``simulator`` (added, not synced)."""
    from plugins.vpp.accounts import add_account

    add_account(host, "school", str(token_file), service_url=simulator.base_url)
    recorder.clear()
    return host


@pytest.fixture
def synced(school: Host, recorder: EventRecorder) -> Host:
    """``school`` after a first (full) sync; the recorder is emptied."""
    from plugins.vpp.sync.run import sync_account

    report = sync_account(school, "school")
    assert report["status"] == "ok", (report.get("error_type"), report.get("error"))
    recorder.clear()
    return school


@pytest.fixture
def skipped_waits(monkeypatch: pytest.MonkeyPatch) -> SkippedWaits:
    """The waits of every VPP client the test's hosts make from now on (Retry-After, back-off,
    the rounds of an event) recorded in ``.waits`` and skipped: for tests of what a retry does,
    not of how long it waits (``plugins.vpp.testing.skip_client_waits``)."""
    return skip_client_waits(monkeypatch)


@pytest.fixture
def cli(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``cli("vpp", "sync")`` runs ``mdm`` on the fixture's config and database: (exit, out, err)."""
    conf = project_dir / "conf" / "mdm.toml"
    # only this plugin: the VPP tests do not depend on mobile_apps
    return MdmRunner(project_dir, monkeypatch, capsys, config=None if conf.exists() else FAST_CONFIG, environ={"MDM_DISABLED_PLUGINS": "mobile_apps"})


# ---------------------------------------------------------------------- helpers


def account_row(host: Host, name: str = "school") -> Any:
    from sqlalchemy import select

    from plugins.vpp.models import VppAccount

    with host.db.session() as session:
        return session.execute(select(VppAccount).where(col(VppAccount.name) == name)).scalar_one()


def inner_token(sim: Any) -> str:
    """The ``token`` field inside the sToken."""
    return json.loads(base64.b64decode(sim.token))["token"]


@pytest.fixture
def request_counter(simulator: Any) -> Iterator[Any]:
    """A harmless fault that matches every request: ``.seen`` counts the requests."""
    fault = simulator.faults.add("slow", seconds=0)
    yield fault
