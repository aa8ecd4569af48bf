"""The console's API tokens page: admins list, create (the token shown once, on the page that
answers the form, never again nor logged) and revoke (after a confirmation, recorded as
``console:ADMIN``) through the functions ``mdm api-tokens`` uses; viewers only read; a token
cannot create tokens; every form needs the CSRF token."""

from __future__ import annotations

import base64
import re
from typing import Any

from mdm_core.host import Host

from .conftest import WEB_CONFIG, csrf, sign_in, token_for

TOKEN_RE = re.compile(r"mdm_[A-Za-z0-9_-]{20,}")


def _session_payload(client: Any) -> str:
    """What the signed session cookie holds (its payload is base64 JSON, readable by anyone)."""
    value = str(client.cookies.get("mdm_session") or "")
    payload = value.split(".")[0]
    return base64.b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8", "replace")


def test_an_admin_lists_creates_and_revokes_tokens_on_both_databases(make_host: Any, database_url: str, caplog: Any) -> None:
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin, create_token, list_tokens
    from mdm_core.web.app import create_app

    from .conftest import PASSWORD

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD, "admin")
    old = create_token(host, "ci", "viewer")["token"]  # as `mdm api-tokens create` does
    caplog.set_level("DEBUG")
    with TestClient(create_app(host)) as admin:
        assert sign_in(admin).status_code == 303
        assert admin.get("/api/v1/me", headers={"Authorization": f"Bearer {old}"}).status_code == 200  # last used: now
        page = admin.get("/api-tokens")
        assert page.status_code == 200 and '<a href="/api-tokens" class="current">API tokens</a>' in page.text
        row = re.search(r"<tr><td>ci</td><td>viewer</td><td>([^<]+)</td><td>([^<]+)</td>", page.text)
        assert row and row.group(1).endswith("UTC") and row.group(2).endswith("UTC"), page.text  # created, last used
        assert 'id="create-token"' in page.text and 'id="revoke-ci"' in page.text

        created = admin.post("/api-tokens", data={"name": "deploy", "role": "admin", "csrftoken": csrf(admin)})
        assert created.status_code == 201 and "Copy it now: it is shown this once" in created.text
        found = TOKEN_RE.findall(created.text)
        assert len(found) == 1
        new = found[0]
        assert admin.get("/api/v1/me", headers={"Authorization": f"Bearer {new}"}).json() == {"name": "deploy", "role": "admin", "kind": "token"}
        for path in ("/api-tokens", "/", "/events", "/api-tokens/deploy/revoke", "/api/v1/me"):
            assert new not in admin.get(path).text, path
        assert new not in _session_payload(admin) and "deploy" not in _session_payload(admin)  # nothing flashed through the cookie

        ask = admin.get("/api-tokens/deploy/revoke")
        assert ask.status_code == 200 and "Revoke the API token deploy?" in ask.text and 'name="confirm" value="yes" required' in ask.text
        unticked = admin.post("/api-tokens/deploy/revoke", data={"csrftoken": csrf(admin)})
        assert unticked.status_code == 422 and "tick &#39;Revoke deploy&#39; to confirm" in unticked.text and "Nothing was changed." in unticked.text
        assert admin.get("/api/v1/me", headers={"Authorization": f"Bearer {new}"}).status_code == 200

        revoked = admin.post("/api-tokens/deploy/revoke", data={"confirm": "yes", "csrftoken": csrf(admin)}, follow_redirects=False)
        assert revoked.status_code == 303 and revoked.headers["location"] == "/api-tokens"
        listing = admin.get("/api-tokens").text
        assert "revoked API token deploy: a request sending it is told it was revoked" in listing
        assert re.search(r'<tr class="revoked"><td>deploy</td><td>admin</td>.*?<td>console:alice</td>', listing, re.S)
        assert 'id="revoke-deploy"' not in listing and 'id="revoke-ci"' in listing
        refused = admin.get("/api/v1/me", headers={"Authorization": f"Bearer {new}"})
        assert refused.status_code == 401 and "(deploy) was revoked at" in refused.json()["error"]

        again = admin.post("/api-tokens/deploy/revoke", data={"confirm": "yes", "csrftoken": csrf(admin)})
        assert "API token deploy was already revoked by console:alice: nothing to do" in again.text
        assert "is not revoked" in admin.get("/api-tokens/deploy/revoke").text  # 404: nothing left to revoke
    assert [(t["name"], t["role"], t["revoked_by"]) for t in list_tokens(host)] == [("ci", "viewer", None), ("deploy", "admin", "console:alice")]
    assert new not in caplog.text and old not in caplog.text


def test_the_forms_need_the_csrf_token(web_host: Host, admin: Any) -> None:
    from mdm_core.web.access import create_token, list_tokens

    create_token(web_host, "ci")
    for data in ({"name": "sneaky", "role": "admin"}, {"name": "sneaky", "role": "admin", "csrftoken": "forged"}):
        response = admin.post("/api-tokens", data=data)
        assert response.status_code == 403 and "security token is missing or stale" in response.text
        response = admin.post("/api-tokens/ci/revoke", data={**data, "confirm": "yes"})
        assert response.status_code == 403 and "security token is missing or stale" in response.text
    assert [(t["name"], t["revoked_at"]) for t in list_tokens(web_host)] == [("ci", None)]


def test_a_viewer_reads_the_list_but_creates_and_revokes_nothing(web_host: Host, viewer: Any) -> None:
    from mdm_core.web.access import create_token, list_tokens

    create_token(web_host, "ci")
    page = viewer.get("/api-tokens")
    assert page.status_code == 200 and "<td>ci</td>" in page.text
    assert 'id="create-token"' not in page.text and "Revoke…" not in page.text
    refusal = "the role &#39;viewer&#39; can only read: ask an admin to do this"
    assert viewer.get("/api-tokens/ci/revoke").status_code == 403
    for path, data in (("/api-tokens", {"name": "mine", "role": "admin"}), ("/api-tokens/ci/revoke", {"confirm": "yes"})):
        response = viewer.post(path, data={**data, "csrftoken": csrf(viewer)})
        assert response.status_code == 403 and refusal in response.text, path
    assert [(t["name"], t["revoked_at"]) for t in list_tokens(web_host)] == [("ci", None)]


def test_a_token_cannot_create_tokens_through_the_console(web_host: Host, client: Any) -> None:
    """A bearer token is accepted on pages too: an admin token posting the form would mint a
    token that outlives its own revocation."""
    from mdm_core.web.access import list_tokens

    headers = token_for(web_host, "admin")
    response = client.post("/api-tokens", data={"name": "minted", "role": "admin"}, headers=headers)
    assert response.status_code == 403 and "an API token cannot create tokens: an admin signed in to the console creates them" in response.text
    assert TOKEN_RE.search(response.text) is None
    assert [t["name"] for t in list_tokens(web_host)] == ["t-admin"]


def test_bad_names_and_unknown_tokens_are_one_line(web_host: Host, admin: Any) -> None:
    from mdm_core.web.access import create_token, list_tokens

    create_token(web_host, "ci")
    cases = [
        ({"name": "two words", "role": "viewer"}, 422, "token name &#39;two words&#39; is not valid: use letters, digits"),
        ({"name": "ci", "role": "viewer"}, 422, "an API token named &#39;ci&#39; exists: revoke it first or choose another name"),
        ({"name": "x", "role": "owner"}, 422, "role &#39;owner&#39; is not known: use admin or viewer"),
    ]
    for data, status, message in cases:
        response = admin.post("/api-tokens", data={**data, "csrftoken": csrf(admin)})
        assert response.status_code == status and message in response.text and TOKEN_RE.search(response.text) is None, data
    response = admin.post("/api-tokens/nobody/revoke", data={"confirm": "yes", "csrftoken": csrf(admin)})
    assert response.status_code == 404 and "no API token named &#39;nobody&#39; (the API tokens page lists them)" in response.text
    assert admin.get("/api-tokens/nobody/revoke").status_code == 404
    assert [t["name"] for t in list_tokens(web_host)] == ["ci"]
