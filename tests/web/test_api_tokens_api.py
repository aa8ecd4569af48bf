"""API tokens through the REST API: ``GET /api/v1/api-tokens`` lists them (never a hash nor a
token) and ``DELETE /api/v1/api-tokens/{name}`` revokes one as ``mdm api-tokens revoke`` does,
recorded as ``api:TOKEN`` (``console:ADMIN`` with a console session); a token may revoke
itself; no token creates tokens."""

from __future__ import annotations

import hashlib
from typing import Any

from mdm_core.host import Host

from .conftest import WEB_CONFIG, csrf, token_for


def test_tokens_are_listed_and_revoked_through_the_api_on_both_databases(make_host: Any, database_url: str, caplog: Any) -> None:
    from fastapi.testclient import TestClient

    from mdm_core.web.access import create_token, list_tokens
    from mdm_core.web.app import create_app

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    ops = create_token(host, "ops", "admin")["token"]
    ci = create_token(host, "ci", "viewer")["token"]
    caplog.set_level("DEBUG")
    as_ops = {"Authorization": f"Bearer {ops}"}
    with TestClient(create_app(host)) as client:
        listed = client.get("/api/v1/api-tokens", headers={"Authorization": f"Bearer {ci}"})  # a viewer reads it too
        assert listed.status_code == 200
        body = listed.json()
        assert [(t["name"], t["role"], t["revoked_at"], t["revoked_by"]) for t in body["items"]] == [("ci", "viewer", None, None), ("ops", "admin", None, None)]
        assert set(body["items"][0]) == {"name", "role", "created_at", "last_used_at", "revoked_at", "revoked_by"} and body["next_cursor"] is None
        assert body["items"][0]["last_used_at"] is not None and body["items"][0]["created_at"].endswith("+00:00")  # as --json
        for secret in (ops, ci, hashlib.sha256(ops.encode()).hexdigest(), hashlib.sha256(ci.encode()).hexdigest()):
            assert secret not in listed.text

        first = client.get("/api/v1/api-tokens?limit=1", headers=as_ops).json()
        second = client.get(f"/api/v1/api-tokens?limit=1&cursor={first['next_cursor']}", headers=as_ops).json()
        assert [t["name"] for t in first["items"] + second["items"]] == ["ci", "ops"] and second["next_cursor"] is None

        revoked = client.delete("/api/v1/api-tokens/ci", headers=as_ops)
        assert revoked.status_code == 200
        assert revoked.json()["revoked_by"] == "api:ops" and revoked.json()["already"] is False and revoked.json()["name"] == "ci"
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {ci}"}).status_code == 401
        again = client.delete("/api/v1/api-tokens/ci", headers=as_ops).json()
        assert (again["already"], again["revoked_by"], again["revoked_at"]) == (True, "api:ops", revoked.json()["revoked_at"])

        unknown = client.delete("/api/v1/api-tokens/nobody", headers=as_ops)
        assert unknown.status_code == 404 and unknown.json() == {"error": "no API token named 'nobody' (GET /api/v1/api-tokens lists them)"}

        itself = client.delete("/api/v1/api-tokens/ops", headers=as_ops)  # its last call: the token ends itself
        assert itself.status_code == 200 and itself.json()["revoked_by"] == "api:ops"
        assert client.get("/api/v1/api-tokens", headers=as_ops).status_code == 401
    assert [(t["name"], t["revoked_by"]) for t in list_tokens(host)] == [("ci", "api:ops"), ("ops", "api:ops")]
    assert ops not in caplog.text and ci not in caplog.text


def test_a_viewer_token_revokes_nothing_and_no_token_creates_one(web_host: Host, client: Any) -> None:
    from mdm_core.web.access import list_tokens

    viewer = token_for(web_host, "viewer")
    admin = token_for(web_host, "admin")
    refused = client.delete("/api/v1/api-tokens/t-admin", headers=viewer)
    assert refused.status_code == 403 and refused.json() == {"error": "the role 'viewer' can only read: ask an admin to do this"}
    refused = client.delete("/api/v1/api-tokens/t-viewer", headers=viewer)  # itself neither: viewers change nothing
    assert refused.status_code == 403
    create = client.post("/api/v1/api-tokens", headers=admin, json={"name": "minted", "role": "admin"})
    assert create.status_code == 405 and create.json() == {"error": "POST is not allowed here: use GET"}
    assert [(t["name"], t["revoked_at"]) for t in list_tokens(web_host)] == [("t-admin", None), ("t-viewer", None)]


def test_a_console_session_revokes_through_the_api_as_console_admin_with_the_csrf_token(web_host: Host, admin: Any) -> None:
    from mdm_core.web.access import create_token, list_tokens

    create_token(web_host, "ci")
    assert admin.delete("/api/v1/api-tokens/ci").status_code == 403  # the session cookie alone: CSRF refused
    assert list_tokens(web_host)[0]["revoked_at"] is None
    response = admin.delete("/api/v1/api-tokens/ci", headers={"x-csrftoken": csrf(admin)})
    assert response.status_code == 200 and response.json()["revoked_by"] == "console:alice"
