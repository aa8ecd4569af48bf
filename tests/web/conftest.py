"""Fixtures of the web tests: a host with every installed plugin, admins, API tokens, and
FastAPI TestClients that sign in through the real sign-in form."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from mdm_core.host import Host

PASSWORD = "correct horse battery staple"

WEB_CONFIG = """
[vpp]
max_attempts = 1
max_total_wait = 1.0
request_timeout = 5.0
min_interval = 60

[mobile_apps]
install_wait = 5.0
reclaim_wait = 1.0
"""


@pytest.fixture
def web_host(make_host: Callable[..., Host]) -> Host:
    """A host with the installed plugins, an admin ``alice`` and a viewer ``victor``."""
    from mdm_core.web.access import add_admin

    host = make_host(config=WEB_CONFIG)
    add_admin(host, "alice", PASSWORD, "admin")
    add_admin(host, "victor", PASSWORD, "viewer")
    return host


@pytest.fixture
def app(web_host: Host) -> Any:
    from mdm_core.web.app import create_app

    return create_app(web_host)


def sign_in(client: Any, name: str = "alice", password: str = PASSWORD) -> Any:
    """Sign in through the form, as a browser does; returns the response."""
    client.get("/login")
    return client.post("/login", data={"name": name, "password": password, "next": "/", "csrftoken": client.cookies.get("csrftoken")},
                       follow_redirects=False)


def csrf(client: Any) -> str:
    """The CSRF token a form of the console carries."""
    if not client.cookies.get("csrftoken"):
        client.get("/login")
    return str(client.cookies.get("csrftoken"))


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    """Anonymous."""
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin(app: Any) -> Iterator[Any]:
    """Signed in as ``alice`` (admin)."""
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        assert sign_in(c).status_code == 303
        yield c


@pytest.fixture
def viewer(app: Any) -> Iterator[Any]:
    """Signed in as ``victor`` (viewer)."""
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        assert sign_in(c, "victor").status_code == 303
        yield c


@pytest.fixture
def school(web_host: Host, simulator: Any, project_dir: Path) -> Host:
    """``web_host`` with the account ``school`` on the simulator, synced once."""
    from plugins.vpp.accounts import add_account
    from plugins.vpp.sync.run import sync_account

    token = simulator.write_token(project_dir / "school.vpptoken")
    add_account(web_host, "school", str(token), service_url=simulator.base_url)
    assert sync_account(web_host, "school")["status"] == "ok"
    return web_host


def token_for(host: Host, role: str) -> dict[str, str]:
    """Authorization header of a new API token with ``role``."""
    from mdm_core.web.access import create_token

    return {"Authorization": "Bearer " + create_token(host, f"t-{role}", role)["token"]}
