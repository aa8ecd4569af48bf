"""Each room knows only the one below it: the core knows no plugin, mobile_apps reaches the
VPP plugin only through hooks and event payloads, and alerts (written as a third-party plugin)
reaches the others only through their hooks and events (architecture.md, "Rooms")."""

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
                for alias in ([] if node.module else node.names):  # `from .. import vpp` names modules
                    names.add(f"{base}.{alias.name}")
                if node.module:
                    names.add(f"{base}.{node.module}")
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("folder, forbidden", [
    ("mdm_core", ("plugins",)),
    ("plugins/mobile_apps", ("plugins.vpp", "plugins.demo", "plugins.alerts")),
    ("plugins/vpp", ("plugins.mobile_apps", "plugins.demo", "plugins.alerts")),
    ("plugins/demo", ("plugins.mobile_apps", "plugins.alerts")),  # it drives mobile_apps through `mdm apps` only
    ("plugins/alerts", ("plugins.vpp", "plugins.mobile_apps", "plugins.demo", "plugins.examples")),
])
def test_rooms_import_only_what_is_below_them(folder: str, forbidden: tuple[str, ...]) -> None:
    offenders = {
        path: sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))
        for path, names in imported_modules(ROOT / folder).items()
    }
    assert {p: n for p, n in offenders.items() if n} == {}
