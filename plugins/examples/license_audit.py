"""An example plugin that reacts to new and removed VPP licenses and token trouble.

Enable it in ``conf/mdm.toml``::

    [plugins]
    enabled = ["plugins.examples.license_audit"]

    [license_audit]
    path = "var/license-audit.jsonl"

It appends one JSON line per license change to ``path``; each line carries the event id, so
replaying an event after a crash is recognisable (the plugin skips ids it has written).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mdm_core import hookimpl

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.host import Host

PLUGIN_NAME = "license_audit"
__version__ = "1.0"


@dataclass
class AuditSettings:
    """``[license_audit]``."""

    path: str = "var/license-audit.jsonl"


@hookimpl
def mdm_config_sections() -> dict[str, type]:
    """Declare ``[license_audit]``."""
    return {"license_audit": AuditSettings}


def _append(host: Host, event: Event, change: str) -> None:
    path = host.config.resolve_path(host.config.section("license_audit", AuditSettings).path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and f'"event_id": "{event.id}"' in path.read_text(encoding="utf-8"):
        return  # already written: events can be delivered again after a crash
    p: dict[str, Any] = event.payload
    line = {
        "event_id": event.id,
        "change": change,
        "account": p["account"],
        "adamId": p["adamId"],
        "source": p["source"],
        "devices": p["serialNumbers"],
        "users": p["clientUserIds"],
    }
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


@hookimpl(optionalhook=True)
def mdm_vpp_licenses_associated(host: Host, event: Event) -> None:
    """Record licenses that appeared (a sync found them, or this host associated them)."""
    _append(host, event, "associated")


@hookimpl(optionalhook=True)
def mdm_vpp_licenses_disassociated(host: Host, event: Event) -> None:
    """Record licenses that went away."""
    _append(host, event, "disassociated")
