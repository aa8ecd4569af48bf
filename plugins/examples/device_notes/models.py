"""The ``device_notes_note`` table. Its schema is made by the migrations beside it."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from mdm_core.db.types import UTCDateTime
from mdm_core.models import utcnow


class Note(SQLModel, table=True):
    """A free-text note about an enrolled device."""

    __tablename__ = "device_notes_note"

    id: int | None = Field(default=None, primary_key=True)
    serial_number: str = Field(max_length=64, index=True)
    text: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    author: str | None = Field(default=None, max_length=255)  # added in 0002
