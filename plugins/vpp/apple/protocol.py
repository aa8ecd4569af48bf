"""What Apple's Apps and Books v2 service sends and expects, without any I/O.

- Responses: :func:`parse_response` turns a status, headers and body into a dict or the typed
  error of :mod:`.errors`; :class:`ServiceConfig` is ``GET /service/config``;
  :func:`check_mdm_info` spots another MDM's claim on the location.
- Records: ``ResponseAsset``, ``Assignment`` and ``ResponseUser`` checked field by field and
  turned into mirror rows (:func:`page_assets`, :func:`page_assignments`, :func:`page_users`),
  and mirror rows turned back into Apple's field names (:func:`apple_asset`,
  :func:`apple_user`). A missing or wrong-typed required field is a
  ``MalformedResponseError`` naming it; unknown fields are ignored (Apple adds fields over time).

Contract: docs/apple-api.md ("Assets", "Assignments", "Users", "Errors and retries").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard, cast
from urllib.parse import quote

from mdm_core.text import BAD_TEXT, bad_character, shown

from ..payloads import Asset, User
from .errors import MalformedResponseError, MdmConflictError, VppError, error_for, one_line

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_SERVICE_URL",
    "ServiceConfig",
    "apple_asset",
    "apple_user",
    "check_mdm_info",
    "invitation_url",
    "page_assets",
    "page_assignments",
    "page_users",
    "parse_apple_date",
    "parse_asset",
    "parse_response",
    "version_of",
]

DEFAULT_SERVICE_URL = "https://vpp.itunes.apple.com/mdm/v2"

# Fallbacks when Service Config omits a limit (Apple's example values; docs/apple-api.md, "Service config").
DEFAULT_LIMITS: dict[str, int] = {
    "maxAssets": 25,
    "maxUsers": 100,
    "maxClientUserIds": 1000,
    "maxSerialNumbers": 1000,
    "maxRevokeClientUserIds": 100,
    "maxRevokeSerialNumbers": 100,
}
_INT_RE = re.compile(r"-?[0-9]{1,18}")

AssetKey = tuple[str, str]


# --------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceConfig:
    """Parsed ``GET /service/config`` (docs/apple-api.md, "Service config")."""

    urls: dict[str, str]
    limits: dict[str, int] = field(default_factory=dict)
    error_codes: dict[int, str] = field(default_factory=dict)
    notification_types: list[str] = field(default_factory=list)

    def limit(self, name: str, default: int) -> int:
        """A positive integer limit, or ``default`` when absent or unusable."""
        value = self.limits.get(name)
        return value if isinstance(value, int) and value > 0 else default

    @classmethod
    def from_response(cls, data: Mapping[str, Any]) -> ServiceConfig:
        """Build from the decoded body; ``urls`` is required, the rest lenient."""
        urls = data.get("urls")
        if not isinstance(urls, dict):
            raise MalformedResponseError("service config response has no 'urls' object")
        limits = data.get("limits")
        codes = data.get("errorCodes")
        types = data.get("notificationTypes")
        return cls(
            urls={str(k): v for k, v in urls.items() if isinstance(v, str) and v},
            limits={str(k): v for k, v in (limits.items() if isinstance(limits, dict) else ()) if is_int(v)},
            error_codes={
                c["errorNumber"]: c["errorMessage"]
                for c in (codes if isinstance(codes, list) else ())
                if isinstance(c, dict) and is_int(c.get("errorNumber")) and isinstance(c.get("errorMessage"), str)
            },
            notification_types=[t for t in (types if isinstance(types, list) else ()) if isinstance(t, str)],
        )


def is_int(value: object) -> TypeGuard[int]:
    """A JSON integer (``bool`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _header(headers: Any, name: str) -> str | None:
    """Case-insensitive header lookup on any mapping (or None)."""
    if not headers:
        return None
    try:
        items = headers.items()
    except AttributeError:
        return None
    lowered = name.lower()
    for key, value in items:
        if isinstance(key, str) and key.lower() == lowered:
            return value if isinstance(value, str) else None
    return None


def _load_json(body: bytes | None) -> tuple[Any, str | None]:
    """(value, problem): problem is None on success, else a short description."""
    if body is None or not body.strip():
        return None, "an empty body"
    try:
        return json.loads(body), None
    except (ValueError, RecursionError, TypeError):
        return None, "a body that is not JSON"


def _error_number(data: Mapping[str, Any]) -> tuple[int | None, bool]:
    """(errorNumber, valid). A missing/null number is (None, True)."""
    raw = data.get("errorNumber")
    if raw is None:
        return None, True
    if is_int(raw):
        return raw, True
    if isinstance(raw, float) and raw.is_integer():
        return int(raw), True
    if isinstance(raw, str) and _INT_RE.fullmatch(raw.strip()):
        return int(raw.strip()), True
    return None, False


def parse_response(status: int, headers: Any, body: bytes | None, *, url: str, account: str | None = None) -> dict[str, Any]:
    """Decode an Apps and Books response or raise the matching :class:`VppError`.

    A non-zero ``errorNumber`` in the body wins over the HTTP status (Apple
    sends some errors with HTTP 200). Otherwise HTTP >= 400 maps by status,
    even when the body is empty or not JSON (e.g. a proxy's HTML 502 page is a
    retryable ``ServerError``). A 1xx-3xx answer must be a JSON object. Raises
    only ``VppError`` subclasses, whatever the input; a token error's advice names the command
    that renews ``account``'s token (none for a token not stored yet).
    """
    retry_after = _header(headers, "Retry-After")
    data, problem = _load_json(body)
    obj = data if isinstance(data, dict) else None
    err: VppError | None = None
    if obj is not None:
        number, valid = _error_number(obj)
        message = obj.get("errorMessage")
        message = message if isinstance(message, str) else None
        info = obj.get("errorInfo")
        if number:
            err = error_for(number, status, message, info, account=account)
        elif status >= 400:
            err = error_for(None, status, message, info, account=account)
        elif not valid:
            err = MalformedResponseError("response has an 'errorNumber' that is not a number", http_status=status)
    elif status >= 400:
        what = problem or "a JSON body that is not an object"
        err = error_for(None, status, f"HTTP {status} with {what}", None, account=account)
    elif problem:
        err = MalformedResponseError(f"Apps and Books service answered with {problem}", http_status=status)
    else:
        err = MalformedResponseError(
            f"Apps and Books service answered with JSON {type(data).__name__}, not an object",
            http_status=status,
        )
    if err is not None:
        err.url = url
        err.retry_after = retry_after
        raise err
    assert obj is not None
    return obj


def short(value: object, limit: int = 100) -> str:
    """One line of at most ``limit`` characters (for values Apple sent that end up in messages)."""
    text = one_line(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_mdm_info(data: Mapping[str, Any], expected_id: str | None, account: str = "NAME") -> None:
    """Raise :class:`MdmConflictError` if ``mdmInfo.id`` names another MDM, its advice naming
    ``account`` (this host's name for the location) in the command that takes it back.

    A response without ``mdmInfo`` (or without an id) is fine: nobody claims
    the location. Does nothing when ``expected_id`` is None.
    """
    if expected_id is None or "mdmInfo" not in data:
        return
    info = data.get("mdmInfo")
    if info is None:
        return
    if not isinstance(info, dict):
        raise MalformedResponseError("response has an 'mdmInfo' that is not an object")
    other_id = info.get("id")
    if other_id is None or other_id == "" or str(other_id) == expected_id:
        return
    name, metadata = info.get("name"), info.get("metadata")
    raise MdmConflictError(
        f"location is managed by another MDM {short(name)!r} "
        f"(id {short(other_id)!r}, metadata {short(metadata)!r}), not by this server "
        f"(id {short(expected_id)!r}): stop the other MDM using this token, then take the location back with "
        f"`mdm vpp account set {account} --token-file FILE --take-over`",
        other_id=str(other_id),
        other_name=name if isinstance(name, str) else None,
        other_metadata=metadata if isinstance(metadata, str) else None,
    )


def parse_apple_date(value: object) -> datetime | None:
    """An aware UTC datetime from Apple's ISO-8601 text (``2030-11-08T22:33:22+0000``, ``...Z``),
    or ``None`` when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def invitation_url(template: str, invite_code: str) -> str:
    """A user's invitation URL: Service Config's ``invitationEmail`` template with its code."""
    if not isinstance(invite_code, str) or not invite_code:
        raise ValueError("invite_code must be a non-empty string")
    code = quote(invite_code, safe="")
    return template.replace("%25inviteCode%25", code).replace("%inviteCode%", code)


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


#: The longest value each field may have: the mirror's columns (the same limits on SQLite, which
#: would store anything, and on PostgreSQL, which refuses longer values).
MAX_LENGTH = {
    "adamId": 32,
    "pricingParam": 8,
    "productType": 16,
    "serialNumber": 255,
    "clientUserId": 255,
    "email": 255,
    "status": 16,
    "idHash": 255,
    "inviteCode": 255,
    "supportedPlatforms": 32,
    "versionId": 128,
}
INT32_MAX = 2**31 - 1
#: A value Apple sent, quoted for a message: ASCII only, at most 40 characters.
label = shown


def _checked_text(value: str, name: str, where: str) -> str:
    """``value`` if it fits its column and holds no character a database refuses."""
    limit = MAX_LENGTH.get(name)
    if limit is not None and len(value) > limit:
        raise MalformedResponseError(f"{where}: '{name}' has {len(value)} characters (at most {limit}): {label(value)}")
    what = bad_character(value)
    if what is not None:
        raise MalformedResponseError(f"{where}: '{name}' holds {what}: {label(value)}")
    return value


def _where(record: Any, what: str, key: str | None) -> str:
    """``asset record 'ID'``: the record a message is about."""
    ident = record.get(key) if key and isinstance(record, dict) else None
    return f"{what} record {label(ident)}" if isinstance(ident, (str, int)) and not isinstance(ident, bool) else f"{what} record"


def _field(record: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str, key: str | None = None) -> Any:
    if not isinstance(record, dict):
        raise MalformedResponseError(f"{what} record is not an object")
    value = record.get(name)
    where = _where(record, what, key)
    if value is None:
        raise MalformedResponseError(f"{where} has no '{name}'")
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise MalformedResponseError(f"{where} has a '{name}' of the wrong type ({type(value).__name__})")
    if isinstance(value, str):
        _checked_text(value, name, where)
    return value


def _int32(record: Mapping[str, Any], name: str, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedResponseError(f"{where} has a '{name}' of the wrong type ({type(value).__name__})")
    if not 0 <= value <= INT32_MAX:
        shown = str(value) if len(str(value)) <= 40 else f"{str(value)[:20]}… ({len(str(value))} digits)"
        raise MalformedResponseError(f"{where}: '{name}' is out of range ({shown}; 0 to {INT32_MAX})")
    return value


def _id(record: Mapping[str, Any], name: str, what: str) -> str:
    value = _field(record, name, (str, int), what, name)
    if isinstance(value, bool):
        raise MalformedResponseError(f"{what} record has a '{name}' of the wrong type (bool)")
    text = str(value).strip()
    if not text:
        raise MalformedResponseError(f"{what} record has an empty '{name}'")
    return _checked_text(text, name, _where(record, what, name))


def _page(page: Any) -> Mapping[str, Any]:
    if not isinstance(page, dict):
        raise MalformedResponseError(f"page is not a JSON object ({type(page).__name__})")
    return page


def _list(page: Mapping[str, Any], key: str) -> list[Any]:
    """A page's records: a page without its list (or with something else) is malformed, never
    an empty list (a full sync would take every record as removed)."""
    value = _page(page).get(key)
    if value is None:
        raise MalformedResponseError(f"a page of {key} has no '{key}' list: nothing is taken from it")
    if not isinstance(value, list):
        raise MalformedResponseError(f"a page of {key} has a '{key}' that is not a list ({type(value).__name__})")
    return value


def parse_asset(record: Mapping[str, Any]) -> dict[str, Any]:
    """A ResponseAsset as the values of a ``vpp_asset`` row (without the account); every value
    checked against its column (type, length, characters, int32 range)."""
    adam_id = _id(record, "adamId", "asset")
    where = f"asset record {label(adam_id)}"
    platforms = record.get("supportedPlatforms", [])
    if platforms is None:
        platforms = []
    if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
        raise MalformedResponseError(f"{where} has a 'supportedPlatforms' that is not a list of strings")
    for platform in platforms:
        _checked_text(platform, "supportedPlatforms", where)
    return {
        "adam_id": adam_id,
        "pricing_param": _field(record, "pricingParam", str, "asset", "adamId"),
        "product_type": _field(record, "productType", str, "asset", "adamId"),
        "assigned_count": _int32(record, "assignedCount", where, _field(record, "assignedCount", int, "asset", "adamId")),
        "available_count": _count(record, "availableCount", where),
        "retired_count": _count(record, "retiredCount", where),
        "total_count": _count(record, "totalCount", where),
        "device_assignable": _field(record, "deviceAssignable", bool, "asset", "adamId"),
        "revocable": _field(record, "revocable", bool, "asset", "adamId"),
        "supported_platforms": sorted(platforms),
    }


def _count(record: Mapping[str, Any], name: str, where: str) -> int:
    # Unlimited assets may omit these (UnlimitedResponseAsset); a present value must be an int32.
    value = record.get(name)
    if value is None:
        return INT32_MAX if name == "totalCount" else 0
    return _int32(record, name, where, value)


def page_assets(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The assets of one ``GET /assets`` page."""
    return [parse_asset(r) for r in _list(page, "assets")]


def page_assignments(page: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(adam_id, pricing_param, kind, target) of one ``GET /assignments`` page."""
    rows = []
    bad_text = BAD_TEXT.search
    for record in _list(page, "assignments"):
        # the common, well-formed case first (hundreds of thousands of records per sync)
        if type(record) is dict:
            adam_id, pricing = record.get("adamId"), record.get("pricingParam")
            serial, user = record.get("serialNumber"), record.get("clientUserId")
            if type(adam_id) is str and adam_id and type(pricing) is str and pricing and (type(serial) is str) != (type(user) is str) and (serial or user):
                target = cast(str, serial or user)  # exactly one of them is a non-empty string
                if len(adam_id) <= 32 and len(pricing) <= 8 and len(target) <= 255 and bad_text(adam_id + pricing + target) is None:
                    rows.append((adam_id, pricing, "device" if serial else "user", target))
                    continue
        rows.append(_assignment(record))
    return rows


def _assignment(record: Any) -> tuple[str, str, str, str]:
    """One assignment record checked field by field, naming what is wrong."""
    adam_id = _id(record, "adamId", "assignment")
    pricing = _field(record, "pricingParam", str, "assignment", "adamId")
    serial, user = record.get("serialNumber"), record.get("clientUserId")
    where = f"assignment record {label(adam_id)}"
    for name, value in (("serialNumber", serial), ("clientUserId", user)):
        if value is not None and not isinstance(value, str):
            raise MalformedResponseError(f"{where}: '{name}' is not a string ({type(value).__name__}): {label(value)}")
    if serial and not user:
        return (adam_id, pricing, "device", _checked_text(serial, "serialNumber", where))
    if user and not serial:
        return (adam_id, pricing, "user", _checked_text(user, "clientUserId", where))
    raise MalformedResponseError(f"{where} must have exactly one of 'serialNumber' and 'clientUserId'")


def page_users(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The users of one ``GET /users`` page as ``vpp_stage_user`` values (rank 0 live, 1 retired)."""
    rows = []
    for record in _list(page, "users"):
        client_user_id = _id(record, "clientUserId", "user")
        status = _field(record, "status", str, "user", "clientUserId")
        where = f"user record {label(client_user_id)}"
        rows.append(
            {
                "client_user_id": client_user_id,
                "email": _opt_str(record, "email", where),
                "status": status,
                "id_hash": _opt_str(record, "idHash", where),
                "invite_code": _opt_str(record, "inviteCode", where),
                "rank": 1 if status in ("Retired", "Deleted") else 0,
            }
        )
    return rows


def _opt_str(record: Mapping[str, Any], name: str, where: str) -> str | None:
    value = record.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedResponseError(f"{where} has a '{name}' of the wrong type ({type(value).__name__})")
    return _checked_text(value, name, where)


def version_of(page: Mapping[str, Any]) -> str | None:
    """A page's ``versionId`` (``None`` when Apple sent none)."""
    value = _page(page).get("versionId")
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedResponseError("page field 'versionId' is not a string")
    return _checked_text(value, "versionId", "a page")


#: client/config fields stored on the account: (Apple's name, column, longest value, required)
_CLIENT_CONFIG = (
    ("uId", "uid", 64, True),
    ("locationName", "location_name", 255, False),
    ("countryISO2ACode", "country", 8, False),
    ("defaultPlatform", "default_platform", 32, False),
    ("websiteURL", "website_url", 255, False),
)


def client_config_fields(config: Mapping[str, Any], service_url: str) -> dict[str, Any]:
    """The ``client/config`` values an account keeps, checked like records (a missing uId, a
    value too long or holding NUL is one line, never an SQL error)."""
    out: dict[str, Any] = {}
    for apple, column, limit, required in _CLIENT_CONFIG:
        value = config.get(apple)
        if value is None or value == "":
            if required:
                raise MalformedResponseError(f"{service_url} answered client/config without a {apple}: check --service-url")
            out[column] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise MalformedResponseError(f"client/config has a '{apple}' of the wrong type ({type(value).__name__})")
        text = str(value)
        if len(text) > limit:
            raise MalformedResponseError(f"client/config: '{apple}' has {len(text)} characters (at most {limit}): {label(text)}")
        out[column] = _checked_text(text, apple, "client/config")
    return out


def apple_asset(row: Mapping[str, Any], account: str) -> Asset:
    """A ``vpp_asset`` row's values back in Apple's field names (views, events), with ``account``."""
    return {
        "account": account,
        "adamId": row["adam_id"],
        "pricingParam": row["pricing_param"],
        "productType": row["product_type"],
        "assignedCount": row["assigned_count"],
        "availableCount": row["available_count"],
        "retiredCount": row["retired_count"],
        "totalCount": row["total_count"],
        "deviceAssignable": row["device_assignable"],
        "revocable": row["revocable"],
        "supportedPlatforms": list(row["supported_platforms"] or []),
    }


def apple_user(row: Mapping[str, Any], linked: set[str]) -> User:
    """A ``vpp_user`` row's values in Apple's field names, with ``mdmUser`` when the
    ``clientUserId`` is one of the ``linked`` MDM users."""
    return {
        "clientUserId": row["client_user_id"],
        "email": row["email"],
        "status": row["status"],
        "idHash": row["id_hash"],
        "inviteCode": row["invite_code"],
        "mdmUser": row["client_user_id"] if row["client_user_id"] in linked else None,
    }
