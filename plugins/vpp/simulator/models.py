"""Compact records held by the simulator state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEVICE = "serialNumber"
USER = "clientUserId"

AssetKey = tuple[str, str]
#: (adamId, pricingParam, "serialNumber" | "clientUserId", value)
AssignmentKey = tuple[str, str, str, str]

ASSOCIATED, REGISTERED, RETIRED = "Associated", "Registered", "Retired"
#: The totalCount Apple gives unlimited assets when the request does not ask for them apart.
UNLIMITED_COUNT = 2147483647


@dataclass(slots=True)
class Asset:
    """One purchased asset (adamId, pricingParam) with its license counts."""

    adam_id: str
    pricing_param: str
    product_type: str
    total: int
    device_assignable: bool
    revocable: bool
    platforms: tuple[str, ...]
    name: str
    bundle_id: str | None
    version: str
    external_version_id: int
    assigned: int = 0
    retired: int = 0
    custom: bool = False  # a custom (B2B) app: its metadata only with the organization's itvt cookie

    @property
    def key(self) -> AssetKey:
        return (self.adam_id, self.pricing_param)

    @property
    def available(self) -> int:
        return self.total - self.assigned - self.retired

    @property
    def unlimited(self) -> bool:
        """A free app or book with no license limit (Apple shows totalCount 2147483647)."""
        return self.total >= UNLIMITED_COUNT

    def to_unlimited_json(self) -> dict[str, Any]:
        """An UnlimitedResponseAsset: no availableCount, retiredCount or totalCount."""
        row = self.to_json()
        for name in ("availableCount", "retiredCount", "totalCount"):
            del row[name]
        return row

    def to_json(self) -> dict[str, Any]:
        """A ResponseAsset."""
        return {
            "adamId": self.adam_id,
            "pricingParam": self.pricing_param,
            "productType": self.product_type,
            "assignedCount": self.assigned,
            "availableCount": self.available,
            "retiredCount": self.retired,
            "totalCount": self.total,
            "deviceAssignable": self.device_assignable,
            "revocable": self.revocable,
            "supportedPlatforms": list(self.platforms),
        }


@dataclass(slots=True)
class UserRecord:
    """One VPP user record; a clientUserId may own several (retired ones plus one live)."""

    client_user_id: str
    email: str | None
    status: str
    id_hash: str | None = None
    invite_code: str | None = None
    managed_apple_id: str | None = None
    stamp: int = 0

    @property
    def active(self) -> bool:
        return self.status != RETIRED

    def to_json(self) -> dict[str, Any]:
        """A ResponseUser (idHash only when associated, inviteCode only while Registered)."""
        row: dict[str, Any] = {"clientUserId": self.client_user_id}
        if self.email is not None:
            row["email"] = self.email
        if self.id_hash is not None:
            row["idHash"] = self.id_hash
        if self.invite_code is not None and self.status == REGISTERED:
            row["inviteCode"] = self.invite_code
        row["status"] = self.status
        return row

    def snapshot(self) -> dict[str, Any]:
        return {"email": self.email, "status": self.status, "idHash": self.id_hash, "inviteCode": self.invite_code if self.status == REGISTERED else None}

    def info(self) -> dict[str, Any]:
        return {
            "clientUserId": self.client_user_id,
            "email": self.email,
            "managedAppleId": self.managed_apple_id,
            "status": self.status,
            "idHash": self.id_hash,
            "inviteCode": self.invite_code,
        }


@dataclass(slots=True)
class Event:
    """An asynchronous event (associate, user create, ...) and its outcome."""

    event_id: str
    event_type: str
    due: float
    payload: dict[str, Any]
    num_requested: int
    status: str = "PENDING"
    num_completed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    done: list[Any] = field(default_factory=list)  # assignment keys or clientUserIds it changed (for notifications)
