"""The plugin's own hooks are documented, load without the VPP plugin, and keep the conventions."""

from __future__ import annotations

import inspect

import pytest

from plugins.mobile_apps import hookspecs

HOOKS = sorted(n for n, o in vars(hookspecs).items() if n.startswith("mdm_") and inspect.isfunction(o))


@pytest.mark.parametrize("name", HOOKS)
def test_every_hookspec_is_documented(name):
    func = getattr(hookspecs, name)
    doc = inspect.getdoc(func) or ""
    assert hasattr(func, "mdm_spec")
    for label in ("When:", "Args:", "Returns:", "Errors:"):
        assert label in doc, f"{name}: {label} missing"
    for param in inspect.signature(func).parameters.values():
        assert f"``{param.name}``" in doc and param.default is inspect.Parameter.empty


def test_plugin_loads_without_vpp(make_host):
    from plugins.mobile_apps import plugin

    host = make_host(plugins=[plugin], config="[mobile_apps]\nauto_install = true\n", environ={"MDM_DISABLED_PLUGINS": "vpp"})
    _ = host.db
    names = {r.name for r in host.plugins}
    assert "mobile_apps" in names and "vpp" not in names
    jobs = host.build_scheduler(inline=True).jobs
    assert {"mobile_apps.metadata", "mobile_apps.reclaim", "mobile_apps.installs"} <= set(jobs)
    for job in ("mobile_apps.metadata", "mobile_apps.reclaim", "mobile_apps.installs"):
        jobs[job].func()  # nothing to do without VPP, and no error
