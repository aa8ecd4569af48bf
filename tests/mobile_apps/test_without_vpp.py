"""The plugin loads, and its jobs run, without the VPP plugin ."""

from __future__ import annotations


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
