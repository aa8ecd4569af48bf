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


def format_sync_counts(c: Mapping[str, Any]) -> str:
    """A successful sync's ``counts`` as ``mdm vpp sync`` (and ``mdm jobs run vpp.sync.NAME``)
    says them: the changes, users retired, licenses of assets Apple does not list, and assets
    whose ``assignedCount`` differs from their licenses."""
    lic = c.get("licenses", {})
    changes = format_changes({**c, "licenses": lic})
    retired = c.get("users", {}).get("retired", 0)
    extra = f", users retired {retired}" if retired else ""
    unknown = lic.get("unknown_assets")
    if unknown:
        extra += f"; {lic.get('of_unknown_assets', 0)} license(s) of {len(unknown)} asset(s) Apple does not list ({', '.join(unknown[:5])})"
    mismatched = c.get("assets", {}).get("count_mismatches")
    if mismatched:
        extra += f"; Apple's assignedCount differs from its own licenses for {len(mismatched)} asset(s) ({', '.join(mismatched[:5])})"
    return changes + extra
