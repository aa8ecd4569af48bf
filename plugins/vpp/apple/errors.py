"""Typed errors for the Apple Apps and Books (VPP) v2 client.

Every error raised by the client is a :class:`VppError`. ``str(err)`` is always
one line and never contains the sToken (the client redacts it before raising).
The numbers and what they mean: docs/apple-api.md, "Errors and retries" and "Authentication
and the sToken".
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

__all__ = [
    "VppError",
    "TokenError",
    "TokenExpiredError",
    "TokenRevokedError",
    "TokenInvalidError",
    "MdmConflictError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "InvalidVersionIdError",
    "BadPageIndexError",
    "MalformedResponseError",
    "IncompletePagesError",
    "RequestRejectedError",
    "EventFailedError",
    "EventTimeoutError",
    "RETRYABLE",
    "is_retryable",
    "error_for",
    "one_line",
]

_TOKEN_FIX = "download a new token from Apple School Manager or Apple Business Manager (Settings > Apps and Books)"


def token_fix(account: str | None = None) -> str:
    """What to do about a token Apple refuses: download a new one and, for a stored ``account``,
    the command that stores it (the console and the API reword it: ``token_state.WORDING``)."""
    if account is None:  # a token being added or renewed: the command just run is the one to repeat
        return _TOKEN_FIX
    return f"{_TOKEN_FIX}, then `mdm vpp account set {account} --token-file NEW.vpptoken`"


def one_line(text: object) -> str:
    """Collapse any text to a single line (all line breaks become spaces)."""
    return " ".join(str(text).splitlines()).strip()


class VppError(Exception):
    """Base class of every Apps and Books error.

    ``error_number`` / ``http_status`` / ``error_info`` come from Apple's
    response when known. ``retry_after`` holds a raw ``Retry-After`` header
    value and ``url`` the request URL (only its path is ever shown).
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        error_number: int | None = None,
        http_status: int | None = None,
        error_info: Any = None,
    ) -> None:
        self.message = one_line(message)
        self.error_number = error_number
        self.http_status = http_status
        self.error_info = error_info
        self.retry_after: str | None = None
        self.url: str | None = None
        # Event ids already accepted when a chunked write fails part-way.
        self.submitted_event_ids: list[str] = []
        super().__init__(self.message)

    def __str__(self) -> str:
        details = []
        if self.error_number is not None:
            details.append(f"errorNumber {self.error_number}")
        if self.http_status is not None:
            details.append(f"HTTP {self.http_status}")
        if self.url:
            try:
                path = urlsplit(self.url).path
            except ValueError:
                path = ""
            if path:
                details.append(path)
        suffix = f" [{', '.join(details)}]" if details else ""
        return one_line(f"{self.message}{suffix}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TokenError(VppError):
    """The sToken is unusable; never retried. ``token_state`` says why."""

    token_state: ClassVar[str] = "invalid"


class TokenExpiredError(TokenError):
    """9621: the sToken has expired."""

    token_state = "expired"


class TokenRevokedError(TokenError):
    """9625: the sToken was revoked (a new one was generated)."""

    token_state = "revoked"


class TokenInvalidError(TokenError):
    """9601, 9622, 9722, or HTTP 401/403 without a known code."""

    token_state = "invalid"


class MdmConflictError(VppError):
    """Another MDM has claimed the location (``mdmInfo.id`` differs from ours)."""

    def __init__(
        self,
        message: str,
        *,
        other_id: str | None = None,
        other_name: str | None = None,
        other_metadata: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.other_id = other_id
        self.other_name = other_name
        self.other_metadata = other_metadata


class RateLimitedError(VppError):
    """9646 / HTTP 429: too many requests; retried with backoff.

    ``retry_at`` (epoch seconds) is set when Apple asked to wait longer than the retry budget:
    nothing may call Apple with this token before then.
    """

    retryable = True
    retry_at: float | None = None


class ServerError(VppError):
    """HTTP 5xx or 9603 (internal error); retried."""

    retryable = True


class TransportError(VppError):
    """The request never got an HTTP answer (connection, timeout, DNS)."""

    retryable = True

    def __init__(self, message: str, *, retryable: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retryable = retryable  # type: ignore[misc]  # this instance overrides its class's default


class InvalidVersionIdError(VppError):
    """9721: ``sinceVersionId`` was not accepted; do a full resync."""


class BadPageIndexError(VppError):
    """9650: page index out of range; restart the traversal."""


class MalformedResponseError(VppError):
    """The body is not JSON, not an object, or lacks a required field."""


class IncompletePagesError(MalformedResponseError):
    """A listing ended before the last page its ``totalPages`` announced."""


class RequestRejectedError(VppError):
    """Any other Apple error number or HTTP 4xx."""


class EventFailedError(VppError):
    """An asynchronous event finished as FAILED (see ``error_info`` for failures)."""


class EventTimeoutError(VppError):
    """An asynchronous event did not finish in time."""


RETRYABLE: tuple[type[VppError], ...] = (RateLimitedError, ServerError, TransportError)


def is_retryable(exc: BaseException) -> bool:
    """True for errors that may succeed when the same request is sent again."""
    return isinstance(exc, RETRYABLE) and bool(getattr(exc, "retryable", False))


# errorNumber -> (class, description). The description is our advice; Apple's
# own errorMessage is appended when present.
_BY_NUMBER: dict[int, tuple[type[VppError], str]] = {
    9601: (TokenInvalidError, "Apps and Books token rejected (login required): {fix}"),
    9603: (ServerError, "Apps and Books service internal error"),
    9621: (TokenExpiredError, "Apps and Books token expired: {fix}"),
    9622: (TokenInvalidError, "Apps and Books token is invalid: {fix}"),
    9625: (TokenRevokedError, "Apps and Books token was revoked: {fix}"),
    9646: (RateLimitedError, "Apps and Books service rate limit reached for this organization"),
    9650: (BadPageIndexError, "page index out of range: restart the full traversal"),
    9721: (InvalidVersionIdError, "sinceVersionId not accepted: do a full resync"),
    9722: (TokenInvalidError, "Apps and Books rejected the Authorization header: {fix}"),
}


def _by_status(http_status: int | None) -> tuple[type[VppError], str]:
    if http_status == 429:
        return RateLimitedError, "Apps and Books service rate limit reached (HTTP 429)"
    if http_status is not None and 500 <= http_status <= 599:
        return ServerError, "Apps and Books service error"
    if http_status in (401, 403):
        return TokenInvalidError, "Apps and Books token rejected: {fix}"
    return RequestRejectedError, "Apps and Books request rejected"


def error_for(
    error_number: int | None,
    http_status: int | None,
    message: str | None,
    error_info: Any = None,
    *,
    account: str | None = None,
) -> VppError:
    """Map an Apple ``errorNumber`` (preferred) or HTTP status to a typed error.

    An unknown error number falls back to the HTTP status class (429, 5xx,
    401/403), else :class:`RequestRejectedError`. A token error's advice names the command that
    renews ``account``'s token (:func:`token_fix`).
    """
    if error_number is not None and error_number in _BY_NUMBER:
        cls, description = _BY_NUMBER[error_number]
    else:
        cls, description = _by_status(http_status)
    description = description.replace("{fix}", token_fix(account))
    apple = one_line(message) if message else ""
    text = f"{description}: {apple}" if apple else description
    return cls(text, error_number=error_number, http_status=http_status, error_info=error_info)
