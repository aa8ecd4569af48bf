"""Retry policy helpers: ``Retry-After`` parsing and full-jitter backoff (doc §3.8)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "parse_retry_after", "backoff_delay"]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying rate-limit, server and transport errors.

    ``max_attempts`` counts every request sent (first try included);
    ``max_total_wait`` bounds the whole operation in seconds; a
    ``Retry-After`` above ``max_retry_after`` is capped to it.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_total_wait: float = 300.0
    max_retry_after: float = 600.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date).

    Returns None when absent or unparseable; a date in the past gives 0.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


def backoff_delay(policy: RetryPolicy, retry_index: int, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform(0, min(max_delay, base * 2**i))."""
    ceiling = min(policy.max_delay, policy.base_delay * (2 ** min(retry_index, 62)))
    return rng.uniform(0.0, max(0.0, ceiling))
