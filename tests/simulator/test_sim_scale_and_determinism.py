"""Determinism, invariants, out-of-band mutation and a 300,000-assignment instance."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
import requests

from plugins.vpp.simulator import Simulator


def _invariants(sim: Simulator) -> None:
    snap = sim.snapshot()
    for key, asset in snap["assets"].items():
        held = sum(1 for row in snap["assignments"] if row[:2] == key)
        assert asset["assignedCount"] == held, key
        assert asset["availableCount"] >= 0
    for row in snap["assignments"]:
        if row[2] == "serialNumber":
            assert snap["assets"][row[:2]]["deviceAssignable"]
        else:
            assert row[3] in snap["users"]


def test_same_seed_same_data():
    one, two = Simulator(seed=11), Simulator(seed=11)
    assert one.snapshot() == two.snapshot()
    assert one.versions() == two.versions()
    assert one.state.device_serials() == two.state.device_serials()
    assert one.snapshot() != Simulator(seed=12).snapshot()
    assert one.mutate_fraction(0.1, seed=5) == two.mutate_fraction(0.1, seed=5)
    assert one.snapshot() == two.snapshot() and one.versions() == two.versions()


def test_seeded_shape():
    sim = Simulator(seed=1)
    serials = sim.state.device_serials()
    assert len(serials) == 40 and all(len(s) == 12 and s.isalnum() and s.upper() == s for s in serials)
    users = sim.snapshot()["users"]
    assert sorted(users)[:2] == ["user-0001", "user-0002"] and len(users) == 25
    assert {u["status"] for u in users.values()} == {"Associated", "Registered", "Retired"}
    records = sim.state.user_records()
    assert any(r["managedAppleId"] for r in records)
    assets = sim.snapshot()["assets"]
    assert all(k[0].isdigit() for k in assets) and len(assets) == 12
    assert len(sim.snapshot()["assignments"]) == 2 * 40 + 25
    _invariants(sim)
    assert len(Simulator(seed=1, assignments=30).snapshot()["assignments"]) == 30


def test_mutate_fraction_moves_everything():
    sim = Simulator(seed=3, devices=200, users=100, assignments=600)
    before, versions = sim.snapshot(), sim.versions()
    summary = sim.mutate_fraction(0.1, seed=1)
    after = sim.snapshot()
    assert summary["assignments_added"] > 0 and summary["assignments_removed"] > 0
    assert summary["users_updated"] > 0 and summary["users_retired"] > 0 and summary["users_created"] > 0
    assert len(after["assignments"] - before["assignments"]) == summary["assignments_added"]
    assert len(before["assignments"] - after["assignments"]) >= summary["assignments_removed"]
    assert all(sim.versions()[k] != versions[k] for k in versions)
    _invariants(sim)


def test_invariants_after_http_traffic(fresh):
    sim = fresh.sim
    key = sim.purchase(count=3)
    ref = {"adamId": key[0], "pricingParam": key[1]}
    users = sim.state.user_ids("Associated")[:2]
    fresh.run("assets/associate", {"assets": [ref], "serialNumbers": ["I1", "I2"], "clientUserIds": users})
    fresh.run("assets/revoke", {"serialNumbers": ["I1"]})
    fresh.run("users/retire", {"users": [{"clientUserId": users[0]}]})
    sim.remove_asset(*next(iter(sim.snapshot()["assets"])))
    _invariants(sim)


@pytest.mark.slow  # 300,000 assignments
def test_300k_assignments_seed_and_serve():
    sim = Simulator(seed=5, assets=1000, devices=60_000, users=10_000, assignments=300_000)
    assert len(sim.state.assignments) == 300_000
    with sim, requests.Session() as session:
        page = session.get(sim.base_url + "/assignments", params={"pageIndex": 500}, headers={"Authorization": f"Bearer {sim.token}"}, timeout=10).json()
        assert (page["size"], page["totalPages"], page["nextPageIndex"]) == (437, 687, 501)
    headers = {"Authorization": f"Bearer {sim.token}"}
    for query in ("pageIndex=300", "adamId=" + next(iter(sim.snapshot()["assets"]))[0], "includeUserState=true&excludeInactiveUsers=true&pageIndex=9"):
        first = sim.api.handle("GET", "/mdm/v2/assignments", parse_qs(query), headers, b"", "http://x").encode()
        again = sim.api.handle("GET", "/mdm/v2/assignments", parse_qs(query), headers, b"", "http://x").encode()
        assert first == again and b'"assignments"' in first, query
