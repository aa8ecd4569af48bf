"""A revoked API token keeps its row: a request still sending it is told it was revoked and
when (not that it is unknown, nor by whom), the list shows it as revoked and who revoked it,
revoking it again is one line."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from ..test_apple_migrations import _database_at, _upgrade_then_query
from .conftest import WEB_CONFIG

UNKNOWN = "the API token sent is not valid (unknown or revoked): create one with `mdm api-tokens create NAME` (see `mdm api-tokens list`)"
INVALID = 'Bearer error="invalid_token"'


def _refusal(client: Any, token: str) -> tuple[int, str, str]:
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert token not in response.text and token not in str(response.headers)
    return response.status_code, response.json().get("error", ""), response.headers.get("www-authenticate", "")


def test_a_revoked_token_says_when_it_was_revoked_on_both_databases(make_host: Any, database_url: str, caplog: Any) -> None:
    from fastapi.testclient import TestClient
    from freezegun import freeze_time

    from mdm_core.web.access import create_token, list_tokens, revoke_token
    from mdm_core.web.app import create_app

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    old = create_token(host, "ci", "viewer")["token"]
    caplog.set_level("DEBUG")
    with TestClient(create_app(host)) as client:
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {old}"}).json()["name"] == "ci"
        with freeze_time("2026-12-02 01:02:03"):
            assert revoke_token(host, "ci", "cli:alice")["already"] is False
        revoked = "the API token sent (ci) was revoked at 2026-12-02 01:02:03 UTC: create a new one with `mdm api-tokens create ci` (see `mdm api-tokens list`)"
        assert _refusal(client, old) == (401, revoked, INVALID)
        assert _refusal(client, "mdm_" + "x" * 43) == (401, UNKNOWN, INVALID)  # never created: today's line
        again = revoke_token(host, "ci", "cli:bob")  # twice: nothing changes, the first time is kept
        assert again["already"] is True and again["revoked_at"].isoformat().startswith("2026-12-02T01:02:03") and again["revoked_by"] == "cli:alice"
        new = create_token(host, "ci", "admin")["token"]  # the name is free again
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new}"}).json() == {"name": "ci", "role": "admin", "kind": "token"}
        assert _refusal(client, old) == (401, revoked, INVALID)
    listed = [(t["name"], t["role"], t["revoked_at"] is not None, t["revoked_by"]) for t in list_tokens(host)]
    assert listed == [("ci", "viewer", True, "cli:alice"), ("ci", "admin", False, None)]
    assert old not in caplog.text and new not in caplog.text
    assert old not in repr(list_tokens(host)) and hashlib.sha256(old.encode()).hexdigest() not in repr(list_tokens(host))


def test_cli_lists_revoked_tokens_as_revoked_and_revoking_twice_is_one_line(mdm_cli: Any, monkeypatch: Any) -> None:
    """The command line records the operating system's user it runs as (from its uid: $USER
    is not asked), and who ran sudo when it did."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    monkeypatch.setenv("USER", "not-me")
    monkeypatch.setenv("LOGNAME", "not-me")
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert mdm_cli("api-tokens", "create", "ci")[0] == 0
    code, out, err = mdm_cli("api-tokens", "revoke", "ci")
    assert (code, out, err) == (0, "revoked API token ci: a request sending it is told it was revoked\n", "")
    monkeypatch.setenv("SUDO_USER", "someone-else")
    code, out, err = mdm_cli("api-tokens", "revoke", "ci")
    assert code == 0 and err == "" and out.startswith("API token ci was already revoked at ") and out.endswith(f" UTC by cli:{me}: nothing to do\n"), out
    assert mdm_cli("api-tokens", "create", "backup")[0] == 0 and mdm_cli("api-tokens", "revoke", "backup")[0] == 0
    code, out, _ = mdm_cli("api-tokens", "list")
    header, *rows = out.splitlines()
    assert header.split()[-2:] == ["revoked_at", "revoked_by"] and len(rows) == 2
    assert rows[0].startswith("backup") and rows[0].rstrip().endswith(f"UTC  cli:{me} via sudo from someone-else")
    assert rows[1].startswith("ci") and rows[1].rstrip().endswith(f"UTC  cli:{me}") and "viewer" in rows[1]
    listed = json.loads(mdm_cli("api-tokens", "list", "--json")[1])
    assert [(t["name"], t["revoked_by"]) for t in listed] == [("backup", f"cli:{me} via sudo from someone-else"), ("ci", f"cli:{me}")]
    assert all(t["revoked_at"] for t in listed)


TOKEN = "mdm_" + "t" * 43  # the token "ci" was made with before the upgrade
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
CI = {"name": "ci", "role": "admin", "token_hash": DIGEST, "created_at": "2026-01-02 03:04:05.000000", "last_used_at": None}
OTHER = {"role": "viewer", "token_hash": "0" * 64, "created_at": "2026-01-01 03:04:05.000000"}
ME = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"


def _insert(*tokens: dict[str, str | None]) -> list[str]:
    """The INSERTs of ``tokens`` (column: value, None for NULL) into ``web_api_token``."""
    return [f"INSERT INTO web_api_token ({', '.join(t)}) VALUES ({', '.join('NULL' if v is None else repr(v) for v in t.values())})" for t in tokens]


@pytest.mark.parametrize(
    "revision, tokens, applied, kept, listed",
    [
        pytest.param(
            "0001",
            _insert(CI, {"name": "backup", **OTHER, "last_used_at": "2026-01-03 03:04:05.000000"}),
            "web: applied 0002 (keep revoked API tokens",
            [("backup", "viewer", "0" * 64, True, None), ("ci", "admin", DIGEST, True, None)],
            [("backup", True, None), ("ci", False, ME), ("ci", True, None)],
            id="0002",
        ),
        pytest.param(
            "0002",
            _insert({**CI, "revoked_at": None}, {"name": "old", **OTHER, "last_used_at": None, "revoked_at": "2026-01-03 03:04:05.000000"}),
            "web: applied 0003 (record who revoked API tokens",
            [("ci", "admin", DIGEST, True, None), ("old", "viewer", "0" * 64, False, None)],
            [("ci", False, ME), ("ci", True, None), ("old", False, None)],
            id="0003",
        ),
    ],
)
def test_web_upgrades_keep_the_tokens(
    project_dir: Path, monkeypatch: Any, capsys: Any, database_url: str | None, revision: str, tokens: list[str], applied: str, kept: Any, listed: Any
) -> None:
    """0002: tokens made before it still authenticate, keep their names, and are not revoked; a
    name may then be given again once its token is revoked. 0003: tokens of 0002, active and
    revoked, are kept as they were; who revoked the revoked one is not known (NULL, listed
    empty); a token revoked after the upgrade records who did."""
    from mdm_core.host import create_host
    from mdm_core.web.access import token_principal

    url = database_url if database_url and database_url.startswith("postgresql") else None
    mdm = _database_at(project_dir, monkeypatch, capsys, {"web": revision}, tokens, url)
    query = "SELECT name, role, token_hash, revoked_at IS NULL, revoked_by FROM web_api_token ORDER BY id"
    assert _upgrade_then_query(mdm, applied, query, url=url) == [kept]
    host = create_host(mdm.conf)
    try:
        principal = token_principal(host, TOKEN)  # "ci" still signs in ...
        assert principal is not None and (principal.name, principal.role) == ("ci", "admin")
    finally:
        host.close()
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert mdm("api-tokens", "revoke", "ci")[0] == 0  # ... is revoked, and its name given again
    assert mdm("api-tokens", "create", "ci")[0] == 0
    code, out, err = mdm("api-tokens", "create", "ci")
    assert code == 2 and "an API token named 'ci' exists: revoke it first or choose another name" in err
    assert [(t["name"], t["revoked_at"] is None, t["revoked_by"]) for t in json.loads(mdm("api-tokens", "list", "--json")[1])] == listed
