"""A wrong key in place (a wrong backup of the key file restored, reading none of the stored
tokens): the console's and the API's add and Renew token refuse to store a token with it, in
their words, nothing written (it would be unreadable once the right key is back). SQLite and
PostgreSQL."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from mdm_core.host import Host
from mdm_core.secrets import SecretBox

from .conftest import PASSWORD, WEB_CONFIG, csrf, sign_in, token_for

ACCOUNTS = "/api/v1/vpp/accounts"
REFUSED = "reads none of the 1 stored secret(s): it is not the key they were stored with"


@pytest.fixture
def wrong_key(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> Iterator[tuple[Host, str]]:
    """A host with an admin and the account ``school``, then a key that reads none of it; and
    the right key's ciphertext of ``school``'s token."""
    from mdm_core.web.access import add_admin
    from plugins.vpp.accounts import add_account

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD, "admin")
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url)
    stored = _stored(host)
    host.__dict__["secrets"] = SecretBox(Fernet.generate_key().decode())  # the wrong key file
    yield host, stored


def _stored(host: Host) -> str:
    from plugins.vpp.accounts import _all_accounts

    (account,) = _all_accounts(host)
    return account.token_ciphertext


def _client(host: Host, **options: Any) -> Any:
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    return TestClient(create_app(host), **options)


def test_the_console_refuses_a_token_for_a_key_that_reads_none(wrong_key: tuple[Host, str], simulator: Any, project_dir: Path) -> None:
    host, stored = wrong_key
    token = simulator.write_token(project_dir / "renewed.vpptoken").read_bytes()
    with _client(host) as admin:
        assert sign_in(admin).status_code == 303
        for path, form in (("/vpp/accounts/school/renew", {}), ("/vpp/add", {"name": "second", "service_url": simulator.base_url})):
            page = admin.post(path, data={**form, "csrftoken": csrf(admin)}, files={"token_file": ("t.vpptoken", token)})
            assert page.status_code in (400, 409) and REFUSED in page.text, (path, page.status_code, page.text[-2000:])
            said = html.unescape(page.text)
            assert "run this again" not in said and "on the host's command line with --key-lost" in said, said[-1500:]
    assert _stored(host) == stored  # nothing written: was, a token only the wrong key reads


def test_the_api_refuses_a_token_for_a_key_that_reads_none(wrong_key: tuple[Host, str], simulator: Any, project_dir: Path) -> None:
    host, stored = wrong_key
    token = simulator.write_token(project_dir / "renewed.vpptoken").read_text()
    with _client(host, headers=token_for(host, "admin")) as api:
        for response in (
            api.patch(f"{ACCOUNTS}/school", json={"token": token}),
            api.post(ACCOUNTS, json={"name": "second", "token": token, "service_url": simulator.base_url}),
        ):
            error = response.json()["error"]
            assert response.status_code in (400, 409) and REFUSED in error and "\n" not in error, response.text
            assert "run this again" not in error and "on the host's command line with --key-lost" in error, error
    assert _stored(host) == stored
