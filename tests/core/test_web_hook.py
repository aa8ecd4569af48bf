"""``mdm_register_web``: a third-party plugin adds REST routes, a console page, a navigation
entry and a public endpoint; the host mounts them behind the one access check (except the
public one) and names the plugin when its hook fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mdm_core.errors import PluginError
from mdm_core.host import Host

from ..web.conftest import PASSWORD, csrf, sign_in

NOTES_PLUGIN = """
from pathlib import Path

from fastapi import APIRouter, Request, Form
from fastapi.responses import JSONResponse

NOTES = []
TEMPLATES = Path(__file__).with_name("{name}_templates")


@hookimpl
def mdm_register_web(web, host):
    from mdm_core.web.helpers import WebError, redirect, render

    api = APIRouter(prefix="/notes")

    @api.get("")
    def list_notes(request: Request):
        return {{"items": list(NOTES), "next_cursor": None}}

    @api.post("")
    async def add_note(request: Request):
        body = await request.json()
        if not isinstance(body.get("text"), str) or not body["text"]:
            raise WebError(422, "text: give the note's text")
        NOTES.append(body["text"])
        return {{"items": list(NOTES)}}

    pages = APIRouter()

    @pages.get("/notes")
    def notes_page(request: Request):
        return render(request, "notes/list.html", {{"notes": NOTES}})

    @pages.post("/notes")
    def notes_form(request: Request, text: str = Form("")):
        NOTES.append(text)
        return redirect(request, "/notes", "note added")

    public = APIRouter()

    @public.post("/hooks/{name}")
    def ping(request: Request):
        if request.headers.get("authorization") != "Bearer shared-secret":
            return JSONResponse({{"error": "wrong secret"}}, status_code=401)
        NOTES.append("pinged")
        return {{"ok": True}}

    web.add_api(api, plugin="{name}")
    web.add_pages(pages, plugin="{name}", templates=TEMPLATES)
    web.add_public(public, plugin="{name}")
    web.add_nav("Notes", "/notes", order=5, plugin="{name}")
"""

TEMPLATE = """{% extends "base.html" %}
{% block title %}Notes{% endblock %}
{% block content %}<h1>Notes</h1><ul id="notes">{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>
<form method="post" action="/notes">{{ csrf_field(request) }}<input name="text"><button>Add</button></form>{% endblock %}
"""


@pytest.fixture
def notes(load_plugin: Callable[..., Any], plugin_dir: Path) -> Any:
    """A plugin that adds its own console page, API routes and a public endpoint."""
    import uuid

    name = f"mdmtest_{uuid.uuid4().hex[:10]}"
    folder = plugin_dir / f"{name}_templates" / "notes"
    folder.mkdir(parents=True)
    (folder / "list.html").write_text(TEMPLATE)
    return load_plugin(NOTES_PLUGIN.format(name=name), name=name)


@pytest.fixture
def notes_host(make_host: Callable[..., Host], notes: Any) -> Host:
    from mdm_core.web.access import add_admin

    host = make_host(plugins=[notes])
    add_admin(host, "alice", PASSWORD, "admin")
    add_admin(host, "victor", PASSWORD, "viewer")
    return host


@pytest.fixture
def client(notes_host: Host) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    with TestClient(create_app(notes_host)) as c:
        yield c


def test_a_plugins_routes_are_mounted_behind_the_access_check(notes: Any, notes_host: Host, client: Any) -> None:
    from mdm_core.web.access import create_token

    table = {(r.path, r.kind): r.plugin for r in client.app.state.route_table}
    assert table[("/api/v1/notes", "api")] == table[("/notes", "page")] == table[(f"/hooks/{notes.__name__}", "public")] == notes.__name__

    # anonymous: 401 on the API, sent to sign in on the page, nothing changed by a form
    assert client.get("/api/v1/notes").status_code == 401
    assert client.post("/api/v1/notes", json={"text": "x"}).status_code == 401
    assert client.get("/notes", follow_redirects=False).headers["location"] == "/login?next=%2Fnotes"
    assert client.post("/notes", data={"text": "x"}, follow_redirects=False).status_code == 303
    assert notes.NOTES == []

    # a viewer token reads, and is refused a change
    viewer = {"Authorization": "Bearer " + create_token(notes_host, "reader", "viewer")["token"]}
    assert client.get("/api/v1/notes", headers=viewer).json() == {"items": [], "next_cursor": None}
    refused = client.post("/api/v1/notes", headers=viewer, json={"text": "x"})
    assert refused.status_code == 403 and "can only read" in refused.json()["error"]
    # an admin token changes; the plugin's own WebError is the API's one-line error
    admin = {"Authorization": "Bearer " + create_token(notes_host, "writer", "admin")["token"]}
    assert client.post("/api/v1/notes", headers=admin, json={"text": ""}).json() == {"error": "text: give the note's text"}
    assert client.post("/api/v1/notes", headers=admin, json={"text": "from the API"}).status_code == 200

    # the page, with its navigation entry first (order 5) on every console page
    assert sign_in(client).status_code == 303
    home = client.get("/")
    assert home.text.index('href="/notes"') < home.text.index('href="/devices"')
    response = client.post("/notes", data={"text": "<b>from the form</b>", "csrftoken": csrf(client)})
    assert response.status_code == 200 and "note added" in response.text
    assert "&lt;b&gt;from the form&lt;/b&gt;" in response.text  # the plugin's template is escaped too
    assert notes.NOTES == ["from the API", "<b>from the form</b>"]
    # the plugin's routes are in the OpenAPI document of the REST API
    assert "/api/v1/notes" in client.get("/api/v1/openapi.json").json()["paths"]


def test_a_public_route_checks_its_own_authentication(notes: Any, client: Any) -> None:
    path = f"/hooks/{notes.__name__}"
    assert client.post(path).status_code == 401  # the plugin's own refusal, no sign-in page
    assert notes.NOTES == []
    assert client.post(path, headers={"Authorization": "Bearer shared-secret"}).json() == {"ok": True}
    assert notes.NOTES == ["pinged"]


def test_a_failing_mdm_register_web_names_the_plugin(make_host: Callable[..., Host], load_plugin: Callable[..., Any]) -> None:
    from mdm_core.web.app import create_app

    broken = load_plugin("@hookimpl\ndef mdm_register_web(web, host):\n    web.add_nav('x', '/x', order=1 / 0)\n")
    with pytest.raises(PluginError) as info:
        create_app(make_host(plugins=[broken]))
    assert str(info.value) == f"plugin '{broken.__name__}' failed in mdm_register_web: ZeroDivisionError: division by zero"


def test_applications_of_hosts_with_the_same_plugins_share_routers_but_serve_their_own_host(make_host: Callable[..., Host], project_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from mdm_core.inventory.devices import add_device
    from mdm_core.web.app import create_app

    from ..web.conftest import token_for

    hosts = [make_host(), make_host(database_url=f"sqlite:///{project_dir / 'var' / 'other.sqlite3'}")]
    for host, serial in zip(hosts, ("C02AAAAAAAA1", "C02BBBBBBBB2"), strict=True):
        add_device(host, serial, "iOS")
    apps = [create_app(host) for host in hosts]
    assert apps[0].state.registry is apps[1].state.registry  # built once for these plugins
    for app, host, serial in zip(apps, hosts, ("C02AAAAAAAA1", "C02BBBBBBBB2"), strict=True):
        with TestClient(app) as client:
            rows = client.get("/api/v1/devices", headers=token_for(host, "viewer")).json()["items"]
        assert [row["serial_number"] for row in rows] == [serial]


def test_a_closed_hosts_application_is_not_kept_alive(project_dir: Path) -> None:
    """Routers are shared between applications, and FastAPI keeps the callables of routes in a
    module-level cache (4,096 entries): a route that closed over its application (the OpenAPI
    document's did) kept every application and its host in memory with their engines (in the
    test suite, every web test's, and a garbage collection that grew with them).

    The client's sync routes run on AnyIO worker threads, told to stop when its event loop
    ends but not waited for: until one has returned, its last call's arguments (the request,
    and through it the application) are still referenced. The test waits for those threads
    (it failed about once in 100-400 runs on a busy machine otherwise)."""
    import gc
    import threading
    import weakref

    from fastapi.testclient import TestClient

    from mdm_core.host import create_host
    from mdm_core.testing import TEST_SECRET_KEY
    from mdm_core.web.app import create_app

    from ..web.conftest import token_for

    (project_dir / "conf" / "mdm.toml").write_text("")
    url = f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"
    host = create_host(project_dir / "conf" / "mdm.toml", environ={"MDM_SECRET_KEY": TEST_SECRET_KEY}, plugins=None, database_url=url)
    app = create_app(host)
    running = set(threading.enumerate())
    with TestClient(app) as client:
        assert client.get("/api/v1/openapi.json", headers=token_for(host, "viewer")).json()["info"]["title"] == "mdm-host"
        assert client.get("/login").status_code == 200
    for thread in set(threading.enumerate()) - running:  # the client's worker threads, ending
        thread.join(timeout=30)
        assert not thread.is_alive(), f"{thread.name} still runs after its event loop ended"
    gone_app, gone_host = weakref.ref(app), weakref.ref(host)
    host.close()
    del app, host, client
    gc.collect()
    assert gone_app() is None, [type(r).__qualname__ for r in gc.get_referrers(gone_app())]
    assert gone_host() is None, [type(r).__qualname__ for r in gc.get_referrers(gone_host())]
