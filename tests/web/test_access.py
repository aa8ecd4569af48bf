"""Nobody reads or changes anything without signing in; viewers only read; sessions, tokens,
throttling, CSRF and security headers behave as an admin (and an attacker) would find them."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import col

from mdm_core.host import Host

from .conftest import PASSWORD, csrf, sign_in, token_for

#: Routes that answer an anonymous request, and why. Everything else must refuse it.
ANONYMOUS_ALLOWED = {
    "/login": "the sign-in page itself",
    "/healthz": "the health check: says ok or unavailable, nothing else",
    "/static": "style sheet, no data",
    "/favicon.ico": "the console's icon, which every browser asks for",
    "/apple/apps-books/notify/{id}": "Apple's notification endpoint: carries its own bearer authentication",
}


def _replace_cookie(client: Any, value: str) -> None:
    client.cookies.delete("mdm_session")
    client.cookies.set("mdm_session", value, domain="testserver.local")


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_refuses_an_anonymous_request(app: Any, client: Any) -> None:
    # every entry of the application is one the route table accounts for (nothing mounted
    # beside the registry, where the access check would not see it)
    assert len(app.routes) == app.state.top_level_routes
    checked = 0
    for route in app.state.route_table:
        if route.path in ANONYMOUS_ALLOWED:
            continue
        assert route.kind in ("api", "page"), (
            f"{route.path} ({route.plugin}) skips the access check: list it in ANONYMOUS_ALLOWED if it carries its own authentication"
        )
        for method in route.methods - {"HEAD"}:
            response = client.request(method, _concrete(route.path), follow_redirects=False)
            if route.kind == "api":
                assert response.status_code == 401, (method, route.path, response.status_code)
                assert list(response.json()) == ["error"] and response.json()["error"]
            elif method == "GET":
                assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), (method, route.path, response.status_code)
            else:  # a form without a session is sent to sign in, never performed
                assert response.status_code == 303 and response.headers["location"].startswith("/login"), (method, route.path, response.status_code)
            checked += 1
    assert checked >= 40  # the core's, the VPP plugin's and mobile_apps' routes were all seen
    plugins = {r.plugin for r in app.state.route_table}
    assert {"core", "vpp", "mobile_apps"} <= plugins


def test_anonymous_access_allowed_only_where_listed(app: Any, client: Any) -> None:
    paths = {r.path for r in app.state.route_table}
    assert "/login" in paths and "/static" in paths
    assert client.get("/login").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    public = set(app.state.registry.public_paths())
    assert public <= set(ANONYMOUS_ALLOWED), f"public routes not listed in ANONYMOUS_ALLOWED: {public - set(ANONYMOUS_ALLOWED)}"


def test_the_favicon_is_served_without_signing_in(client: Any, admin: Any) -> None:
    """/favicon.ico answered 404: every browser asks for it, so the log filled with 404s. It
    is the console's icon, public and cacheable as the style sheet, and every page links it."""
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml" and icon.content.startswith(b"<svg")
    assert "no-store" not in icon.headers.get("cache-control", "")
    assert client.get("/static/favicon.svg").content == icon.content
    for page in (client.get("/login").text, admin.get("/").text, admin.get("/nowhere").text):
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page


def test_sign_in_sets_a_signed_httponly_samesite_session_and_sign_out_ends_it(client: Any) -> None:
    response = sign_in(client)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "mdm_session=" in cookie and "httponly" in cookie.lower() and "samesite=lax" in cookie.lower() and "Max-Age=3600" in cookie
    assert PASSWORD not in cookie
    assert client.get("/devices").status_code == 200
    tampered = client.cookies.get("mdm_session")[:-3] + "AAA"
    _replace_cookie(client, tampered)
    assert client.get("/devices", follow_redirects=False).status_code == 303
    sign_in(client)
    copied = client.cookies.get("mdm_session")
    assert client.post("/logout", data={"csrftoken": csrf(client)}, follow_redirects=False).headers["location"] == "/login"
    assert client.get("/devices", follow_redirects=False).status_code == 303
    _replace_cookie(client, copied)  # a copy of the cookie (another browser, a stolen one) ended with the sign-out: it stayed valid
    assert client.get("/devices", follow_redirects=False).status_code == 303


def test_cookies_are_secure_over_https(app: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="https://console.example") as c:
        response = sign_in(c)
        assert response.status_code == 303
        assert "secure" in response.headers["set-cookie"].lower()
        assert c.get("/login").headers["strict-transport-security"]


def test_wrong_password_and_unknown_name_get_the_same_answer(client: Any) -> None:
    wrong = sign_in(client, "alice", "not the password")
    unknown = sign_in(client, "mallory", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "wrong name or password" in wrong.text and "wrong name or password" in unknown.text


def test_sign_ins_are_throttled_per_name_and_per_address(web_host: Host, client: Any) -> None:
    for _ in range(5):
        assert sign_in(client, "alice", "guess").status_code == 401
    refused = sign_in(client, "alice", PASSWORD)  # even the right password, for now
    assert refused.status_code == 429 and "too many failed sign-ins" in refused.text
    assert sign_in(client, "victor").status_code == 303  # another name from this address still works
    for i in range(15):
        sign_in(client, f"nobody{i}", "guess")
    assert sign_in(client, "victor").status_code == 429  # 20 failures from one address


def test_throttling_is_shared_by_every_process_on_the_database(web_host: Host, make_host: Any) -> None:
    """Failures counted by one ``mdm run`` process refuse the next attempt in another."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    from .conftest import WEB_CONFIG

    other = make_host(config=WEB_CONFIG)
    with TestClient(create_app(web_host)) as first, TestClient(create_app(other)) as second:
        for _ in range(5):
            sign_in(first, "alice", "guess")
        assert sign_in(second, "alice", PASSWORD).status_code == 429


def test_a_session_made_by_one_process_is_accepted_by_another(web_host: Host, make_host: Any) -> None:
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    from .conftest import WEB_CONFIG

    other = make_host(config=WEB_CONFIG)
    with TestClient(create_app(web_host)) as first, TestClient(create_app(other)) as second:
        sign_in(first)
        _replace_cookie(second, first.cookies["mdm_session"])
        assert second.get("/devices").status_code == 200


def test_sessions_expire(client: Any, web_host: Host) -> None:
    from freezegun import freeze_time

    sign_in(client)
    assert client.get("/devices").status_code == 200
    with freeze_time(tick=True) as frozen:
        frozen.move_to("2100-01-01")  # past the session's lifetime (and its cookie's signature age)
        assert client.get("/devices", follow_redirects=False).status_code == 303


def test_removing_an_admin_or_changing_the_password_ends_their_sessions(web_host: Host, admin: Any) -> None:
    from mdm_core.web.access import add_admin, remove_admin

    assert admin.get("/devices").status_code == 200
    add_admin(web_host, "alice", "a brand new password", "admin")
    assert admin.get("/devices", follow_redirects=False).status_code == 303
    sign_in(admin, "alice", "a brand new password")
    remove_admin(web_host, "alice")
    assert admin.get("/devices", follow_redirects=False).status_code == 303


def test_a_viewer_reads_but_changes_nothing(school: Host, viewer: Any) -> None:
    assert viewer.get("/vpp").status_code == 200
    assert "Synchronize" not in viewer.get("/vpp").text
    response = viewer.post("/vpp/accounts/school/interval", data={"interval_seconds": "600", "csrftoken": csrf(viewer)})
    assert response.status_code == 403 and "can only read" in response.text
    assert 'id="signed-in-as">victor (viewer)<' in response.text  # the refusal keeps the navigation (it had none)
    assert viewer.post("/vpp/accounts/school/sync", data={"csrftoken": csrf(viewer)}).status_code == 403
    # the forms a viewer cannot submit say so before they are filled in (a token chosen, a name typed)
    for form in ("/vpp/add", "/vpp/accounts/school/remove"):
        page = viewer.get(form)
        assert page.status_code == 403 and "can only read" in page.text and "<form" not in page.text.split("</header>")[1], form
    from plugins.vpp.accounts import list_accounts

    assert list_accounts(school)[0]["interval_seconds"] == 3600


def test_a_viewer_can_sign_out(viewer: Any) -> None:
    """Sign out is on every page a viewer sees, and it is a form (POST): the access check
    refused it as a change a viewer may not make (403 "can only read"), so a viewer could not
    end their sessions. It ends them as an admin's does, every copy of the cookie included."""
    assert "Sign out" in viewer.get("/").text
    copied = viewer.cookies.get("mdm_session")
    response = viewer.post("/logout", data={"csrftoken": csrf(viewer)}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert viewer.get("/devices", follow_redirects=False).status_code == 303
    _replace_cookie(viewer, copied)
    assert viewer.get("/devices", follow_redirects=False).status_code == 303


def test_api_tokens_authenticate_and_carry_their_role(school: Host, client: Any) -> None:
    viewer = token_for(school, "viewer")
    admin = token_for(school, "admin")
    assert client.get("/api/v1/vpp/accounts", headers=viewer).status_code == 200
    refused = client.post("/api/v1/vpp/accounts/school/sync", headers=viewer)
    assert refused.status_code == 403 and "can only read" in refused.json()["error"]
    assert client.patch("/api/v1/vpp/accounts/school", headers=admin, json={"interval_seconds": 900}).json()["interval_seconds"] == 900
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer mdm_not-a-token"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Basic YWxpY2U6eA=="}).status_code == 401


def test_a_revoked_token_is_refused_at_once(web_host: Host, client: Any) -> None:
    from mdm_core.web.access import create_token, revoke_token

    token = create_token(web_host, "ci", "viewer")["token"]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json() == {"name": "ci", "role": "viewer", "kind": "token"}
    revoke_token(web_host, "ci", "cli:tester")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_bad_bearer_token_is_told_apart_from_no_token_and_never_repeated(web_host: Host, client: Any, caplog: Any) -> None:
    """No token, a token never created here, a revoked one, a foreign one: each 401 with its
    own line (RFC 6750 ``WWW-Authenticate``), and the value sent is in no answer nor log."""
    from mdm_core.web.access import create_token, revoke_token

    revoked = create_token(web_host, "ci", "viewer")["token"]
    revoke_token(web_host, "ci", "cli:tester")
    unknown = "mdm_" + "x" * 43
    caplog.set_level("DEBUG")
    answers = {}
    for label, headers in (
        ("none", {}),
        ("unknown", {"Authorization": f"Bearer {unknown}"}),
        ("revoked", {"Authorization": f"Bearer {revoked}"}),
        ("foreign", {"Authorization": "Bearer ghp_s3cr3tv4lu3"}),
        ("basic", {"Authorization": "Basic YWxpY2U6eA=="}),
    ):
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401, label
        answers[label] = (response.json()["error"], response.headers["www-authenticate"])
        for secret in (unknown, revoked, "ghp_s3cr3tv4lu3", "YWxpY2U6eA=="):
            assert secret not in response.text and secret not in str(response.headers), label
    assert answers["none"] == ("sign in first: send Authorization: Bearer TOKEN (see `mdm api-tokens create`)", "Bearer")
    bad = "the API token sent is not valid (unknown or revoked): create one with `mdm api-tokens create NAME` (see `mdm api-tokens list`)"
    assert answers["unknown"] == (bad, 'Bearer error="invalid_token"')
    assert answers["revoked"][0].startswith("the API token sent (ci) was revoked at ") and answers["revoked"][1] == 'Bearer error="invalid_token"'
    assert answers["foreign"][0].startswith("the API token sent is not one of this host's (they begin with mdm_)")
    assert answers["foreign"][1] == 'Bearer error="invalid_token"'
    assert answers["basic"] == ("the Authorization header is not a bearer token: send Authorization: Bearer TOKEN (see `mdm api-tokens create`)", "Bearer")
    assert all("\n" not in error for error, _ in answers.values())
    for secret in (unknown, revoked, "ghp_s3cr3tv4lu3", "YWxpY2U6eA=="):
        assert secret not in caplog.text


def test_a_stale_csrf_token_changes_nothing(school: Host, admin: Any) -> None:
    from plugins.vpp.accounts import list_accounts

    response = admin.post("/vpp/accounts/school/interval", data={"interval_seconds": "600", "csrftoken": "stale"})
    assert response.status_code == 403
    assert "security token is missing or stale" in response.text
    response = admin.post("/vpp/accounts/school/interval", data={"interval_seconds": "600"})
    assert response.status_code == 403
    assert list_accounts(school)[0]["interval_seconds"] == 3600
    assert admin.post("/vpp/accounts/school/interval", data={"interval_seconds": "600", "csrftoken": csrf(admin)}).status_code == 200
    assert list_accounts(school)[0]["interval_seconds"] == 600


def test_every_state_changing_route_needs_the_csrf_token(app: Any, admin: Any) -> None:
    """Every POST/PATCH/... of the console and of the API called with the session cookie (a
    browser's ambient credential), the plugins' ones included, is refused without the form's
    token before its route runs; only a bearer token (which a browser never adds by itself)
    goes without it."""
    changing = [(m, r) for r in app.state.route_table if r.path not in ANONYMOUS_ALLOWED for m in sorted(r.methods - {"GET", "HEAD", "OPTIONS"})]
    assert len(changing) >= 10 and {r.plugin for _, r in changing} >= {"core", "vpp", "mobile_apps"}
    for method, route in changing:
        response = admin.request(method, _concrete(route.path), data={"csrftoken": "forged"}, follow_redirects=False)
        assert response.status_code == 403, (method, route.path, response.status_code)
        assert "security token is missing or stale" in response.text, (method, route.path)
    assert admin.get("/devices").status_code == 200  # still signed in: nothing was done, nothing ended


def test_sign_in_itself_needs_the_csrf_token(client: Any) -> None:
    response = client.post("/login", data={"name": "alice", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 403


def test_security_headers(admin: Any) -> None:
    page = admin.get("/devices")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in page.text and " style=" not in page.text
    assert "no-store" not in admin.get("/static/style.css").headers.get("cache-control", "")


def test_a_wrong_method_names_the_methods_allowed(web_host: Host, client: Any, admin: Any) -> None:
    """405 said 'this method is not allowed here' without the Allow header HTTP requires, so a
    script could not tell that the account takes GET, PATCH and DELETE (routes on one path)."""
    headers = token_for(web_host, "admin")
    api = client.put("/api/v1/vpp/accounts/school", headers=headers)
    assert api.status_code == 405 and api.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert api.json() == {"error": "PUT is not allowed here: use DELETE or GET or PATCH"}
    page = admin.get("/logout")
    assert page.status_code == 405 and page.headers["allow"] == "POST" and "GET is not allowed here: use POST" in page.text


def test_head_answers_as_get_without_a_body(web_host: Host, app: Any, client: Any, admin: Any) -> None:
    """HEAD on a console page answered 405 (FastAPI routes take the methods they declare), so
    a browser, an uptime or a link checker saw every page as broken. Every GET route answers
    HEAD with GET's status and headers, without the body; the sign-in redirect and 401 are
    GET's; a path without GET still answers 405 naming HEAD."""
    pages = [r.path for r in app.state.route_table if r.kind == "page" and "GET" in r.methods and "{" not in r.path]
    assert len(pages) >= 8
    for path in pages:
        get, head = admin.get(path), admin.head(path)
        assert (head.status_code, head.content) == (get.status_code, b""), path
        assert head.headers["content-type"] == get.headers["content-type"] and head.headers["content-length"] == str(len(get.content)), path
        anonymous = client.head(path, follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next="), path
    assert client.head("/login").status_code == 200 and client.head("/nowhere").status_code == 404
    headers = token_for(web_host, "viewer")
    assert client.head("/api/v1/devices", headers=headers).status_code == 200
    assert client.head("/api/v1/devices").status_code == 401
    refused = admin.head("/logout")
    assert refused.status_code == 405 and refused.headers["allow"] == "POST" and refused.content == b""


def test_only_local_next_targets_after_sign_in(client: Any) -> None:
    client.get("/login")
    for target, expected in (("//evil.example/x", "/"), ("https://evil.example/", "/"), ("/vpp", "/vpp")):
        response = client.post("/login", data={"name": "alice", "password": PASSWORD, "next": target, "csrftoken": csrf(client)}, follow_redirects=False)
        assert response.headers["location"] == expected


def test_what_apple_and_users_send_is_shown_as_text(school: Host, admin: Any) -> None:
    from mdm_core import inventory

    evil = "<script>alert(1)</script>"
    inventory.add_user(school, "kid-evil", email="x@example.com", name=evil)
    inventory.add_device(school, "EVIL00000001", "iOS", model=evil)
    from sqlalchemy import select, update

    from plugins.mobile_apps.models import AppMetadata
    from plugins.vpp.models import VppAccount, VppLicense, VppUser

    school.db.run_write(lambda s: s.execute(update(AppMetadata).values(name=evil)))
    school.db.run_write(lambda s: s.execute(update(VppUser).values(email=evil)))  # Apple's records
    school.db.run_write(lambda s: s.execute(update(VppAccount).values(org_name=evil, location_name=evil)))
    with school.db.session() as session:
        adam, pricing = session.execute(select(col(VppLicense.adam_id), col(VppLicense.pricing_param)).where(col(VppLicense.kind) == "user").limit(1)).one()
    apps = re.findall(r'href="(/apps/\d+)"', admin.get("/apps").text)
    for path in (
        "/users",
        "/devices",
        "/apps",
        apps[0],
        "/vpp",
        "/vpp/accounts/school/assets",
        "/vpp/accounts/school/users",
        f"/vpp/accounts/school/assets/{adam}/{pricing}?tab=user",
        "/vpp/accounts/school/remove",
    ):
        text = admin.get(path).text
        assert evil not in text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, path


@pytest.mark.parametrize(
    "argv, expected, message",
    [
        (["admins", "add", "x", "--role", "root"], 2, "argument --role: invalid choice: 'root'"),
        (["admins", "remove", "nobody"], 2, "mdm: error: no admin named 'nobody' (see `mdm admins list`)"),
        (["api-tokens", "revoke", "nobody"], 2, "mdm: error: no API token named 'nobody' (see `mdm api-tokens list`)"),
    ],
)
def test_cli_refuses_bad_input(mdm_cli: Any, argv: list[str], expected: int, message: str) -> None:
    assert mdm_cli("db", "upgrade")[0] == 0  # the database exists: only the error is printed
    code, out, err = mdm_cli(*argv)
    assert code == expected and message in err and err.count("\n") == 1, err


def test_cli_admins_and_tokens(mdm_cli: Any, project_dir: Any) -> None:
    pw = project_dir / "pw.txt"
    pw.write_text("a long enough password\n")
    assert mdm_cli("admins", "add", "carol", "--role", "viewer", "--password-file", str(pw))[0] == 0
    code, out, _ = mdm_cli("admins", "list", "--json")
    assert code == 0 and '"carol"' in out and '"viewer"' in out and "argon2" not in out
    short = project_dir / "short.txt"
    short.write_text("short\n")
    code, _, err = mdm_cli("admins", "add", "dan", "--password-file", str(short))
    assert code == 2 and "too short" in err
    code, out, _ = mdm_cli("api-tokens", "create", "ci", "--role", "admin", "--json")
    import json

    token = json.loads(out)["token"]
    assert token.startswith("mdm_") and len(token) > 40
    code, out, _ = mdm_cli("api-tokens", "list", "--json")
    assert '"ci"' in out and token not in out
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    with engine.connect() as conn:
        dump = " ".join(str(r) for r in conn.execute(text("select * from web_api_token")).all())
        hashes = " ".join(str(r) for r in conn.execute(text("select password_hash from web_admin")).all())
    engine.dispose()
    assert token not in dump and "a long enough password" not in hashes and "$argon2id$" in hashes
    assert mdm_cli("api-tokens", "revoke", "ci")[0] == 0
    assert mdm_cli("admins", "remove", "carol")[0] == 0


@pytest.fixture
def mdm_cli(project_dir: Any, monkeypatch: Any, capsys: Any) -> Any:
    from mdm_core.testing import MdmRunner

    return MdmRunner(project_dir, monkeypatch, capsys)


def _signs_in(project_dir: Any, name: str, password: str) -> bool:
    """Whether ``name`` signs in with ``password`` on the command's database."""
    from mdm_core.host import create_host
    from mdm_core.web.access import SignInRefused
    from mdm_core.web.access import sign_in as check

    host = create_host(project_dir / "conf" / "mdm.toml")
    try:
        check(host, name, password, "127.0.0.9")
        return True
    except SignInRefused:
        return False
    finally:
        host.close()


def test_admins_add_prompts_twice_on_a_terminal(mdm_cli: Any, project_dir: Any, monkeypatch: Any) -> None:
    import getpass
    import sys

    typed: list[str] = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": typed.pop(0))
    typed += ["a typed password", "a typed pasword"]
    code, _, err = mdm_cli("admins", "add", "erin")
    assert code == 2 and err.strip() == "mdm: error: the two passwords differ: run the command again"
    assert '"erin"' not in mdm_cli("admins", "list", "--json")[1]  # nothing added
    typed += ["a typed password", "a typed password"]
    assert mdm_cli("admins", "add", "erin")[0] == 0 and not typed  # asked twice
    assert _signs_in(project_dir, "erin", "a typed password")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    code, _, err = mdm_cli("admins", "add", "frank")
    assert code == 2 and "no terminal to type the password on: give --password-file FILE" in err


def test_adding_an_existing_admin_changes_the_password_keeps_the_role_and_says_so(mdm_cli: Any, project_dir: Any) -> None:
    """`mdm admins add NAME` again (a password reset) says what it did, and keeps a viewer a
    viewer unless --role is given: it used to make them an admin, saying only 'can sign in'."""
    import json

    old, new = project_dir / "old.txt", project_dir / "new.txt"
    old.write_text("a long enough password\n")
    new.write_text("another long password\n")
    code, out, _ = mdm_cli("admins", "add", "victor", "--role", "viewer", "--password-file", str(old))
    assert (code, out) == (0, "added admin victor (viewer): can sign in to the console\n")
    code, out, _ = mdm_cli("admins", "add", "victor", "--password-file", str(new))
    assert (code, out) == (0, "changed the password of admin victor (viewer): their open sessions ended\n")
    assert [a["role"] for a in json.loads(mdm_cli("admins", "list", "--json")[1])] == ["viewer"]
    assert _signs_in(project_dir, "victor", "another long password")
    assert not _signs_in(project_dir, "victor", "a long enough password")
    code, out, _ = mdm_cli("admins", "add", "victor", "--role", "admin", "--password-file", str(new))
    assert (code, out) == (0, "changed the password of admin victor (admin, was viewer): their open sessions ended\n")
    code, out, _ = mdm_cli("admins", "add", "wendy", "--password-file", str(new))
    assert (code, out) == (0, "added admin wendy (admin): can sign in to the console\n")


def test_a_password_files_trailing_newline_is_not_part_of_the_password(mdm_cli: Any, project_dir: Any) -> None:
    pw = project_dir / "pw.txt"
    pw.write_text("a long enough password\r\n")
    assert mdm_cli("admins", "add", "gina", "--password-file", str(pw))[0] == 0
    assert _signs_in(project_dir, "gina", "a long enough password")
    assert not _signs_in(project_dir, "gina", "a long enough password\n")


def test_an_unexpected_error_is_one_line_and_tells_nothing_more(web_host: Host, caplog: Any) -> None:
    """A bug in a route (a plugin's, say) answers 500 with the one-line error shape, JSON on the
    API and a page in the console; what the exception says stays in the host's log."""
    from fastapi import APIRouter
    from fastapi.testclient import TestClient

    from mdm_core import hookimpl
    from mdm_core.web.app import create_app
    from mdm_core.web.helpers import rest_router

    class Buggy:
        @hookimpl
        def mdm_register_web(self, web: Any, host: Host) -> None:
            api, pages = rest_router(), APIRouter()

            @api.get("/buggy")
            def broken_api() -> None:
                raise RuntimeError("token mdm_SECRET leaked into an exception")

            @pages.get("/buggy")
            def broken_page() -> None:
                raise RuntimeError("token mdm_SECRET leaked into an exception")

            @pages.post("/buggy")
            def broken_form() -> None:
                raise RuntimeError("failed after writing half of it")

            web.add_api(api, plugin="buggy")
            web.add_pages(pages, plugin="buggy")

    web_host.pm.register(Buggy(), name="buggy")
    with TestClient(create_app(web_host), raise_server_exceptions=False) as client:
        api = client.get("/api/v1/buggy", headers=token_for(web_host, "viewer"))
        assert api.status_code == 500 and list(api.json()) == ["error"] and "\n" not in api.json()["error"]
        sign_in(client)
        page = client.get("/buggy")
        assert page.status_code == 500 and 'id="error"' in page.text and page.headers["content-security-policy"]
        assert "mdm_SECRET" not in api.text + page.text
        # a form that failed unexpectedly may have changed something: the page said "Nothing was changed."
        form = client.post("/buggy", data={"csrftoken": csrf(client)})
        assert form.status_code == 500 and "Nothing was changed" not in form.text and "may have been done in part" in form.text
        refused = client.post("/vpp/accounts/nope/sync", data={"csrftoken": csrf(client)})
        assert refused.status_code == 404 and "Nothing was changed." in refused.text  # a refusal changes nothing
        assert "Nothing was changed" not in client.get("/nosuch").text  # reading a page changes nothing anyway
    assert "token mdm_SECRET leaked" in caplog.text  # for the admin who reads the log


def test_a_request_body_larger_than_the_limit_is_refused_before_it_is_read(make_host: Any) -> None:
    """Anyone can post to the sign-in form: a huge body used to be read whole into memory
    (asgi_csrf, then the form parser). Declared or streamed, past [web] request_max_bytes it is
    a 413 with one line, and nothing is signed in."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    host = make_host(config="[web]\nrequest_max_bytes = 65536\n")
    with TestClient(create_app(host)) as client:
        client.get("/login")
        big = "name=alice&password=" + "x" * 70000 + "&csrftoken=" + str(client.cookies.get("csrftoken"))
        declared = client.post("/login", content=big.encode(), headers={"content-type": "application/x-www-form-urlencoded"})
        assert declared.status_code == 413
        assert declared.text == "request body larger than 65536 bytes ([web] request_max_bytes): send less\n"

        def chunks() -> Any:  # no Content-Length: counted as it arrives
            for _ in range(20):
                yield b"x" * 8192

        streamed = client.post("/login", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
        assert streamed.status_code == 413
        small = client.post("/login", data={"name": "nobody", "password": "x", "next": "/", "csrftoken": client.cookies.get("csrftoken")})
        assert small.status_code != 413  # an ordinary sign-in is read as before


def test_the_health_check_answers_anybody_ok_while_the_database_answers(app: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A load balancer or a service manager asks /healthz without signing in: 200 while the
    database answers, 503 when it does not, and never the reason (logged instead)."""
    from contextlib import contextmanager

    from sqlalchemy.exc import OperationalError

    ok = client.get("/healthz", follow_redirects=False)
    assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
    assert client.head("/healthz").status_code == 200
    assert "no-store" in ok.headers["cache-control"]

    @contextmanager
    def unreachable() -> Iterator[Any]:
        raise OperationalError("SELECT 1", {}, Exception("connection to server at db.example.org failed: password authentication failed"))
        yield

    monkeypatch.setattr(app.state.host.db, "reading", unreachable)
    down = client.get("/healthz")
    assert (down.status_code, down.json()) == (503, {"status": "unavailable"})
    assert "example.org" not in down.text and "password" not in down.text
    assert client.head("/healthz").status_code == 503


def test_text_no_database_holds_is_refused_in_one_line_on_both_databases(make_host: Any, database_url: str) -> None:
    """A NUL (%00) in a search, an address, a sign-in name, a form field or a JSON body reached
    PostgreSQL, which refuses it in any text: 500 'internal error' (SQLite answered as if it
    were any other text). Refused where it enters, 422 naming where, alike on both databases."""
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app

    from .conftest import WEB_CONFIG

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD, "admin")
    with TestClient(create_app(host), raise_server_exceptions=False) as client:
        login = client.post("/login", data={"name": "al\x00ice", "password": PASSWORD, "next": "/", "csrftoken": csrf(client)})
        assert login.status_code == 422 and "form field name holds a NUL character, which cannot be stored: remove it" in login.text
        assert sign_in(client).status_code == 303
        pages = (("/devices?q=%00", "query parameter q"), ("/events?name=a%00", "query parameter name"), ("/vpp/accounts/a%00/users", "the address"))
        for path, where in pages:
            page = client.get(path)
            assert page.status_code == 422 and f"{where} holds a NUL character" in page.text, (path, page.status_code)
        form = client.post("/apps/1/install", data={"serials": "A\x00B", "csrftoken": csrf(client)})
        assert form.status_code == 422 and "form field serials holds a NUL character" in form.text
        headers = token_for(host, "admin")
        api = client.post("/api/v1/apps/1/install", headers=headers, json={"devices": ["A\x00B"]})
        assert api.status_code == 422 and api.json() == {"error": "the JSON body holds a NUL character, which cannot be stored: remove it"}
        listed = client.get("/api/v1/vpp/licenses", params={"device": "\x00"}, headers=headers)
        assert listed.status_code == 422 and listed.json()["error"].startswith("query parameter device holds a NUL character")
        assert client.get("/devices?q=ok").status_code == 200  # other text as before


def test_an_api_call_refused_for_its_csrf_token_says_what_an_api_client_sends(school: Host, admin: Any) -> None:
    """A change through the API with the console's session cookie and no CSRF token (a
    script reusing a browser's cookie) was told to "reload the page and submit again": there
    is no page. It now names the bearer token, and the header a page's script sends."""
    from plugins.vpp.accounts import list_accounts

    refused = admin.patch("/api/v1/vpp/accounts/school", json={"interval_seconds": 600})
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/json"
    error = refused.json()["error"]
    assert "API clients send Authorization: Bearer TOKEN" in error and "X-CSRFToken" in error and "reload the page" not in error, error
    assert list_accounts(school)[0]["interval_seconds"] == 3600
    done = admin.patch("/api/v1/vpp/accounts/school", json={"interval_seconds": 600}, headers={"X-CSRFToken": csrf(admin)})
    assert done.status_code == 200 and list_accounts(school)[0]["interval_seconds"] == 600  # what the advice says works
    page = admin.post("/vpp/accounts/school/interval", data={"interval_seconds": "900"})
    assert page.status_code == 403 and "reload the page and submit again" in page.text  # a form: its page


def test_a_parameter_fastapi_refuses_is_named_as_sent_with_its_value(school: Host, admin: Any, client: Any) -> None:
    """FastAPI's checks answered in pydantic's words and names: "app_id: Input should be a
    valid integer, unable to parse string as an integer" for /apps/abc (the admin typed no
    "app_id"), "account: Field required" for a history without ?account=. They now say where
    the parameter was (query, address), the value sent and what it should be."""
    headers = token_for(school, "viewer")
    missing = client.get("/api/v1/vpp/assets/1/history", headers=headers).json()["error"]
    assert missing == "query parameter account is required here: give it", missing
    limit = client.get("/api/v1/vpp/assets", params={"limit": "0"}, headers=headers).json()["error"]
    assert limit == "query parameter limit '0' is not valid: input should be greater than or equal to 1", limit
    page = admin.get("/apps/abc")
    said = html.unescape(page.text)
    assert page.status_code == 422 and "the address's app id 'abc' is not valid: input should be a valid integer" in said, said
    paged = html.unescape(admin.get("/vpp/accounts/school/assets", params={"page": "-1"}).text)
    assert "query parameter page '-1' is not valid: input should be greater than or equal to 1" in paged


def test_an_over_long_page_address_is_not_carried_through_sign_in(client: Any) -> None:
    """A search pasted whole into the URL: the sign-in redirect stays short (the browser's
    next request would be as large), and the admin lands on the home page after signing in."""
    short = client.get("/devices?q=ipad", follow_redirects=False)
    assert short.status_code == 303 and short.headers["location"] == "/login?next=%2Fdevices%3Fq%3Dipad"
    anonymous = client.get("/devices?q=" + "a" * 60_000, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    assert 'value="/"' in client.get("/login?next=/devices?q=" + "a" * 4000).text
    response = client.post(
        "/login", data={"name": "alice", "password": PASSWORD, "next": "/devices?q=" + "a" * 4000, "csrftoken": csrf(client)}, follow_redirects=False
    )
    assert response.headers["location"] == "/"


def test_a_next_target_a_browser_reads_as_another_host_is_refused(client: Any) -> None:
    client.get("/login")
    for target in ("/\t/evil.example/x", "/\\evil.example/", "/\r\n/evil.example"):
        response = client.post("/login", data={"name": "alice", "password": PASSWORD, "next": target, "csrftoken": csrf(client)}, follow_redirects=False)
        assert response.headers["location"] == "/", repr(target)
