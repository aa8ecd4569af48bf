"""The console's API tokens page: admins list, create (the token shown once, on the page that
answers the form, never again nor logged) and revoke (after a confirmation, recorded as
``console:ADMIN``) through the functions ``mdm api-tokens`` uses; viewers only read; a token
cannot create tokens; every form needs the CSRF token."""

from __future__ import annotations

import base64
import html
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
        assert "API token deploy was already revoked by console:alice: nothing to do" in admin.get("/api-tokens/deploy/revoke").text  # nothing left to revoke
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


def _signed_in_admin(make_host: Any, database_url: str) -> tuple[Host, Any]:
    """A host on ``database_url`` with the admin ``alice``, and a TestClient signed in as her."""
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app

    from .conftest import PASSWORD

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD, "admin")
    client = TestClient(create_app(host))
    assert sign_in(client).status_code == 303
    return host, client


def test_the_list_is_numbered_in_pages_on_both_databases(make_host: Any, database_url: str, monkeypatch: Any) -> None:
    """Every token was on one page: a host with thousands (one per script, revoked ones
    kept) rendered them all at once."""
    from typing import cast

    import mdm_core.web.paging as paging
    from mdm_core.web.access import create_token, revoke_token

    host, admin = _signed_in_admin(make_host, database_url)
    for name in ("g", "b", "e", "a", "f", "c", "d"):
        create_token(host, name)
    revoke_token(host, "c", "cli:test")
    create_token(host, "c", "admin")  # two rows named c: the revoked one first
    monkeypatch.setitem(cast(dict, paging.numbered.__kwdefaults__), "size", 3)  # three rows a page
    with admin:
        first = admin.get("/api-tokens").text
        assert "8 API tokens · page 1 of 3" in first and 'rel="next" href="/api-tokens?page=2"' in first
        seen = []
        for page in (1, 2, 3):
            seen += re.findall(r'<tr(?: class="(revoked)")?><td>(\w+)</td><td>(\w+)</td>', admin.get(f"/api-tokens?page={page}").text)
        assert seen == [("", n, "viewer") for n in "ab"] + [("revoked", "c", "viewer"), ("", "c", "admin")] + [("", n, "viewer") for n in "defg"]
        assert "8 API tokens · page 3 of 3" in admin.get("/api-tokens?page=9").text  # past the last: the last


def _create_form(client: Any) -> dict[str, str]:
    """The create form's hidden fields, as the API tokens page gives them."""
    page = client.get("/api-tokens").text
    form_id = re.search(r'<input type="hidden" name="form_id" value="([^"]+)">', page)
    assert form_id, page
    return {"form_id": form_id.group(1), "csrftoken": csrf(client)}


def test_reloading_the_page_that_showed_a_new_token_says_it_was_created_once(make_host: Any, database_url: str, caplog: Any) -> None:
    """A reload of the page answering the create form sends the form again: it was refused as
    'a token named ... exists', an error for what had worked. The re-sent form now says the
    token was already created by it, without the secret, and creates nothing."""
    from mdm_core.web.access import list_tokens

    host, admin = _signed_in_admin(make_host, database_url)
    caplog.set_level("DEBUG")
    with admin:
        form = {"name": "deploy", "role": "admin", **_create_form(admin)}
        created = admin.post("/api-tokens", data=form)
        assert created.status_code == 201 and created.headers["cache-control"] == "no-store"  # the browser keeps no copy
        (secret,) = TOKEN_RE.findall(created.text)

        reloaded = admin.post("/api-tokens", data=form, follow_redirects=False)  # the browser's reload: the same form
        assert reloaded.status_code == 303 and reloaded.headers["location"] == "/api-tokens"
        assert secret not in _session_payload(admin)
        notice = admin.get("/api-tokens")
        assert "deploy" not in _session_payload(admin)  # the form's id and the token's row id alone
        assert "API token deploy was already created by this form; its secret was shown once" in notice.text
        assert "exists" not in notice.text and TOKEN_RE.search(notice.text) is None
        assert "already created" not in admin.get("/api-tokens").text  # said once
        again = admin.post("/api-tokens", data=form)  # a third time, the page of the redirect followed
        assert again.status_code == 200 and "API token deploy was already created by this form" in again.text and secret not in again.text

        other = admin.post("/api-tokens", data={"name": "deploy", "role": "viewer", **_create_form(admin)})  # a new form, the same name
        assert other.status_code == 422 and "an API token named &#39;deploy&#39; exists: revoke it first" in other.text
        bad = admin.post("/api-tokens", data={**form, "form_id": "<x>"})
        assert bad.status_code == 422 and "the form&#39;s id is not valid: open the API tokens page again" in bad.text
    assert [(t["name"], t["role"]) for t in list_tokens(host)] == [("deploy", "admin")]
    assert secret not in caplog.text


def test_a_form_sent_again_after_its_token_was_revoked_still_creates_nothing(web_host: Host, admin: Any) -> None:
    """The re-sent form names the token it created (found by its id, kept in the session
    cookie), even once that token was revoked and its name given to a new one."""
    from mdm_core.web.access import create_token, list_tokens, revoke_token

    form = {"name": "ci", "role": "viewer", **_create_form(admin)}
    assert admin.post("/api-tokens", data=form).status_code == 201
    revoke_token(web_host, "ci", "cli:test")
    create_token(web_host, "ci", "admin")
    again = admin.post("/api-tokens", data={**form, "name": "renamed-in-the-form"})
    assert "API token ci was already created by this form; its secret was shown once" in again.text
    assert [(t["name"], t["role"]) for t in list_tokens(web_host)] == [("ci", "viewer"), ("ci", "admin")]


def test_the_revoke_form_reads_the_one_token_it_names(web_host: Host, admin: Any) -> None:
    """The confirmation page read every token (revoked ones too) to find one: it reads that one."""
    from mdm_core.testing import recorded_statements
    from mdm_core.web.access import create_token, revoke_token

    for i in range(20):
        create_token(web_host, f"script-{i:02d}")
    revoke_token(web_host, "script-07", "cli:test")
    create_token(web_host, "script-07", "admin")
    with recorded_statements(web_host.db.engine) as statements:
        ask = admin.get("/api-tokens/script-07/revoke")
    assert ask.status_code == 200 and "Revoke the API token script-07?" in ask.text and "Role admin" in ask.text
    reads = [s.sql for s in statements if "FROM web_api_token" in s.sql]
    assert reads and all("WHERE web_api_token.name = " in s and "revoked_at IS NULL" in s for s in reads), reads


def test_a_used_create_form_sent_with_another_name_says_that_name_was_not_created(make_host: Any, database_url: str) -> None:
    """Back to the page after creating a token, a new name typed in the same form: the answer
    said only that the first token was already created by this form, and the admin could
    believe the second was too. It now says the second was not created and what to do."""
    from mdm_core.web.access import list_tokens

    host, admin = _signed_in_admin(make_host, database_url)
    with admin:
        form = {"name": "deploy", "role": "admin", **_create_form(admin)}
        assert admin.post("/api-tokens", data=form).status_code == 201
        back = admin.post("/api-tokens", data={**form, "name": "backup", "role": "viewer"}, follow_redirects=False)  # the back button, a new name
        assert back.status_code == 303
        notice = html.unescape(admin.get("/api-tokens").text)
        said = "API token deploy was already created by this form; its secret was shown once. backup was not created: create it with the form below"
        assert said in notice, notice
        reloaded = admin.post("/api-tokens", data=form, follow_redirects=False)  # the same name again: as before, nothing more to say
        assert reloaded.status_code == 303
        again = html.unescape(admin.get("/api-tokens").text)
        assert "API token deploy was already created by this form; its secret was shown once" in again and "was not created" not in again
    assert [t["name"] for t in list_tokens(host)] == ["deploy"]


def test_the_revoke_page_of_a_token_revoked_meanwhile_says_by_whom_not_that_it_is_unknown(make_host: Any, database_url: str) -> None:
    """The *Revoke…* link of a token another tab (or another admin) revoked meanwhile answered
    404 "no API token named 'ci' that is not revoked", as if the admin had mistyped it. It now
    leads to the list saying the token was already revoked, and by whom, as sending the form
    does; a name never used is still a 404."""
    from mdm_core.web.access import create_token, revoke_token

    host, admin = _signed_in_admin(make_host, database_url)
    create_token(host, "ci")
    with admin:
        assert admin.get("/api-tokens/ci/revoke").status_code == 200  # the first tab
        revoke_token(host, "ci", "console:bob")  # the second tab, another admin
        again = admin.get("/api-tokens/ci/revoke", follow_redirects=False)
        assert again.status_code == 303 and again.headers["location"] == "/api-tokens", again.text
        said = "API token ci was already revoked by console:bob: nothing to do"
        assert said in html.unescape(admin.get("/api-tokens").text)
        sent = admin.post("/api-tokens/ci/revoke", data={"confirm": "yes", "csrftoken": csrf(admin)})
        assert said in html.unescape(sent.text)  # the form's answer: the same words
        unknown = admin.get("/api-tokens/never/revoke")
        assert unknown.status_code == 404 and "no API token named &#39;never&#39;: the API tokens page lists them" in unknown.text


def test_a_create_form_sent_twice_before_the_cookie_came_back_creates_one_token_and_shows_it(make_host: Any, database_url: str, caplog: Any) -> None:
    """A double-click on Create sends the form twice with the session cookie from before the
    first answer (which records the form as used): the second was refused as 'an API token
    named deploy exists', the page the browser shows, and the secret of the one created was
    lost with the first answer. The second now shows that same token; one token exists."""
    from mdm_core.web.access import list_tokens

    host, admin = _signed_in_admin(make_host, database_url)
    caplog.set_level("DEBUG")
    with admin:
        form = {"name": "deploy", "role": "admin", **_create_form(admin)}
        before = list(admin.cookies.jar)
        first = admin.post("/api-tokens", data=form)
        assert first.status_code == 201
        (secret,) = TOKEN_RE.findall(first.text)
        admin.cookies.clear()
        for cookie in before:  # the second click: the cookie the first answer replaced never reached it
            admin.cookies.jar.set_cookie(cookie)
        second = admin.post("/api-tokens", data=form)
        assert second.status_code == 201 and "exists" not in second.text
        assert TOKEN_RE.findall(second.text) == [secret]  # the token the first click created, the page the browser shows
        assert secret not in _session_payload(admin)
        reloaded = admin.post("/api-tokens", data=form)  # a reload once the second answer's cookie is back: no secret
        assert "API token deploy was already created by this form" in reloaded.text and secret not in reloaded.text
    assert [(t["name"], t["role"]) for t in list_tokens(host)] == [("deploy", "admin")]
    assert secret not in caplog.text
