"""A form sent after the admin's session ended (idle, lifetime, signed out in another tab) goes
to the sign-in page, which says nothing was done, and signing in leads back to the form's page:
never to a GET of the form's POST-only address, which answered 405 "GET is not allowed here"."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from mdm_core.host import Host
from plugins.vpp.accounts import list_accounts

from .conftest import PASSWORD, csrf, sign_in


def _signed_out_elsewhere(app: Any) -> None:
    """Another tab of the same admin signs out: every session of alice ends."""
    with TestClient(app) as other:
        assert sign_in(other).status_code == 303
        assert other.post("/logout", data={"csrftoken": csrf(other)}, follow_redirects=False).status_code == 303


def _interval(host: Host) -> int:
    return next(a["interval_seconds"] for a in list_accounts(host) if a["name"] == "school")


def _send_interval_form(admin: Any, referer: str | None) -> Any:
    headers = {"Referer": referer} if referer else {}
    data = {"interval_seconds": "600", "csrftoken": csrf(admin)}
    return admin.post("/vpp/accounts/school/interval", data=data, headers=headers, follow_redirects=False)


def test_a_form_sent_after_the_session_ended_returns_to_its_page_after_sign_in(school: Host, app: Any, admin: Any) -> None:
    before = _interval(school)
    assert admin.get("/vpp").status_code == 200
    _signed_out_elsewhere(app)

    sent = _send_interval_form(admin, "http://testserver/vpp")
    assert sent.status_code == 303 and sent.headers["location"] == "/login?next=%2Fvpp"
    login = admin.get(sent.headers["location"])
    assert "your session had ended, so nothing was done: sign in, then send the form again" in login.text
    assert _interval(school) == before  # nothing was done

    back = admin.post("/login", data={"name": "alice", "password": PASSWORD, "next": "/vpp", "csrftoken": csrf(admin)}, follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == "/vpp"
    page = admin.get("/vpp")
    assert page.status_code == 200 and "Account Synchronization Interval" in page.text


def test_without_a_page_to_return_to_sign_in_leads_home(school: Host, app: Any, admin: Any) -> None:
    _signed_out_elsewhere(app)
    for referer in (None, "http://testserver/vpp/accounts/school/interval", "http://testserver/login", "https://elsewhere.example//evil"):
        sent = _send_interval_form(admin, referer)
        assert sent.status_code == 303 and sent.headers["location"] == "/login?next=%2F", referer


def test_a_page_without_a_session_still_returns_to_itself(client: Any) -> None:
    sent = client.get("/vpp/accounts/school/assets?q=atlas", follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"] == "/login?next=%2Fvpp%2Faccounts%2Fschool%2Fassets%3Fq%3Datlas"
