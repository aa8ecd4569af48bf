"""Column types shared by every model.

``UTCDateTime`` is the type of every datetime column: it stores UTC and always gives back a
timezone-aware UTC ``datetime``, on SQLite (which keeps no time zone) as on PostgreSQL. It is
``DateTime(timezone=True)`` underneath, the type release 0.1.0 created (``DATETIME`` on SQLite,
``TIMESTAMP WITH TIME ZONE`` on PostgreSQL), so the schema does not change and values written
by 0.1.0 (naive UTC on SQLite) read back as they were meant.

Use it as ``Field(default_factory=utcnow, sa_type=UTCDateTime)``; migrations name the
database type, ``sa.DateTime(timezone=True)``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored in UTC and read back timezone-aware in UTC.

    A naive value given to it is taken as UTC (the convention of the whole code base).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """To UTC before it is stored (SQLite would otherwise store a local wall-clock time)."""
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware UTC, whatever the driver gave back (naive from SQLite, the session zone from PostgreSQL)."""
        return None if value is None else as_utc(value)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive one is taken as UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
