"""``mobile_apps_*`` tables: published applications, metadata cache, installs, reclaims.

Imported only when the plugin registers its tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from mdm_core.db.typed import values_of
from mdm_core.db.types import UTCDateTime
from mdm_core.models import utcnow


class MobileApp(SQLModel, table=True):
    """One VPP asset on one platform (``iOS`` covers iPadOS): an installable application, or a book."""

    __tablename__ = "mobile_apps_app"
    __table_args__ = (
        UniqueConstraint("account", "adam_id", "pricing_param", "platform", name="uq_mobile_apps_app_asset_platform"),
        Index("ix_mobile_apps_app_adam", "adam_id"),
        Index("ix_mobile_apps_app_published", "published_at"),  # a manual sync's "published since it started?" (mobile_apps migration 0010)
        # an id deleted is never given again (mobile_apps migration 0005); pages half full on PostgreSQL: a sync's
        # new license counts update the applications in place, no index written (mobile_apps migration 0011)
        {"sqlite_autoincrement": True, "postgresql_with": {"fillfactor": 50}},
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(max_length=128)
    adam_id: str = Field(max_length=32)
    pricing_param: str = Field(max_length=8)
    platform: str = Field(max_length=16)
    kind: str = Field(max_length=8)  # "app" or "book"
    state: str = Field(default="published", max_length=16)  # "published" or "retired"
    product_type: str = Field(max_length=16)
    device_assignable: bool = False
    revocable: bool = False
    supported_platforms: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    assigned_count: int = 0
    available_count: int = 0
    retired_count: int = 0
    total_count: int = 0
    published_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: the version devices were last brought to (:mod:`.updates`): the first one looked up, then each update's
    known_version: str | None = Field(default=None, max_length=64)


class AppMetadata(SQLModel, table=True):
    """Cached content metadata of an adamId on one application platform (names, bundle id,
    version, icon): a universal app's macOS entry is the Mac App Store's, not the iOS one."""

    __tablename__ = "mobile_apps_metadata"

    adam_id: str = Field(primary_key=True, max_length=32)
    platform: str = Field(primary_key=True, max_length=16)
    account: str = Field(max_length=128)  # the account whose token looks it up
    status: str = Field(default="pending", max_length=16)  # pending, ok, missing (Apple does not know it), error
    name: str | None = Field(default=None, max_length=512)
    bundle_id: str | None = Field(default=None, max_length=255, index=True)
    version: str | None = Field(default=None, max_length=64)
    icon_url: str | None = Field(default=None, max_length=1024)
    store_kind: str | None = Field(default=None, max_length=64)
    device_families: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: a version lower than the known one the lookup answered, already warned of by the update check (:mod:`.updates`)
    warned_version: str | None = Field(default=None, max_length=64)
    fetched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Install(SQLModel, table=True):
    """An install asked for (or started automatically): queued, pending Apple, or failed."""

    __tablename__ = "mobile_apps_install"
    __table_args__ = (
        Index("ix_mobile_apps_install_status", "status", "account", "adam_id"),
        {"sqlite_autoincrement": True},  # an id deleted (past its retention) is never given again (mobile_apps migration 0007)
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(max_length=128)
    adam_id: str = Field(max_length=32)
    pricing_param: str = Field(max_length=8)
    kind: str = Field(max_length=8)  # "device" or "user" (the license's holder)
    target: str = Field(max_length=255)  # serial number or MDM user id
    source: str = Field(max_length=16)  # "request" (mdm apps install) or "auto" (auto_install)
    status: str = Field(max_length=16)  # "queued", "pending" (Apple has not confirmed), "invited" (the user has not accepted), "failed"
    event_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    command_uuids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    error: str | None = None
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    #: the mark of the request asking Apple while ``associating`` (its token, and when it started): the
    #: installs job takes the install over only while status and token are as it read them (:mod:`.installs.pending`)
    request_token: str | None = Field(default=None, max_length=32)
    request_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Reclaim(SQLModel, table=True):
    """A license to give back to the pool: pending, done, failed or irrevocable (a failed one
    reclaimed again later is ``superseded_by`` that later reclaim)."""

    __tablename__ = "mobile_apps_reclaim"
    __table_args__ = (
        Index("ix_mobile_apps_reclaim_status", "status", "next_attempt_at"),
        {"sqlite_autoincrement": True},  # an id deleted (past its retention) is never given again (mobile_apps migration 0007)
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(max_length=128)
    adam_id: str = Field(max_length=32)  # "*" (and pricing_param "*"): Apple's revoke, every revocable license
    pricing_param: str = Field(max_length=8)
    kind: str = Field(max_length=8)  # "device" or "user"
    target: str = Field(max_length=255)  # serial number or clientUserId
    reason: str = Field(max_length=32)  # "device_removed", "user_removed", "manual", "unused"
    cause: str | None = Field(default=None, max_length=36, index=True)  # the removal event that asked for it
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_error: str | None = None
    unconfirmed: bool = False  # pending: Apple took the request and has not confirmed it yet (mobile_apps migration 0008)
    unretired: bool = False  # pending revoke: its licenses are released, its VPP user not retired yet (migration 0009)
    #: failed: the id of a later reclaim of the same license (or revoke), which took its place: no
    #: longer open, and pruned with the history (mobile_apps migration 0012)
    superseded_by: int | None = None
    event_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SeenEvent(SQLModel, table=True):
    """Events already applied (subscribers are idempotent: a redelivered event is skipped)."""

    __tablename__ = "mobile_apps_seen_event"

    event_id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=128)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


def as_dict(row: Any) -> dict[str, Any]:
    """A row as plain values."""
    return values_of(row)


MOBILE_APPS_TABLES: list[type[SQLModel]] = [MobileApp, AppMetadata, Install, Reclaim, SeenEvent]
