"""The Apps and Books sToken (content token) from a ``.vpptoken`` file.

The file holds one base64 string; decoded, it is a JSON object
``{"token", "expDate", "orgName"}`` (docs/apple-api.md, "Authentication and the sToken").
The whole base64 string is the bearer value. The secret is only reachable through
:meth:`SToken.bearer`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from datetime import UTC, datetime
from typing import Any

from mdm_core.files import SMALL_SECRET_FILE, FileTooLarge, read_bounded
from mdm_core.output import days_until

__all__ = ["SToken", "TokenFileError", "load_token_file"]

_FIX = "download the token again from Apple School Manager or Apple Business Manager (Settings > Apps and Books)"


class TokenFileError(ValueError):
    """A token file or string is unusable. The message is one line, token-free."""


def _fail(source: str, problem: str, fix: str = _FIX) -> TokenFileError:
    text = f"{source} {problem}: {fix}"
    return TokenFileError(" ".join(text.splitlines()))


def _parse_exp_date(value: str) -> datetime:
    """Parse ``2030-11-08T22:33:22+0000`` (also ``+00:00`` / ``Z``) to aware UTC."""
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now


class SToken:
    """A parsed sToken. ``repr``/``str`` show only the organization and expiry."""

    __slots__ = ("_raw", "_inner", "org_name", "expires_at", "fingerprint")

    def __init__(self, raw: str, org_name: str, expires_at: datetime, *, inner: str = "") -> None:
        self._raw = raw
        self._inner = inner
        self.org_name = org_name
        self.expires_at = expires_at
        self.fingerprint = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def parse(cls, raw: str | bytes, *, source: str = "sToken") -> SToken:
        """Parse the base64 content of a ``.vpptoken`` file (whitespace trimmed).

        ``source`` names the origin in error messages (e.g. ``token file x``).
        Raises :class:`TokenFileError` on any problem.
        """
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("ascii")
            except UnicodeDecodeError:
                raise _fail(source, "is not base64") from None
        if not isinstance(raw, str):
            raise _fail(source, f"must be a string, not {type(raw).__name__}")
        raw = raw.strip()
        if not raw:
            raise _fail(source, "is empty")
        payload = _decode_payload(raw, source)
        org_name, expires_at = _read_fields(payload, source)
        return cls(raw, org_name, expires_at, inner=payload["token"])

    def bearer(self) -> str:
        """The raw sToken: the ``Authorization: Bearer`` value. Never log it."""
        return self._raw

    def _secret_values(self) -> list[str]:
        """Values to redact from messages (the raw token and its inner secret)."""
        return [v for v in (self._raw, self._inner) if v]

    def is_expired(self, now: datetime | None = None) -> bool:
        """True once ``now`` (default: current UTC time) reaches the expiry."""
        return _aware(now) >= self.expires_at

    def days_left(self, now: datetime | None = None) -> int:
        """Days until expiry, rounded up (negative once expired): :func:`mdm_core.output.days_until`."""
        return days_until(self.expires_at, _aware(now))

    def __repr__(self) -> str:
        return f"SToken(org_name={self.org_name!r}, expires_at={self.expires_at.isoformat()})"

    def __str__(self) -> str:
        return f"sToken for {self.org_name!r} expiring {self.expires_at.isoformat()}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SToken):
            return NotImplemented
        return self._raw == other._raw

    def __hash__(self) -> int:
        return hash(self.fingerprint)


def _decode_payload(raw: str, source: str) -> dict[str, Any]:
    try:
        padded = raw + "=" * (-len(raw) % 4)
        decoded = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(source, "is not base64") from None
    try:
        payload = json.loads(decoded.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _fail(source, "does not decode to JSON") from None
    if not isinstance(payload, dict):
        raise _fail(source, "does not decode to a JSON object")
    return payload


def _read_fields(payload: dict[str, Any], source: str) -> tuple[str, datetime]:
    token = payload.get("token")
    if token is None or token == "":
        raise _fail(source, "has no 'token' field")
    if not isinstance(token, str):
        raise _fail(source, "has a 'token' field that is not a string")
    exp = payload.get("expDate")
    if exp is None or exp == "":
        raise _fail(source, "has no 'expDate' field")
    if not isinstance(exp, str):
        raise _fail(source, "has an 'expDate' field that is not a string")
    try:
        expires_at = _parse_exp_date(exp)
    except (ValueError, OverflowError):
        raise _fail(source, "has an 'expDate' that is not an ISO-8601 date") from None
    org_name = payload.get("orgName", "")
    if org_name is None:
        org_name = ""
    if not isinstance(org_name, str):
        raise _fail(source, "has an 'orgName' field that is not a string")
    return org_name, expires_at


def load_token_file(path: str | os.PathLike[str], source: str | None = None) -> SToken:
    """Read and parse a ``.vpptoken`` file. Raises :class:`TokenFileError`, whose message names
    the file as ``source`` (default ``token file PATH``)."""
    source = source or f"token file {os.fspath(path)}"
    try:
        data = read_bounded(path, SMALL_SECRET_FILE)  # a wrong path (/dev/zero, a disk image) never fills memory
    except FileTooLarge as exc:
        raise _fail(source, f"is larger than {exc.size}", f"it is not a .vpptoken file: {_FIX}") from None
    except FileNotFoundError:
        raise _fail(source, "does not exist", f"check the path, or {_FIX}") from None
    except IsADirectoryError:
        raise _fail(source, "is a directory", "give the path of the .vpptoken file") from None
    except PermissionError:
        raise _fail(source, "cannot be read (permission denied)", "fix the file permissions for the user running the server") from None
    except OSError as exc:
        raise _fail(source, f"cannot be read ({exc.strerror or type(exc).__name__})", "check the file and its permissions") from None
    return SToken.parse(data, source=source)
