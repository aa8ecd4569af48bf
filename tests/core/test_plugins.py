"""The plugin-manager factory: order, blocking, one registration, one-line errors naming the plugin."""

from __future__ import annotations

import sys

import pytest

from mdm_core.errors import ConfigError, PluginError
from mdm_core.plugins import get_plugin_manager, hooks_of

STARTUP_RECORDER = """
    import builtins
    @hookimpl
    def mdm_startup(host):
        host.started_by = getattr(host, "started_by", []) + [__name__]
"""


def names(host):
    return [(r.name, r.source) for r in host.plugins]


@pytest.mark.slow  # a fresh Python process
def test_nothing_loads_at_import_time():
    # importing the core registers no plugin and builds no engine
    code = (
        "import sys, threading, schedule, mdm_core, mdm_core.cli, mdm_core.host, mdm_core.plugins, mdm_core.inventory, mdm_core.inventory.plugin;"
        "assert not [m for m in sys.modules if m.startswith('plugins.')], 'a plugin was imported';"
        "assert not schedule.jobs, 'a job was scheduled';"
        "assert threading.active_count() == 1, 'a thread was started'"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)
    pm = get_plugin_manager()
    assert pm.get_plugins() == set()


def test_loading_order_builtin_conf_entry_points(make_host, write_plugin, fake_entry_points):
    conf_mod = write_plugin(STARTUP_RECORDER)
    ep_mod = write_plugin(STARTUP_RECORDER)
    fake_entry_points({"zeta": ep_mod})
    host = make_host(config=f'[plugins]\nenabled = ["{conf_mod}"]\n')
    assert names(host) == [("inventory", "built-in"), ("web", "built-in"), (conf_mod, "conf"), ("zeta", "entry point")]
    assert host.plugins[3].module == ep_mod


def test_autoload_switches(make_host, write_plugin, fake_entry_points):
    fake_entry_points({"zeta": write_plugin()})
    assert [r.name for r in make_host(config="[plugins]\nautoload = false\n").plugins] == ["inventory", "web"]
    assert [r.name for r in make_host(environ={"MDM_PLUGIN_AUTOLOAD": "0"}).plugins] == ["inventory", "web"]
    assert [r.name for r in make_host().plugins] == ["inventory", "web", "zeta"]


def test_blocked_by_conf_and_env_before_loading(make_host, write_plugin, fake_entry_points):
    # these modules raise on import: blocking must happen before anything is imported
    broken = write_plugin("raise RuntimeError('must not be imported')\n")
    broken2 = write_plugin("raise RuntimeError('must not be imported')\n")
    fine = write_plugin()
    fake_entry_points({"alpha": broken, "beta": broken2, "gamma": fine})
    host = make_host(config='[plugins]\ndisabled = ["alpha"]\n', environ={"MDM_DISABLED_PLUGINS": " beta , "})
    assert [r.name for r in host.plugins] == ["inventory", "web", "gamma"]
    assert broken not in sys.modules and broken2 not in sys.modules


def test_conf_enabled_module_blocked_by_its_entry_point_name(make_host, write_plugin, fake_entry_points):
    broken = write_plugin("raise RuntimeError('must not be imported')\n")
    fake_entry_points({"vppish": broken})
    host = make_host(config=f'[plugins]\nenabled = ["{broken}"]\ndisabled = ["vppish"]\n')
    assert [r.name for r in host.plugins] == ["inventory", "web"]


def test_disabled_plugin_section_is_not_an_unknown_section(make_host, write_plugin, fake_entry_points):
    fake_entry_points({"alpha": write_plugin()})
    host = make_host(config='[plugins]\ndisabled = ["alpha"]\n[alpha]\nx = 1\n')
    assert [r.name for r in host.plugins] == ["inventory", "web"]


def test_plugin_enabled_in_conf_and_entry_point_is_registered_once(make_host, write_plugin, fake_entry_points):
    mod = write_plugin(STARTUP_RECORDER)
    fake_entry_points({"both": mod})
    host = make_host(config=f'[plugins]\nenabled = ["{mod}"]\n')
    assert names(host) == [("inventory", "built-in"), ("web", "built-in"), ("both", "conf")]
    host.start()
    assert host.started_by == [mod]


def test_misspelt_hook_is_one_line_error_naming_plugin(make_host, load_plugin):
    bad = load_plugin("""
        @hookimpl
        def mdm_startp(host):
            pass
    """)
    with pytest.raises(PluginError) as info:
        make_host(plugins=[bad])
    message = str(info.value)
    assert "\n" not in message
    assert f"plugin '{bad.__name__}'" in message and "mdm_startp" in message


@pytest.mark.parametrize(
    "source, expected",
    [
        ("raise ImportError('no such thing')\n", "cannot be imported: ImportError: no such thing"),
        ("def broken(:\n", "cannot be imported: SyntaxError"),
        ("@hookimpl\ndef mdm_add_hookspecs(pluginmanager):\n    raise ValueError('boom')\n", "failed while registering: ValueError: boom"),
        ("@hookimpl\ndef mdm_startup(hst):\n    pass\n", "is broken: its mdm_startup(hst) takes hst, which the hook does not give (it gives host)"),
    ],
    ids=["import-error", "syntax-error", "raises-at-register", "bad-hook-arguments"],
)
def test_broken_conf_plugin_is_one_line_error_naming_it(make_host, write_plugin, source, expected):
    mod = write_plugin(source)
    with pytest.raises(PluginError) as info:
        make_host(config=f'[plugins]\nenabled = ["{mod}"]\n')
    message = str(info.value)
    assert "\n" not in message and mod in message and expected in message


def test_unknown_conf_plugin(make_host, project_dir):
    """A module path misspelt in [plugins] enabled said `ModuleNotFoundError: ...: disable it with
    [plugins] disabled = [...]`: the fix is the name in `enabled`, which the line now names."""
    conf = project_dir / "conf" / "mdm.toml"
    for dotted, missing in (("no_such_mdm_plugin", "no_such_mdm_plugin"), ("plugins.examples.device_note", "plugins.examples.device_note")):
        with pytest.raises(PluginError) as info:
            make_host(config=f'[plugins]\nenabled = ["{dotted}"]\n')
        assert str(info.value) == (
            f"plugin '{dotted}' (enabled in {conf}) cannot be imported: there is no module {missing}: correct the module path in "
            f"[plugins] enabled in {conf} (a typo?), or remove it from that list"
        )


def test_a_module_in_the_project_folder_is_said_to_be_off_pythons_path(make_host, project_dir):
    """The walk's case: a plugin author put the README's example beside conf/ and enabled it by
    module path; the line said to correct a typo in the name, which was right."""
    (project_dir / "walk_audit_plugin.py").write_text("")
    with pytest.raises(PluginError) as info:
        make_host(config='[plugins]\nenabled = ["walk_audit_plugin"]\n')
    assert str(info.value) == (
        f"plugin 'walk_audit_plugin' (enabled in {project_dir / 'conf' / 'mdm.toml'}) cannot be imported: {project_dir / 'walk_audit_plugin.py'} "
        f"is in the project folder, but Python does not import from that folder: install it as a package (pip install -e), or run mdm "
        f"with PYTHONPATH={project_dir}"
    )


def test_an_entry_point_naming_no_module_says_which_entry_point_to_correct(make_host, fake_entry_points):
    """A typo in a package's entry point (`widgets = "mdm_widgets.plugn"`) said only
    `ModuleNotFoundError: No module named ...`; the line now names the entry point to correct."""
    fake_entry_points({"widgets": "mdm_core.plugn"})
    with pytest.raises(PluginError) as info:
        make_host()
    assert str(info.value) == (
        "plugin 'widgets' (entry point mdm_core.plugn) cannot be loaded: there is no module mdm_core.plugn: correct the entry point widgets "
        'under [project.entry-points."mdm.plugins"] in its pyproject.toml (a typo?) and install the package again, or disable it with '
        '[plugins] disabled = ["widgets"] in the configuration or MDM_DISABLED_PLUGINS=widgets'
    )


def test_a_conf_plugin_missing_a_module_it_imports_is_disabled_as_before(make_host, write_plugin):
    mod = write_plugin("import no_such_dependency_of_the_plugin\n")
    with pytest.raises(PluginError) as info:
        make_host(config=f'[plugins]\nenabled = ["{mod}"]\n')
    assert "ModuleNotFoundError: No module named 'no_such_dependency_of_the_plugin'" in str(info.value)
    assert str(info.value).endswith(f'disable it with [plugins] disabled = ["{mod}"] in the configuration or MDM_DISABLED_PLUGINS={mod}')


def test_broken_entry_point(make_host, write_plugin, fake_entry_points):
    fake_entry_points({"kaputt": write_plugin("raise RuntimeError('nope')\n")})
    with pytest.raises(PluginError) as info:
        make_host()
    assert "plugin 'kaputt'" in str(info.value) and "RuntimeError: nope" in str(info.value)
    assert "\n" not in str(info.value)


def test_plugin_owned_hookspecs_and_optional_consumer(make_host, load_plugin):
    specs = load_plugin("""
        @hookspec
        def mdm_widget_made(host, event):
            '''A widget was made.'''
    """)
    owner = load_plugin(f"""
        import {specs.__name__} as specs
        @hookimpl
        def mdm_add_hookspecs(pluginmanager):
            pluginmanager.add_hookspecs(specs)
    """)
    # a consumer of a hook that may not exist marks it optional and loads fine without its owner
    consumer = load_plugin("""
        seen = []
        @hookimpl(optionalhook=True)
        def mdm_widget_made(host, event):
            seen.append(event.payload)
    """)
    make_host(plugins=[consumer])
    host = make_host(plugins=[consumer, owner])  # consumer registered before the owner: historic spec call
    host.db.run_write(lambda s: host.events.record(s, "widget_made", {"n": 1}))
    host.deliver_events()
    assert consumer.seen == [{"n": 1}]


def test_mdm_plugins_lists_hooks(make_host, load_plugin):
    plug = load_plugin(STARTUP_RECORDER)
    host = make_host(plugins=[plug])
    assert hooks_of(host.pm, plug) == ["mdm_startup"]
    assert "mdm_register_tables" in hooks_of(host.pm, host.pm.get_plugin("inventory"))


@pytest.mark.parametrize(
    "hook, source",
    [
        ("mdm_config_sections", "@hookimpl\ndef mdm_config_sections():\n    raise KeyError('x')\n"),
        ("mdm_configure", "@hookimpl\ndef mdm_configure(host):\n    raise KeyError('x')\n"),
    ],
)
def test_start_up_hooks_fail_fast_naming_the_plugin(make_host, load_plugin, hook, source):
    plug = load_plugin(source)
    with pytest.raises(PluginError) as info:
        make_host(plugins=[plug])
    assert str(info.value) == f"plugin '{plug.__name__}' failed in {hook}: KeyError: 'x'"


def test_config_error_from_a_plugin_passes_through(make_host, load_plugin):
    plug = load_plugin("""
        from mdm_core.errors import ConfigError
        @hookimpl
        def mdm_configure(host):
            raise ConfigError("conf/mdm.toml: [thing] token is missing")
    """)
    with pytest.raises(ConfigError, match=r"^conf/mdm.toml: \[thing\] token is missing$"):
        make_host(plugins=[plug])


def test_register_tables_and_jobs_and_startup_fail_fast(make_host, load_plugin):
    tables = load_plugin("@hookimpl\ndef mdm_register_tables():\n    return [object]\n")
    with pytest.raises(PluginError, match="not an SQLModel class"):
        make_host(plugins=[tables]).db
    jobs = load_plugin("@hookimpl\ndef mdm_register_jobs(scheduler, host):\n    1 / 0\n")
    with pytest.raises(PluginError, match=rf"plugin '{jobs.__name__}' failed in mdm_register_jobs: ZeroDivisionError"):
        make_host(plugins=[jobs]).build_scheduler(inline=True)
    start = load_plugin("@hookimpl\ndef mdm_startup(host):\n    raise OSError('disk\\nfull')\n")
    with pytest.raises(PluginError) as info:
        make_host(plugins=[start]).start()
    assert str(info.value) == f"plugin '{start.__name__}' failed in mdm_startup: OSError: disk full"


@pytest.mark.arbitrary_payloads
def test_blocking_the_builtins_keeps_host_tables(make_host, load_plugin):
    host = make_host(plugins=[], environ={"MDM_DISABLED_PLUGINS": "inventory,web"})
    assert host.plugins == []
    lock = host.lock("x")
    lock.acquire()
    lock.release()
    host.db.run_write(lambda s: host.events.record(s, "device_enrolled", {}))
    assert host.deliver_events() == 1


def test_a_misspelt_hook_leaves_help_plugins_and_hooks_working(mdm, write_plugin, fake_entry_points, monkeypatch):
    """One broken plugin: `--help`, `plugins` and `hooks` work; other commands say how to disable it."""
    import json

    monkeypatch.setenv("MDM_PLUGIN_AUTOLOAD", "1")
    bad = write_plugin("@hookimpl\ndef mdm_devise_enrolled(host, event):\n    pass\n")
    fake_entry_points({"badplug": bad})
    config = "[plugins]\nautoload = true\n"
    code, out, err = mdm("--help", config=config)
    assert code == 0 and "COMMAND" in out and err == ""
    code, out, err = mdm("devices", "list", config=config)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "plugin 'badplug' is broken" in err and "mdm_devise_enrolled" in err
    assert 'disable it with [plugins] disabled = ["badplug"] in the configuration or MDM_DISABLED_PLUGINS=badplug' in err
    code, out, err = mdm("plugins", "--json", config=config)
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["badplug"]["state"] == "broken" and "mdm_devise_enrolled" in rows["badplug"]["error"]
    assert rows["inventory"]["state"] == "enabled"
    code, out, err = mdm("hooks", config=config)
    assert code == 0 and "mdm_device_enrolled" in out
    # disabled as the message says: everything works again, and `mdm plugins` shows it disabled
    code, out, err = mdm("devices", "list", config=config + 'disabled = ["badplug"]\n')
    assert code == 0, err
    code, out, err = mdm("plugins", config=config + 'disabled = ["badplug", "nosuchplug"]\n')
    assert code == 0, err
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip() and ":" not in line.split()[0]}
    assert lines["badplug"][2:4] == ["entry", "point"] and lines["badplug"][4] == "disabled"
    assert "nosuchplug: no plugin of this name is installed" in out


def test_mdm_plugins_lists_disabled_plugins_with_their_source(mdm, write_plugin, fake_entry_points, monkeypatch):
    import json

    monkeypatch.setenv("MDM_PLUGIN_AUTOLOAD", "1")
    fake_entry_points({"alpha": write_plugin(), "beta": write_plugin()})
    code, out, err = mdm("plugins", "--json", config='[plugins]\nautoload = true\ndisabled = ["beta", "inventory"]\n')
    assert code == 0, err
    rows = {r["name"]: (r["source"], r["state"]) for r in json.loads(out)}
    assert rows == {
        "alpha": ("entry point", "enabled"),
        "beta": ("entry point", "disabled"),
        "inventory": ("built-in", "disabled"),
        "web": ("built-in", "enabled"),
    }


def test_version(mdm):
    import importlib.metadata

    code, out, err = mdm("--version")
    assert code == 0 and out == f"mdm-host {importlib.metadata.version('mdm-host')}\n"
    code, out, err = mdm("--version", config="[core\n")  # even with a broken configuration
    assert code == 0 and out.startswith("mdm-host ")


def test_the_objects_alive_after_the_first_plugin_load_are_frozen_once(make_host, monkeypatch):
    """A process freezes its startup heap (modules, mappers, plugins: alive as long as it) once,
    after loading its first plugins, so that full collections stop scanning it; a second host
    does not freeze again (that would keep the garbage of its time forever)."""
    import gc

    from mdm_core import collector

    frozen: list[int] = []
    monkeypatch.setattr(collector, "_frozen", False)
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    make_host()
    assert frozen == [1]
    make_host()
    assert frozen == [1]
