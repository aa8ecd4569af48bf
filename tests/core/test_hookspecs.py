"""Every core hook is documented (datasette style) and exercised by a test of tests/core."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from mdm_core import hookspecs

CORE_HOOKS = sorted(name for name, obj in vars(hookspecs).items() if name.startswith("mdm_") and inspect.isfunction(obj))


def test_core_hooks_are_found():
    assert {"mdm_add_hookspecs", "mdm_startup", "mdm_event", "mdm_device_enrolled"} <= set(CORE_HOOKS)


@pytest.mark.parametrize("name", CORE_HOOKS)
def test_every_hookspec_is_documented(name):
    func = getattr(hookspecs, name)
    assert hasattr(func, "mdm_spec"), f"{name} is not marked @hookspec"
    doc = inspect.getdoc(func) or ""
    assert doc, f"{name} has no docstring"
    for label in ("When:", "Returns:", "Errors:"):
        assert label in doc, f"{name}: the docstring does not say {label!r}"
    params = list(inspect.signature(func).parameters)
    if params:
        assert "Args:" in doc, f"{name}: the docstring does not describe its arguments"
        for param in params:
            assert f"``{param}``" in doc, f"{name}: argument ``{param}`` is not described"
    else:
        assert "Args: none" in doc


@pytest.mark.parametrize("name", CORE_HOOKS)
def test_every_hook_is_exercised_in_core_tests(name):
    """A hook counts as tested when a test module of tests/core implements it (``def mdm_x(``)."""
    sources = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py") if p.name != Path(__file__).name)
    assert re.search(rf"def {name}\(", sources), f"no test in tests/core implements {name}"


def test_hooks_are_keyword_only_and_have_no_defaults():
    for name in CORE_HOOKS:
        for param in inspect.signature(getattr(hookspecs, name)).parameters.values():
            assert param.default is inspect.Parameter.empty, f"{name}({param.name}) has a default value"
