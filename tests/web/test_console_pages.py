"""Pages an admin reads every day beside the assets: Events (recent events, failed deliveries
and Deliver again), an account's VPP users (status, invitation) and Sync runs (history with
errors)."""

from __future__ import annotations

import html
import os
import re
import socket
from typing import Any

from mdm_core import hookimpl, inventory
from mdm_core.host import Host

from .conftest import csrf, token_for


class Refusing:
    """A subscriber that refuses device enrolments until told to accept them."""

    def __init__(self) -> None:
        self.accept = False
        self.seen: list[str] = []

    @hookimpl
    def mdm_device_enrolled(self, host: Host, event: Any) -> None:
        if not self.accept:
            raise RuntimeError("the asset register is down for maintenance")
        self.seen.append(event.id)


def _refused_enrolment(host: Host, admin: Any, serial: str) -> tuple[Refusing, str, str]:
    """A subscriber refusing the enrolment of ``serial``: it, the Events page and the failure's id."""
    subscriber = Refusing()
    host.pm.register(subscriber, name="asset-register")
    inventory.add_device(host, serial, "iOS")
    host.deliver_events()
    page = admin.get("/events").text
    [failure] = _failures(page)
    return subscriber, page, failure


def _failures(page: str) -> list[str]:
    return re.findall(r'action="/events/failures/(\d+)/redeliver"', page)


def test_events_page_lists_events_and_failed_deliveries_and_delivers_again(web_host: Host, admin: Any, viewer: Any) -> None:
    subscriber, page, failure = _refused_enrolment(web_host, admin, "EVENTS000001")
    row = re.search(r'<table class="grid" id="failures">.*?</table>', page, re.S).group(0)
    assert "asset-register" in row and "the asset register is down for maintenance" in row and "Deliver again" in row
    recent = re.search(r'<table class="grid" id="events">.*?</table>', page, re.S).group(0)
    assert re.search(r"<td>device_enrolled</td>", recent)
    assert "Deliver again" not in viewer.get("/events").text  # a viewer reads, never delivers

    # delivered again while the subscriber still refuses: said so, the failure stays
    again = admin.post(f"/events/failures/{failure}/redeliver", data={"csrftoken": csrf(admin)})
    assert again.status_code == 200 and "delivered again, and it failed again: " in html.unescape(again.text)
    assert _failures(again.text) == [failure]
    # and once it accepts: delivered, gone from the failures
    subscriber.accept = True
    done = admin.post(f"/events/failures/{failure}/redeliver", data={"csrftoken": csrf(admin)})
    assert done.status_code == 200 and "delivered again: the subscriber accepted the event" in done.text
    assert _failures(done.text) == [] and len(subscriber.seen) == 1
    # a failure delivered meanwhile (another admin, another tab): one line, 404, nothing delivered twice
    stale = admin.post(f"/events/failures/{failure}/redeliver", data={"csrftoken": csrf(admin)})
    assert stale.status_code == 404 and f"no failed delivery {failure}" in html.unescape(stale.text)
    # in the console's words: the Events page, not `mdm events failures`, an admin cannot click
    assert "Failed deliveries on the Events page lists those left" in stale.text and "mdm events" not in stale.text
    assert len(subscriber.seen) == 1


def test_an_event_filter_that_matches_nothing_says_so(web_host: Host, admin: Any) -> None:
    """The filter by name said 'No event yet.' while the outbox held events of other names."""
    inventory.add_device(web_host, "EVENTS000003", "iOS")
    web_host.deliver_events()
    assert "No event yet." not in admin.get("/events").text
    page = admin.get("/events", params={"name": "user_removed"}).text  # a known event that did not happen
    assert "No event named user_removed." in page and "No event yet." not in page
    misspelt = admin.get("/events", params={"name": "device_enroled"})  # was the same empty list
    assert misspelt.status_code == 404 and "no event named &#39;device_enroled&#39;: events are named " in misspelt.text


def test_failed_deliveries_through_the_api(web_host: Host, client: Any) -> None:
    subscriber = Refusing()
    web_host.pm.register(subscriber, name="asset-register")
    inventory.add_device(web_host, "EVENTS000002", "iOS")
    web_host.deliver_events()
    viewer, admin = token_for(web_host, "viewer"), token_for(web_host, "admin")
    [failure] = client.get("/api/v1/events/failures", headers=viewer).json()["items"]
    assert failure["plugin"] == "asset-register" and "down for maintenance" in failure["error"]
    assert client.post(f"/api/v1/events/failures/{failure['id']}/redeliver", headers=viewer).status_code == 403
    subscriber.accept = True
    answer = client.post(f"/api/v1/events/failures/{failure['id']}/redeliver", headers=admin)
    assert answer.status_code == 200 and answer.json() == {"id": failure["id"], "delivered": True, "error": None}
    assert client.get("/api/v1/events/failures", headers=viewer).json()["items"] == []
    gone = client.post(f"/api/v1/events/failures/{failure['id']}/redeliver", headers=admin)
    assert gone.status_code == 404 and gone.json()["error"] == (
        f"no failed delivery {failure['id']}: it was delivered again meanwhile or its event is gone (GET /api/v1/events/failures lists those left)"
    )  # the API's words, not `mdm events failures`


def test_vpp_users_page_shows_status_and_invitation(school: Host, admin: Any, simulator: Any) -> None:
    records = {u["clientUserId"]: u for u in simulator.state.user_records()}
    page = admin.get("/vpp/accounts/school/users").text
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]*)</td><td>([^<]+)</td><td>[^<]*</td><td>(.*?)</td></tr>", page)
    assert {r[0] for r in rows} == set(records)  # fewer than a page
    for client_user_id, email, status, invitation in rows:
        assert status == records[client_user_id]["status"] and email == (records[client_user_id].get("email") or "")
        if status == "Registered":  # invited, not yet accepted: the link to send them
            link = html.unescape(re.search(r'href="([^"]+)"', invitation).group(1))
            assert link.startswith(simulator.base_url.split("/mdm/")[0] + "/") and records[client_user_id]["inviteCode"] in link
        else:
            assert invitation == ""
    assert {"Registered", "Associated"} <= {r[2] for r in rows}


def test_sync_runs_page_shows_the_history_with_errors(school: Host, admin: Any, simulator: Any) -> None:
    from plugins.vpp.sync.run import sync_account

    simulator.faults.add("server_error", endpoint="assets", count=10)
    report = sync_account(school, "school")
    assert report["status"] == "error"
    simulator.faults.clear()
    page = admin.get("/vpp/accounts/school/runs").text
    rows = re.findall(r'<tr><td><a href="/vpp/runs/(\d+)">\d+</a></td>.*?<td class="status-(\w+)">.*?<td>([^<]*)</td></tr>', page, re.S)
    assert [(status, bool(error)) for _, status, error in rows] == [("error", True), ("ok", False)]  # newest first
    assert html.unescape(rows[0][2]) == report["error"]
    run = admin.get(f"/vpp/runs/{rows[0][0]}").text
    assert html.unescape(re.search(r'id="run-error">([^<]+)<', run).group(1)) == report["error"]
    # which host ran each (several hosts share the accounts): this process, on this machine
    here = f"process {os.getpid()} on {socket.gethostname()}"
    assert re.search(r'id="run-host">([^<]+)<', run).group(1) == here
    assert page.count(f"<td>{here}</td>") == 2


def test_a_second_message_before_the_next_page_is_kept(school: Host, admin: Any) -> None:
    """A form sent before the page of the previous one was shown (a double click, a second
    tab) lost its message: the session noticed the first message only, the second was appended
    to it in place and never saved, so the admin read the first answer as the last one."""
    token = csrf(admin)
    for seconds in ("1800", "2400"):
        sent = admin.post("/vpp/accounts/school/interval", data={"interval_seconds": seconds, "csrftoken": token}, follow_redirects=False)
        assert sent.status_code == 303
    shown = re.findall(r'<p class="flash ok"[^>]*>([^<]*)</p>', admin.get("/vpp").text)
    assert shown == ["school: Account Synchronization Interval set to 1800 seconds", "school: Account Synchronization Interval set to 2400 seconds"], shown
    assert not re.findall(r'class="flash', admin.get("/vpp").text)  # shown once


def test_a_refused_form_s_page_leads_back_to_the_form(school: Host, admin: Any) -> None:
    """A refused form (an interval too short, a name taken) answered "Nothing was changed. Back
    to the console", a link to the home page: the admin had to find the account's page again.
    It now leads back to the page the form was sent from; other errors keep the home page."""
    refused = admin.post(
        "/vpp/accounts/school/interval", data={"interval_seconds": "5", "csrftoken": csrf(admin)}, headers={"Referer": "http://testserver/vpp"}
    )
    assert refused.status_code == 422 and 'Nothing was changed. <a href="/vpp" id="back">Back to the page</a>' in refused.text, refused.text
    searched = admin.post("/api-tokens", data={"name": "a b", "csrftoken": csrf(admin)}, headers={"Referer": "http://testserver/api-tokens?page=1"})
    assert searched.status_code == 422 and '<a href="/api-tokens?page=1" id="back">Back to the page</a>' in searched.text
    for referer in ({}, {"Referer": "http://testserver/login"}, {"Referer": "http://testserver//evil.example/"}, {"Referer": "http://testserver/no/such/page"}):
        page = admin.post("/vpp/accounts/school/interval", data={"interval_seconds": "5", "csrftoken": csrf(admin)}, headers=referer)
        assert page.status_code == 422 and '<a href="/">Back to the console</a>' in page.text, (referer, page.text)
    missing = admin.get("/vpp/accounts/nope/assets", headers={"Referer": "http://testserver/vpp"})
    assert missing.status_code == 404 and '<a href="/">Back to the console</a>' in missing.text


def test_a_double_click_on_deliver_again_delivers_once_and_says_so_twice(web_host: Host, admin: Any) -> None:
    """Deliver again sent twice: the subscriber could get the event twice at once, and the
    second answer, after the first delivered it, was a 404 "no failed delivery N". Now it is
    delivered once and both answers say the subscriber accepted it."""
    subscriber, page, failure = _refused_enrolment(web_host, admin, "EVENTS000002")
    [form_id] = set(re.findall(r'name="form_id" value="([^"]+)"', page))
    subscriber.accept = True
    form = {"csrftoken": csrf(admin), "form_id": form_id}
    for answer in [admin.post(f"/events/failures/{failure}/redeliver", data=form) for _ in range(2)]:
        assert answer.status_code == 200 and "delivered again: the subscriber accepted the event" in answer.text, answer.status_code
    assert len(subscriber.seen) == 1
    refused = admin.post(f"/events/failures/{failure}/redeliver", data={**form, "form_id": "<x>"})
    assert refused.status_code == 422 and "the form's id is not valid: open the Events page again" in html.unescape(refused.text)
