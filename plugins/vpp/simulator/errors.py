"""Apple Apps and Books v2 error codes, their messages and HTTP statuses."""

from __future__ import annotations

from typing import Any

#: Error numbers the simulator knows, with Apple-style messages (docs/apple-api.md, "Errors and retries").
ERROR_MESSAGES: dict[int, str] = {
    9600: "Missing argument",
    9601: "Login required",
    9602: "Invalid argument",
    9603: "Internal error",
    9609: "Registered user not found",
    9610: "License not found",
    9619: "License not associated",
    9621: "Token expired",
    9622: "Invalid authentication token",
    9625: "Token revoked",
    9634: "Service removed, no longer available",
    9646: "Too many requests",
    9650: "Page index out of range",
    9700: "Too many assets",
    9701: "Too many client user ids",
    9702: "Too many serial numbers",
    9703: "Duplicate assets",
    9704: "Duplicate client user ids",
    9705: "Duplicate serial numbers",
    9706: "Asset is not revocable",
    9707: "Asset is not device assignable",
    9708: "Event not found",
    9709: "Not enough licenses",
    9710: "Notification URL and notification auth token must be supplied together",
    9711: "Notification URL or notification auth token too long",
    9712: "Notification URL must be a valid HTTPS URL",
    9713: "mdmInfo metadata too long",
    9714: "Too many users",
    9715: "Duplicate users",
    9716: "Registered user already exists",
    9717: "Invalid email",
    9718: "Assets missing",
    9719: "Client user ids or serial numbers missing",
    9720: "Users missing",
    9721: "Invalid versionId",
    9722: "Invalid Authorization header",
    9723: "mdmInfo requires id, name and metadata",
    9724: "mdmInfo id too long",
    9725: "mdmInfo name too long",
    9726: "Method not allowed",
    9727: "Content-Type must be application/json",
    9728: "Notification URL unreachable",
}

_HTTP_STATUS: dict[int, int] = {
    9601: 401,
    9603: 500,
    9621: 401,
    9622: 401,
    9625: 401,
    9634: 410,
    9646: 429,
    9722: 401,
    9726: 405,
    9727: 415,
}


def http_status(error_number: int) -> int:
    """The HTTP status Apple documents for a synchronous error (400 unless listed)."""
    return _HTTP_STATUS.get(error_number, 400)


def error_body(error_number: int, error_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """An ErrorResponse body: errorNumber, errorMessage and optional errorInfo."""
    body: dict[str, Any] = {
        "errorNumber": error_number,
        "errorMessage": ERROR_MESSAGES.get(error_number, "Error"),
    }
    if error_info:
        body["errorInfo"] = error_info
    return body


def service_error_codes() -> list[dict[str, Any]]:
    """The `errorCodes` list of service/config."""
    return [{"errorNumber": n, "errorMessage": m} for n, m in sorted(ERROR_MESSAGES.items())]


class ApiError(Exception):
    """A synchronous Apple error; carries the error number, HTTP status and optional errorInfo."""

    def __init__(self, error_number: int, error_info: dict[str, Any] | None = None, status: int | None = None) -> None:
        super().__init__(f"{error_number} {ERROR_MESSAGES.get(error_number, 'Error')}")
        self.error_number = error_number
        self.error_info = error_info
        self.status = status if status is not None else http_status(error_number)

    def body(self) -> dict[str, Any]:
        """The JSON body for this error."""
        return error_body(self.error_number, self.error_info)
