"""A plugin author's mistakes in a hook implementation are one line naming their plugin, the
function and the fix; the plugins around it keep working."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from mdm_core.errors import PluginError

SPECS = """
@hookspec
def mdm_widget_made(host, event):
    "A widget was made."
"""

DECLARER = """
@hookimpl
def mdm_add_hookspecs(pluginmanager):
    import {specs}
    pluginmanager.add_hookspecs({specs})
"""


def test_an_optional_hook_with_a_wrong_argument_name_breaks_its_own_plugin_not_the_declaring_one(
    mdm: Any, write_plugin: Callable[..., str], fake_entry_points: Callable[[dict[str, str]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk's case: a plugin enabled by module path took `evt` in mdm_vpp_licenses_associated;
    the VPP plugin, registered after it, failed instead (`plugin 'vpp' cannot be registered`),
    `mdm` left it out and said to disable it, and `mdm vpp` was an unknown command."""
    monkeypatch.setenv("MDM_PLUGIN_AUTOLOAD", "1")
    declarer = write_plugin(DECLARER.format(specs=write_plugin(SPECS)))
    fake_entry_points({"widgets": declarer})
    consumer = write_plugin('PLUGIN_NAME = "audit"\n@hookimpl(optionalhook=True)\ndef mdm_widget_made(host, evt):\n    pass\n')
    config = f'[plugins]\nautoload = true\nenabled = ["{consumer}"]\n'
    code, out, err = mdm("devices", "list", config=config)
    assert code == 1 and out == ""
    assert err == (
        "mdm: error: plugin 'audit' is broken: its mdm_widget_made(host, evt) takes evt, which the hook does not give (it gives host, event): "
        'rename the argument, or disable it with [plugins] disabled = ["audit"] in the configuration or MDM_DISABLED_PLUGINS=audit\n'
    )
    code, out, err = mdm("plugins", "--json", config=config)
    assert code == 0, err
    assert {r["name"]: r["state"] for r in json.loads(out)} == {"inventory": "enabled", "web": "enabled", "audit": "broken", "widgets": "enabled"}
    # disabled as the line says (by its PLUGIN_NAME): everything works, and it is listed disabled, not "no plugin of this name"
    code, out, err = mdm("devices", "list", config=config + 'disabled = ["audit"]\n')
    assert code == 0, err
    code, out, err = mdm("plugins", "--json", config=config + 'disabled = ["audit"]\n')
    assert code == 0, err
    assert [(r["state"], r["module"], r["error"]) for r in json.loads(out) if r["name"] == "audit"] == [("disabled", consumer, None)]


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (
            "@hookimpl\ndef mdm_device_enrolled(host, event=None):\n    pass\n",
            "its mdm_device_enrolled(host, event) gives event a default value, so the hook never passes it: remove the default",
        ),
        (
            "def mdm_device_enrolled(host, event):\n    pass\n",
            "its function mdm_device_enrolled is not marked @hookimpl, so it is never called: put @hookimpl (from mdm_core import hookimpl) above it",
        ),
        (
            "@hookimpl(optionalhook=True)\ndef mdm_device_enroled(host, event):\n    pass\n",
            "its mdm_device_enroled is no hook, so it is never called: did you mean mdm_device_enrolled? (`mdm hooks` lists them)",
        ),
    ],
    ids=["default value", "no @hookimpl", "misspelt optionalhook"],
)
def test_a_hook_that_would_never_be_called_as_meant_is_one_line(make_host: Callable[..., Any], write_plugin: Callable[..., str], source: str, why: str) -> None:
    """pluggy accepts these silently: the plugin loaded and its function was never called (or
    called without its argument)."""
    plugin = write_plugin('PLUGIN_NAME = "audit"\n' + source)
    with pytest.raises(PluginError) as info:
        make_host(config=f'[plugins]\nenabled = ["{plugin}"]\n')
    disable = 'disable it with [plugins] disabled = ["audit"] in the configuration or MDM_DISABLED_PLUGINS=audit'
    assert str(info.value) == f"plugin 'audit' is broken: {why}, or {disable}"


def test_an_optional_hook_of_a_plugin_not_loaded_is_no_error(make_host: Callable[..., Any], write_plugin: Callable[..., str]) -> None:
    """Only a name close to a hook of a loaded plugin's prefix is a misspelling: a hook of a
    plugin that is not installed or disabled (its prefix declares nothing) loads quietly."""
    plugin = write_plugin('PLUGIN_NAME = "audit"\n@hookimpl(optionalhook=True)\ndef mdm_widgets_made(host, event):\n    pass\n')
    host = make_host(config=f'[plugins]\nenabled = ["{plugin}"]\n')
    assert "audit" in [r.name for r in host.plugins]
