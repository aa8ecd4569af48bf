"""Receiving Apple's notifications (the endpoint without its web server): the bearer, the
body, the record, repeats. Nothing is acted on here (see test_notifications.py)."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from plugins.vpp.notifications.configure import Change
from plugins.vpp.notifications.inbox import receive

from .conftest import account_row
from .notify_helpers import inbox

LIMIT = 4096


def _give_secret(host: Host, name: str = "school") -> tuple[str, str]:
    """Store a notification secret on the account as if Apple had accepted it."""
    from plugins.vpp.models import VppAccount

    secret = "s" * 10 + uuid.uuid4().hex + "S" * 10
    row = account_row(host, name)
    change = Change(True, row.mdm_info_id, "https://mdm.example.org/apple/apps-books/notify/x", secret)
    change.prepare(host)
    host.db.run_write(lambda session: change.accepted(session, session.get_one(VppAccount, row.id)))
    return row.mdm_info_id, secret


def _body(ntype: str = "ASSET_COUNT", notification: Any = None, uid: str | None = None, **extra: Any) -> bytes:
    if notification is None:
        notification = {"adamId": "408709785", "pricingParam": "STDQ", "countDelta": 5}
    envelope = {"notificationId": str(uuid.uuid4()), "notificationType": ntype, "notification": notification, **extra}
    if uid is not None:
        envelope["uId"] = uid
    return json.dumps(envelope).encode()


def _receive(host: Host, notify_id: str, secret: str | None, body: bytes) -> Any:
    return receive(host, notify_id, None if secret is None else f"Bearer {secret}", body, max_bytes=LIMIT)


def test_a_notification_is_recorded_before_the_answer_and_the_account_notes_it(school: Host) -> None:
    notify_id, secret = _give_secret(school)
    uid = account_row(school).uid
    receipt = _receive(school, notify_id, secret, _body(uid=uid))
    assert (receipt.status, receipt.message, receipt.new) == (200, "recorded", True)
    [row] = inbox(school)
    assert (row.notification_type, row.status, row.attempts) == ("ASSET_COUNT", "received", 0)
    assert row.body["notification"]["countDelta"] == 5
    assert account_row(school).last_notification_at is not None


def test_a_repeated_notification_id_is_recorded_once(school: Host) -> None:
    notify_id, secret = _give_secret(school)
    body = _body()
    assert _receive(school, notify_id, secret, body).new
    again = _receive(school, notify_id, secret, body)
    assert (again.status, again.message, again.new) == (200, "already recorded", False)  # 2xx: Apple stops retrying
    assert len(inbox(school)) == 1


@pytest.mark.parametrize("case", ["unknown account", "wrong secret", "no bearer", "basic auth", "empty id"])
def test_unknown_account_or_wrong_secret_is_401_and_nothing_changes(school: Host, case: str) -> None:
    notify_id, secret = _give_secret(school)
    before = account_row(school).last_notification_at
    if case == "unknown account":
        receipt = _receive(school, str(uuid.uuid4()), secret, _body())
    elif case == "wrong secret":
        receipt = _receive(school, notify_id, secret[:-1] + "x", _body())
    elif case == "no bearer":
        receipt = _receive(school, notify_id, None, _body())
    elif case == "basic auth":
        receipt = receive(school, notify_id, f"Basic {secret}", _body(), max_bytes=LIMIT)
    else:
        receipt = _receive(school, "", secret, _body())
    assert receipt.status == 401 and not receipt.new
    assert inbox(school) == [] and account_row(school).last_notification_at == before


def test_an_account_without_notifications_refuses_every_bearer(school: Host) -> None:
    notify_id = account_row(school).mdm_info_id
    assert _receive(school, notify_id, "", _body()).status == 401
    assert _receive(school, notify_id, "anything", _body()).status == 401


def test_the_secret_being_configured_is_accepted_too(school: Host) -> None:
    notify_id, secret = _give_secret(school)
    nxt = Change(True, notify_id, "https://mdm.example.org/n", "next-" + uuid.uuid4().hex)
    nxt.prepare(school)
    assert _receive(school, notify_id, nxt.secret, _body("TEST_NOTIFICATION", {})).status == 200  # Apple's test during POST client/config
    assert _receive(school, notify_id, secret, _body()).status == 200  # the one Apple has until then
    nxt.abandon(school)  # Apple refused it
    assert _receive(school, notify_id, nxt.secret, _body()).status == 401


def test_an_account_being_added_answers_apples_test_only(school: Host) -> None:
    adding = str(uuid.uuid4())
    change = Change(True, adding, "https://mdm.example.org/n", "adding-" + uuid.uuid4().hex)
    change.prepare(school)
    test = _receive(school, adding, change.secret, _body("TEST_NOTIFICATION", {}))
    assert (test.status, test.message) == (200, "test received")
    assert _receive(school, adding, change.secret, _body()).status == 503  # not yet an account: Apple tries again later
    assert _receive(school, adding, "wrong", _body("TEST_NOTIFICATION", {})).status == 401
    assert inbox(school) == []


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_body(notificationId=None), "notificationId"),
        (_body("SUBSCRIPTION_COUNT", {}), "not one this host subscribes to"),
        (_body("ASSET_COUNT", {"adamId": "1", "pricingParam": "STDQ", "countDelta": "5"}), "countDelta"),
        (_body("ASSET_COUNT", {"pricingParam": "STDQ", "countDelta": 5}), "adamId"),
        (
            _body("ASSET_MANAGEMENT", {"type": "ASSOCIATE", "result": "SUCCESS", "eventId": "e1", "assignments": [{"adamId": "1", "pricingParam": "STDQ"}]}),
            "exactly one of",
        ),
        (_body("ASSET_MANAGEMENT", {"type": "BUY", "result": "SUCCESS", "eventId": "e1", "assignments": []}), "'type'"),
        (_body("ASSET_MANAGEMENT", {"type": "REVOKE", "result": "SUCCESS", "assignments": []}), "eventId"),
        (_body("USER_MANAGEMENT", {"type": "CREATE", "result": "SUCCESS", "eventId": "e", "users": [{"clientUserId": "u"}]}), "status"),
        (_body("USER_ASSOCIATED", {"associatedUsers": "u1"}), "not a list"),
        (_body(notification=[]), "notification is missing"),
        (_body(uid="1234"), "uId"),
    ],
)
def test_malformed_or_unknown_bodies_are_400_nothing_recorded_and_logged(school: Host, caplog: pytest.LogCaptureFixture, body: bytes, reason: str) -> None:
    notify_id, secret = _give_secret(school)
    with caplog.at_level(logging.WARNING, logger="plugins.vpp.notifications"):
        receipt = _receive(school, notify_id, secret, body)
    assert receipt.status == 400 and reason in receipt.message, receipt.message
    assert inbox(school) == []
    assert any(reason in r.getMessage() and "400" in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text


def test_an_oversized_body_is_413(school: Host) -> None:
    notify_id, secret = _give_secret(school)
    big = _body("TEST_NOTIFICATION", {"padding": "x" * LIMIT})
    assert _receive(school, notify_id, secret, big).status == 413
    assert receive(school, notify_id, f"Bearer {secret}", b"", max_bytes=LIMIT, too_large=True).status == 413  # not even read
    assert receive(school, notify_id, "Bearer nope", b"", max_bytes=LIMIT, too_large=True).status == 401  # the bearer first
    assert inbox(school) == []


def test_the_test_notification_needs_no_act_and_proves_apple_reaches_us(school: Host) -> None:
    notify_id, secret = _give_secret(school)
    assert _receive(school, notify_id, secret, _body("TEST_NOTIFICATION", {})).new
    [row] = inbox(school)
    assert row.status == "done" and "reaches" in row.detail


def test_the_secret_is_stored_encrypted_and_never_logged(school: Host, caplog: pytest.LogCaptureFixture) -> None:
    notify_id, secret = _give_secret(school)
    with caplog.at_level(logging.DEBUG):
        _receive(school, notify_id, secret, _body())
        _receive(school, notify_id, "wrong", _body())
    row = account_row(school)
    assert row.notification_secret and secret not in row.notification_secret
    assert school.secrets.decrypt(row.notification_secret) == secret
    assert secret not in caplog.text and secret not in repr(row)
    db = Path(str(school.db.url.database))
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            assert secret.encode() not in path.read_bytes()


def test_over_http_the_bearer_is_checked_before_anything_reads_the_body(school: Host) -> None:
    """The console's check of every request's text (storable_input) read and parsed the body of
    the public endpoint before its bearer was checked: anyone could make the host parse a JSON
    body of up to [web] request_max_bytes, and a NUL in it, or a large form field, was answered
    422 or 400 (an HTML page) instead of 401. The endpoint checks its body itself, after the
    bearer, and answers in its own JSON."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    notify_id, secret = _give_secret(school)
    url = f"/apple/apps-books/notify/{notify_id}"
    nul = _body("TEST_NOTIFICATION", {"note": "a\u0000b"})
    with TestClient(create_app(school)) as client:
        anonymous = client.post(url, content=nul, headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"})
        assert (anonymous.status_code, anonymous.json()) == (401, {"error": "unknown notification URL or wrong bearer secret"})
        form = client.post(url, data={"a": "x" * 1_100_000}, headers={"Authorization": "Bearer wrong"})
        assert form.status_code == 401, form.text
        refused = client.post(url, content=nul, headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
        assert (refused.status_code, refused.json()) == (400, {"error": "the body holds a NUL character, which cannot be stored"})
        assert inbox(school) == []
        good = client.post(url, content=_body("TEST_NOTIFICATION", {}), headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
        assert (good.status_code, good.json()) == (200, {"status": "recorded"})
        assert client.get("/devices?q=%00").status_code == 422  # every other route is still checked before it runs


def test_forged_posts_log_one_line_then_a_count_every_few_minutes(school: Host, caplog: pytest.LogCaptureFixture) -> None:
    """Each anonymous or forged POST to the endpoint logged a WARNING: a scanner filled `mdm run`'s
    log. Now one line, then, a few minutes on, one with the exact count of those not logged;
    every one is still answered 401."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app
    from plugins.vpp.notifications.inbox import refusals

    notify_id, _ = _give_secret(school)
    now = [1000.0]
    refusals(school).clock = lambda: now[0]
    refused = "notification refused (401)"
    with TestClient(create_app(school)) as client, caplog.at_level(logging.WARNING, logger="plugins.vpp.notifications"):
        for n in range(50):
            url = f"/apple/apps-books/notify/{notify_id if n % 2 else 'scan' + str(n)}"
            assert client.post(url, content=b"{}", headers={"Authorization": "Bearer forged"}).status_code == 401
            now[0] += 1.0
        assert [r.levelname for r in caplog.records if refused in r.getMessage()] == ["WARNING"]
        now[0] += 300.0
        assert client.post(f"/apple/apps-books/notify/{notify_id}", content=b"{}").status_code == 401
    lines = [r.getMessage() for r in caplog.records if refused in r.getMessage()]
    assert len(lines) == 2 and "(and 49 more in the last 350 s, not logged)" in lines[1], lines
