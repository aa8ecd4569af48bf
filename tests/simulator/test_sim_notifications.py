"""The simulator's notifications: what Apple posts to the MDM's notificationUrl, and when."""

from __future__ import annotations

import requests

ALL_TYPES = ["ASSET_MANAGEMENT", "ASSET_COUNT", "USER_MANAGEMENT", "USER_ASSOCIATED"]


def _subscribe(api, receiver, types=ALL_TYPES, secret="n0tify-secret-" + "x" * 30):
    response = api.post(
        "client/config",
        {
            "mdmInfo": {"id": "ours", "name": "mdm-host", "metadata": "mdm.example.org"},
            "notificationUrl": receiver.url,
            "notificationAuthToken": secret,
            "notificationTypes": types,
        },
    )
    assert response.status_code == 200, response.text
    return secret


def _ref(key):
    return {"adamId": key[0], "pricingParam": key[1]}


def test_configuring_sends_test_notification_with_the_bearer_secret(make_client, receiver):
    api = make_client()
    secret = _subscribe(api, receiver)
    [(auth, body)] = receiver.received
    assert auth == f"Bearer {secret}"
    assert set(body) == {"notificationId", "notificationType", "notification", "uId"}
    assert (body["notificationType"], body["notification"], body["uId"]) == ("TEST_NOTIFICATION", {}, api.sim.state.uid)
    config = api.get("client/config").json()
    assert config["notificationUrl"] == receiver.url and config["subscribedNotificationTypes"] == ALL_TYPES


def test_unreachable_or_refusing_url_is_9728_and_nothing_changes(make_client, receiver):
    api = make_client()
    receiver.status[:] = [401]
    body = {
        "mdmInfo": {"id": "ours", "name": "n", "metadata": "m"},
        "notificationUrl": receiver.url,
        "notificationAuthToken": "t" * 40,
        "notificationTypes": ["ASSET_COUNT"],
    }
    refused = api.post("client/config", body)
    assert (refused.status_code, refused.json()["errorNumber"]) == (400, 9728)
    config = api.get("client/config").json()
    assert "mdmInfo" not in config and "notificationUrl" not in config  # the whole configuration was refused
    closed = api.post("client/config", {**body, "notificationUrl": "http://127.0.0.1:9/nobody"})
    assert closed.json()["errorNumber"] == 9728
    not_https = api.post("client/config", {**body, "notificationUrl": "http://mdm.example.org/n"})
    assert not_https.json()["errorNumber"] == 9712  # plain http only to loopback


def test_associate_success_and_failure_notifications(make_client, receiver):
    api = make_client(async_delay=0.05)
    _subscribe(api, receiver)
    key = api.sim.purchase(count=2)
    event_id = api.post("assets/associate", {"assets": [_ref(key)], "serialNumbers": ["S1", "S2", "S3"]}).json()["eventId"]
    assert api.sim.wait_notifications(30)  # the event ran when due, without another request
    managed = [b["notification"] for b in receiver.bodies("ASSET_MANAGEMENT")]
    success = next(n for n in managed if n["result"] == "SUCCESS")
    failure = next(n for n in managed if n["result"] == "FAILURE")
    assert (success["type"], success["eventId"]) == ("ASSOCIATE", event_id)
    assert success["assignments"] == [{**_ref(key), "serialNumber": s} for s in ("S1", "S2")]
    assert failure["assignments"] == [{**_ref(key), "serialNumber": "S3"}]
    assert failure["error"]["errorNumber"] == 9709 and failure["error"]["errorMessage"]
    assert {n["notificationId"] for n in receiver.bodies()} == {d["notificationId"] for d in api.sim.notifications()}


def test_disassociate_revoke_and_large_events_split(make_client, receiver):
    api = make_client(async_delay=0, notification_chunk=2)
    _subscribe(api, receiver)
    key = api.sim.purchase(count=5)
    api.run("assets/associate", {"assets": [_ref(key)], "serialNumbers": ["D1", "D2", "D3"]})
    api.run("assets/disassociate", {"assets": [_ref(key)], "serialNumbers": ["D1"]})
    api.run("assets/revoke", {"serialNumbers": ["D2", "D3"]})
    assert api.sim.wait_notifications(30)
    by_type: dict[str, list] = {}
    for body in receiver.bodies("ASSET_MANAGEMENT"):
        by_type.setdefault(body["notification"]["type"], []).append(body["notification"])
    assert [len(n["assignments"]) for n in by_type["ASSOCIATE"]] == [2, 1]  # cut at notification_chunk
    assert by_type["DISASSOCIATE"][0]["assignments"] == [{**_ref(key), "serialNumber": "D1"}]
    revoked = [a for n in by_type["REVOKE"] for a in n["assignments"]]
    assert sorted(a["serialNumber"] for a in revoked) == ["D2", "D3"] and all(n["result"] == "SUCCESS" for n in by_type["REVOKE"])


def test_asset_count_on_purchase_transfer_and_refund(make_client, receiver):
    api = make_client()
    _subscribe(api, receiver)
    key = api.sim.purchase(count=4)
    api.sim.purchase(adam_id=key[0], count=3)
    api.sim.transfer(key[0], count=-2)
    api.sim.remove_asset(key[0])
    assert api.sim.wait_notifications(30)
    deltas = [b["notification"] for b in receiver.bodies("ASSET_COUNT")]
    assert deltas == [{**_ref(key), "countDelta": d} for d in (4, 3, -2, -5)]


def test_user_management_and_user_associated(make_client, receiver):
    api = make_client(async_delay=0)
    _subscribe(api, receiver)
    api.run("users/create", {"users": [{"clientUserId": "new-1", "email": "new1@example.org"}]})
    api.run("users/retire", {"users": [{"clientUserId": "new-1"}, {"clientUserId": "nobody"}]})
    registered = api.sim.state.user_ids("Registered")[0]
    api.sim.accept_invite(registered)
    assert api.sim.wait_notifications(30)
    managed = [b["notification"] for b in receiver.bodies("USER_MANAGEMENT")]
    created = next(n for n in managed if n["type"] == "CREATE")
    assert created["result"] == "SUCCESS" and created["users"][0]["clientUserId"] == "new-1"
    assert created["users"][0]["status"] == "Registered" and created["users"][0]["inviteCode"]
    retired = [n for n in managed if n["type"] == "RETIRE"]
    assert {(n["result"], u["clientUserId"]) for n in retired for u in n["users"]} == {("SUCCESS", "new-1"), ("FAILURE", "nobody")}
    [associated] = [b["notification"] for b in receiver.bodies("USER_ASSOCIATED")]
    [user] = associated["associatedUsers"]
    assert (user["clientUserId"], user["status"]) == (registered, "Associated") and user["idHash"]


def test_only_subscribed_types_are_sent(make_client, receiver):
    api = make_client(async_delay=0)
    _subscribe(api, receiver, types=["ASSET_COUNT"])
    key = api.sim.purchase(count=3)
    api.run("assets/associate", {"assets": [_ref(key)], "serialNumbers": ["S1"]})
    assert api.sim.wait_notifications(30)
    assert [b["notificationType"] for b in receiver.bodies()] == ["TEST_NOTIFICATION", "ASSET_COUNT"]


def test_retries_like_apple_then_gives_up(make_client, receiver):
    api = make_client(notification_retry_delays=(0.05, 0.05))
    _subscribe(api, receiver)
    receiver.status[:] = [503, 500, 200]
    api.sim.purchase(count=1)
    assert api.sim.wait_notifications(30)
    [sent] = [d for d in api.sim.notifications() if d["notificationType"] == "ASSET_COUNT"]
    assert (sent["status"], sent["attempts"], sent["answers"]) == ("delivered", 3, [503, 500, 200])
    receiver.status[:] = [500]
    api.sim.purchase(count=1)
    assert api.sim.wait_notifications(30)
    last = api.sim.notifications()[-1]
    assert (last["status"], last["attempts"]) == ("failed", 3)  # about 3 attempts, then lost


def test_faults_drop_delay_and_duplicate(make_client, receiver):
    api = make_client(async_delay=0)
    _subscribe(api, receiver)
    api.sim.faults.add("notification_drop", type="ASSET_COUNT", count=1)
    api.sim.faults.add("notification_duplicate", type="ASSET_COUNT", count=1, after=1)
    api.sim.purchase(count=1)  # dropped
    api.sim.purchase(count=2)  # sent twice
    assert api.sim.wait_notifications(30)
    counts = receiver.bodies("ASSET_COUNT")
    assert [b["notification"]["countDelta"] for b in counts] == [2, 2]
    assert counts[0]["notificationId"] == counts[1]["notificationId"]
    assert [d["status"] for d in api.sim.notifications() if d["notificationType"] == "ASSET_COUNT"] == ["dropped", "delivered", "delivered"]
    api.sim.faults.add("notification_delay", seconds=0.3, count=1)
    api.sim.purchase(count=3)
    assert not api.sim.wait_notifications(0.1)  # held back
    assert api.sim.wait_notifications(30)
    assert receiver.bodies("ASSET_COUNT")[-1]["notification"]["countDelta"] == 3


def test_control_api_lists_notifications_and_arms_their_faults(make_client, receiver):
    api = make_client()
    _subscribe(api, receiver)
    root = api.sim.root_url
    armed = requests.post(f"{root}/_sim/faults", json={"kind": "notification_drop", "type": "ASSET_COUNT", "count": 1}, timeout=5)
    assert armed.status_code == 201
    changed = requests.post(f"{root}/_sim/change", json={"action": "purchase", "count": 2}, timeout=5).json()
    requests.post(f"{root}/_sim/change", json={"action": "transfer", "adam_id": changed["result"][0], "count": 1}, timeout=5)
    assert api.sim.wait_notifications(30)
    listed = requests.get(f"{root}/_sim/notifications", timeout=5).json()["notifications"]
    assert [(n["notificationType"], n["status"]) for n in listed] == [
        ("TEST_NOTIFICATION", "delivered"),
        ("ASSET_COUNT", "dropped"),
        ("ASSET_COUNT", "delivered"),
    ]
    assert all("n0tify-secret" not in repr(n) for n in listed)


def test_without_notifications_nothing_is_sent_and_events_stay_lazy(make_client, receiver):
    api = make_client(async_delay=0.05)
    key = api.sim.purchase(count=2)
    event_id = api.post("assets/associate", {"assets": [_ref(key)], "serialNumbers": ["S1"]}).json()["eventId"]
    assert api.sim.state.next_event_due() is None  # nothing runs events early
    assert api.wait_event(event_id)["eventStatus"] == "COMPLETE"
    assert api.sim.notifications() == [] and receiver.received == []
