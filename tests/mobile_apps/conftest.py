"""Fixtures of the mobile_apps tests: a host with the installed plugins, an account on the
simulator, and helpers to sync, enrol, run ``mdm`` and find applications."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import EventRecorder, MdmRunner

BASE_CONFIG = """
[vpp]
max_attempts = 1
max_total_wait = 1.0
request_timeout = 5.0

[mobile_apps]
reclaim_wait = 2.0
install_wait = 5.0
"""


@pytest.fixture
def apps_events() -> EventRecorder:
    """The mobile_apps events the test's hosts delivered (heard on their own hooks)."""
    from plugins.mobile_apps.payloads import EVENT_PAYLOADS

    return EventRecorder(events=EVENT_PAYLOADS)


@pytest.fixture
def make_apps_host(make_host: Callable[..., Host], simulator: Any, project_dir: Path, apps_events: EventRecorder) -> Callable[..., Host]:
    """``make_apps_host(extra_config="", sim=simulator)``: a host with account ``school`` on ``sim``
    (and ``apps_events`` subscribed)."""
    from plugins.vpp.testing import add_simulated_account

    def make(extra_config: str = "", sim: Any = None) -> Host:
        host = make_host(config=BASE_CONFIG + extra_config)
        host.pm.register(apps_events)
        add_simulated_account(host, sim or simulator, project_dir)
        return host

    return make


@pytest.fixture
def host(make_apps_host: Callable[..., Host]) -> Host:
    """A host with account ``school`` on the simulator, synced once."""
    host = make_apps_host()
    sync(host)
    return host


@pytest.fixture
def mdm(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``mdm ARGS`` on the test's configuration and database; returns (exit code, stdout, stderr)."""
    return MdmRunner(project_dir, monkeypatch, capsys)


@pytest.fixture
def on_both(
    make_host: Callable[..., Host], simulator: Any, project_dir: Path, apps_events: EventRecorder, database_url: str | None, monkeypatch: Any, capsys: Any
) -> tuple[Host, MdmRunner]:
    """A host with account ``school`` on the simulator, synced once, and ``mdm`` on the same
    database: each test on SQLite and on PostgreSQL."""
    from plugins.vpp.testing import add_simulated_account

    host = make_host(config=BASE_CONFIG, database_url=database_url)
    host.pm.register(apps_events)
    add_simulated_account(host, simulator, project_dir)
    sync(host)
    return host, MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url} if database_url else None)


def sync(host: Host) -> dict[str, Any]:
    """Sync account ``school`` and check that it went well."""
    [report] = host.pm.hook.mdm_vpp_sync(host=host, account="school", full=False, trigger="test", wait=0)
    assert report["status"] == "ok", report
    return report


def fixed_assets(sim: Any) -> list[dict[str, Any]]:
    """The simulator's first assets in seed order: 0 iOS app, 1 iOS+macOS app, 2 iOS app not
    device-assignable, 3 macOS irrevocable app, 4 book, 5 PLUS app sharing asset 0's adamId."""
    return [a.to_json() for a in list(sim.state.assets.values())[:6]]


def app_id(host: Host, adam_id: str, pricing: str = "STDQ", platform: str = "iOS") -> str:
    """The application id of an asset on a platform."""
    from plugins.mobile_apps.catalog import list_apps

    [row] = [r for r in list_apps(host) if r["adamId"] == adam_id and r["pricingParam"] == pricing and r["platform"] == platform]
    return str(row["id"])


def holders(sim: Any, adam_id: str, pricing: str = "STDQ") -> set[str]:
    """Serials and clientUserIds holding a license of the asset in the simulator."""
    return {t[3] for t in sim.snapshot()["assignments"] if t[0] == adam_id and t[1] == pricing}


def free_serials(sim: Any, *adam_ids: str) -> list[str]:
    """Seeded serials holding no license of these assets."""
    held = {t[3] for t in sim.snapshot()["assignments"] if t[0] in adam_ids}
    return [s for s in sim.state.device_serials() if s not in held]


def commands(host: Host, serial: str | None = None) -> list[dict[str, Any]]:
    """Queued InstallApplication commands; none for a device removed with no command left (which
    ``list_commands`` refuses as unknown)."""
    from mdm_core.errors import NotFound
    from mdm_core.inventory import list_commands

    try:
        return [c for c in list_commands(host, serial) if c["request_type"] == "InstallApplication"]
    except NotFound:
        return []


def read_sizes(monkeypatch: pytest.MonkeyPatch, method: str) -> list[int]:
    """The length of each list ``VppPort.<method>`` (``licenses``, ``users``) returns from now on:
    how much of the mirror a step read."""
    from plugins.mobile_apps.vpp_port import VppPort

    sizes: list[int] = []
    real = getattr(VppPort, method)

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = real(self, *args, **kwargs)
        sizes.append(len(found))
        return found

    monkeypatch.setattr(VppPort, method, counted)
    return sizes


def removed_while_licensed(host: Host, sim: Any, monkeypatch: pytest.MonkeyPatch, *, then_apple_delay: float | None = None) -> tuple[dict[str, Any], str]:
    """An asset and a free device of it enrolled on ``host``, which the admin removes while an
    install asks Apple for its license (``VppPort.associate``); ``then_apple_delay``: Apple is
    that slow to carry out what follows (the reclaim). Returns the asset and the serial."""
    from mdm_core.inventory import add_device, remove_device
    from plugins.mobile_apps.vpp_port import VppPort

    asset = fixed_assets(sim)[0]
    [serial] = free_serials(sim, asset["adamId"])[:1]
    add_device(host, serial, "iOS")
    real = VppPort.associate

    def associate(port: Any, *args: Any, **kwargs: Any) -> Any:
        remove_device(host, serial)
        result = real(port, *args, **kwargs)
        if then_apple_delay is not None:
            sim.state.async_delay = then_apple_delay
        return result

    monkeypatch.setattr(VppPort, "associate", associate)
    return asset, serial
