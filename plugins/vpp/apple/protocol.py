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
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

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
    def from_response(cls, data: Mapping[str, Any]) -> "ServiceConfig":
        """Build from the decoded body; ``urls`` is required, the rest lenient."""
        urls = data.get("urls")
        if not isinstance(urls, dict):
            raise MalformedResponseError("service config response has no 'urls' object")
        limits = data.get("limits")
        codes = data.get("errorCodes")
        types = data.get("notificationTypes")
        return cls(
            urls={str(k): v for k, v in urls.items() if isinstance(v, str) and v},
            limits={
                str(k): v
                for k, v in (limits.items() if isinstance(limits, dict) else ())
                if is_int(v)
            },
            error_codes={
                c["errorNumber"]: c["errorMessage"]
                for c in (codes if isinstance(codes, list) else ())
                if isinstance(c, dict)
                and is_int(c.get("errorNumber"))
                and isinstance(c.get("errorMessage"), str)
            },
            notification_types=[t for t in (types if isinstance(types, list) else ()) if isinstance(t, str)],
        )


def is_int(value: object) -> bool:
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


def parse_response(status: int, headers: Any, body: bytes | None, *, url: str) -> dict[str, Any]:
    """Decode an Apps and Books response or raise the matching :class:`VppError`.

    A non-zero ``errorNumber`` in the body wins over the HTTP status (Apple
    sends some errors with HTTP 200). Otherwise HTTP >= 400 maps by status,
    even when the body is empty or not JSON (e.g. a proxy's HTML 502 page is a
    retryable ``ServerError``). A 1xx-3xx answer must be a JSON object. Raises
    only ``VppError`` subclasses, whatever the input.
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
            err = error_for(number, status, message, info)
        elif status >= 400:
            err = error_for(None, status, message, info)
        elif not valid:
            err = MalformedResponseError("response has an 'errorNumber' that is not a number",
                                         http_status=status)
    elif status >= 400:
        what = problem or "a JSON body that is not an object"
        err = error_for(None, status, f"HTTP {status} with {what}", None)
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


def check_mdm_info(data: Mapping[str, Any], expected_id: str | None) -> None:
    """Raise :class:`MdmConflictError` if ``mdmInfo.id`` names another MDM.

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
        f"(id {short(expected_id)!r}): stop the other MDM using this token, then renew it here with "
        "`mdm vpp account set NAME --token-file FILE` (or add it again with --take-over)",
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
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def invitation_url(template: str, invite_code: str) -> str:
    """A user's invitation URL: Service Config's ``invitationEmail`` template with its code."""
    if not isinstance(invite_code, str) or not invite_code:
        raise ValueError("invite_code must be a non-empty string")
    code = quote(invite_code, safe="")
    return template.replace("%25inviteCode%25", code).replace("%inviteCode%", code)


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


def _field(record: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(record, dict):
        raise MalformedResponseError(f"{what} record is not an object")
    value = record.get(name)
    if value is None:
        raise MalformedResponseError(f"{what} record has no '{name}'")
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise MalformedResponseError(f"{what} record has a '{name}' of the wrong type ({type(value).__name__})")
    return value


def _id(record: Mapping[str, Any], name: str, what: str) -> str:
    value = _field(record, name, (str, int), what)
    if isinstance(value, bool):
        raise MalformedResponseError(f"{what} record has a '{name}' of the wrong type (bool)")
    text = str(value).strip()
    if not text:
        raise MalformedResponseError(f"{what} record has an empty '{name}'")
    return text


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
    """A ResponseAsset as the values of a ``vpp_asset`` row (without the account)."""
    platforms = record.get("supportedPlatforms", []) if isinstance(record, Mapping) else None
    if platforms is None:
        platforms = []
    if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
        raise MalformedResponseError("asset record has a 'supportedPlatforms' that is not a list of strings")
    return {
        "adam_id": _id(record, "adamId", "asset"),
        "pricing_param": _field(record, "pricingParam", str, "asset"),
        "product_type": _field(record, "productType", str, "asset"),
        "assigned_count": _field(record, "assignedCount", int, "asset"),
        "available_count": _count(record, "availableCount"),
        "retired_count": _count(record, "retiredCount"),
        "total_count": _count(record, "totalCount"),
        "device_assignable": _field(record, "deviceAssignable", bool, "asset"),
        "revocable": _field(record, "revocable", bool, "asset"),
        "supported_platforms": sorted(platforms),
    }


def _count(record: Mapping[str, Any], name: str) -> int:
    # Unlimited assets may omit these (UnlimitedResponseAsset); a present value must be an int.
    value = record.get(name)
    if value is None:
        return 2147483647 if name == "totalCount" else 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedResponseError(f"asset record has a '{name}' of the wrong type ({type(value).__name__})")
    return value


def page_assets(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The assets of one ``GET /assets`` page."""
    return [parse_asset(r) for r in _list(page, "assets")]


def page_assignments(page: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(adam_id, pricing_param, kind, target) of one ``GET /assignments`` page."""
    rows = []
    for record in _list(page, "assignments"):
        # the common, well-formed case first (hundreds of thousands of records per sync)
        if type(record) is dict:
            adam_id, pricing = record.get("adamId"), record.get("pricingParam")
            serial, user = record.get("serialNumber"), record.get("clientUserId")
            if type(adam_id) is str and adam_id and type(pricing) is str and pricing and (type(serial) is str) != (type(user) is str) and (serial or user):
                rows.append((adam_id, pricing, "device", serial) if serial else (adam_id, pricing, "user", user))
                continue
        rows.append(_assignment(record))
    return rows


def _assignment(record: Any) -> tuple[str, str, str, str]:
    """One assignment record checked field by field, naming what is wrong."""
    adam_id = _id(record, "adamId", "assignment")
    pricing = _field(record, "pricingParam", str, "assignment")
    serial, user = record.get("serialNumber"), record.get("clientUserId")
    if serial and not user:
        return (adam_id, pricing, "device", str(serial))
    if user and not serial:
        return (adam_id, pricing, "user", str(user))
    raise MalformedResponseError("assignment record must have exactly one of 'serialNumber' and 'clientUserId'")


def page_users(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The users of one ``GET /users`` page as ``vpp_stage_user`` values (rank 0 live, 1 retired)."""
    rows = []
    for record in _list(page, "users"):
        status = _field(record, "status", str, "user")
        rows.append({
            "client_user_id": _id(record, "clientUserId", "user"),
            "email": _opt_str(record, "email"),
            "status": status,
            "id_hash": _opt_str(record, "idHash"),
            "invite_code": _opt_str(record, "inviteCode"),
            "rank": 1 if status in ("Retired", "Deleted") else 0,
        })
    return rows


def _opt_str(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedResponseError(f"user record has a '{name}' of the wrong type ({type(value).__name__})")
    return value


def version_of(page: Mapping[str, Any]) -> str | None:
    """A page's ``versionId`` (``None`` when Apple sent none)."""
    value = _page(page).get("versionId")
    if value is not None and not isinstance(value, str):
        raise MalformedResponseError("page field 'versionId' is not a string")
    return value


def apple_asset(row: Mapping[str, Any], account: str) -> Asset:
    """A ``vpp_asset`` row's values back in Apple's field names (views, events), with ``account``."""
    return {
        "account": account, "adamId": row["adam_id"], "pricingParam": row["pricing_param"], "productType": row["product_type"],
        "assignedCount": row["assigned_count"], "availableCount": row["available_count"], "retiredCount": row["retired_count"],
        "totalCount": row["total_count"], "deviceAssignable": row["device_assignable"], "revocable": row["revocable"],
        "supportedPlatforms": list(row["supported_platforms"] or []),
    }


def apple_user(row: Mapping[str, Any], linked: set[str]) -> User:
    """A ``vpp_user`` row's values in Apple's field names, with ``mdmUser`` when the
    ``clientUserId`` is one of the ``linked`` MDM users."""
    return {"clientUserId": row["client_user_id"], "email": row["email"], "status": row["status"], "idHash": row["id_hash"],
            "inviteCode": row["invite_code"], "mdmUser": row["client_user_id"] if row["client_user_id"] in linked else None}
