"""What the REST API's GET operations answer, for its OpenAPI document: a Pydantic model per
body (``response_model=`` of a ``rest_router()`` route), whose fields are the keys the route
returns. They document only: the body stays the CLI's JSON (``helpers.CliJsonRoute``), never
re-serialized through them. Lists answer ``page_of(Row)``: ``items`` and ``next_cursor``."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlmodel import SQLModel


class ApiModel(BaseModel):
    """A body of the API: the fields it documents, and no other (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid")


@cache
def page_of(item: type[BaseModel]) -> type[BaseModel]:
    """One page of a list of ``item`` rows."""
    return create_model(
        f"{item.__name__}Page",
        __base__=ApiModel,
        __doc__=f"One page of {item.__name__} rows: pass next_cursor back as cursor for the next one (null on the last page).",
        items=(list[item], ...),  # type: ignore[valid-type]
        next_cursor=(str | None, ...),
    )


@cache
def row_model(table: type[SQLModel], name: str) -> type[BaseModel]:
    """The fields of ``table``'s rows as the API gives them (``values_of``: every column, in order)."""
    fields: dict[str, Any] = {}
    for field, info in table.model_fields.items():
        fields[field] = (info.annotation, Field(description=info.description))
    return create_model(name, __base__=ApiModel, **fields)


class Me(ApiModel):
    """Who the token or session belongs to."""

    name: str
    role: str = Field(description="admin or viewer")
    kind: str = Field(description="token or session")


class Event(ApiModel):
    """An event of the outbox."""

    id: str
    name: str
    created_at: datetime
    delivered_at: datetime | None
    account: Any = Field(description="the payload's account, when it names one")
    payload: dict[str, Any]


class ApiToken(ApiModel):
    """An API token (never the token nor its hash)."""

    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
