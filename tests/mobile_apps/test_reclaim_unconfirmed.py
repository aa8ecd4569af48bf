"""A reclaim Apple took but has not confirmed yet is not said "given back" (nor "Apple could not
be reached"): it says Apple was asked to take the license back; "given back" once Apple confirms."""

from __future__ import annotations

import time

import pytest

from mdm_core.inventory import add_device
from plugins.mobile_apps.installs.commands import list_installs
from plugins.mobile_apps.installs.request import install
from plugins.mobile_apps.reclaims import list_reclaims, reclaim_result

from .conftest import app_id, fixed_assets, holders, removed_while_licensed


@pytest.mark.slow
def test_a_license_of_a_device_removed_while_licensed_is_asked_back_until_apple_confirms(on_both, simulator, monkeypatch):
    host, _ = on_both
    # the admin unenrols the device as the request asks Apple; Apple is slow to carry out the reclaim that follows
    a, serial = removed_while_licensed(host, simulator, monkeypatch, then_apple_delay=30.0)
    [line] = install(host, app_id(host, a["adamId"]), serials=[serial]).as_dicts()
    assert line["status"] == "refused" and "given back" not in line["message"], line
    assert "Apple was asked to take its license back (not confirmed yet" in line["message"], line
    [row] = list_installs(host)
    assert "given back" not in row["error"] and "asked to take its license back" in row["error"], row
    [reclaim] = [r for r in list_reclaims(host) if r["adam_id"] == a["adamId"]]
    assert reclaim["status"] == "pending" and reclaim_result(reclaim).startswith("asked Apple to take the license back; not confirmed yet"), reclaim


@pytest.mark.slow
def test_a_removal_apple_has_not_confirmed_is_not_said_unreachable(on_both, simulator):
    host, mdm = on_both
    a = fixed_assets(simulator)[0]
    serial = sorted(s for s in holders(simulator, a["adamId"]) if s in simulator.state.device_serials())[0]
    add_device(host, serial, "iOS")
    simulator.state.async_delay = 30.0
    started = time.monotonic()
    code, out, err = mdm("devices", "remove", serial)
    assert code == 0, err
    assert "could not be reached" not in out and "Apple was asked to take them back and has not confirmed yet" in out, out
    assert time.monotonic() - started < 25  # the removal does not wait for Apple
