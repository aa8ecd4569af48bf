"""The README's example plugin, enabled from the configuration, hears license changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from mdm_core.host import Host


def test_license_audit_records_portal_changes_once(make_host: Callable[..., Host], simulator: Any, project_dir: Path) -> None:
    from plugins.vpp.accounts import add_account
    from plugins.vpp.sync.run import sync_account

    host = make_host(config='[plugins]\nenabled = ["plugins.examples.license_audit"]\n\n[license_audit]\npath = "var/audit.jsonl"\n')
    assert any(p.name == "license_audit" and p.source == "conf" for p in host.plugins)
    simulator.write_token(project_dir / "t.vpptoken")
    add_account(host, "school", str(project_dir / "t.vpptoken"), service_url=simulator.base_url)
    assert sync_account(host, "school")["status"] == "ok"
    audit = project_dir / "var" / "audit.jsonl"
    first = [json.loads(line) for line in audit.read_text().splitlines()]
    assert first and {line["change"] for line in first} == {"associated"}
    assert sum(len(l["devices"]) + len(l["users"]) for l in first) == len(simulator.snapshot()["assignments"])

    adam_id, pricing, kind, target = next(tuple(a) for a in simulator.snapshot()["assignments"] if a[2] == "serialNumber")
    simulator.remove_in_portal(adam_id, pricing, serial_number=target)
    assert sync_account(host, "school")["status"] == "ok"
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    removed = [l for l in lines[len(first):] if l["change"] == "disassociated"]
    assert removed == [{**removed[0], "adamId": adam_id, "devices": [target], "users": [], "source": "sync"}]

    # Delivering the same event again (as after a crash) writes nothing new.
    from mdm_core.events import Event

    event = Event(name="vpp_licenses_disassociated", payload={"account": "school", "adamId": adam_id, "pricingParam": pricing, "source": "sync",
                  "serialNumbers": [target], "clientUserIds": []}, id=removed[0]["event_id"])
    host.events.dispatch(event)
    assert len(audit.read_text().splitlines()) == len(lines)
