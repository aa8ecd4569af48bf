"""The OpenAPI document of the REST API (``GET /api/v1/openapi.json``), saying what the routes do.

FastAPI's own document described errors as its validation error (``{"detail": [...]}``, 422
only), while every error is ``{"error": "one line"}`` with 400, 401, 403, 404, 409 or 422; it
left out the bearer scheme, the JSON bodies the routes read themselves (``helpers.json_object``)
and that a query parameter given empty is refused; a client generated from it, or a contract
test, got all of that wrong. :func:`api_document` amends it once per application.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every refusal: one line saying what is wrong and how to fix it.",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
    "additionalProperties": False,
}
PAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One page of a list: pass next_cursor back as cursor for the next one (null on the last page).",
    "properties": {"items": {"type": "array", "items": {"type": "object"}}, "next_cursor": {"type": ["string", "null"]}},
    "required": ["items", "next_cursor"],
}
BEARER: dict[str, Any] = {"type": "http", "scheme": "bearer", "description": "an API token: `mdm api-tokens create NAME` or the console's API tokens page"}
#: The mark ``helpers.CliJsonRoute`` puts on its operations: they refuse a query parameter given
#: empty (a plugin's route on a plain ``APIRouter`` takes it); the document says so, not the mark.
REFUSES_EMPTY = "x-mdm-refuses-empty-query"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
#: What each refusal means, for every operation (``default``: the other statuses, 404, 409, 405, 413 ...).
REFUSALS = {
    "401": "no token, or one that is not valid (unknown, revoked)",
    "422": "a query parameter, an id in the address or the body is not valid",
    "default": "another refusal (404 not found, 409 conflict, 413 too large ...)",
}


def json_body(properties: dict[str, Any], *, required: Iterable[str] = (), optional: bool = False) -> dict[str, Any]:
    """``openapi_extra`` of an API route that reads its JSON object itself
    (:func:`~mdm_core.web.helpers.json_object`): the document shows the fields it takes
    (``optional``: no body at all is taken too); the route refuses any other field."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {"requestBody": {"required": not optional, "content": {"application/json": {"schema": schema}}}}


def one_of(values: Iterable[str]) -> Any:
    """An optional query parameter taking one of ``values`` (the route refuses another, 422):
    the document lists them, where it showed any text."""
    from fastapi import Query

    return Query(None, json_schema_extra={"enum": list(values)})


def api_document(app: Any) -> dict[str, Any]:
    """The application's OpenAPI document, amended (made once, then kept)."""
    document = getattr(app.state, "api_document", None)
    if document is None:
        document = app.state.api_document = amended(copy.deepcopy(app.openapi()))
    return document


def amended(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's) with the API's errors, bearer scheme, pages and query rules."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for fastapi_own in ("HTTPValidationError", "ValidationError"):  # never answered
        schemas.pop(fastapi_own, None)
    schemas["Error"] = ERROR_SCHEMA
    schemas["Page"] = PAGE_SCHEMA
    components["securitySchemes"] = {"bearer": BEARER}
    document["security"] = [{"bearer": []}]
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method in METHODS:  # not a path's own summary or parameters
                _amend(method, operation, refuses_empty=operation.pop(REFUSES_EMPTY, False))
    return document


def _amend(method: str, operation: dict[str, Any], *, refuses_empty: bool) -> None:
    """One operation: its query parameters, its page, its refusals."""
    responses = operation.setdefault("responses", {})
    params = operation.get("parameters", [])
    for param in params:
        if refuses_empty and param.get("in") == "query" and _is_text(param.get("schema", {})):
            # given empty (?device=, an unset variable) it is refused, never taken as no filter
            param["schema"] = {k: v for k, v in param["schema"].items() if k != "anyOf"} | {"type": "string", "minLength": 1, "pattern": r"\S"}
    refusals = dict(REFUSALS)
    if any(p.get("name") == "cursor" and p.get("in") == "query" for p in params):
        ok = responses.setdefault("200", {"description": "Successful Response"})
        if "$ref" not in ok.get("content", {}).get("application/json", {}).get("schema", {}):  # a list without its rows' model (schemas.page_of)
            ok["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}
        refusals["400"] = "the cursor is not one this list gave"
    if "requestBody" in operation:
        refusals["400"] = "the body is not JSON"
    if method.lower() not in ("get", "head"):
        refusals["403"] = "the token's role (viewer) can only read"
    for status, description in refusals.items():
        if status not in responses or _fastapi_own(responses[status]):  # a status the route documents itself keeps its body (its own 422 too)
            responses[status] = {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for status, response in responses.items():  # an answer FastAPI left without a schema: every route answers a JSON object
        content = response.get("content", {}).get("application/json")
        if status.startswith("2") and content is not None and not content.get("schema"):
            content["schema"] = {"type": "object"}


def _fastapi_own(response: dict[str, Any]) -> bool:
    """FastAPI's validation error, which the API never sends (it sends :data:`ERROR_SCHEMA`)."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def _is_text(schema: dict[str, Any]) -> bool:
    """A parameter's schema is text (``str`` or ``str | None``)."""
    kinds = schema.get("anyOf", [schema])
    types = {k.get("type") for k in kinds}
    return "string" in types and types <= {"string", "null"} and not any("enum" in k or "format" in k for k in kinds)
