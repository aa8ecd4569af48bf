"""What ``GET /api/v1/vpp/...`` answers, for the OpenAPI document (``mdm_core.web.schemas``):
the rows of ``mdm vpp ... --json``, with Apple's field names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from mdm_core.web.schemas import ApiModel


class Account(ApiModel):
    """A VPP account (never its token), as ``mdm vpp account list --json``."""

    name: str
    locationName: str | None
    orgName: str | None
    uId: str | None
    countryISO2ACode: str | None
    defaultPlatform: str | None
    tokenExpirationDate: str | None
    token_state: str
    token_status: str
    action: str | None = Field(description="what an admin does now, if anything")
    paused: bool
    interval_seconds: int
    service_url: str
    last_sync_at: datetime | None
    last_sync_result: str | None
    notifications: str = Field(description="on or off")
    notification_url: str | None
    last_notification_at: datetime | None


class Run(ApiModel):
    """A sync run, as ``mdm vpp runs --json``: ``status`` is ``running`` until it ends."""

    id: int
    account: str
    trigger: str
    mode: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    pages: int | None
    counts: dict[str, Any] | None
    error_type: str | None
    error: str | None
    holder: str | None
    progress: dict[str, Any] | None


class Asset(ApiModel):
    """An asset with its counts, as ``mdm vpp assets --json``."""

    account: str
    adamId: str
    pricingParam: str
    productType: str | None
    assignedCount: int
    availableCount: int
    retiredCount: int
    totalCount: int
    deviceAssignable: bool | None
    revocable: bool | None
    supportedPlatforms: list[str] | None


class AssetCount(ApiModel):
    """An asset's counts at a sync that changed them."""

    at: datetime
    assignedCount: int
    availableCount: int
    retiredCount: int
    totalCount: int


class License(ApiModel):
    """A license, as ``mdm vpp licenses --json``: a device's (``serialNumber``, ``enrolled``) or a user's (``clientUserId``, ``mdmUser``)."""

    account: str
    adamId: str
    pricingParam: str
    serialNumber: str | None = None
    enrolled: bool | None = Field(default=None, description="the device is enrolled in this MDM")
    clientUserId: str | None = None
    mdmUser: str | None = Field(default=None, description="the MDM user it is, if any")


class VppUser(ApiModel):
    """A VPP user, as ``mdm vpp users --json``."""

    account: str
    clientUserId: str
    email: str | None
    status: str
    idHash: str | None
    inviteCode: str | None
    mdmUser: str | None
    invitationUrl: str | None
