"""Every operation of ``GET /api/v1/openapi.json`` answers, on a seeded database, with a status
the document gives and a body of the schema it gives for that status (``default`` for another
refusal). The shape test checked a handful of refusals: an operation whose real answer left its
document (a route's own 422 overwritten by the API's, a 2xx without a schema) went unnoticed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from mdm_core.host import Host

from .conftest import make_web_host, token_for


@pytest.fixture
def web_host(make_host: Callable[..., Host], database_url: str) -> Host:
    """On SQLite and PostgreSQL: the answers are read from either."""
    return make_web_host(make_host, database_url)


#: (method, path in the document) -> the requests made of it: (path sent, request arguments)
Case = tuple[str, dict[str, Any]]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def problems(document: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema`` (the JSON Schema the document uses: types, properties,
    required, additionalProperties, items, enum, const, oneOf, anyOf); empty when it fits."""
    schema = _resolve(document, schema)
    for key, many in (("oneOf", True), ("anyOf", False)):
        if key in schema:
            fits = [s for s in schema[key] if not problems(document, s, value, where)]
            if len(fits) != 1 if many else not fits:
                return [f"{where}: fits {len(fits)} of {key}"]
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    python: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None), "integer": int, "number": (int, float)}
    if kinds and not any(isinstance(value, python[k]) and not (k in ("integer", "number") and isinstance(value, bool)) for k in kinds):
        return [f"{where}: {type(value).__name__}, not {kinds}"]
    if "const" in schema and value != schema["const"] or "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not allowed"]
    found: list[str] = []
    if isinstance(value, dict):
        found += [f"{where}: {k} missing" for k in schema.get("required", []) if k not in value]
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            found += [f"{where}: {k} not documented" for k in value if k not in properties]
        for k, sub in properties.items():
            if k in value:
                found += problems(document, sub, value[k], f"{where}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(document, schema["items"], item, f"{where}[{i}]")
    return found


def rows_of(document: dict[str, Any], schema: dict[str, Any], body: Any) -> tuple[set[str], list[dict[str, Any]]]:
    """The fields ``schema`` documents of a row, and the rows of ``body``: a page's items, or the body itself."""
    schema = _resolve(document, schema)
    properties = schema.get("properties", {})
    if set(properties) == {"items", "next_cursor"}:
        return set(_resolve(document, properties["items"].get("items", {})).get("properties", {})), body["items"]
    return set(properties), [body]


def _cases(school: Host, client: Any, admin: dict[str, str]) -> dict[tuple[str, str], list[Case]]:
    """Requests of every operation, on ``school`` (synced, a device enrolled, a failed delivery)."""
    from mdm_core import hookimpl, inventory
    from mdm_core.models import Device
    from plugins.mobile_apps.installs.request import install
    from plugins.mobile_apps.reclaims import create_reclaims
    from plugins.mobile_apps.vpp_port import VppPort

    from .test_paging import _alerts

    with school.db.session() as session:
        session.add(Device(serial_number="WALK0001", platform="iOS"))
        session.commit()
    inventory.add_users(school, [inventory.UserRow("walk-user", "walk@school.example", None, None)])

    class Grumpy:  # refuses device enrolments: a failed delivery to list
        @hookimpl
        def mdm_device_enrolled(self, host: Host, event: Any) -> None:
            raise RuntimeError("no")

    school.pm.register(Grumpy(), name="grumpy")
    inventory.add_devices(school, [inventory.DeviceRow(s, "iOS", None, None, None) for s in ("WALK0002", "WALK0003")])
    school.deliver_events()
    school.pm.unregister(name="grumpy")
    _alerts(school)

    def first(path: str, key: str) -> Any:
        return client.get(path, headers=admin).json()["items"][0][key]

    run, adam = first("/api/v1/vpp/runs", "id"), first("/api/v1/vpp/assets", "adamId")
    apps = client.get("/api/v1/apps", headers=admin).json()["items"]
    app = next(a["id"] for a in apps if a["kind"] == "app" and a["deviceAssignable"] and a["availableCount"] and a["platform"] == "iOS")  # WALK0001 can get
    install(school, str(app), serials=["WALK0003"])  # an install to list
    held = next(lic for lic in VppPort(school).licenses(account="school") if lic.get("serialNumber"))
    create_reclaims(school, [held], "manual")  # a reclaim to list (never sent to Apple here)
    lists = ["/devices", "/users", "/events", "/events/failures", "/api-tokens", "/vpp/accounts", "/vpp/runs", "/vpp/assets"]
    lists += ["/vpp/licenses", "/vpp/users", "/apps", "/apps/installs", "/apps/reclaims", "/alerts"]
    cases: dict[tuple[str, str], list[Case]] = {("get", f"/api/v1{p}"): [(f"/api/v1{p}", {}), (f"/api/v1{p}", {"params": {"cursor": "x"}})] for p in lists}
    cases[("get", "/api/v1/events")].append(("/api/v1/events", {"params": {"name": "nope"}}))
    cases[("get", "/api/v1/vpp/licenses")].append(("/api/v1/vpp/licenses", {"params": {"asset": "abc"}}))
    cases[("get", "/api/v1/apps/reclaims")] += [("/api/v1/apps/reclaims", {"params": {"all": "true"}}), ("/api/v1/apps/reclaims", {"params": {"all": "maybe"}})]
    history = f"/api/v1/vpp/assets/{adam}/history"
    token = "/api/v1/api-tokens/{name}"
    return cases | {
        ("get", "/api/v1/me"): [("/api/v1/me", {})],
        ("post", "/api/v1/events/failures/{failure_id}/redeliver"): [("/api/v1/events/failures/99999/redeliver", {})],
        ("delete", token): [(token.format(name="t-viewer"), {}), (token.format(name="nope"), {})],
        ("post", "/api/v1/vpp/accounts"): [("/api/v1/vpp/accounts", {"json": {"name": "x"}})],
        ("get", "/api/v1/vpp/accounts/{name}"): [("/api/v1/vpp/accounts/school", {}), ("/api/v1/vpp/accounts/nope", {})],
        ("patch", "/api/v1/vpp/accounts/{name}"): [("/api/v1/vpp/accounts/school", {"json": {"interval_seconds": 3600}})],
        ("delete", "/api/v1/vpp/accounts/{name}"): [("/api/v1/vpp/accounts/nope", {})],
        ("post", "/api/v1/vpp/accounts/{name}/sync"): [("/api/v1/vpp/accounts/school/sync", {})],
        ("get", "/api/v1/vpp/runs/{run_id}"): [(f"/api/v1/vpp/runs/{run}", {}), ("/api/v1/vpp/runs/0", {})],
        ("get", "/api/v1/vpp/assets/{adam_id}/history"): [(history, {"params": {"account": "school"}}), (history, {})],
        ("post", "/api/v1/apps/{app}/install"): [(f"/api/v1/apps/{app}/install", {"json": {"devices": ["WALK0001"]}})],
        ("post", "/api/v1/apps/reclaim"): [("/api/v1/apps/reclaim", {"json": {"unused": True, "dry_run": True}})],
        ("post", "/api/v1/apps/{app}/reclaim"): [(f"/api/v1/apps/{app}/reclaim", {"json": {"devices": ["WALK0001"]}})],
        ("post", "/api/v1/alerts/retry"): [("/api/v1/alerts/retry", {}), ("/api/v1/alerts/retry", {"json": {"ids": [99999]}})],
    }


def _finished(client: Any, admin: dict[str, str], run: str) -> None:
    """Wait for a sync started by the walk (its answer is checked; its end is not)."""
    deadline = time.monotonic() + 60
    while client.get(run, headers=admin).json()["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.slow
def test_every_operation_answers_as_its_document_says(school: Host, client: Any) -> None:
    admin = token_for(school, "admin")
    token_for(school, "viewer")  # revoked by the walk
    document = client.get("/api/v1/openapi.json", headers=admin).json()
    cases = _cases(school, client, admin)
    operations = {(m, p) for p, item in document["paths"].items() for m in item}
    assert operations == set(cases), ("not walked", sorted(operations - set(cases)), "not in the document", sorted(set(cases) - operations))
    seen: dict[tuple[str, str], set[int]] = {}
    described: dict[str, set[str]] = {}  # GET path -> the fields its 200 documents of a row (of a page's items, or the body)
    given: dict[str, set[str]] = {}  # ... and those its answers held
    for (method, path), requests in sorted(cases.items()):
        responses = document["paths"][path][method]["responses"]
        for sent, arguments in requests:
            response = client.request(method.upper(), sent, headers=admin, **arguments)
            status = str(response.status_code)
            documented = responses.get(status) or (responses.get("default") if not status.startswith("2") else None)
            assert documented is not None, (method, sent, status, sorted(responses))
            schema = documented["content"]["application/json"]["schema"]
            assert problems(document, schema, response.json()) == [], (method, sent, status, response.text[:300])
            if method == "get" and status == "200":
                fields, rows = rows_of(document, schema, response.json())
                described[path] = fields
                given.setdefault(path, set()).update(k for row in rows for k in row)
            seen.setdefault((method, path), set()).add(response.status_code)
            if path.endswith("/sync") and response.status_code == 202:
                _finished(client, admin, response.json()["run"])
    gets = {p for m, p in operations if m == "get" and p != "/api/v1/openapi.json"}
    assert {p for p in gets if not described.get(p)} == set(), "a GET documented as a bare JSON object: give it a response_model (mdm_core.web.schemas)"
    assert {p: described[p] - given.get(p, set()) for p in gets if described[p] - given.get(p, set())} == {}, "documented fields no answer held"
    answered = {op for op, statuses in seen.items() if any(s < 300 for s in statuses)}
    refused_only = {("post", "/api/v1/events/failures/{failure_id}/redeliver"), ("post", "/api/v1/vpp/accounts"), ("delete", "/api/v1/vpp/accounts/{name}")}
    assert answered == operations - refused_only, sorted(operations - refused_only - answered)  # a success of every other operation


def test_a_routes_own_422_keeps_its_schema(web_host: Host) -> None:
    """A route documenting its own 422 (a body of its own) kept the API's Error in its place."""
    from fastapi.testclient import TestClient

    from mdm_core import hookimpl
    from mdm_core.web.app import create_app
    from mdm_core.web.helpers import rest_router

    own = {"type": "object", "properties": {"error": {"type": "string"}, "fields": {"type": "array"}}, "required": ["error", "fields"]}

    class Plugin:
        @hookimpl
        def mdm_register_web(self, web: Any, host: Host) -> None:
            router = rest_router()

            @router.get("/own422", responses={422: {"description": "its own", "content": {"application/json": {"schema": own}}}})
            def route() -> dict[str, Any]:
                return {}

            web.add_api(router, plugin="own")

    web_host.pm.register(Plugin(), name="own")
    with TestClient(create_app(web_host)) as client:
        document = client.get("/api/v1/openapi.json", headers=token_for(web_host, "viewer")).json()
    responses = document["paths"]["/api/v1/own422"]["get"]["responses"]
    assert responses["422"]["content"]["application/json"]["schema"] == own
    assert responses["200"]["content"]["application/json"]["schema"] == {"type": "object"}
