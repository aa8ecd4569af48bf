"""A wrong key in place (a wrong backup of the key file restored, reading none of the stored
tokens): the console's and the API's add and Renew token refuse to store a token with it, in
their words, nothing written (it would be unreadable once the right key is back); the admin
whose right key is lost gives the consent the command line's --key-lost gives, in its words:
the console's confirmation, the API's ``"key_lost": true`` (they could not: the host's command
line was the only way). SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
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
            assert page.status_code == 409 and REFUSED in page.text, (path, page.status_code, page.text[-2000:])
            said = html.unescape(page.text)
            assert "run this again" not in said and "--key-lost" not in said and "if it is lost, confirm it below" in said, said[-1500:]
            assert "the key the stored tokens were encrypted with is lost: store this token with the current key" in said, said[-1500:]
    assert _stored(host) == stored  # nothing written: was, a token only the wrong key reads


def test_the_console_stores_the_token_once_the_key_is_confirmed_lost(wrong_key: tuple[Host, str], simulator: Any, project_dir: Path) -> None:
    host, stored = wrong_key
    token = simulator.write_token(project_dir / "renewed.vpptoken").read_bytes()
    with _client(host) as admin:
        assert sign_in(admin).status_code == 303
        page = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin)}, files={"token_file": ("t.vpptoken", token)})
        pending = re.search(r'name="pending" value="([^"]+)"', page.text)
        assert page.status_code == 409 and pending and 'name="key_lost" value="yes" required' in page.text, page.text[-2000:]
        renewed = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin), "pending": html.unescape(pending.group(1)), "key_lost": "yes"})
        assert renewed.status_code == 200 and "token of school renewed" in renewed.text, renewed.text[-2000:]
    assert host.secrets.can_decrypt(_stored(host)) and _stored(host) != stored  # stored with the current key


def test_the_api_stores_the_token_with_key_lost(wrong_key: tuple[Host, str], simulator: Any, project_dir: Path) -> None:
    host, stored = wrong_key
    token = simulator.write_token(project_dir / "renewed.vpptoken").read_text()
    with _client(host, headers=token_for(host, "admin")) as api:
        response = api.patch(f"{ACCOUNTS}/school", json={"key_lost": True})
        assert response.status_code == 422 and response.json()["error"].startswith('"key_lost" goes with "token"'), response.text
        response = api.patch(f"{ACCOUNTS}/school", json={"token": token, "key_lost": "yes"})
        assert response.status_code == 422 and 'key_lost "yes" is not valid: give true or false' in response.json()["error"], response.text
        assert _stored(host) == stored
        response = api.patch(f"{ACCOUNTS}/school", json={"token": token, "key_lost": True})
        assert response.status_code == 200 and response.json()["token_state"] == "valid", response.text
    assert host.secrets.can_decrypt(_stored(host)) and _stored(host) != stored


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
            assert "run this again" not in error and "--key-lost" not in error and 'if it is lost, send this again with "key_lost": true' in error, error
    assert _stored(host) == stored


def test_notifications_turned_on_with_a_key_that_reads_none_store_no_secret(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> None:
    """A notification secret is stored, encrypted, beside the token, without --key-lost's check:
    under a key that reads none of the stored secrets, turning Apple's notifications on stops at
    the token that key cannot read, before Apple is told, and leaves no secret (not even the
    pending one, committed before Apple is called) that the right key could not read back."""
    from sqlalchemy import func, select

    from plugins.vpp.accounts import add_account
    from plugins.vpp.models import VppPendingSecret

    host = make_host(config=WEB_CONFIG + '\n[web]\npublic_url = "https://mdm.example.test"\n', database_url=database_url)
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url, notifications=False)
    stored = _stored(host)
    host.__dict__["secrets"] = SecretBox(Fernet.generate_key().decode())  # the wrong key file
    with _client(host, headers=token_for(host, "admin")) as api:
        response = api.patch(f"{ACCOUNTS}/school", json={"notifications": "on"})
        assert response.status_code == 400 and "cannot be decrypted with this key" in response.json()["error"], response.text
        assert api.get(f"{ACCOUNTS}/school").json()["notifications"] == "off"
    with host.db.session() as session:
        assert session.execute(select(func.count()).select_from(VppPendingSecret)).scalar_one() == 0
    assert _stored(host) == stored and host.stored_secrets() == 1


@pytest.mark.parametrize("surface", ["console", "api"])
def test_a_renewal_with_key_lost_says_in_its_words_that_it_turned_unreadable_notifications_off(
    wrong_key: tuple[Host, str], simulator: Any, project_dir: Path, surface: str
) -> None:
    """Notifications on, their secret stored with the lost key, no [web] public_url: the
    renewal turns them off at Apple (each post would be refused) and the console's message and
    the API's ``notice`` say so, with the console's Turn on / the API's PATCH to have them again."""
    from sqlalchemy import select

    from plugins.vpp.models import VppAccount

    host, _ = wrong_key

    def notifications_on(session: Any) -> None:
        account = session.execute(select(VppAccount)).scalar_one()
        account.notifications, account.notification_secret = "on", Fernet(Fernet.generate_key()).encrypt(b"secret").decode()

    host.db.run_write(notifications_on)
    token = simulator.write_token(project_dir / "renewed.vpptoken")
    if surface == "console":
        with _client(host) as admin:
            assert sign_in(admin).status_code == 303
            files = {"token_file": ("t.vpptoken", token.read_bytes())}
            renewed = admin.post("/vpp/accounts/school/renew", data={"csrftoken": csrf(admin), "key_lost": "yes"}, files=files)
            said = html.unescape(renewed.text)
        assert renewed.status_code == 200 and "token of school renewed" in said, said[-2000:]
        assert "but Apple's notifications of school were turned off" in said and "click Turn on beside its Apple's notifications" in said, said[-2000:]
    else:
        with _client(host, headers=token_for(host, "admin")) as api:
            response = api.patch(f"{ACCOUNTS}/school", json={"token": token.read_text(), "key_lost": True})
        body = response.json()
        assert response.status_code == 200 and body["notifications"] == "off", response.text
        assert body["notice"].startswith("Apple's notifications of school were turned off"), body
        assert body["notice"].endswith('PATCH /api/v1/vpp/accounts/school {"notifications": "on"}'), body
    assert simulator.state.notification_types == []
