"""``vpp_*`` tables: accounts, the mirror of Apple's assets, users and licenses, sync runs.

Imported only when the plugin registers its tables. Staging tables hold the pages of a
running sync, keyed by the run, so that memory does not grow with the account and the
mirror changes in one final transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from mdm_core.db.types import UTCDateTime
from mdm_core.models import utcnow
from mdm_core.secrets import SECRET


class VppAccount(SQLModel, table=True):
    """A VPP location and its (encrypted) token."""

    __tablename__ = "vpp_account"
    __table_args__ = {"sqlite_autoincrement": True}  # an id removed is never given again (vpp migration 0011)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    uid: str = Field(max_length=64, unique=True)
    org_name: str | None = Field(default=None, max_length=255)
    location_name: str | None = Field(default=None, max_length=255)
    country: str | None = Field(default=None, max_length=8)
    default_platform: str | None = Field(default=None, max_length=32)
    website_url: str | None = Field(default=None, max_length=255)
    invitation_template: str | None = Field(default=None, max_length=512)  # service config's invitationEmail
    service_url: str = Field(max_length=512)
    token_ciphertext: str = Field(sa_column_kwargs={"info": SECRET})  # the sToken, encrypted (mdm_core.secrets)
    token_fingerprint: str = Field(max_length=64)
    token_expires_at: datetime = Field(sa_type=UTCDateTime)
    mdm_info_id: str = Field(max_length=64)
    interval_seconds: int = 3600
    token_state: str = Field(default="valid", max_length=32)
    state_detail: str | None = None
    paused: bool = False
    assets_version_id: str | None = Field(default=None, max_length=128)
    users_version_id: str | None = Field(default=None, max_length=128)
    assignments_version_id: str | None = Field(default=None, max_length=128)
    last_sync_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_sync_result: str | None = None
    last_full_sync_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Apple's notifications (plugins/vpp/notifications/): "on" once Apple accepted our URL and secret
    notifications: str = Field(default="off", max_length=8)
    notification_url: str | None = Field(default=None, max_length=512)
    notification_secret: str | None = Field(default=None, sa_column_kwargs={"info": SECRET})  # encrypted like the token: the bearer Apple sends
    last_notification_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Apple asked (Retry-After, 9646) not to be called with this token before this time.
    backoff_until: datetime | None = Field(default=None, sa_type=UTCDateTime)

    def __repr__(self) -> str:
        return f"VppAccount(name={self.name!r}, uid={self.uid!r}, token_state={self.token_state!r})"


class VppAsset(SQLModel, table=True):
    """An asset of an account, with Apple's counts."""

    __tablename__ = "vpp_asset"

    account_id: int = Field(primary_key=True, foreign_key="vpp_account.id", ondelete="CASCADE")
    adam_id: str = Field(primary_key=True, max_length=32)
    pricing_param: str = Field(primary_key=True, max_length=8)
    product_type: str = Field(max_length=16)
    assigned_count: int = 0
    available_count: int = 0
    retired_count: int = 0
    total_count: int = 0
    device_assignable: bool = False
    revocable: bool = False
    supported_platforms: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # the vpp_license rows the mirror holds for this asset, kept by every writer of vpp_license
    # (plugins/vpp/license_counts.py): an incremental sync compares Apple's assignedCount with
    # it instead of counting the whole mirror
    license_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class VppUser(SQLModel, table=True):
    """The current VPP user record of a ``clientUserId`` (live, else the latest retired)."""

    __tablename__ = "vpp_user"

    account_id: int = Field(primary_key=True)  # vpp_account.id, kept by triggers (vpp migration 0008)
    client_user_id: str = Field(primary_key=True, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    status: str = Field(max_length=16)
    id_hash: str | None = Field(default=None, max_length=255)
    invite_code: str | None = Field(default=None, max_length=255)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class VppLicense(SQLModel, table=True):
    """One assignment: a license of an asset held by a device (``kind`` device) or a user."""

    __tablename__ = "vpp_license"
    # SQLite: stored in its primary key's b-tree, every column being part of it (vpp migration 0009)
    __table_args__ = (Index("ix_vpp_license_target", "account_id", "kind", "target"), {"sqlite_with_rowid": False})

    account_id: int = Field(primary_key=True)  # vpp_account.id, kept by triggers (vpp migration 0008)
    adam_id: str = Field(primary_key=True, max_length=32)
    pricing_param: str = Field(primary_key=True, max_length=8)
    kind: str = Field(primary_key=True, max_length=8)  # "device" or "user"
    target: str = Field(primary_key=True, max_length=255)  # serialNumber or clientUserId


RUNNING = text("status = 'running'")


class VppSyncRun(SQLModel, table=True):
    """One sync of one account: what triggered it, what it did, how it ended."""

    __tablename__ = "vpp_sync_run"
    __table_args__ = (
        Index("ix_vpp_sync_run_account", "account_id", "started_at"),
        # the runs still running (every sync's preamble looks for them): vpp migration 0013
        Index("ix_vpp_sync_run_running", "account_id", sqlite_where=RUNNING, postgresql_where=RUNNING),
        {"sqlite_autoincrement": True},  # ids never reused (vpp migration 0011)
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="vpp_account.id", ondelete="CASCADE")
    trigger: str = Field(max_length=32)
    mode: str = Field(max_length=16)
    status: str = Field(default="running", max_length=16)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    pages: int = 0
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error_type: str | None = Field(default=None, max_length=64)
    error: str | None = None
    holder: str | None = Field(default=None, max_length=128)  # the lock holder running it (its staged rows are its own)
    # while it runs: pages and rows read so far, as its process last wrote them (sync/stored_progress.py); None once it ended
    progress: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class VppAssetCount(SQLModel, table=True):
    """An asset's counts as a sync found them, recorded whenever they changed (the console's
    chart of assigned and available licenses over time)."""

    __tablename__ = "vpp_asset_count"
    __table_args__ = (Index("ix_vpp_asset_count_asset", "account_id", "adam_id", "pricing_param", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="vpp_account.id", ondelete="CASCADE")
    adam_id: str = Field(max_length=32)
    pricing_param: str = Field(max_length=8)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    assigned_count: int = 0
    available_count: int = 0
    retired_count: int = 0
    total_count: int = 0


class VppStageLicense(SQLModel, table=True):
    """Assignments read by a running sync (deleted when it ends)."""

    __tablename__ = "vpp_stage_license"
    __table_args__ = (Index("ix_vpp_stage_license_key", "run_id", "adam_id", "pricing_param", "kind", "target"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=False)
    adam_id: str = Field(max_length=32)
    pricing_param: str = Field(max_length=8)
    kind: str = Field(max_length=8)
    target: str = Field(max_length=255)


class VppStageUser(SQLModel, table=True):
    """User records read by a running sync (deleted when it ends)."""

    __tablename__ = "vpp_stage_user"
    __table_args__ = (Index("ix_vpp_stage_user_key", "run_id", "client_user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int
    client_user_id: str = Field(max_length=255)
    email: str | None = Field(default=None, max_length=255)
    status: str = Field(max_length=16)
    id_hash: str | None = Field(default=None, max_length=255)
    invite_code: str | None = Field(default=None, max_length=255)
    rank: int = 0  # 0 live, 1 retired or deleted: the live record wins


class VppPendingSecret(SQLModel, table=True):
    """A notification secret being given to Apple (``POST client/config`` under way): Apple's
    test notification is accepted with it, from any process, before the account has it."""

    __tablename__ = "vpp_pending_secret"

    id: int | None = Field(default=None, primary_key=True)
    mdm_info_id: str = Field(max_length=64, index=True)  # the account's, or the account's being added
    secret_ciphertext: str = Field(sa_column_kwargs={"info": SECRET})
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class VppNotification(SQLModel, table=True):
    """A notification Apple posted for an account: recorded before it is answered, acted on
    afterwards, once (``notificationId`` is unique per account)."""

    __tablename__ = "vpp_notification"
    __table_args__ = (
        UniqueConstraint("account_id", "notification_id", name="uq_vpp_notification_id"),
        Index("ix_vpp_notification_status", "status", "account_id", "id"),
        Index("ix_vpp_notification_event", "account_id", "event_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="vpp_account.id", ondelete="CASCADE")
    notification_id: str = Field(max_length=255)
    notification_type: str = Field(max_length=32)
    event_id: str | None = Field(default=None, max_length=255)  # ASSET_MANAGEMENT, USER_MANAGEMENT
    body: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # the whole envelope
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    status: str = Field(default="received", max_length=16)  # received, done, skipped, failed
    attempts: int = 0
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    detail: str | None = None  # what acting on it did, or why it could not


class VppInstallation(SQLModel, table=True):
    """This database's installation id (one row, ``key`` 'installation'; made at its first claim,
    kept across upgrades): it goes in the ``mdmInfo`` metadata of every claim, so that a location
    claimed from this database is told from one claimed by another installation on the same
    machine (plugins/vpp/installation.py)."""

    __tablename__ = "vpp_installation"

    key: str = Field(default="installation", primary_key=True, max_length=32)  # one row: two processes never make two ids
    installation_id: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


VPP_TABLES: list[type[SQLModel]] = [
    VppAccount,
    VppAsset,
    VppUser,
    VppLicense,
    VppSyncRun,
    VppAssetCount,
    VppStageLicense,
    VppStageUser,
    VppPendingSecret,
    VppNotification,
    VppInstallation,
]
