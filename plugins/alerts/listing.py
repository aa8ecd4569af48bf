"""The recorded alerts as ``mdm alerts list --json``, the console's Alerts page and
``GET /api/v1/alerts`` show them: newest first, each with its delivery through each channel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session, col

from mdm_core.errors import UsageError

if TYPE_CHECKING:
    from .models import AlertMessage

STATUSES = ("pending", "sent", "failed")  # of a delivery (this module imports the tables' models only when called)


def alerts_query(status: str | None = None) -> Any:
    """``AlertMessage`` rows, only those with a delivery in ``status`` when given; an unknown
    status is a ``UsageError`` (it would match nothing, as if there were no alerts)."""
    if status and status not in STATUSES:
        raise UsageError(f"unknown delivery status '{status}': use one of {', '.join(STATUSES)}")
    from .models import AlertDelivery, AlertMessage

    query = select(AlertMessage)
    if status:
        query = query.where(col(AlertMessage.id).in_(select(col(AlertDelivery.message_id)).where(col(AlertDelivery.status) == status)))
    return query


def with_deliveries(session: Session, messages: Sequence[AlertMessage], status: str | None = None) -> list[dict[str, Any]]:
    """Each alert as a row with its ``deliveries`` (those in ``status`` when given), in one query."""
    from .delivery import outgoing
    from .models import AlertDelivery

    deliveries: dict[int, list[AlertDelivery]] = {}
    ids = [m.id for m in messages]
    if ids:
        for row in session.execute(select(AlertDelivery).where(col(AlertDelivery.message_id).in_(ids)).order_by(col(AlertDelivery.id))).scalars():
            deliveries.setdefault(row.message_id, []).append(row)
    out = []
    for message in messages:
        m = outgoing(message)
        out.append(
            {
                "id": m.id,
                "created_at": m.created_at,
                "kind": m.kind,
                "subject": m.subject,
                "state": m.state,
                "severity": m.severity,
                "account": m.account,
                "title": m.title,
                "text": m.text,
                "action": m.action,
                "fields": m.fields,
                "deliveries": [
                    {
                        "channel": d.channel,
                        "status": d.status,
                        "attempts": d.attempts,
                        "next_attempt_at": d.next_attempt_at if d.status == "pending" else None,
                        "sent_at": d.sent_at,
                        "last_error": d.last_error,
                    }
                    for d in deliveries.get(m.id or 0, [])
                    if status is None or d.status == status
                ],
            }
        )
    return out
