"""A subscriber whose deliveries fail for good keeps their events in the outbox until they are
delivered again (housekeeping cannot delete them): it is said in `mdm status` and alerted once,
naming the plugin, its last error and the fix, and said to work again once they are delivered.
It was told only in the log and `mdm events failures`, while the outbox grew. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from mdm_core import hookimpl
from mdm_core.host import Host
from mdm_core.housekeeping import housekeeping
from mdm_core.inventory import add_device
from mdm_core.models import utcnow
from mdm_core.status import collect_status
from plugins.alerts.delivery import check

from .conftest import FAST_VPP, alerts, titles


class Audit:
    """A plugin whose deliveries fail while ``broken`` (its store unreachable after an upgrade, say)."""

    def __init__(self) -> None:
        self.broken = True
        self.seen: list[str] = []

    @hookimpl
    def mdm_device_enrolled(self, host: Host, event: Any) -> None:
        if self.broken:
            raise RuntimeError("audit store unreachable:\nconnection refused")
        self.seen.append(event.payload["serial_number"])


def failed_for_good(host: Host, serials: list[str]) -> None:
    """Enrol ``serials`` (their events fail at Audit), then run ``mdm run``'s retries until none is left."""
    for serial in serials:
        add_device(host, serial, "iOS")
    host.deliver_events()
    now = utcnow()
    for _ in range(8):  # every back-off step: 1 minute ... 6 hours, then `failed`
        now += timedelta(hours=7)
        host.events.retry_due(now)


def warnings(host: Host) -> list[str]:
    return [w for w in collect_status(host)["warnings"] if w.startswith("subscriber ")]


def test_a_subscriber_failing_for_good_is_alerted_once_and_in_status_then_works_again(make_host: Callable[..., Host], database_url: str | None) -> None:
    host = make_host(config=FAST_VPP + "\n[alerts]\n", database_url=database_url)
    audit = Audit()
    host.pm.register(audit, name="audit")
    add_device(host, "S0", "iOS")
    host.deliver_events()
    assert check(host) == {"queued": 0} and warnings(host) == []  # a first try failed: retried, nothing to tell yet
    failed_for_good(host, ["S1", "S2"])
    assert {f["status"] for f in host.events.failures()} == {"failed"}

    assert check(host) == {"queued": 1}
    [alert] = alerts(host)
    assert alert["title"] == "Events are not delivered to plugin 'audit'" and alert["severity"] == "critical"
    assert "3 event deliveries to audit failed after every retry" in alert["text"]
    assert "the last error: RuntimeError: audit store unreachable: connection refused." in alert["text"]  # on one line
    assert "stays in the database until it is delivered" in alert["text"]
    assert "`mdm events redeliver --all`" in alert["action"] and "`mdm events failures --failed`" in alert["action"]
    [line] = warnings(host)
    assert line.startswith("subscriber audit: 3 event deliveries failed for good since ") and "`mdm events redeliver --all`" in line
    assert "(last error: RuntimeError: audit store unreachable: connection refused)" in line

    failed_for_good(host, ["S3"])  # still failing, one more: told once, `mdm status` says how many now
    assert check(host) == {"queued": 0}
    assert warnings(host)[0].startswith("subscriber audit: 4 event deliveries")
    assert housekeeping(host, utcnow() + timedelta(days=400))["core_event"] == 0  # their events are kept: why it is told

    audit.broken = False
    for failure in host.events.failures():
        assert host.events.redeliver(failure["id"]) is None
    assert sorted(audit.seen) == ["S0", "S1", "S2", "S3"]
    assert check(host) == {"queued": 1} and warnings(host) == []
    assert titles(host)[1:] == ["Events are delivered to plugin 'audit' again"] and alerts(host)[1]["severity"] == "resolved"
    assert check(host) == {"queued": 0}
