"""A subscriber that fails or is disabled does not lose its event (issue 17 point 17, issue 13
point 14): ``mdm run`` delivers it again to that subscriber alone, with back-off, a bounded
number of times, then leaves it for ``mdm events redeliver``; ``mdm events failures`` lists
them. A device removed while the VPP plugin is disabled is reclaimed once it is enabled again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mdm_core import hookimpl
from mdm_core.events import RETRY_DELAYS
from mdm_core.host import Host
from mdm_core.inventory import add_device, remove_device_with_event
from mdm_core.models import utcnow
from mdm_core.testing import EventRecorder, MdmRunner

from .conftest import count_figure, database_param


class Flaky:
    """A subscriber of device enrolments that fails its first ``failures`` deliveries."""

    PLUGIN_NAME = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.heard: list[str] = []

    @hookimpl
    def mdm_device_enrolled(self, host: Any, event: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"flaky failure {self.calls}")
        self.heard.append(event.payload["serial_number"])


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    return database_param(request, project_dir)


def _host(make_host: Callable[..., Host], *plugins: Any, database_url: str | None = None) -> Host:
    host = make_host(plugins=[], database_url=database_url)
    for plugin in plugins:
        host.pm.register(plugin, name=getattr(plugin, "PLUGIN_NAME", None))
    return host


def test_a_failing_subscriber_gets_the_event_again_with_back_off(make_host: Callable[..., Host], database_url: str) -> None:
    flaky, others = Flaky(failures=2), EventRecorder(events=["device_enrolled"])
    host = _host(make_host, flaky, others, database_url=database_url)
    add_device(host, "C02RETRY0001", "macOS")
    (failure,) = host.events.failures()
    assert (failure["plugin"], failure["hook"], failure["status"], failure["attempts"]) == ("flaky", "mdm_device_enrolled", "retrying", 1)
    first = failure["next_attempt_at"]
    assert host.events.retry_due(now=first - timedelta(seconds=1)) == (0, 0)  # not before its time
    assert host.events.retry_due(now=first) == (0, 1)
    (failure,) = host.events.failures()
    assert failure["attempts"] == 2 and failure["next_attempt_at"] - first >= RETRY_DELAYS[1] - timedelta(seconds=5)  # backs off
    assert host.events.retry_due(now=failure["next_attempt_at"]) == (1, 0)
    assert host.events.failures() == [] and flaky.heard == ["C02RETRY0001"]
    assert len(others.named("device_enrolled")) == 1  # the others heard it once
    count_figure("failed_deliveries")


def test_retries_are_bounded_then_left_for_redeliver(
    make_host: Callable[..., Host], project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flaky = Flaky(failures=10**6)
    host = _host(make_host, flaky)
    add_device(host, "C02RETRY0002", "macOS")
    now = utcnow()
    for _ in range(len(RETRY_DELAYS) + 3):
        now += timedelta(days=1)
        host.events.retry_due(now=now)
    (failure,) = host.events.failures()
    assert failure["status"] == "failed" and failure["next_attempt_at"] is None
    assert failure["attempts"] == len(RETRY_DELAYS) + 1 == flaky.calls  # the first delivery and each retry, no more
    assert "flaky failure" in failure["error"]

    import mdm_core.cli as cli

    monkeypatch.setattr(cli, "create_host", lambda *a, **k: host)  # the CLI on this host and its subscriber
    monkeypatch.setattr(host, "close", lambda: None)
    mdm = MdmRunner(project_dir, monkeypatch, capsys)
    code, out, err = mdm("events", "failures", "--json")
    assert code == 0 and [(r["id"], r["status"]) for r in json.loads(out)] == [(failure["id"], "failed")]
    code, out, err = mdm("events", "failures")
    assert "flaky" in out and "mdm_device_enrolled" in out and "failed" in out
    code, out, err = mdm("events", "redeliver", str(failure["id"]))
    assert code == 1 and f"{failure['id']}: failed again: RuntimeError: flaky failure" in out
    flaky.failures = 0  # the plugin is fixed
    code, out, err = mdm("events", "redeliver", "--all")
    assert code == 0 and f"{failure['id']}: delivered" in out, out + err
    assert flaky.heard == ["C02RETRY0002"]
    assert mdm("events", "failures", "--json")[1].strip() == "[]"
    code, out, err = mdm("events", "redeliver", "12345")
    assert code == 2 and "no failed delivery 12345" in err
    count_figure("failed_deliveries")


def test_a_device_removed_while_vpp_is_disabled_is_reclaimed_once_it_is_enabled(make_host: Callable[..., Host], simulator: Any, project_dir: Path) -> None:
    from mdm_core.inventory.cli import _removal_lines
    from plugins.mobile_apps.reclaims import list_reclaims
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    host = make_host()
    add_simulated_account(host, simulator, project_dir)
    assert sync_account(host, "school")["status"] == "ok"
    serial = next(a[3] for a in simulator.snapshot()["assignments"] if a[2] == "serialNumber" and a[3] in simulator.state.device_serials())
    add_device(host, serial, "iOS")
    held = [a for a in simulator.snapshot()["assignments"] if a[3] == serial]
    assert held

    without_vpp = make_host(environ={"MDM_DISABLED_PLUGINS": "vpp"})
    _, event_id = remove_device_with_event(without_vpp, serial)
    said = _removal_lines(without_vpp, "device", serial, event_id)  # what `mdm devices remove` adds to its line
    assert said == ": VPP licenses: reclaimed once the VPP plugin is enabled again (see `mdm plugins`)"
    (failure,) = [f for f in without_vpp.events.failures() if f["plugin"] == "mobile_apps"]
    assert failure["status"] == "waiting" and "the VPP plugin is not loaded" in failure["error"]
    assert [a for a in simulator.snapshot()["assignments"] if a[3] == serial] == held  # nothing reclaimed yet
    without_vpp.start()  # a start without VPP: still waiting, nothing lost
    assert [f["status"] for f in without_vpp.events.failures() if f["plugin"] == "mobile_apps"] == ["waiting"]

    with_vpp = make_host()  # `mdm run` after VPP is enabled again
    with_vpp.start()
    with_vpp.shutdown()
    assert with_vpp.events.failures() == []
    revocable = [a for a in held if simulator.state.assets[(a[0], a[1])].revocable]
    assert revocable and not [a for a in simulator.snapshot()["assignments"] if a[3] == serial and a in revocable]
    assert {r["status"] for r in list_reclaims(with_vpp, everything=True) if r["target"] == serial} <= {"done", "irrevocable"}
    count_figure("failed_deliveries")


def test_failed_deliveries_list_pages_and_prints_json_lines(
    make_host: Callable[..., Host], project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mdm events failures`` is a list command like the others (issue 15): --jsonl, --limit and
    --offset page through the same order (oldest first) as the whole --json list."""
    host = _host(make_host, Flaky(failures=10**6))
    for i in range(5):
        add_device(host, f"C02PAGE{i:05d}", "macOS")
    import mdm_core.cli as cli

    monkeypatch.setattr(cli, "create_host", lambda *a, **k: host)
    monkeypatch.setattr(host, "close", lambda: None)
    mdm = MdmRunner(project_dir, monkeypatch, capsys)
    code, out, _ = mdm("events", "failures", "--json")
    whole = json.loads(out)
    assert code == 0 and len(whole) == 5 and [r["id"] for r in whole] == sorted(r["id"] for r in whole)
    code, out, _ = mdm("events", "failures", "--jsonl")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == whole
    code, out, _ = mdm("events", "failures", "--json", "--offset", "1", "--limit", "3")
    assert code == 0 and json.loads(out) == whole[1:4]
    code, out, _ = mdm("events", "failures", "--limit", "2")
    assert code == 0 and len(out.splitlines()) == 3 and "C02PAGE" not in out and "retrying" in out
    code, out, _ = mdm("events", "failures", "--failed", "--jsonl")
    assert code == 0 and out == ""
