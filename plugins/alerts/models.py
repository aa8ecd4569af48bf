"""``alerts_*`` tables: what state each watched subject is in, the alerts queued for sending,
one delivery per alert and channel, and the events already handled.

Imported only when the plugin registers its tables. Their schema is made by the plugin's own
migrations (``migrations/`` beside this file, history ``alerts``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from mdm_core.db.types import UTCDateTime
from mdm_core.models import utcnow
from mdm_core.secrets import secret_made_again


class AlertSubject(SQLModel, table=True):
    """The last known state of one watched thing, so that each change is alerted once.

    ``subject`` is ``token:ACCOUNT``, ``sync:ACCOUNT``, ``licenses:ACCOUNT:ADAMID:PRICING`` or
    ``job:NAME`` (a scheduled job: ``account`` empty, ``updated_at`` the finish of the last run read that changed it)
    or ``subscriber:PLUGIN`` (event deliveries to a plugin failed for good: ``account`` empty).
    License subjects exist only while low (no row: enough licenses).
    """

    __tablename__ = "alerts_subject"

    subject: str = Field(primary_key=True, max_length=255)
    kind: str = Field(max_length=16)  # "token", "sync", "licenses", "job", "subscriber"
    account: str = Field(max_length=128, index=True)
    state: str = Field(max_length=32)
    failures: int = 0  # syncs (or a job's runs) failed in a row
    since: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)  # when this state began
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AlertMessage(SQLModel, table=True):
    """One alert: what happened, and what to do about it."""

    __tablename__ = "alerts_message"
    __table_args__ = (
        Index("ix_alerts_message_subject", "subject", "created_at"),
        Index("ix_alerts_message_recent", "kind", "account", "created_at"),  # an account's recent license alerts (alerts migration 0004)
        {"sqlite_autoincrement": True},  # ids never reused (alerts migration 0002)
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    kind: str = Field(max_length=16)  # "token", "sync", "licenses", "install", "reclaim", "job", "subscriber"
    subject: str = Field(max_length=255)
    state: str = Field(max_length=32)
    severity: str = Field(max_length=16)  # "critical", "warning", "resolved"
    account: str | None = Field(default=None, max_length=128)
    title: str = Field(max_length=512)
    text: str
    action: str
    fields: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    event_id: str | None = Field(default=None, max_length=36)


class AlertDelivery(SQLModel, table=True):
    """One alert through one channel: pending (with its next attempt), sent or failed."""

    __tablename__ = "alerts_delivery"
    __table_args__ = (Index("ix_alerts_delivery_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="alerts_message.id", index=True, ondelete="CASCADE")
    channel: str = Field(max_length=80)  # "email" or "webhook:NAME"
    status: str = Field(default="pending", max_length=16)  # "pending", "sent", "failed"
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str | None = None
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SeenEvent(SQLModel, table=True):
    """Events already turned into state changes (a redelivered event changes nothing)."""

    __tablename__ = "alerts_seen_event"

    event_id: str = Field(primary_key=True, max_length=36)
    at: datetime = Field(default_factory=utcnow, index=True, sa_type=UTCDateTime)


class WebhookSecret(SQLModel, table=True):
    """The secret a webhook's POSTs are signed with (HMAC-SHA256, :mod:`plugins.alerts.signing`),
    encrypted with the host's key like the other stored secrets; made at its first use."""

    __tablename__ = "alerts_webhook_secret"

    name: str = Field(primary_key=True, max_length=64)  # the webhook's name under [alerts.webhooks]
    secret_ciphertext: str = Field(sa_column_kwargs={"info": secret_made_again("a webhook's signing secret", "mdm alerts webhook-secret {name} --new")})
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


ALERTS_TABLES: list[type[SQLModel]] = [AlertSubject, AlertMessage, AlertDelivery, SeenEvent, WebhookSecret]
