"""Asset and user management: synchronous validation and asynchronous events."""

from __future__ import annotations

import pytest


def _error(response) -> tuple[int, int]:
    return response.status_code, response.json()["errorNumber"]


def _asset(api, key):
    return api.sim.snapshot()["assets"][key]


def _ref(key) -> dict[str, str]:
    return {"adamId": key[0], "pricingParam": key[1]}


def _seeded(api, **wanted):
    return next(k for k, a in api.sim.snapshot()["assets"].items() if all(a[f] == v for f, v in wanted.items()))


def test_associate_pending_then_complete(make_client):
    from freezegun import freeze_time

    api = make_client(async_delay=0.3)
    key = api.sim.purchase(count=5)
    with freeze_time() as clock:  # the event's delay runs on the (frozen) monotonic clock
        response = api.post("assets/associate", {"assets": [_ref(key)], "serialNumbers": ["S1", "S2"]})
        assert response.status_code == 200
        event = response.json()
        assert set(event) == {"eventId", "tokenExpirationDate", "uId"}
        status = api.get("status", {"eventId": event["eventId"]}).json()
        assert (status["eventStatus"], status["eventType"], status["numRequested"]) == ("PENDING", "ASSOCIATE", 2)
        assert _asset(api, key)["assignedCount"] == 0
        clock.tick(0.29)
        assert api.get("status", {"eventId": event["eventId"]}).json()["eventStatus"] == "PENDING"
        clock.tick(0.02)
        status = api.get("status", {"eventId": event["eventId"]}).json()
        assert (status["eventStatus"], status["numCompleted"], status["failures"]) == ("COMPLETE", 2, [])
    assert status["uId"] and status["tokenExpirationDate"]
    counts = _asset(api, key)
    assert (counts["assignedCount"], counts["availableCount"], counts["totalCount"]) == (2, 3, 5)
    rows = api.get("assignments", {"adamId": key[0]}).json()["assignments"]
    assert {r["serialNumber"] for r in rows} == {"S1", "S2"}


def test_not_enough_licenses_is_partial(fresh):
    key = fresh.sim.purchase(count=2)
    status = fresh.run("assets/associate", {"assets": [_ref(key)], "serialNumbers": ["A1", "A2", "A3"]})
    assert (status["eventStatus"], status["numRequested"], status["numCompleted"]) == ("FAILED", 3, 2)
    [failure] = status["failures"]
    assert failure["errorNumber"] == 9709 and failure["errorMessage"]
    assert failure["errorInfo"] == {"assets": [_ref(key)], "serialNumbers": ["A3"]}
    assert (_asset(fresh, key)["assignedCount"], _asset(fresh, key)["availableCount"]) == (2, 0)


def test_user_association_and_9609(fresh):
    sim = fresh.sim
    key = sim.purchase(count=10)
    associated = sim.state.user_ids("Associated")[0]
    registered = sim.state.user_ids("Registered")[0]
    retired = sim.state.user_ids("Retired")[0]
    status = fresh.run("assets/associate", {"assets": [_ref(key)], "clientUserIds": [associated, registered, retired, "ghost"]})
    assert (status["eventStatus"], status["numRequested"], status["numCompleted"]) == ("FAILED", 4, 1)
    assert [(f["errorNumber"], f["errorInfo"]) for f in status["failures"]] == [(9609, {"clientUserIds": [registered, retired, "ghost"]})]
    assert (key[0], key[1], "clientUserId", associated) in sim.snapshot()["assignments"]
    # associating a license already held is a no-op success
    again = fresh.run("assets/associate", {"assets": [_ref(key)], "clientUserIds": [associated]})
    assert (again["eventStatus"], again["numCompleted"]) == ("COMPLETE", 1)
    assert _asset(fresh, key)["assignedCount"] == 1


def test_disassociate_and_revoke(fresh):
    sim = fresh.sim
    key = sim.purchase(count=4)
    fresh.run("assets/associate", {"assets": [_ref(key)], "serialNumbers": ["D1", "D2", "D3"]})
    status = fresh.run("assets/disassociate", {"assets": [_ref(key)], "serialNumbers": ["D1", "D9"]})
    assert (status["eventStatus"], status["eventType"], status["numCompleted"]) == ("FAILED", "DISASSOCIATE", 1)
    # a license that is not associated (D9 never held one): 9610, named with its asset
    assert [(f["errorNumber"], f["errorInfo"]) for f in status["failures"]] == [(9610, {"assets": [_ref(key)], "serialNumbers": ["D9"]})]
    assert (_asset(fresh, key)["assignedCount"], _asset(fresh, key)["availableCount"]) == (2, 2)
    fixed = sim.purchase(count=3, revocable=False)
    fresh.run("assets/associate", {"assets": [_ref(fixed)], "serialNumbers": ["D2"]})
    status = fresh.run("assets/revoke", {"serialNumbers": ["D2", "D3"]})
    assert (status["eventStatus"], status["eventType"], status["numRequested"]) == ("COMPLETE", "REVOKE", 2)
    left = {row for row in sim.snapshot()["assignments"] if row[3] in ("D2", "D3")}
    assert left == {(fixed[0], fixed[1], "serialNumber", "D2")}
    # revoked again: nothing revocable is left (D2 keeps only its irrevocable license): 9610
    again = fresh.run("assets/revoke", {"serialNumbers": ["D2", "D3"]})
    assert (again["eventStatus"], again["numCompleted"]) == ("FAILED", 0)
    assert [(f["errorNumber"], f["errorInfo"]) for f in again["failures"]] == [(9610, {"serialNumbers": ["D2", "D3"]})]


def test_an_event_fault_with_an_error_number_apple_does_not_document_is_refused(fresh):
    """It used to be armed, then to fail the status request that ran the event (the simulator's
    own HTTP 500), which a test read as Apple unreachable."""
    sim = fresh.sim
    key = sim.purchase(count=4)
    fresh.run("assets/associate", {"assets": [_ref(key)], "serialNumbers": ["D1"]})
    with pytest.raises(ValueError, match="unknown Apple error number 9616: use one of 9600, 9601"):
        sim.fail_next_event("DISASSOCIATE", 9616)
    status = fresh.run("assets/disassociate", {"assets": [_ref(key)], "serialNumbers": ["D1"]})  # nothing was armed
    assert (status["eventStatus"], status["numCompleted"]) == ("COMPLETE", 1)
    sim.fail_next_event("ASSOCIATE", 9709)  # a documented one is armed
    status = fresh.run("assets/associate", {"assets": [_ref(key)], "serialNumbers": ["D2"]})
    assert (status["eventStatus"], [f["errorNumber"] for f in status["failures"]]) == ("FAILED", [9709])


def test_synchronous_asset_errors(fresh):
    sim = fresh.sim
    irrevocable = _seeded(fresh, productType="App", revocable=False)
    book = _seeded(fresh, productType="Book")
    not_device = _seeded(fresh, productType="App", deviceAssignable=False)
    key = sim.purchase(count=5)
    many_assets = [{"adamId": str(100 + i), "pricingParam": "STDQ"} for i in range(26)]
    cases = [
        ("assets/associate", {"serialNumbers": ["X"]}, 9718),
        ("assets/associate", {"assets": [], "serialNumbers": ["X"]}, 9718),
        ("assets/associate", {"assets": [_ref(key)]}, 9719),
        ("assets/associate", {"assets": many_assets, "serialNumbers": ["X"]}, 9700),
        ("assets/associate", {"assets": [_ref(key)], "clientUserIds": [f"u{i}" for i in range(1001)]}, 9701),
        ("assets/associate", {"assets": [_ref(key)], "serialNumbers": [f"S{i}" for i in range(1001)]}, 9702),
        ("assets/associate", {"assets": [_ref(key), _ref(key)], "serialNumbers": ["X"]}, 9703),
        ("assets/associate", {"assets": [_ref(key)], "clientUserIds": ["a", "a"]}, 9704),
        ("assets/associate", {"assets": [_ref(key)], "serialNumbers": ["X", "X"]}, 9705),
        ("assets/disassociate", {"assets": [_ref(irrevocable)], "serialNumbers": ["X"]}, 9706),
        ("assets/disassociate", {"assets": [_ref(book)], "clientUserIds": ["user-0001"]}, 9706),
        ("assets/associate", {"assets": [_ref(book)], "serialNumbers": ["X"]}, 9707),
        ("assets/associate", {"assets": [_ref(not_device)], "serialNumbers": ["X"]}, 9707),
        ("assets/revoke", {}, 9719),
        ("assets/revoke", {"serialNumbers": [f"S{i}" for i in range(101)]}, 9702),
        ("assets/revoke", {"clientUserIds": [f"u{i}" for i in range(101)]}, 9701),
    ]
    before = sim.versions()
    for endpoint, body, code in cases:
        response = fresh.post(endpoint, body)
        assert _error(response) == (400, code), (endpoint, code, response.text)
    info = fresh.post("assets/associate", {"assets": [_ref(book)], "serialNumbers": ["X"]}).json()
    assert info["errorInfo"] == {"assets": [_ref(book)]}
    assert sim.versions() == before and not sim.state.events
    # a book can go to a user
    user = sim.state.user_ids("Associated")[0]
    assert fresh.run("assets/associate", {"assets": [_ref(book)], "clientUserIds": [user]})["eventStatus"] == "COMPLETE"


def test_users_create_update_retire(fresh):
    sim = fresh.sim
    status = fresh.run(
        "users/create",
        {
            "users": [
                {"clientUserId": "new-a", "email": "a@example.org", "managedAppleId": "a@appleid.example.org"},
                {"clientUserId": "new-b", "email": "b@example.org"},
            ]
        },
    )
    assert (status["eventStatus"], status["eventType"], status["numCompleted"]) == ("COMPLETE", "CREATE", 2)
    a = fresh.get("users", {"clientUserId": "new-a"}).json()["users"][0]
    b = fresh.get("users", {"clientUserId": "new-b"}).json()["users"][0]
    assert a["status"] == "Associated" and a["idHash"] and "inviteCode" not in a
    assert b["status"] == "Registered" and b["inviteCode"] and "idHash" not in b
    duplicate = fresh.run("users/create", {"users": [{"clientUserId": "new-a"}, {"clientUserId": "new-c"}]})
    assert (duplicate["eventStatus"], duplicate["numCompleted"]) == ("FAILED", 1)
    assert [(f["errorNumber"], f["errorInfo"]) for f in duplicate["failures"]] == [(9716, {"clientUserIds": ["new-a"]})]
    updated = fresh.run("users/update", {"users": [{"clientUserId": "new-b", "email": "b2@example.org"}, {"clientUserId": "ghost"}]})
    assert updated["eventStatus"] == "FAILED" and updated["failures"][0]["errorNumber"] == 9609
    assert sim.state.user("new-b")["email"] == "b2@example.org"

    app = sim.purchase(count=3)
    book = _seeded(fresh, productType="Book")
    fresh.run("assets/associate", {"assets": [_ref(app), _ref(book)], "clientUserIds": ["new-a"]})
    assert _asset(fresh, app)["assignedCount"] == 1
    retired = fresh.run("users/retire", {"users": [{"clientUserId": "new-a"}]})
    assert (retired["eventStatus"], retired["eventType"]) == ("COMPLETE", "RETIRE")
    assert _asset(fresh, app)["assignedCount"] == 0
    held = {row[:2] for row in sim.snapshot()["assignments"] if row[3] == "new-a"}
    assert held == {book}
    assert sim.snapshot()["users"]["new-a"]["status"] == "Retired"
    # re-creating a retired user adds a new record; the retired one stays listed
    fresh.run("users/create", {"users": [{"clientUserId": "new-a", "email": "a@example.org"}]})
    records = fresh.get("users", {"clientUserId": "new-a"}).json()["users"]
    assert [r["status"] for r in records] == ["Retired", "Registered"]
    assert sim.snapshot()["users"]["new-a"]["status"] == "Registered"


def test_synchronous_user_errors(fresh):
    cases = [
        ({}, 9720),
        ({"users": []}, 9720),
        ({"users": [{"clientUserId": f"u{i}"} for i in range(101)]}, 9714),
        ({"users": [{"clientUserId": "u"}, {"clientUserId": "u"}]}, 9715),
        ({"users": [{"clientUserId": "u", "email": "not-an-email"}]}, 9717),
        ({"users": [{"email": "x@example.org"}]}, 9602),
    ]
    for body, code in cases:
        assert _error(fresh.post("users/create", body)) == (400, code), body


def test_unknown_event_and_mdm_info_in_status(fresh):
    assert _error(fresh.get("status", {"eventId": "nope"})) == (400, 9708)
    assert _error(fresh.get("status")) == (400, 9708)
    fresh.sim.claim_by_other_mdm()
    status = fresh.run("users/create", {"users": [{"clientUserId": "z"}]})
    assert status["mdmInfo"] == {"id": "other-mdm-id", "name": "OtherMDM", "metadata": "other.example.com"}


def test_invite_acceptance_out_of_band(fresh):
    sim = fresh.sim
    registered = sim.state.user_ids("Registered")[0]
    assert sim.accept_invite(registered)
    user = fresh.get("users", {"clientUserId": registered}).json()["users"][0]
    assert user["status"] == "Associated" and user["idHash"]
