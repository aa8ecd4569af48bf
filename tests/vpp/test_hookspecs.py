"""Every VPP hook is documented like the core's, follows the conventions, and is exercised."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from plugins.vpp import hookspecs

HOOKS = sorted(n for n, o in vars(hookspecs).items() if n.startswith("mdm_vpp_") and inspect.isfunction(o))
TESTS = Path(__file__).parents[1]


def test_the_documented_hooks_exist() -> None:
    assert {"mdm_vpp_sync", "mdm_vpp_associate", "mdm_vpp_licenses_associated", "mdm_vpp_token_state_changed"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_every_vpp_hookspec_is_documented(name: str) -> None:
    func = getattr(hookspecs, name)
    doc = inspect.getdoc(func) or ""
    assert hasattr(func, "mdm_spec"), f"{name} is not a hookspec"
    for label in ("When:", "Args:", "Returns:", "Errors:"):
        assert label in doc, f"{name}: {label} missing"
    for param in inspect.signature(func).parameters.values():
        assert f"``{param.name}``" in doc, f"{name}: ``{param.name}`` not described"
        assert param.default is inspect.Parameter.empty, f"{name}({param.name}) has a default"


@pytest.mark.parametrize("name", HOOKS)
def test_every_vpp_hook_is_exercised_by_a_test(name: str) -> None:
    """Requests are called (``hook.<name>(``) and events subscribed (``def <name>(``) somewhere in tests/."""
    sources = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py") if p.name != Path(__file__).name)
    sources += "\n".join(p.read_text() for p in TESTS.rglob("conftest.py"))
    assert re.search(rf"(def {name}\(|hook\.{name}\(|\"{name[4:]}\"|'{name[4:]}')", sources), f"no test exercises {name}"
