"""Apple's limits belong to a token, not to a client object.

Apple counts requests per organization (one sToken): at most 5 in flight, and a ``Retry-After``
or error 9646 asks every caller of that token to wait. A :class:`TokenGate` is what all the
clients of one token in a process share: the in-flight semaphore, and the time until which
Apple asked not to be called. A :class:`BackoffStore` (given by the host) records that time in
the database, so that other processes respect it too.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from types import EllipsisType
from typing import Protocol

__all__ = ["MAX_IN_FLIGHT", "BackoffStore", "TokenGate", "format_wait_until"]

#: Apple: at most 5 requests in parallel per organization.
MAX_IN_FLIGHT = 5


class BackoffStore(Protocol):
    """Where a token's back-off outlives the process (the account's row)."""

    def load(self) -> datetime | None:
        """The recorded time until which Apple should not be called, or None."""

    def save(self, until: datetime) -> None:
        """Record that Apple should not be called before ``until`` (aware UTC)."""


class TokenGate:
    """The requests in flight and the back-off of one token, shared by every client using it."""

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT, store: BackoffStore | None = None) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.in_flight = threading.BoundedSemaphore(max_in_flight)
        self.store = store
        self._until = 0.0  # epoch seconds
        self._lock = threading.Lock()

    def until(self) -> float:
        """Epoch seconds until which Apple asked not to be called (0 when free)."""
        with self._lock:
            return self._until

    def remaining(self, now: float | None = None) -> float:
        """Seconds left before this token may call Apple again."""
        now = time.time() if now is None else now
        return max(0.0, self.until() - now)

    def refresh(self, recorded: datetime | None | EllipsisType = ...) -> None:
        """Take in a back-off another process recorded (never shortens ours); ``recorded``: the
        store's value as the caller has just read it (the account's row), not read again."""
        if self.store is None:
            return
        if isinstance(recorded, EllipsisType):
            recorded = self.store.load()
        if recorded is not None:
            self._extend(recorded.timestamp())

    def note(self, seconds: float, now: float | None = None) -> float:
        """Apple asked to wait ``seconds``: remember it here and in the store; returns the epoch."""
        now = time.time() if now is None else now
        until = now + max(0.0, seconds)
        if self._extend(until) and self.store is not None:
            self.store.save(datetime.fromtimestamp(until, UTC))
        return until

    def _extend(self, until: float) -> bool:
        with self._lock:
            if until <= self._until:
                return False
            self._until = until
            return True


def format_wait_until(epoch: float, now: float | None = None) -> str:
    """``HH:MM UTC`` (every time shown to people is in UTC and labelled so, whatever the host's
    zone); the date too when it is not today: ``2026-12-01 00:05 UTC``."""
    when = datetime.fromtimestamp(epoch, UTC)
    today = datetime.fromtimestamp(time.time() if now is None else now, UTC).date()
    text = when.strftime("%H:%M UTC")
    return text if when.date() == today else f"{when:%Y-%m-%d} {text}"
