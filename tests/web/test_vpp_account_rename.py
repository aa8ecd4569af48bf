"""Renaming an account in the console (its Rename, an admin's) and through the API (``PATCH
{"name": NEW}``), as ``mdm vpp account rename`` does: the page and the API show the new name,
the old one is unknown; a bad or taken name and a running sync are refused, nothing changed.
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host

from .conftest import PASSWORD, WEB_CONFIG, csrf, sign_in, token_for

ACCOUNTS = "/api/v1/vpp/accounts"


@pytest.fixture
def school(make_host: Any, database_url: str, simulator: Any, project_dir: Path) -> Host:
    """A host on SQLite or PostgreSQL with an admin, a viewer and the account ``school``, synced."""
    from mdm_core.web.access import add_admin
    from plugins.vpp.accounts import add_account
    from plugins.vpp.sync.run import sync_account

    host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD, "admin")
    add_admin(host, "victor", PASSWORD, "viewer")
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url)
    assert sync_account(host, "school")["status"] == "ok"
    return host


@pytest.fixture
def browser(school: Host) -> Iterator[Any]:
    """A client of ``school``'s console, not signed in."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    with TestClient(create_app(school)) as client:
        yield client


def _names(host: Host) -> list[str]:
    from plugins.vpp.accounts import list_accounts

    return [a["name"] for a in list_accounts(host)]


def _rename(client: Any, name: str, new: str) -> Any:
    return client.post(f"/vpp/accounts/{name}/rename", data={"new_name": new, "csrftoken": csrf(client)})


def test_the_console_renames_an_account(school: Host, browser: Any) -> None:
    assert sign_in(browser, "victor").status_code == 303
    page = browser.get("/vpp")
    assert 'id="rename-school"' not in page.text  # a viewer has no Rename
    assert _rename(browser, "school", "district").status_code == 403 and _names(school) == ["school"]

    assert sign_in(browser).status_code == 303
    assert 'id="rename-school"' in browser.get("/vpp").text
    page = _rename(browser, "school", " district ")
    assert page.status_code == 200 and "account school renamed to district" in page.text
    assert 'id="account-district"' in page.text and 'id="account-school"' not in page.text
    assert 'action="/vpp/accounts/district/sync"' in page.text
    assert browser.get("/vpp/accounts/district/assets").status_code == 200
    assert browser.get("/vpp/accounts/school/assets").status_code == 404
    assert _names(school) == ["district"]


@pytest.mark.parametrize(
    "new, status, error",
    [
        ("bad name!", 422, "account name &#39;bad name!&#39; is not valid: use letters, digits, &#39;.&#39;, &#39;_&#39; or &#39;-&#39; (at most 128)"),
        ("", 422, "account name &#39;&#39; is not valid"),
        ("school", 422, "account &#39;school&#39; is already named &#39;school&#39;: give the new name"),
    ],
)
def test_the_console_refuses_a_bad_name(school: Host, browser: Any, new: str, status: int, error: str) -> None:
    assert sign_in(browser).status_code == 303
    page = _rename(browser, "school", new)
    assert page.status_code == status and error in page.text
    assert _names(school) == ["school"]


def test_a_rename_while_a_sync_runs_is_refused_in_the_console_and_the_api(school: Host, browser: Any) -> None:
    from sqlalchemy import select
    from sqlmodel import col

    from plugins.vpp.models import VppAccount

    with school.db.session() as session:
        account_id = session.execute(select(col(VppAccount.id))).scalar_one()
    lock = school.lock(f"vpp.sync.{account_id}", ttl=60)
    lock.acquire(wait=0)
    try:
        assert sign_in(browser).status_code == 303
        page = _rename(browser, "school", "district")
        assert page.status_code == 200 and "a sync of school is running: rename the account when it has finished" in page.text
        answer = browser.patch(f"{ACCOUNTS}/school", json={"name": "district"}, headers=token_for(school, "admin"))
        assert (answer.status_code, answer.json()) == (409, {"error": "a sync of school is running: rename the account when it has finished"})
    finally:
        lock.release()
    assert _names(school) == ["school"]


def test_the_api_renames_an_account(school: Host, browser: Any, simulator: Any, project_dir: Path) -> None:
    from plugins.vpp.accounts import add_account
    from plugins.vpp.simulator import Simulator

    admin, viewer = token_for(school, "admin"), token_for(school, "viewer")
    assert browser.patch(f"{ACCOUNTS}/school", json={"name": "district"}, headers=viewer).status_code == 403
    alone = browser.patch(f"{ACCOUNTS}/school", json={"name": "district", "interval_seconds": 900}, headers=admin)
    assert (alone.status_code, alone.json()["error"]) == (
        422,
        '"name" goes alone: rename the account, then PATCH /api/v1/vpp/accounts/district with the other changes',
    )
    for body, error in [
        ({"name": 7}, "name 7 is not valid: give the account's new name as text"),
        ({"name": "a/b"}, "account name 'a/b' is not valid: use letters, digits, '.', '_' or '-' (at most 128)"),
    ]:
        answer = browser.patch(f"{ACCOUNTS}/school", json=body, headers=admin)
        assert (answer.status_code, answer.json()) == (422, {"error": error})
    with Simulator(seed=3, assets=1, devices=1, users=1, async_delay=0) as other:
        add_account(school, "university", str(other.write_token(project_dir / "u.vpptoken")), service_url=other.base_url)
        taken = browser.patch(f"{ACCOUNTS}/school", json={"name": "university"}, headers=admin)
        assert (taken.status_code, taken.json()) == (409, {"error": "an account named 'university' already exists: choose another name"})
    assert _names(school) == ["school", "university"]

    renamed = browser.patch(f"{ACCOUNTS}/school", json={"name": "district"}, headers=admin)
    assert renamed.status_code == 200 and renamed.json()["name"] == "district", renamed.text
    assert renamed.json() == browser.get(f"{ACCOUNTS}/district", headers=viewer).json()
    assert [a["name"] for a in browser.get(ACCOUNTS, headers=viewer).json()["items"]] == ["district", "university"]
    gone = browser.get(f"{ACCOUNTS}/school", headers=viewer)
    assert gone.status_code == 404 and gone.json()["error"].startswith("no VPP account named 'school'")
    assert browser.post(f"{ACCOUNTS}/district/sync", headers=admin).status_code == 202
