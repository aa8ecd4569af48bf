"""How a sync's changes read, the same in ``mdm vpp sync`` and on the console."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_changes(counts: Mapping[str, Any]) -> str:
    """A sync run's ``counts`` for people: ``assets +1 ~0 -0; users +2 ~1 -0; licenses +5 -3``
    (added, changed, removed; a license is only ever added or removed, so it has no ``~``),
    licenses last; empty when there are no counts (a failed run)."""
    parts = [f"{name} +{c.get('added', 0)} ~{c.get('changed', 0)} -{c.get('removed', 0)}" for name, c in counts.items() if name != "licenses"]
    licenses = counts.get("licenses")
    if licenses is not None:
        parts.append(f"licenses +{licenses.get('added', 0)} -{licenses.get('removed', 0)}")
    return "; ".join(parts)
