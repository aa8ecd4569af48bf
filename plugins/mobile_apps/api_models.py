"""What ``GET /api/v1/apps`` answers, for the OpenAPI document (``mdm_core.web.schemas``):
an application as ``mdm apps list --json`` has it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from mdm_core.web.schemas import ApiModel


class App(ApiModel):
    """A published (or retired) application or book, its metadata and counts."""

    id: int
    kind: str = Field(description="app or book")
    platform: str
    state: str
    account: str
    adamId: str
    pricingParam: str
    productType: str | None
    name: str | None
    bundleId: str | None
    version: str | None
    available: Any = Field(description="whether Apple still offers it, when known")
    iconUrl: str | None
    metadata: str | None
    metadataFetchedAt: datetime | None
    metadataError: str | None
    deviceAssignable: bool | None
    revocable: bool | None
    supportedPlatforms: list[str] | None
    assignedCount: int | None
    availableCount: int | None
    retiredCount: int | None
    totalCount: int | None
    countsAsOf: str = Field(description="now, or retired: the counts it had at retiredAt")
    publishedAt: datetime
    retiredAt: datetime | None
