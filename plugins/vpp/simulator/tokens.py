"""The simulated sToken: building it and checking `Authorization: Bearer` headers."""

from __future__ import annotations

import base64
import hmac
import json
import random
import threading
from datetime import UTC, datetime, timedelta

from .errors import ApiError

VALID, EXPIRED, REVOKED = "valid", "expired", "revoked"


def format_apple_date(moment: datetime) -> str:
    """ISO-8601 with a numeric offset and no colon, e.g. `2027-11-28T10:00:00+0000`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S%z")


def default_expiry(now: datetime | None = None) -> datetime:
    """One year from now, at 10:00 UTC (stable within a day)."""
    now = now or datetime.now(UTC)
    day = (now + timedelta(days=365)).date()
    return datetime(day.year, day.month, day.day, 10, 0, 0, tzinfo=UTC)


def build_stoken(secret: str, expires_at: datetime, org_name: str) -> str:
    """Base64 of JSON {token, expDate, orgName}, the `.vpptoken` file content."""
    inner = {"token": secret, "expDate": format_apple_date(expires_at), "orgName": org_name}
    return base64.b64encode(json.dumps(inner, separators=(",", ":")).encode()).decode("ascii")


def random_secret(rng: random.Random) -> str:
    """An opaque secret (deterministic for the generator's seed)."""
    raw = bytes(rng.getrandbits(8) for _ in range(48))
    return base64.b64encode(raw).decode("ascii")


class TokenState:
    """The location's token and its validity; never reveals the token in repr()."""

    def __init__(self, stoken: str, expires_at: datetime) -> None:
        self._stoken = stoken
        self.expires_at = expires_at
        self.status = VALID
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<TokenState status={self.status} expires={format_apple_date(self.expires_at)}>"

    @property
    def stoken(self) -> str:
        """The sToken string (the bearer value)."""
        return self._stoken

    @property
    def expiration_date(self) -> str:
        """`tokenExpirationDate` as answered in responses."""
        return format_apple_date(self.expires_at)

    def set_status(self, status: str) -> None:
        """Switch between valid, expired and revoked."""
        with self._lock:
            self.status = status

    def matches(self, value: str | None) -> bool:
        """Constant-time comparison with the sToken (whitespace trimmed)."""
        if not value:
            return False
        return hmac.compare_digest(value.strip().encode(), self._stoken.encode())

    def check_authorization(self, header: str | None) -> None:
        """Raise the Apple error for a bad header (9722), unknown (9622), expired (9621), revoked (9625)."""
        if header is None:
            raise ApiError(9722)
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value or " " in value:
            raise ApiError(9722)
        if not self.matches(value):
            raise ApiError(9622)
        self.check_validity()

    def check_validity(self) -> None:
        """Raise 9625 when revoked, 9621 when expired (by fault or by date)."""
        if self.status == REVOKED:
            raise ApiError(9625)
        if self.status == EXPIRED or datetime.now(UTC) >= self.expires_at:
            raise ApiError(9621)
