"""Apple's records (ResponseAsset, Assignment, ResponseUser) checked and turned into rows.

A missing or wrong-typed required field is a ``MalformedResponseError`` naming it; unknown
fields are ignored (Apple adds fields over time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import MalformedResponseError

AssetKey = tuple[str, str]


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
    value = _page(page).get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedResponseError(f"page field '{key}' is not a list")
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


def apple_asset(row: Mapping[str, Any], account: str) -> dict[str, Any]:
    """A ``vpp_asset`` row's values back in Apple's field names (views, events), with ``account``."""
    return {
        "account": account, "adamId": row["adam_id"], "pricingParam": row["pricing_param"], "productType": row["product_type"],
        "assignedCount": row["assigned_count"], "availableCount": row["available_count"], "retiredCount": row["retired_count"],
        "totalCount": row["total_count"], "deviceAssignable": row["device_assignable"], "revocable": row["revocable"],
        "supportedPlatforms": list(row["supported_platforms"] or []),
    }


def apple_user(row: Mapping[str, Any], linked: set[str]) -> dict[str, Any]:
    """A ``vpp_user`` row's values in Apple's field names, with ``mdmUser`` when the
    ``clientUserId`` is one of the ``linked`` MDM users."""
    return {"clientUserId": row["client_user_id"], "email": row["email"], "status": row["status"], "idHash": row["id_hash"],
            "inviteCode": row["invite_code"], "mdmUser": row["client_user_id"] if row["client_user_id"] in linked else None}
