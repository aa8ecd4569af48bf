"""What ``GET /api/v1/alerts`` answers, for the OpenAPI document (``mdm_core.web.schemas``):
an alert as ``mdm alerts list --json`` has it, the message channels send (``Outgoing``) and
its deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_type_hints

from pydantic import create_model

from mdm_core.web.schemas import ApiModel

from .channels import Outgoing


class Delivery(ApiModel):
    """An alert's delivery through one channel."""

    channel: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None


_FIELDS: dict[str, Any] = {name: (hint, ...) for name, hint in get_type_hints(Outgoing).items()}
#: A recorded alert: the fields of the message it sends, and its deliveries.
Alert = create_model("Alert", __base__=ApiModel, __doc__="A recorded alert and its deliveries.", **(_FIELDS | {"deliveries": (list[Delivery], ...)}))
