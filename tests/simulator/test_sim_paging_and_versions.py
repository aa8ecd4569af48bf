"""Paging, filters, versionId and sinceVersionId deltas."""

from __future__ import annotations

import math
import uuid

import requests

from plugins.vpp.simulator import Simulator


def _error(response) -> tuple[int, int]:
    return response.status_code, response.json()["errorNumber"]


def test_default_page_size_is_437():
    with Simulator(seed=2, devices=400, users=100, assignments=1000) as sim, requests.Session() as session:
        url, auth = sim.base_url + "/assignments", {"Authorization": f"Bearer {sim.token}"}
        first = session.get(url, headers=auth, timeout=5).json()
        last = session.get(url, params={"pageIndex": 2}, headers=auth, timeout=5).json()
    assert sim.state.page_size == 437
    assert (first["size"], first["totalPages"], first["nextPageIndex"]) == (437, 3, 1)
    assert last["size"] == 1000 - 2 * 437 and "nextPageIndex" not in last


def test_assignment_pages_cover_the_snapshot(sim, client):
    snapshot = sim.snapshot()["assignments"]
    pages = client.all_pages("assignments")
    assert len(pages) == math.ceil(len(snapshot) / 10) == pages[0]["totalPages"]
    for index, page in enumerate(pages):
        assert page["currentPageIndex"] == index
        assert page["size"] == len(page["assignments"])
        if index < len(pages) - 1:
            assert page["nextPageIndex"] == index + 1 and page["size"] == 10
    assert "nextPageIndex" not in pages[-1]
    rows = {
        (r["adamId"], r["pricingParam"], "serialNumber" if "serialNumber" in r else "clientUserId", r.get("serialNumber") or r["clientUserId"])
        for p in pages
        for r in p["assignments"]
    }
    assert rows == snapshot
    assert all(("serialNumber" in r) != ("clientUserId" in r) for p in pages for r in p["assignments"])
    assert len({p["versionId"] for p in pages}) == 1


def test_page_index_out_of_range(client):
    total = client.get("assignments").json()["totalPages"]
    assert _error(client.get("assignments", {"pageIndex": total})) == (400, 9650)
    assert _error(client.get("users", {"pageIndex": -1})) == (400, 9650)
    assert _error(client.get("assets", {"pageIndex": "x"})) == (400, 9602)
    empty = client.get("assignments", {"adamId": "1"}).json()
    assert (empty["size"], empty["totalPages"], empty["assignments"]) == (0, 0, [])
    assert "nextPageIndex" not in empty
    assert _error(client.get("assignments", {"adamId": "1", "pageIndex": 1})) == (400, 9650)


def test_asset_filters(sim, client):
    assets = [a for p in client.all_pages("assets") for a in p["assets"]]
    assert {tuple(sorted(a)) for a in assets} == {
        tuple(
            sorted(
                [
                    "adamId",
                    "pricingParam",
                    "productType",
                    "assignedCount",
                    "availableCount",
                    "retiredCount",
                    "totalCount",
                    "deviceAssignable",
                    "revocable",
                    "supportedPlatforms",
                ]
            )
        )
    }
    for asset in assets:
        assert asset["totalCount"] == asset["assignedCount"] + asset["availableCount"] + asset["retiredCount"]
        assert asset["availableCount"] > 0
        if asset["productType"] == "Book":
            assert not asset["deviceAssignable"] and not asset["revocable"]
    books = client.get("assets", {"productType": "Book"}).json()["assets"]
    assert books and all(a["productType"] == "Book" for a in books)
    fixed = client.get("assets", {"deviceAssignable": "false", "revocable": "true"}).json()["assets"]
    assert fixed and all(not a["deviceAssignable"] and a["revocable"] for a in fixed)
    plus = client.get("assets", {"pricingParam": "PLUS"}).json()["assets"]
    assert plus and all(a["pricingParam"] == "PLUS" for a in plus)
    shared = client.get("assets", {"adamId": plus[0]["adamId"]}).json()["assets"]
    assert {a["pricingParam"] for a in shared} == {"STDQ", "PLUS"}
    middle = sorted(a["availableCount"] for a in assets)[len(assets) // 2]
    ranged = client.get("assets", {"minAvailableCount": middle, "maxAssignedCount": 1000}).json()["assets"]
    assert {a["adamId"] + a["pricingParam"] for a in ranged} == {a["adamId"] + a["pricingParam"] for a in assets if a["availableCount"] >= middle}
    assert {("iOS",), ("macOS",), ("iOS", "macOS")} <= {tuple(a["supportedPlatforms"]) for a in assets}


def test_assignment_filters(sim, client):
    snapshot = sim.snapshot()["assignments"]
    serial = next(row[3] for row in snapshot if row[2] == "serialNumber")
    by_serial = client.get("assignments", {"serialNumber": serial}).json()["assignments"]
    assert {r["adamId"] for r in by_serial} == {row[0] for row in snapshot if row[3] == serial}
    user = next(row[3] for row in snapshot if row[2] == "clientUserId")
    by_user = client.get("assignments", {"clientUserId": user, "includeUserState": "true"}).json()
    assert by_user["assignments"] and all(r["clientUserId"] == user and r["userStatus"] == "Associated" and r["idHash"] for r in by_user["assignments"])
    adam_id, pricing = next((row[0], row[1]) for row in snapshot if row[1] == "PLUS")
    rows = [r for p in client.all_pages("assignments", {"adamId": adam_id, "pricingParam": "PLUS"}) for r in p["assignments"]]
    assert len(rows) == sum(1 for row in snapshot if row[:2] == (adam_id, "PLUS"))
    plain = client.get("assignments", {"serialNumber": serial}).json()["assignments"]
    assert all("userStatus" not in r and "idHash" not in r for r in plain)


def test_exclude_inactive_users(fresh):
    sim = fresh.sim
    book = next(k for k, a in sim.snapshot()["assets"].items() if a["productType"] == "Book")
    holder = next(cid for cid in sim.state.user_ids("Associated"))
    sim.assign_in_portal(*book, client_user_id=holder)
    sim.retire_user(holder)  # books are irrevocable: the license stays with the retired user
    rows = fresh.get("assignments", {"clientUserId": holder, "includeUserState": "true"}).json()["assignments"]
    assert [r["userStatus"] for r in rows] == ["Retired"] * len(rows) and rows
    assert all(r["adamId"] in {k[0] for k, a in sim.snapshot()["assets"].items() if not a["revocable"]} for r in rows)
    active = [r for p in fresh.all_pages("assignments", {"excludeInactiveUsers": "true"}) for r in p["assignments"]]
    assert holder not in {r.get("clientUserId") for r in active}


def test_user_filters(client, sim):
    users = [u for p in client.all_pages("users") for u in p["users"]]
    statuses = {u["status"] for u in users}
    assert statuses == {"Associated", "Registered", "Retired"}
    for user in users:
        assert ("idHash" in user) == (user["status"] in ("Associated", "Retired"))
        assert ("inviteCode" in user) == (user["status"] == "Registered")
        assert "userId" not in user
    active = [u for p in client.all_pages("users", {"activeOnly": "true"}) for u in p["users"]]
    assert active and all(u["status"] != "Retired" for u in active)
    retired = [u for p in client.all_pages("users", {"retiredOnly": "true"}) for u in p["users"]]
    assert retired and all(u["status"] == "Retired" for u in retired)
    assert len(active) + len(retired) == len(users)
    one = client.get("users", {"clientUserId": users[3]["clientUserId"]}).json()["users"]
    assert one == [users[3]]


def test_version_ids_change_only_for_touched_dataset(fresh):
    sim = fresh.sim
    before = sim.versions()
    assert all(uuid.UUID(v) for v in before.values())
    assert fresh.get("assets").json()["versionId"] == before["assets"]
    sim.purchase(count=3)
    after_purchase = sim.versions()
    assert after_purchase["assets"] != before["assets"]
    assert {k: after_purchase[k] for k in ("assignments", "users")} == {k: before[k] for k in ("assignments", "users")}
    sim.create_user("user-new-1", managed_apple_id="new1@appleid.example.org")
    after_user = sim.versions()
    assert after_user["users"] != after_purchase["users"]
    assert after_user["assets"] == after_purchase["assets"]
    assert after_user["assignments"] == after_purchase["assignments"]
    adam_id, pricing = sim.purchase(count=2)
    sim.assign_in_portal(adam_id, pricing, serial_number="SERIALX00001")
    after_assign = sim.versions()
    assert after_assign["assignments"] != after_user["assignments"]
    assert after_assign["users"] == after_user["users"]
    # reads change nothing
    fresh.all_pages("assignments")
    assert sim.versions() == after_assign


def test_since_version_deltas(fresh):
    sim = fresh.sim
    start = fresh.get("assignments").json()["versionId"]
    empty = fresh.get("assignments", {"sinceVersionId": start}).json()
    assert (empty["size"], empty["assignments"]) == (0, [])
    adam_id, pricing = sim.purchase(count=5)
    sim.assign_in_portal(adam_id, pricing, serial_number="DELTA0000001")
    snap = sim.snapshot()
    removed = next(row for row in sorted(snap["assignments"]) if row[2] == "serialNumber" and snap["assets"][row[:2]]["revocable"])
    sim.remove_in_portal(removed[0], removed[1], serial_number=removed[3])
    delta = [r for p in fresh.all_pages("assignments", {"sinceVersionId": start}) for r in p["assignments"]]
    assert delta == [{"adamId": adam_id, "pricingParam": pricing, "serialNumber": "DELTA0000001"}]
    middle = fresh.get("assignments").json()["versionId"]
    sim.assign_in_portal(adam_id, pricing, serial_number="DELTA0000002")
    later = fresh.get("assignments", {"sinceVersionId": middle}).json()["assignments"]
    assert [r["serialNumber"] for r in later] == ["DELTA0000002"]
    by_adam = fresh.get("assignments", {"sinceVersionId": start, "adamId": adam_id}).json()["assignments"]
    assert len(by_adam) == 2

    users_start = fresh.get("users").json()["versionId"]
    sim.create_user("user-delta", email="delta@students.example.org")
    retiree = sim.state.user_ids("Associated")[0]
    sim.retire_user(retiree)
    users = [u for p in fresh.all_pages("users", {"sinceVersionId": users_start}) for u in p["users"]]
    assert [(u["clientUserId"], u["status"]) for u in users] == [("user-delta", "Registered"), (retiree, "Retired")]


def test_invalid_since_version(client):
    assert _error(client.get("assignments", {"sinceVersionId": "nope"})) == (400, 9721)
    users_version = client.get("users").json()["versionId"]
    assert _error(client.get("assignments", {"sinceVersionId": users_version})) == (400, 9721)
    assert _error(client.get("users", {"sinceVersionId": str(uuid.uuid4())})) == (400, 9721)
    # /assets returns a versionId but ignores sinceVersionId
    assets = client.get("assets", {"sinceVersionId": "nope"})
    assert assets.status_code == 200 and assets.json()["assets"]
