"""mobile_apps' check per license event (does an install of its asset wait?), read once for a run
of events of a delivery batch: each event still gets the answer as it stands after what
mobile_apps wrote for the events before it."""

from __future__ import annotations

from typing import Any

import pytest

from mdm_core import hookimpl
from mdm_core.host import Host
from plugins.mobile_apps.installs import pending, waiting
from plugins.mobile_apps.models import Install


def _install(adam_id: str) -> Install:
    return Install(account="school", adam_id=adam_id, pricing_param="STDQ", kind="device", target=f"OTHER{adam_id}", source="request", status="pending")


def test_each_license_event_of_a_batch_is_answered_after_the_writes_before_it(make_host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from plugins.mobile_apps import plugin as mobile_apps
    from plugins.vpp import plugin as vpp

    class Probe:
        """Writes a pending install of asset 4 once mobile_apps has handled the event of asset 2
        (as mobile_apps' own work for an event would, in the same thread)."""

        @hookimpl
        def mdm_event(self, host: Host, event: Any) -> None:
            if event.name == "vpp_licenses_associated" and event.payload["adamId"] == "2":
                host.db.run_write(lambda s: s.add(_install("4")))

    answers: list[tuple[str, bool]] = []
    reads: list[int] = []
    real_waits, real_statuses = waiting.install_waits, waiting._statuses

    def spy_waits(host: Host, status: str, event: Any) -> bool:
        answer = real_waits(host, status, event)
        answers.append((event.payload["adamId"], answer))
        return answer

    def spy_statuses(host: Host, keys: Any) -> Any:
        reads.append(len(keys))
        return real_statuses(host, keys)

    monkeypatch.setattr(pending, "install_waits", spy_waits)
    monkeypatch.setattr(waiting, "_statuses", spy_statuses)
    host = make_host(plugins=[vpp, mobile_apps, Probe()])
    host.db.run_write(lambda s: s.add(_install("2")))
    licenses = [
        ("vpp_licenses_associated", {
            "account": "school", "adamId": str(n), "pricingParam": "STDQ", "source": "sync",
            "serialNumbers": [f"S{n}"], "clientUserIds": [], "enrolledSerialNumbers": [], "mdmUserIds": [],
        })
        for n in range(1, 6)
    ]  # fmt: skip
    host.db.run_write(lambda s: host.events.record_many(s, licenses))
    assert host.events.deliver_pending() == 5
    assert answers == [("1", False), ("2", True), ("3", False), ("4", True), ("5", False)]
    assert reads == [5, 3, 1]  # the batch's events from the first, then after each answer that led to a write
