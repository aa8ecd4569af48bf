"""Tables of the console's access control: admins, API tokens, failed sign-ins.

The ``web`` plugin's own tables, created and changed by its migrations (``migrations/``).

Shared by every ``mdm run`` process on the database: a sign-in made through one process is
throttled by the others, and removing an admin or revoking a token takes effect everywhere.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel

from mdm_core.db.types import UTCDateTime
from mdm_core.models import utcnow

ROLES = ("admin", "viewer")


class Admin(SQLModel, table=True):
    """Someone who signs in to the console; only an Argon2 hash of the password is kept."""

    __tablename__ = "web_admin"

    name: str = Field(primary_key=True, max_length=128)
    role: str = Field(default="admin", max_length=16)
    password_hash: str = Field(max_length=255)
    session_epoch: int = 0  # bumped when the password changes: older sessions end
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    def __repr__(self) -> str:
        return f"Admin(name={self.name!r}, role={self.role!r})"


REVOKED_BY_MAX = 160  # characters of who revoked a token
#: only one token that is not revoked per name; revoked ones keep theirs (and their hash)
ACTIVE_NAME = text("revoked_at IS NULL")


class ApiToken(SQLModel, table=True):
    """A bearer token for the REST API; only its SHA-256 is kept (the token is shown once).

    A revoked token keeps its row (``revoked_at`` set, and ``revoked_by``: who revoked it, for an
    auditor), so a request still sending it is told it was revoked and when (never by whom), not
    that the token is unknown; its name is free for a new one."""

    __tablename__ = "web_api_token"
    __table_args__ = (Index("ux_web_api_token_active_name", "name", unique=True, sqlite_where=ACTIVE_NAME, postgresql_where=ACTIVE_NAME),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128)
    role: str = Field(default="viewer", max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by: str | None = Field(default=None, max_length=REVOKED_BY_MAX)  # who: "cli:OSUSER"; None if before web 0003

    def __repr__(self) -> str:
        return f"ApiToken(name={self.name!r}, role={self.role!r}, revoked_at={self.revoked_at!r}, revoked_by={self.revoked_by!r})"


class LoginAttempt(SQLModel, table=True):
    """A failed sign-in, counted per name and per address to throttle guessing."""

    __tablename__ = "web_login_attempt"
    __table_args__ = (Index("ix_web_login_attempt_name", "name", "at"), Index("ix_web_login_attempt_address", "address", "at"))

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128)
    address: str = Field(max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


WEB_TABLES: list[type[SQLModel]] = [Admin, ApiToken, LoginAttempt]
