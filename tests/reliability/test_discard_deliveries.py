"""Failed deliveries can be dropped (``mdm events discard``), and those of a plugin no longer
installed are named by ``mdm status`` and pruned by ``core.housekeeping`` after
``[core] event_retention_days``: they waited for it for ever, keeping their events (and the
database growing), and only ``mdm events redeliver`` (which retries, and fails again) touched them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mdm_core import hookimpl
from mdm_core.host import Host
from mdm_core.housekeeping import housekeeping
from mdm_core.inventory import add_device
from mdm_core.models import utcnow
from mdm_core.testing import MdmRunner

from .conftest import database_param


class Failing:
    """A subscriber of device enrolments that always fails."""

    def __init__(self, name: str) -> None:
        self.PLUGIN_NAME = name

    @hookimpl
    def mdm_device_enrolled(self, host: Any, event: Any) -> None:
        raise RuntimeError(f"{self.PLUGIN_NAME} is broken")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    return database_param(request, project_dir)


def _failing_host(make_host: Callable[..., Host], database_url: str, *names: str) -> Host:
    host = make_host(plugins=[], database_url=database_url)
    for name in names:
        host.pm.register(Failing(name), name=name)
    return host


def _plugins(host: Host) -> list[str]:
    return [f["plugin"] for f in host.events.failures()]


def test_discard_drops_failed_deliveries_and_status_names_an_uninstalled_plugin(
    make_host: Callable[..., Host], database_url: str, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = _failing_host(make_host, database_url, "ghost", "flaky")
    add_device(host, "C02GHOST0001", "macOS")
    add_device(host, "C02GHOST0002", "macOS")
    assert sorted(_plugins(host)) == ["flaky", "flaky", "ghost", "ghost"]
    host.close()  # ghost is uninstalled: flaky stays (its failures are for `redeliver`)
    host = _failing_host(make_host, database_url, "flaky")
    import mdm_core.cli as cli

    monkeypatch.setattr(cli, "create_host", lambda *a, **k: host)
    monkeypatch.setattr(host, "close", lambda: None)
    mdm = MdmRunner(project_dir, monkeypatch, capsys)
    code, out, _ = mdm("status", "--json")
    warnings = json.loads(out)["warnings"]
    [ghost] = [w for w in warnings if "ghost" in w]
    assert ghost.startswith("subscriber ghost is not installed: 2 event deliveries wait for it since ")
    assert "`mdm events discard --plugin ghost --yes`" in ghost and not any("flaky" in w for w in warnings)

    assert mdm("events", "discard")[:2] == (2, "")  # neither --plugin nor --all
    code, out, err = mdm("events", "discard", "--plugin", "nope")
    assert (code, out) == (2, ""), err
    assert "no plugin named 'nope' has failed deliveries (plugins with some: flaky, ghost" in err
    code, out, err = mdm("events", "discard", "--plugin", "ghost")  # no terminal, no --yes: refused, nothing dropped
    assert code == 2 and "this would discard 2 failed deliveries (ghost 2) without delivering them: add --yes" in err
    assert mdm("events", "discard", "--plugin", "ghost", "--dry-run")[:2] == (0, "would discard 2 failed deliveries (ghost 2) without delivering them\n")
    assert sorted(_plugins(host)) == ["flaky", "flaky", "ghost", "ghost"]
    code, out, err = mdm("events", "discard", "--plugin", "ghost", "--yes")
    assert (code, out) == (0, "discarded 2 failed deliveries (ghost 2); their events go with core.housekeeping\n"), err
    assert _plugins(host) == ["flaky", "flaky"]
    assert not any("ghost" in w for w in json.loads(mdm("status", "--json")[1])["warnings"])
    code, out, err = mdm("events", "discard", "--plugin", "ghost", "--yes")  # gone, and not installed: names nothing
    assert (code, out) == (2, "") and "no plugin named 'ghost' has failed deliveries (plugins with some: flaky;" in err
    assert mdm("events", "discard", "--all", "--yes")[:2] == (0, "discarded 2 failed deliveries (flaky 2); their events go with core.housekeeping\n")
    assert host.events.failures() == []
    assert mdm("events", "discard", "--plugin", "flaky", "--yes")[:2] == (0, "no failed deliveries of flaky: nothing to discard\n")  # installed
    assert mdm("events", "discard", "--all", "--yes")[:2] == (0, "no failed deliveries: nothing to discard\n")


def test_housekeeping_prunes_an_uninstalled_plugins_deliveries_after_the_retention(make_host: Callable[..., Host], database_url: str) -> None:
    host = _failing_host(make_host, database_url, "ghost", "flaky")
    add_device(host, "C02GHOST0003", "macOS")
    host.close()
    host = _failing_host(make_host, database_url, "flaky")
    retention = timedelta(days=host.config.core.event_retention_days)
    assert housekeeping(host, now=utcnow() + retention - timedelta(hours=1))["core_subscriber_failure"] == 0  # not yet
    assert sorted(_plugins(host)) == ["flaky", "ghost"]
    assert housekeeping(host, now=utcnow() + retention + timedelta(hours=1))["core_subscriber_failure"] == 1
    assert _plugins(host) == ["flaky"]  # an installed plugin's stay, for `mdm events redeliver`
