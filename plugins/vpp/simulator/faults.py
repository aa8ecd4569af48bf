"""Fault injection, switchable at run time.

A request fault has a `kind`, an optional `endpoint` (path suffix relative to
`/mdm/v2`, e.g. "assignments", "client/config", "status", or "lookup" for the
metadata lookup; None matches any), an optional `count` (how many matching
requests it hits before disarming; None = until cleared), an optional `after`
(skip the first N matching requests) and kind-specific params:

- rate_limit: HTTP 429, body errorNumber 9646; `retry_after` adds a Retry-After header
- server_error: `status` (500 default, or 503), `body` "9603" (default) or "empty", `retry_after`
- error_200: HTTP 200 with an error body; `error_number` (default 9622)
- slow: sleep `seconds` (default 1.0) before answering
- drop: close the connection without any response
- truncated_json: the real response, JSON cut in half (Content-Length matches)
- malformed_json: a garbage body with HTTP 200
- missing_field: remove `field` from the response and from each listed record
- extra_field: add unknown keys (`fields`, a dict) to the response and each record
- version_change: after the page is built, a real out-of-band write to that dataset
- reverse_records: the page's records in reverse order (Apple promises no order: a client must
  not depend on it, e.g. for a clientUserId listed both Retired and live)

Notification faults act on the notifications sent to the MDM instead of on requests: they
take `type` (a notificationType, e.g. "ASSET_COUNT" or "TEST_NOTIFICATION"; None matches
any) instead of `endpoint`, and `count`/`after` as above:

- notification_drop: the notification is never sent (a TEST_NOTIFICATION dropped makes
  `POST client/config` answer 9728)
- notification_delay: sent `seconds` (default 1.0) later
- notification_duplicate: sent twice, with the same notificationId

State faults (`expire_token`, `revoke_token`, `claim_by_other_mdm`, `restore_token`)
change the location itself and are methods here and on the Simulator.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .state import SimState
from .tokens import EXPIRED, REVOKED, VALID, TokenState

NOTIFICATION_KINDS = frozenset({"notification_drop", "notification_delay", "notification_duplicate"})
KINDS = (
    frozenset(
        {
            "rate_limit",
            "server_error",
            "error_200",
            "slow",
            "drop",
            "truncated_json",
            "malformed_json",
            "missing_field",
            "extra_field",
            "version_change",
            "reverse_records",
        }
    )
    | NOTIFICATION_KINDS
)
#: Kinds that answer instead of the real handler (first one firing wins).
SHORT_CIRCUIT = ("drop", "rate_limit", "server_error", "error_200", "malformed_json")


@dataclass
class Fault:
    """One armed request fault."""

    kind: str
    endpoint: str | None = None
    count: int | None = None
    after: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0

    def matches(self, endpoint: str) -> bool:
        if self.kind in NOTIFICATION_KINDS:
            return False
        if self.endpoint is None:
            return True
        wanted = self.endpoint.strip("/")
        return endpoint == wanted or endpoint.endswith("/" + wanted)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "endpoint": self.endpoint,
            "count": self.count,
            "after": self.after,
            "params": self.params,
            "seen": self.seen,
            "fired": self.fired,
        }


class Faults:
    """The armed faults of a simulator; `hits` counts what fired, by kind."""

    def __init__(self, state: SimState, token: TokenState) -> None:
        self._state = state
        self._token = token
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.hits: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<Faults armed={[f.kind for f in self._faults]} hits={dict(self.hits)}>"

    def add(self, kind: str, endpoint: str | None = None, count: int | None = None, after: int = 0, **params: Any) -> Fault:
        """Arm a request fault (see the module docstring for kinds and params)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 or None")
        if kind == "missing_field" and not params.get("field"):
            raise ValueError("missing_field needs field=")
        fault = Fault(kind, endpoint.strip("/") if endpoint else None, count, int(after or 0), params)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every request fault and make the token valid again (mdmInfo is left as is)."""
        with self._lock:
            self._faults.clear()
        self._token.set_status(VALID)

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def select(self, endpoint: str) -> list[Fault]:
        """The faults firing for one request to `endpoint`; counts them and disarms spent ones."""
        return self._select(lambda fault: fault.matches(endpoint))

    def select_notification(self, notification_type: str) -> list[Fault]:
        """The notification faults firing for one notification of this type."""
        return self._select(lambda fault: fault.kind in NOTIFICATION_KINDS and fault.params.get("type") in (None, notification_type))

    def _select(self, matches: Any) -> list[Fault]:
        firing: list[Fault] = []
        with self._lock:
            for fault in self._faults:
                if not matches(fault):
                    continue
                fault.seen += 1
                if fault.seen <= fault.after or fault.exhausted:
                    continue
                fault.fired += 1
                self.hits[fault.kind] += 1
                firing.append(fault)
            self._faults = [f for f in self._faults if not f.exhausted]
        return firing

    # -------------------------------------------------------------- state faults
    def expire_token(self) -> None:
        """Every authenticated call now answers 9621 (HTTP 401)."""
        self._token.set_status(EXPIRED)
        self.hits["expire_token"] += 1

    def revoke_token(self) -> None:
        """Every authenticated call now answers 9625 (HTTP 401)."""
        self._token.set_status(REVOKED)
        self.hits["revoke_token"] += 1

    def restore_token(self) -> None:
        """Undo expire_token / revoke_token."""
        self._token.set_status(VALID)
        self.hits["restore_token"] += 1

    def claim_by_other_mdm(
        self,
        id: str = "other-mdm-id",
        name: str = "OtherMDM",  # noqa: A002
        metadata: str = "other.example.com",
    ) -> None:
        """Another MDM writes Client Config: mdmInfo changes on every response."""
        with self._state.lock:
            self._state.mdm_info = {"id": id, "name": name, "metadata": metadata}
        self.hits["claim_by_other_mdm"] += 1
