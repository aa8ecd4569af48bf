"""Each room knows only the one below it: the core knows no plugin, mobile_apps reaches the
VPP plugin only through its hooks and its published payload types, and alerts (written as a
third-party plugin) reaches the others only through their hooks, events and payload types
(docs/architecture.md, "Rooms and layering")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """Every module each file of ``folder`` imports (absolute names; relative imports resolved)."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        package = list(path.relative_to(ROOT).parent.parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                base = ".".join(package[: len(package) - node.level + 1])
                for alias in [] if node.module else node.names:  # `from .. import vpp` names modules
                    names.add(f"{base}.{alias.name}")
                if node.module:
                    names.add(f"{base}.{node.module}")
        found[str(path.relative_to(ROOT))] = names
    return found


#: A plugin's public contract, which other plugins may import.
CONTRACTS = ("plugins.vpp.payloads", "plugins.mobile_apps.payloads")


@pytest.mark.parametrize(
    "folder, forbidden",
    [
        ("mdm_core", ("plugins",)),
        ("plugins/mobile_apps", ("plugins.vpp", "plugins.demo", "plugins.alerts")),
        ("plugins/vpp", ("plugins.mobile_apps", "plugins.demo", "plugins.alerts")),
        ("plugins/demo", ("plugins.mobile_apps", "plugins.alerts")),  # it drives mobile_apps through `mdm apps` only
        ("plugins/alerts", ("plugins.vpp", "plugins.mobile_apps", "plugins.demo", "plugins.examples")),
    ],
)
def test_rooms_import_only_what_is_below_them(folder: str, forbidden: tuple[str, ...]) -> None:
    offenders = {
        path: sorted(n for n in names if n not in CONTRACTS and any(n == f or n.startswith(f + ".") for f in forbidden))
        for path, names in imported_modules(ROOT / folder).items()
    }
    assert {p: n for p, n in offenders.items() if n} == {}


def test_mobile_apps_calls_vpp_hooks_only_through_its_port() -> None:
    """No ``mdm_vpp_*`` request hook is called, or probed by name, outside ``vpp_port.py``."""
    folder = ROOT / "plugins" / "mobile_apps"
    offenders = [
        str(p.relative_to(ROOT))
        for p in folder.rglob("*.py")
        if p.name != "vpp_port.py" and ("hook.mdm_vpp_" in p.read_text() or 'hook("mdm_vpp_' in p.read_text())
    ]
    assert offenders == []
