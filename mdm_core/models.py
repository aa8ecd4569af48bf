"""Core tables: the MDM inventory, the command queue, and the host's own bookkeeping.

Every table name starts with ``core_``; plugin tables start with the plugin's name.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from mdm_core.db.types import UTCDateTime


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Platform(str, enum.Enum):
    """Apple platforms an enrolled device can run."""

    iOS = "iOS"
    iPadOS = "iPadOS"
    macOS = "macOS"
    tvOS = "tvOS"


class EnrollmentType(str, enum.Enum):
    """How a device enrolled: Device Enrollment, Automated Device Enrollment, or User Enrollment
    (a personal device: Apple forbids some command keys there, e.g. ``ChangeManagementState``)."""

    device = "device"
    automated = "automated"
    user = "user"


class CommandStatus(str, enum.Enum):
    """Life of an MDM command in the queue."""

    queued = "queued"
    sent = "sent"
    acknowledged = "acknowledged"
    error = "error"
    canceled = "canceled"  # withdrawn before the device fetched it (e.g. its VPP license was reclaimed)


class Device(SQLModel, table=True):
    """An enrolled device."""

    __tablename__ = "core_device"

    serial_number: str = Field(primary_key=True, max_length=64)
    udid: str | None = Field(default=None, max_length=64, index=True)
    platform: str = Field(max_length=16)
    model: str | None = Field(default=None, max_length=128)
    owner: str | None = Field(default=None, max_length=255, index=True)
    enrolled_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    enrollment_type: str = Field(default=EnrollmentType.device.value, max_length=16)


class MdmUser(SQLModel, table=True):
    """An MDM user; ``id`` is what Apple sees as ``clientUserId``."""

    __tablename__ = "core_user"

    id: str = Field(primary_key=True, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    managed_apple_id: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Command(SQLModel, table=True):
    """An MDM command queued for a device."""

    __tablename__ = "core_command"
    __table_args__ = (
        Index("ix_core_command_device_status", "device_serial", "status"),
        Index("ix_core_command_finished", "status", "updated_at"),  # the finished commands housekeeping deletes (core migration 0006)
    )

    uuid: str = Field(default_factory=lambda: str(uuid.uuid4()).upper(), primary_key=True, max_length=36)
    device_serial: str = Field(max_length=64)
    request_type: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default=CommandStatus.queued.value, max_length=16)
    error: str | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OutboxEvent(SQLModel, table=True):
    """An event written in the transaction of the change it describes, delivered after commit."""

    __tablename__ = "core_event"
    #: pages 45% full on PostgreSQL (core migration 0005): a claim's new row versions stay in their page, no index written;
    #: a seq deleted is never given again on SQLite (core migration 0009): the API's events cursor holds one
    __table_args__ = (Index("ix_core_event_pending", "delivered_at", "seq"), {"postgresql_with": {"fillfactor": 45}, "sqlite_autoincrement": True})

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=36, unique=True)
    name: str = Field(max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SubscriberFailure(SQLModel, table=True):
    """A subscriber that raised while an event was delivered to it. ``status``: ``retrying``
    (``mdm run`` delivers it again to that subscriber at ``next_attempt_at``, with back-off),
    ``waiting`` (the subscriber, or a plugin it needs, is not loaded: tried again when the host
    starts), ``failed`` (retries exhausted: ``mdm events redeliver``). Removed once delivered."""

    __tablename__ = "core_subscriber_failure"
    #: by status then plugin (core migration 0011): `mdm run`'s retries, `mdm status`, `mdm events discard --plugin`;
    #: an id delivered (deleted) is never given again (core migration 0008)
    __table_args__ = (Index("ix_core_subscriber_failure_status", "status", "plugin"), {"sqlite_autoincrement": True})

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=36, index=True)
    event_name: str = Field(max_length=128)
    plugin: str = Field(max_length=128)
    error: str
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)  # the last failure
    hook: str | None = Field(default=None, max_length=128)  # the hook that failed (mdm_<name> or mdm_event)
    attempts: int = 1
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default="failed", max_length=16, sa_column_kwargs={"server_default": "failed"})


class Lock(SQLModel, table=True):
    """A named lock shared by every process on the database, with an expiry."""

    __tablename__ = "core_lock"

    name: str = Field(primary_key=True, max_length=191)
    holder: str = Field(max_length=128)
    acquired_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    generation: int = 0  # grows at every acquisition: with the holder, the fencing token


class JobRun(SQLModel, table=True):
    """The last run of each scheduled job, so `mdm jobs` in another process can show it."""

    __tablename__ = "core_job_run"

    name: str = Field(primary_key=True, max_length=191)
    plugin: str = Field(max_length=128)
    last_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = None
    last_note: str | None = None  # what a run that went well did not do and why (a sync its token keeps waiting)
    last_holder: str | None = Field(default=None, max_length=128)  # who ran the last run: ``host:pid:random`` (``locks.new_holder``)
    runs: int = 0
    failures: int = 0


CORE_TABLES: list[type[SQLModel]] = [Device, MdmUser, Command, OutboxEvent, SubscriberFailure, Lock, JobRun]
HOST_TABLES: list[type[SQLModel]] = [OutboxEvent, SubscriberFailure, Lock, JobRun]
"""The tables the host itself needs, created even when the inventory plugin is disabled."""
