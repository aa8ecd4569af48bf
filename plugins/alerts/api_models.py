"""What ``GET /api/v1/alerts`` answers, for the OpenAPI document (``mdm_core.web.schemas``):
an alert as ``mdm alerts list --json`` has it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mdm_core.web.schemas import ApiModel


class Delivery(ApiModel):
    """An alert's delivery through one channel."""

    channel: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None


class Alert(ApiModel):
    """A recorded alert and its deliveries."""

    id: int
    created_at: datetime
    kind: str
    subject: str
    state: str
    severity: str
    account: str | None
    title: str
    text: str
    action: str | None
    fields: dict[str, Any]
    deliveries: list[Delivery]
