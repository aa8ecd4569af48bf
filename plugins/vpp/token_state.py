"""Token states: what an account's token is worth, and what the user should do about it."""

from __future__ import annotations

from datetime import datetime, timezone

from mdm_core.db.types import as_utc

# States that only the user can clear (a manual sync or a renewed token).
BLOCKING = ("expired", "revoked", "invalid", "taken_over")
STATES = ("valid", "expiring_30", "expiring_14", "expiring_7", *BLOCKING)

ACTIONS = {
    "valid": "nothing to do",
    "expiring_30": "renew the token within 30 days: mdm vpp account set NAME --token-file NEW.vpptoken",
    "expiring_14": "renew the token within 14 days: mdm vpp account set NAME --token-file NEW.vpptoken",
    "expiring_7": "renew the token this week: mdm vpp account set NAME --token-file NEW.vpptoken",
    "expired": "download a new token from Apple School/Business Manager, then: mdm vpp account set NAME --token-file NEW.vpptoken",
    "revoked": "the token was revoked in Apple School/Business Manager: download a new one, then mdm vpp account set NAME --token-file NEW.vpptoken",
    "invalid": "Apple rejects the token: download a new one, then mdm vpp account set NAME --token-file NEW.vpptoken",
    "taken_over": "another MDM claimed this location: stop it using the token, then mdm vpp account set NAME --token-file NEW.vpptoken --take-over (or remove the account)",
}


def parse_expiration(value: str) -> datetime:
    """Apple's ``tokenExpirationDate`` (ISO 8601; ``Z``, an offset, or none for UTC) as aware
    UTC; ``ValueError`` when malformed."""
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def expiry_state(expires_at: datetime, now: datetime | None = None) -> str:
    """``valid``, ``expiring_30``/``_14``/``_7`` or ``expired`` from the expiry date alone."""
    now = now or datetime.now(timezone.utc)
    days = (expires_at - now).total_seconds() / 86400
    if days <= 0:
        return "expired"
    if days <= 7:
        return "expiring_7"
    if days <= 14:
        return "expiring_14"
    if days <= 30:
        return "expiring_30"
    return "valid"


def describe(state: str, expires_at: datetime, detail: str | None = None, now: datetime | None = None) -> str:
    """A short human text: ``expiring in 12 days``, ``taken over by OtherMDM`` ..."""
    now = now or datetime.now(timezone.utc)
    days = int((expires_at - now).total_seconds() // 86400)
    if state.startswith("expiring"):
        return f"expiring in {days} day{'s' if days != 1 else ''}"
    if state == "taken_over":
        return f"taken over by another MDM ({detail})" if detail else "taken over by another MDM"
    return state
