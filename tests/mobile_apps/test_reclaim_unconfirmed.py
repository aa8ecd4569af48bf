"""A reclaim Apple took but has not confirmed yet is not said "given back" (nor "Apple could not
be reached"): it says Apple was asked to take the license back; "given back" once Apple confirms."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from mdm_core.inventory import add_device
from plugins.mobile_apps import reclaims
from plugins.mobile_apps.installs.commands import list_installs
from plugins.mobile_apps.installs.request import install
from plugins.mobile_apps.reclaims import NOT_CONFIRMED, NOT_RETIRED, list_reclaims, process, reclaim_result
from plugins.mobile_apps.vpp_port import VppPort

from .conftest import app_id, fixed_assets, holders, removed_while_licensed
from .test_reclaim_settle import _pending

WAITING = "asked Apple to take the license back; not confirmed yet"


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


def test_a_reclaim_apple_has_not_confirmed_is_told_by_its_state_not_by_its_message(on_both, monkeypatch):
    """A reclaim Apple took without confirming it was recognised by its ``last_error`` text: a
    reworded message made it say "Apple could not be reached". It is pending and ``unconfirmed``."""
    host, mdm = on_both

    def accepted(self: Any, account: str, adam_id: str, pricing: str, serial_numbers: list[str], client_user_ids: list[str], wait: float) -> Any:
        return {"failed": [], "pending": {"serialNumbers": serial_numbers, "clientUserIds": []}, "event_ids": ["apple-event-1"]}

    monkeypatch.setattr(VppPort, "disassociate", accepted)
    ids = _pending(host, "WAIT", 2)
    process(host, ids)
    monkeypatch.setattr(reclaims, "NOT_CONFIRMED", "Apple is still working on it; asking again later")  # the message reworded
    rows = [r for r in list_reclaims(host) if r["id"] in ids]
    assert [(r["status"], r["unconfirmed"]) for r in rows] == [("pending", True)] * 2
    assert all(reclaim_result(r).startswith(WAITING) for r in rows), rows
    code, out, err = mdm("apps", "reclaims", "--json")
    assert code == 0, err
    assert {r["target"]: r["unconfirmed"] for r in json.loads(out)} == {"WAIT-000": True, "WAIT-001": True}


@pytest.mark.parametrize(
    ("revision", "column", "message"),
    [("0008", "unconfirmed", NOT_CONFIRMED), ("0009", "unretired", NOT_RETIRED)],
    ids=["0008-unconfirmed", "0009-unretired"],
)
def test_mobile_apps_reclaims_waiting_stay_recognised_after_the_upgrade(project_dir, monkeypatch, capsys, database_url, revision, column, message):
    """The upgrade marks the pending reclaims whose message said what they wait for (Apple's
    confirmation, 0008; their VPP user's retirement, 0009): they keep being recognised; the
    others (Apple down, done) are not marked."""
    from ..test_apple_migrations import _database_at, _upgrade_then_query

    reclaim = (
        "INSERT INTO mobile_apps_reclaim (account, adam_id, pricing_param, kind, target, reason, status, attempts, last_error, event_ids,"
        " created_at, updated_at) VALUES ('school', '111', 'STDQ', 'device', '{serial}', 'manual', '{status}', 1, {error}, '[\"e-1\"]',"
        " '2026-12-01 10:00:00+00:00', '2026-12-01 10:00:00+00:00')"
    )
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"mobile_apps": f"{int(revision) - 1:04d}"},
        [
            reclaim.format(serial="C02WAIT", status="pending", error=f"'{message}'"),
            reclaim.format(serial="C02DOWN", status="pending", error="'Apple is down for maintenance'"),
            reclaim.format(serial="C02DONE", status="done", error="NULL"),
        ],
        url=database_url,
    )
    [rows] = _upgrade_then_query(
        mdm, f"mobile_apps: applied {revision} (reclaim {column}", f"SELECT target, {column} FROM mobile_apps_reclaim ORDER BY target", url=database_url
    )
    assert [(t, bool(u)) for t, u in rows] == [("C02DONE", False), ("C02DOWN", False), ("C02WAIT", True)]
    code, out, err = mdm("apps", "reclaims", "--all", "--json")
    assert code == 0, err
    shown = {r["target"]: r for r in json.loads(out)}
    assert {t: r[column] for t, r in shown.items()} == {"C02DONE": False, "C02DOWN": False, "C02WAIT": True}
    if column == "unconfirmed":
        monkeypatch.setattr(reclaims, "NOT_CONFIRMED", "Apple is still working on it; asking again later")  # reworded after the upgrade
        assert reclaim_result(shown["C02WAIT"]).startswith(WAITING), shown
        assert reclaim_result(shown["C02DOWN"]).startswith("Apple could not be reached"), shown
