"""Every hook of the host and of the in-repo plugins is documented (datasette style), keeps the
conventions, and declares its event payload type. That every hook is also exercised is checked
on the real calls of the whole suite (``tests/conftest.py``, ``pytest_sessionfinish``)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from mdm_core import hookimpl
from mdm_core import hookspecs as core
from mdm_core.payloads import EVENT_PAYLOADS as CORE_PAYLOADS
from mdm_core.testing import HookCallLog
from plugins.mobile_apps import hookspecs as mobile_apps
from plugins.mobile_apps.payloads import EVENT_PAYLOADS as MOBILE_APPS_PAYLOADS
from plugins.vpp import hookspecs as vpp
from plugins.vpp.payloads import EVENT_PAYLOADS as VPP_PAYLOADS

MODULES = {"core": core, "vpp": vpp, "mobile_apps": mobile_apps}
HOOKS = sorted((owner, name) for owner, module in MODULES.items() for name, obj in vars(module).items() if name.startswith("mdm_") and inspect.isfunction(obj))
PAYLOADS = {**CORE_PAYLOADS, **VPP_PAYLOADS, **MOBILE_APPS_PAYLOADS}


def test_the_hooks_are_found() -> None:
    names = {name for _, name in HOOKS}
    assert {"mdm_add_hookspecs", "mdm_startup", "mdm_event", "mdm_device_enrolled", "mdm_command_queued"} <= names
    assert {"mdm_vpp_sync", "mdm_vpp_associate", "mdm_vpp_licenses_associated", "mdm_vpp_token_state_changed"} <= names
    assert {"mdm_mobile_apps_app_published", "mdm_mobile_apps_install_queued"} <= names


@pytest.mark.parametrize("owner, name", HOOKS)
def test_every_hookspec_is_documented(owner: str, name: str) -> None:
    func = getattr(MODULES[owner], name)
    assert hasattr(func, "mdm_spec"), f"{name} is not marked @hookspec"
    doc = inspect.getdoc(func) or ""
    for label in ("When:", "Returns:", "Errors:"):
        assert label in doc, f"{name}: the docstring does not say {label!r}"
    params = inspect.signature(func).parameters.values()
    assert "Args:" in doc, f"{name}: the docstring does not describe its arguments"
    if not params:
        assert "Args: none" in doc
    for param in params:
        assert f"``{param.name}``" in doc, f"{name}: argument ``{param.name}`` is not described"
        assert param.default is inspect.Parameter.empty, f"{name}({param.name}) has a default value"
    if owner != "core":
        assert name.startswith(f"mdm_{owner}_"), f"{name} does not carry its plugin's name"


@pytest.mark.parametrize("owner, name", [(o, n) for o, n in HOOKS if list(inspect.signature(getattr(MODULES[o], n)).parameters) == ["host", "event"]])
def test_every_event_declares_its_payload_type(owner: str, name: str) -> None:
    if name == "mdm_event":
        return  # every event, whatever its payload
    event = name[len("mdm_") :]
    assert event in PAYLOADS, f"no TypedDict for the payload of {name} in {owner}'s payloads module"
    assert PAYLOADS[event].__name__ in (inspect.getdoc(getattr(MODULES[owner], name)) or ""), f"{name}'s doc does not name its payload type"


def test_every_payload_type_belongs_to_a_declared_event() -> None:
    events = {name[len("mdm_") :] for _, name in HOOKS}
    assert set(PAYLOADS) <= events


class _Subscriber:
    @hookimpl
    def mdm_device_enrolled(self, host: Any, event: Any) -> None:
        pass

    @hookimpl
    def mdm_shutdown(self, host: Any) -> None:
        pass


def test_the_hook_call_log_sees_real_calls_of_every_kind(make_host: Any) -> None:
    """What the suite-wide check counts: a hook called with an implementation, by pluggy or one
    implementation at a time (events, shutdown); a hook called without one does not count."""
    from mdm_core import inventory

    log = HookCallLog()
    log.install()
    try:
        host = make_host(plugins=[_Subscriber()])
        host.start()
        inventory.add_device(host, "S1", "iOS")
        host.shutdown()
    finally:
        log.uninstall()
    assert {"mdm_register_tables", "mdm_device_enrolled", "mdm_shutdown"} <= log.exercised()
    assert not {"mdm_startup", "mdm_device_removed"} & log.exercised()  # called without implementation; never called
