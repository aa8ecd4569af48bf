"""``GET /api/v1/openapi.json`` says what the API does: the errors it sends, the bearer token,
the pages of its lists, the query parameters it refuses empty and the JSON bodies its routes
read. FastAPI's document described every error as ``{"detail": [...]}`` with 422 only and left
the bodies and the token out, so clients generated from it, and contract tests, went wrong."""

from __future__ import annotations

import json
from typing import Any

from mdm_core.host import Host

from .conftest import token_for

#: (method, path in the document, path sent, request arguments, who, status the API answers)
REFUSALS: list[tuple[str, str, str, dict[str, Any], str | None, int]] = [
    ("get", "/api/v1/vpp/licenses", "/api/v1/vpp/licenses", {"params": {"cursor": "garbage"}}, "viewer", 400),
    ("get", "/api/v1/vpp/assets", "/api/v1/vpp/assets", {"params": {"account": "nope"}}, "viewer", 404),
    ("get", "/api/v1/devices", "/api/v1/devices", {"params": {"limit": "0"}}, "viewer", 422),
    ("get", "/api/v1/vpp/runs/{run_id}", "/api/v1/vpp/runs/99999", {}, "viewer", 404),
    ("get", "/api/v1/me", "/api/v1/me", {}, None, 401),
    ("post", "/api/v1/apps/{app}/install", "/api/v1/apps/nope/install", {"content": b"not json"}, "admin", 400),
    ("patch", "/api/v1/vpp/accounts/{name}", "/api/v1/vpp/accounts/school", {"json": {"bogus": 1}}, "admin", 422),
    ("post", "/api/v1/vpp/accounts/{name}/sync", "/api/v1/vpp/accounts/school/sync", {}, "viewer", 403),
    ("delete", "/api/v1/api-tokens/{name}", "/api/v1/api-tokens/nope", {}, "admin", 404),
]
#: the operations whose routes read a JSON object themselves
BODIES = {
    ("post", "/api/v1/apps/{app}/install"),
    ("post", "/api/v1/apps/{app}/reclaim"),
    ("post", "/api/v1/apps/reclaim"),
    ("post", "/api/v1/vpp/accounts"),
    ("patch", "/api/v1/vpp/accounts/{name}"),
    ("post", "/api/v1/alerts/retry"),
}


def _document(client: Any, headers: dict[str, str]) -> dict[str, Any]:
    return client.get("/api/v1/openapi.json", headers=headers).json()


def _schema(document: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"][reference["$ref"].rsplit("/", 1)[1]]


def test_every_refusal_is_documented_as_the_error_the_api_sends(school: Host, client: Any) -> None:
    tokens = {role: token_for(school, role) for role in ("viewer", "admin")}
    document = _document(client, tokens["viewer"])
    assert "HTTPValidationError" not in json.dumps(document)  # {"detail": [...]} is never sent
    for method, path, sent, arguments, who, status in REFUSALS:
        response = client.request(method.upper(), sent, headers=tokens[who] if who else {}, **arguments)
        assert response.status_code == status, (sent, response.text)
        responses = document["paths"][path][method]["responses"]
        documented = responses.get(str(status), responses.get("default"))
        assert documented, (method, path, status, sorted(responses))
        schema = _schema(document, documented["content"]["application/json"]["schema"])
        body = response.json()
        assert set(body) == set(schema["properties"]) == set(schema["required"]) == {"error"} and isinstance(body["error"], str)


def test_the_bearer_token_is_declared(school: Host, client: Any) -> None:
    document = _document(client, token_for(school, "viewer"))
    assert document["components"]["securitySchemes"]["bearer"] | {"description": ""} == {"type": "http", "scheme": "bearer", "description": ""}
    assert document["security"] == [{"bearer": []}]
    assert client.get("/api/v1/me").status_code == 401 and "401" in document["paths"]["/api/v1/me"]["get"]["responses"]


def test_lists_are_documented_as_pages_and_their_text_parameters_as_never_empty(school: Host, client: Any) -> None:
    headers = token_for(school, "viewer")
    document = _document(client, headers)
    lists = [path for path, item in document["paths"].items() if any(p["name"] == "cursor" for p in item.get("get", {}).get("parameters", []))]
    assert "/api/v1/vpp/licenses" in lists and "/api/v1/apps/installs" in lists
    for path in lists:
        operation = document["paths"][path]["get"]
        page = _schema(document, operation["responses"]["200"]["content"]["application/json"]["schema"])
        sent = path.replace("{adam_id}", school_asset(client, headers))
        body = client.get(sent, params={"limit": 1, "account": "school"} if "{adam_id}" in path else {"limit": 1}, headers=headers).json()
        assert set(body) == set(page["required"]) == {"items", "next_cursor"}, (path, body)
        for param in operation["parameters"]:
            if param["in"] == "query" and param["schema"].get("type") == "string":
                assert param["schema"]["minLength"] == 1, (path, param)
                refused = client.get(sent, params={param["name"]: ""}, headers=headers)
                assert refused.status_code == 422 and "is empty" in refused.json()["error"], (path, param["name"], refused.text)


def school_asset(client: Any, headers: dict[str, str]) -> str:
    """The adamId of an asset of ``school``."""
    return str(client.get("/api/v1/vpp/assets", params={"account": "school", "limit": 1}, headers=headers).json()["items"][0]["adamId"])


def test_the_json_bodies_routes_read_are_documented_with_the_fields_they_take(school: Host, client: Any) -> None:
    headers = token_for(school, "admin")
    document = _document(client, headers)
    operations = [(method, path, operation) for path, item in document["paths"].items() for method, operation in item.items()]
    documented = {(method, path): operation["requestBody"] for method, path, operation in operations if "requestBody" in operation}
    assert set(documented) == BODIES
    for (method, path), body in documented.items():
        schema = body["content"]["application/json"]["schema"]
        assert schema["additionalProperties"] is False and schema["properties"]
        sent = path.replace("{app}", "nope").replace("{name}", "school")
        refused = client.request(method.upper(), sent, json={"zz_unknown": 1}, headers=headers)
        # the route refuses a field the document does not list, and names those it does take
        assert refused.status_code == 422, (path, refused.text)
        assert all(name in refused.json()["error"] for name in schema["properties"]), (path, sorted(schema["properties"]), refused.text)
        assert ("400" in document["paths"][path][method]["responses"]) and ("403" in document["paths"][path][method]["responses"])


#: the query parameters whose values the document lists (the routes refuse any other)
ENUMS = {("/api/v1/apps", "kind"), ("/api/v1/apps", "state"), ("/api/v1/apps/installs", "status"), ("/api/v1/alerts", "status")}


def test_filters_taking_known_values_list_them(school: Host, client: Any) -> None:
    headers = token_for(school, "viewer")
    document = _document(client, headers)
    operations = [(path, param) for path, item in document["paths"].items() for param in item.get("get", {}).get("parameters", [])]
    listed = {(path, param["name"]): param["schema"]["enum"] for path, param in operations if "enum" in param["schema"]}
    assert set(listed) == ENUMS
    for (path, name), values in listed.items():
        for value in values:
            assert client.get(path, params={name: value, "limit": 1}, headers=headers).status_code == 200, (path, name, value)
        refused = client.get(path, params={name: "nonsense"}, headers=headers)
        assert refused.status_code == 422 and "'nonsense'" in refused.json()["error"], (path, name, refused.text)


def test_a_third_party_plugins_routes_are_documented_as_they_behave(web_host: Host) -> None:
    """A plugin's public route (its own authentication) was documented as the API, the bearer
    token required; a plugin's API route on a plain ``APIRouter``, which takes a query parameter
    given empty, was documented as refusing it."""
    from fastapi import APIRouter
    from fastapi.testclient import TestClient

    from mdm_core import hookimpl
    from mdm_core.web.app import create_app
    from mdm_core.web.helpers import rest_router

    class ThirdParty:
        @hookimpl
        def mdm_register_web(self, web: Any, host: Host) -> None:
            checked, plain, public = rest_router(), APIRouter(), APIRouter()

            @checked.get("/third/checked")
            def checked_route(q: str | None = None) -> dict[str, Any]:
                return {"q": q}

            @plain.get("/third/plain")
            def plain_route(q: str | None = None) -> dict[str, Any]:
                return {"q": q}

            @public.get("/third/hook")
            def hook() -> dict[str, Any]:
                return {}

            web.add_api(checked, plugin="third")
            web.add_api(plain, plugin="third")
            web.add_public(public, plugin="third")

    web_host.pm.register(ThirdParty(), name="third")
    headers = token_for(web_host, "viewer")
    with TestClient(create_app(web_host)) as client:
        document = _document(client, headers)
        assert client.get("/third/hook").status_code == 200 and "/third/hook" not in document["paths"]
        refused = {}
        for path in ("/api/v1/third/checked", "/api/v1/third/plain"):
            [param] = document["paths"][path]["get"]["parameters"]
            refused[path] = client.get(path, params={"q": ""}, headers=headers).status_code == 422
            assert ("minLength" in param["schema"]) == refused[path], (path, param)
        assert refused == {"/api/v1/third/checked": True, "/api/v1/third/plain": False}
        assert "x-mdm" not in json.dumps(document)  # the routes' mark is not the document's


def test_a_409_refusing_the_whole_request_is_documented_as_an_error(make_host: Any) -> None:
    """An install or reclaim answers 409 with its results (a target refused), or with an error
    when it is refused as a whole (here: the VPP plugin not loaded); the document described the
    first alone, without a schema."""
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    from .conftest import WEB_CONFIG

    host = make_host(config=WEB_CONFIG, environ={"MDM_DISABLED_PLUGINS": "vpp"})
    admin = token_for(host, "admin")
    with TestClient(create_app(host)) as client:
        document = _document(client, admin)
        response = client.post("/api/v1/apps/1/install", headers=admin, json={"devices": ["WEBDEV000003"]})
        assert response.status_code == 409 and list(response.json()) == ["error"], response.text
        for path in ("/api/v1/apps/{app}/install", "/api/v1/apps/reclaim", "/api/v1/apps/{app}/reclaim"):
            schema = document["paths"][path]["post"]["responses"]["409"]["content"]["application/json"]["schema"]
            shapes = [_schema(document, s) if "$ref" in s else s for s in schema["oneOf"]]
            assert [set(s["required"]) for s in shapes] == [{"error"}, {"ok", "results"}], (path, shapes)
