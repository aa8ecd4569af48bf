"""The simulated location: assets, assignments, users, events and client config.

All access goes through `SimState.lock`. Async events are processed lazily by
`process_due()`, which every request and every Python-side operation calls first.
"""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import ERROR_MESSAGES
from .models import ASSOCIATED, DEVICE, REGISTERED, RETIRED, UNLIMITED_COUNT, USER, Asset, AssetKey, AssignmentKey, Event, UserRecord
from .notifications import Notifier, chunks, envelope
from .stores import AssignmentStore, UserStore, Versions, since_suffix

DEFAULT_LIMITS: dict[str, int] = {
    "maxAssets": 25,
    "maxUsers": 100,
    "maxClientUserIds": 1000,
    "maxSerialNumbers": 1000,
    "maxRevokeClientUserIds": 100,
    "maxRevokeSerialNumbers": 100,
    "maxNotificationLength": 512,
    "maxMdmIdLength": 100,
    "maxMdmNameLength": 100,
    "maxMdmMetadataLength": 255,
}
NOTIFICATION_TYPES = ["ASSET_MANAGEMENT", "USER_MANAGEMENT", "USER_ASSOCIATED", "ASSET_COUNT"]
_CACHE_SIZE = 8


def make_id_hash(seed: object, client_user_id: str, apple_id: str) -> str:
    """A base64 SHA-1 look-alike of the Apple Account hash."""
    digest = hashlib.sha1(f"{seed}|{client_user_id}|{apple_id}".encode()).digest()
    return base64.b64encode(digest).decode("ascii")


def make_invite_code(seed: object, client_user_id: str, n: int) -> str:
    return hashlib.md5(f"{seed}|invite|{client_user_id}|{n}".encode()).hexdigest()


def failure(error_number: int, **error_info: Any) -> dict[str, Any]:
    """An ErrorResponse entry of StatusResponse.failures."""
    info = {k: v for k, v in error_info.items() if v}
    return {"errorNumber": error_number, "errorMessage": ERROR_MESSAGES[error_number], "errorInfo": info}


def _not_associated(keys: list[AssignmentKey], **info: Any) -> dict[str, Any]:
    """The failure of licenses that are not associated (9610 "License not found")."""
    return failure(9610, **info, serialNumbers=[k[3] for k in keys if k[2] == DEVICE], clientUserIds=[k[3] for k in keys if k[2] == USER])


class SimState:
    """Everything Apple knows about one location."""

    def __init__(
        self,
        seed: object = 1,
        *,
        page_size: int = 437,
        async_delay: float = 0.2,
        limits: dict[str, int] | None = None,
        org_name: str = "Springfield Schools",
        location_name: str | None = None,
        country: str = "US",
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.lock = threading.RLock()
        self.seed = seed
        self.rng = random.Random(f"{seed}/out-of-band")
        self.page_size = page_size
        self.async_delay = float(async_delay)
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self.org_name = org_name
        self.location_name = location_name or f"{org_name} - Main Campus"
        self.country = country
        self.uid = str(random.Random(f"{seed}/uId").randrange(10**15, 10**16))
        self.assets: dict[AssetKey, Asset] = {}
        self.assignments = AssignmentStore()
        self.users = UserStore()
        self.devices: list[str] = []
        self.versions = Versions(seed)
        self.events: dict[str, Event] = {}
        self._pending: list[Event] = []
        self._event_counter = 0
        self.mdm_info: dict[str, str] | None = None
        self.notification_url: str | None = None
        self.notification_auth_token: str | None = None
        self.notification_types: list[str] = []
        self._cache: dict[tuple, list] = {}
        self._invites = 0
        #: sends the notifications (set by the Simulator); without one, nothing is sent
        self.notifier: Notifier | None = None
        #: armed outcomes of the next events: {"event_type", "error_number" | None, "silent"}
        self.event_faults: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"<SimState assets={len(self.assets)} assignments={len(self.assignments)} users={len(self.users)}>"

    # ----------------------------------------------------------------- helpers
    def _bump(self, *names: str) -> int:
        stamp = 0
        for name in names:
            stamp = self.versions.bump(name)
        self._cache.clear()
        return stamp

    def device_serials(self) -> list[str]:
        """The seeded device serial numbers."""
        with self.lock:
            return list(self.devices)

    def user_ids(self, status: str | None = None) -> list[str]:
        """clientUserIds of the latest records, optionally only those with `status`."""
        with self.lock:
            self.process_due()
            return [cid for cid, rid in self.users.current.items() if status is None or self.users.records[rid].status == status]

    def user_records(self) -> list[dict[str, Any]]:
        """The latest record per clientUserId: clientUserId, email, managedAppleId, status, ..."""
        with self.lock:
            self.process_due()
            return [self.users.records[rid].info() for rid in self.users.current.values()]

    def user(self, client_user_id: str) -> dict[str, Any] | None:
        with self.lock:
            self.process_due()
            record = self.users.get(client_user_id)
            return None if record is None else record.info()

    def asset(self, adam_id: str, pricing_param: str = "STDQ") -> dict[str, Any] | None:
        with self.lock:
            self.process_due()
            found = self.assets.get((adam_id, pricing_param))
            return None if found is None else found.to_json()

    def resolve_asset_key(self, adam_id: str, pricing_param: str | None) -> AssetKey:
        """(adamId, pricingParam); a missing pricingParam picks the owned one (STDQ first)."""
        if pricing_param:
            return (adam_id, pricing_param)
        if (adam_id, "STDQ") in self.assets:
            return (adam_id, "STDQ")
        for key in self.assets:
            if key[0] == adam_id:
                return key
        return (adam_id, "STDQ")

    def new_user_record(self, client_user_id: str, email: str | None, managed_apple_id: str | None, stamp: int) -> UserRecord:
        """A fresh record: Associated with idHash given a managedAppleId, else Registered."""
        if managed_apple_id:
            return UserRecord(
                client_user_id,
                email,
                ASSOCIATED,
                id_hash=make_id_hash(self.seed, client_user_id, managed_apple_id),
                managed_apple_id=managed_apple_id,
                stamp=stamp,
            )
        self._invites += 1
        return UserRecord(client_user_id, email, REGISTERED, invite_code=make_invite_code(self.seed, client_user_id, self._invites), stamp=stamp)

    # ------------------------------------------------------------------ events
    def submit(self, event_type: str, payload: dict[str, Any], num_requested: int) -> Event:
        """Queue an async event; it stays PENDING for `async_delay` seconds."""
        self._event_counter += 1
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sim:{self.seed}:event:{self._event_counter}"))
        event = Event(event_id, event_type, time.monotonic() + self.async_delay, payload, num_requested)
        self.events[event_id] = event
        self._pending.append(event)
        if self.notifier is not None:
            self.notifier.wake()
        return event

    def next_event_due(self) -> float | None:
        """When the oldest pending event is due, while notifications are configured (they
        follow their event at once); None otherwise (events then run at the next request)."""
        if self.notification_url is None:
            return None
        try:
            return self._pending[0].due
        except IndexError:
            return None

    def process_due(self, now: float | None = None) -> None:
        """Process every pending event whose delay has passed, oldest first."""
        if not self._pending:
            return
        now = time.monotonic() if now is None else now
        while self._pending and self._pending[0].due <= now:
            event = self._pending.pop(0)
            fault = next((f for f in self.event_faults if f["event_type"] == event.event_type), None)
            if fault is not None:
                self.event_faults.remove(fault)
                self._run_faulty(event, fault)
                self._notify_event(event)
                continue
            handler = getattr(self, f"_run_{event.event_type.lower()}")
            handler(event)
            event.status = "FAILED" if event.failures else "COMPLETE"
            self._notify_event(event)

    # ----------------------------------------------------------- notifications
    def subscribed(self, notification_type: str) -> bool:
        """Notifications are configured and include ``notification_type``."""
        return self.notifier is not None and self.notification_url is not None and notification_type in self.notification_types

    def notify(self, notification_type: str, notification: dict[str, Any]) -> None:
        """Send a notification of this type if the MDM subscribed to it (queued, never blocks)."""
        if self.subscribed(notification_type):
            assert self.notifier is not None
            self.notifier.enqueue(envelope(notification_type, notification, self.uid))

    def test_notification(self, url: str, auth_token: str) -> bool:
        """``TEST_NOTIFICATION`` to a URL being configured; True when it was delivered."""
        return True if self.notifier is None else self.notifier.send_test(url, auth_token)

    def _notify_event(self, event: Event) -> None:
        """The notifications of a finished event (ASSET_MANAGEMENT or USER_MANAGEMENT)."""
        size = self.notifier.chunk if self.notifier is not None else 1000
        if event.event_type in ("ASSOCIATE", "DISASSOCIATE", "REVOKE"):
            if not self.subscribed("ASSET_MANAGEMENT"):
                return
            base = {"type": event.event_type, "eventId": event.event_id}
            if event.done or not event.failures:
                for part in chunks([_assignment(k) for k in event.done], size):
                    self.notify("ASSET_MANAGEMENT", {**base, "result": "SUCCESS", "assignments": part})
            for item in event.failures:
                error = {"errorNumber": item["errorNumber"], "errorMessage": item["errorMessage"]}
                for part in chunks(_failed_assignments(event, item), size):
                    self.notify("ASSET_MANAGEMENT", {**base, "result": "FAILURE", "assignments": part, "error": error})
        elif event.event_type in ("CREATE", "UPDATE", "RETIRE"):
            if not self.subscribed("USER_MANAGEMENT"):
                return
            base = {"type": event.event_type, "eventId": event.event_id}
            records = [self.users.get(cid) for cid in event.done]
            if event.done or not event.failures:
                for part in chunks([r.to_json() for r in records if r is not None], size):
                    self.notify("USER_MANAGEMENT", {**base, "result": "SUCCESS", "users": part})
            for item in event.failures:
                refused = (item.get("errorInfo") or {}).get("clientUserIds") or []
                for part in chunks([{"clientUserId": cid} for cid in refused], size):
                    self.notify("USER_MANAGEMENT", {**base, "result": "FAILURE", "users": part})

    def _count_changed(self, key: AssetKey, delta: int) -> None:
        """ASSET_COUNT: an asset's total moved outside the API (purchase, transfer, refund)."""
        if delta:
            self.notify("ASSET_COUNT", {"adamId": key[0], "pricingParam": key[1], "countDelta": delta})

    def fail_next_event(self, event_type: str, error_number: int | None = 9603, silent: bool = False) -> None:
        """The next event of this type does nothing: it FAILs naming every target with
        ``error_number`` (9603: Apple's internal error, worth retrying), or with ``silent`` it says
        COMPLETE without failures while ``numCompleted`` stays 0. An error number Apple does not
        document (:data:`.errors.ERROR_MESSAGES`) is refused here: it used to fail the status
        request that ran the event, as the simulator's own error (HTTP 500, 9603)."""
        if error_number is not None and error_number not in ERROR_MESSAGES:
            raise ValueError(f"unknown Apple error number {error_number}: use one of {', '.join(map(str, sorted(ERROR_MESSAGES)))}")
        with self.lock:
            self.event_faults.append({"event_type": event_type.upper(), "error_number": error_number, "silent": silent})

    def _run_faulty(self, event: Event, fault: dict[str, Any]) -> None:
        event.num_completed = 0
        if fault["silent"]:
            event.status = "COMPLETE"
            return
        info: dict[str, Any] = {}
        for name in ("serialNumbers", "clientUserIds"):
            if event.payload.get(name):
                info[name] = list(event.payload[name])
        if event.payload.get("assets"):
            info["assets"] = [{"adamId": a, "pricingParam": p} for a, p in event.payload["assets"]]
        event.failures.append(failure(int(fault["error_number"] or 9603), **info))
        event.status = "FAILED"

    def _run_associate(self, event: Event) -> None:
        assets: list[AssetKey] = event.payload["assets"]
        serials: list[str] = event.payload["serialNumbers"]
        cids: list[str] = event.payload["clientUserIds"]
        bad_users = [cid for cid in cids if not self._user_can_receive(cid)]
        bad = set(bad_users)
        good_users = [cid for cid in cids if cid not in bad]
        stamp = None
        completed = 0
        for asset_key in assets:
            asset = self.assets.get(asset_key)
            short: dict[str, list[str]] = {DEVICE: [], USER: []}
            for kind, value in [(DEVICE, s) for s in serials] + [(USER, c) for c in good_users]:
                key = (asset_key[0], asset_key[1], kind, value)
                if key in self.assignments:
                    completed += 1
                    event.done.append(key)
                    continue
                if asset is None or asset.available <= 0:
                    short[kind].append(value)
                    continue
                if stamp is None:
                    stamp = self._bump("assignments", "assets")
                self.assignments.add(key, stamp)
                asset.assigned += 1
                completed += 1
                event.done.append(key)
            if short[DEVICE] or short[USER]:
                event.failures.append(
                    failure(9709, assets=[{"adamId": asset_key[0], "pricingParam": asset_key[1]}], serialNumbers=short[DEVICE], clientUserIds=short[USER])
                )
        if bad_users:
            event.failures.append(failure(9609, clientUserIds=bad_users))
        event.num_completed = completed

    def _user_can_receive(self, client_user_id: str) -> bool:
        record = self.users.get(client_user_id)
        return record is not None and record.status == ASSOCIATED

    def _run_disassociate(self, event: Event) -> None:
        """A license that is not associated (released already: twice asked, or taken back
        elsewhere) fails with 9610, naming its asset and target; the others are removed."""
        targets = [(DEVICE, s) for s in event.payload["serialNumbers"]] + [(USER, c) for c in event.payload["clientUserIds"]]
        keys = [(a[0], a[1], kind, value) for a in event.payload["assets"] for kind, value in targets]
        held = [k for k in keys if k in self.assignments]
        self._remove_assignments(held)
        event.num_completed = len(held)
        event.done.extend(held)
        for asset_key in event.payload["assets"]:
            gone = [k for k in keys if k[:2] == tuple(asset_key) and k not in held]
            if gone:
                event.failures.append(_not_associated(gone, assets=[{"adamId": asset_key[0], "pricingParam": asset_key[1]}]))

    def _run_revoke(self, event: Event) -> None:
        """Every revocable license of the targets goes; a target holding none (revoked already)
        fails with 9610, as a disassociation of a license that is not associated does."""
        keys: list[AssignmentKey] = []
        empty: list[AssignmentKey] = []
        for kind, target, found in [(DEVICE, s, self.assignments.keys_for_serial(s)) for s in event.payload["serialNumbers"]] + [
            (USER, c, self.assignments.keys_for_user(c)) for c in event.payload["clientUserIds"]
        ]:
            mine = [k for k in found if self._revocable(k)]
            keys.extend(mine)
            if not mine:
                empty.append(("", "", kind, target))
        revoked = list(dict.fromkeys(keys))
        self._remove_assignments(revoked)
        event.num_completed = event.num_requested - len(empty)
        event.done.extend(revoked)
        if empty:
            event.failures.append(_not_associated(empty))

    def _revocable(self, key: AssignmentKey) -> bool:
        asset = self.assets.get((key[0], key[1]))
        return asset is None or asset.revocable

    def _remove_assignments(self, keys: Iterable[AssignmentKey]) -> int:
        """Remove existing assignments (one version bump); returns how many went."""
        present = [k for k in dict.fromkeys(keys) if k in self.assignments]
        if not present:
            return 0
        self._bump("assignments", "assets")
        self.assignments.remove_many(present)
        for key in present:
            asset = self.assets.get((key[0], key[1]))
            if asset is not None:
                asset.assigned -= 1
        return len(present)

    def _run_create(self, event: Event) -> None:
        existing = []
        stamp = None
        for user in event.payload["users"]:
            cid = user["clientUserId"]
            record = self.users.get(cid)
            if record is not None and record.active:
                existing.append(cid)
                continue
            if stamp is None:
                stamp = self._bump("users")
            self.users.add(self.new_user_record(cid, user.get("email"), user.get("managedAppleId"), stamp))
            event.num_completed += 1
            event.done.append(cid)
        if existing:
            event.failures.append(failure(9716, clientUserIds=existing))

    def _run_update(self, event: Event) -> None:
        missing = []
        stamp = None
        for user in event.payload["users"]:
            cid = user["clientUserId"]
            record = self.users.get(cid)
            if record is None or not record.active:
                missing.append(cid)
                continue
            if stamp is None:
                stamp = self._bump("users")
            record = self.users.touch(cid, stamp)
            if "email" in user:
                record.email = user["email"]
            apple_id = user.get("managedAppleId")
            if apple_id:
                record.managed_apple_id = apple_id
                record.status = ASSOCIATED
                record.id_hash = make_id_hash(self.seed, cid, apple_id)
            event.num_completed += 1
            event.done.append(cid)
        if missing:
            event.failures.append(failure(9609, clientUserIds=missing))

    def _run_retire(self, event: Event) -> None:
        missing = []
        for user in event.payload["users"]:
            cid = user["clientUserId"]
            record = self.users.get(cid)
            if record is None:
                missing.append(cid)
                continue
            self._retire(cid)
            event.num_completed += 1
            event.done.append(cid)
        if missing:
            event.failures.append(failure(9609, clientUserIds=missing))

    def _retire(self, client_user_id: str) -> bool:
        """Retire a user: release its revocable licenses, mark the record Retired."""
        record = self.users.get(client_user_id)
        if record is None or not record.active:
            return False
        self._remove_assignments(k for k in self.assignments.keys_for_user(client_user_id) if self._revocable(k))
        record = self.users.touch(client_user_id, self._bump("users"))
        record.status = RETIRED
        return True

    # ----------------------------------------------------------------- queries
    def query_assets(
        self,
        *,
        adam_id: str | None = None,
        product_type: str | None = None,
        pricing_param: str | None = None,
        revocable: bool | None = None,
        device_assignable: bool | None = None,
        min_available: int | None = None,
        max_available: int | None = None,
        min_assigned: int | None = None,
        max_assigned: int | None = None,
        unlimited: bool | None = None,
    ) -> list[Asset]:
        """Assets matching every given filter, in purchase order (cached until the next write).

        ``unlimited=False`` leaves unlimited assets out (Apple's ``unlimited`` parameter)."""
        cache_key = (
            "assets",
            adam_id,
            product_type,
            pricing_param,
            revocable,
            device_assignable,
            min_available,
            max_available,
            min_assigned,
            max_assigned,
            unlimited,
        )
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        rows = []
        for asset in self.assets.values():
            if adam_id is not None and asset.adam_id != adam_id:
                continue
            if product_type is not None and asset.product_type != product_type:
                continue
            if pricing_param is not None and asset.pricing_param != pricing_param:
                continue
            if revocable is not None and asset.revocable != revocable:
                continue
            if device_assignable is not None and asset.device_assignable != device_assignable:
                continue
            if unlimited is False and asset.unlimited:
                continue
            available, assigned = asset.available, asset.assigned
            if min_available is not None and available < min_available:
                continue
            if max_available is not None and available > max_available:
                continue
            if min_assigned is not None and assigned < min_assigned:
                continue
            if max_assigned is not None and assigned > max_assigned:
                continue
            rows.append(asset)
        self._remember(cache_key, rows)
        return rows

    def _remember(self, cache_key: tuple, rows: list) -> None:
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[cache_key] = rows

    def query_assignments(
        self,
        *,
        adam_id: str | None = None,
        pricing_param: str | None = None,
        client_user_id: str | None = None,
        serial_number: str | None = None,
        since: int | None = None,
        exclude_inactive_users: bool = False,
    ) -> list[AssignmentKey]:
        """Assignment keys matching the filters, in stamp order (cached until the next write)."""
        cache_key = ("assignments", adam_id, pricing_param, client_user_id, serial_number, since, exclude_inactive_users)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        store = self.assignments
        if serial_number is not None:
            rows = store.keys_for_serial(serial_number)
            if client_user_id is not None:
                rows = []
        elif client_user_id is not None:
            rows = store.keys_for_user(client_user_id)
        elif adam_id is not None:
            rows = store.keys_for_adam(adam_id)
        elif since is not None:
            rows, since = store.keys_since(since), None
        else:
            rows = store.keys()
        if since is not None:
            rows = since_suffix(rows, since, store.stamp_of)
        checks = []
        if adam_id is not None and (serial_number is not None or client_user_id is not None):
            checks.append(lambda k: k[0] == adam_id)
        if pricing_param is not None:
            checks.append(lambda k: k[1] == pricing_param)
        if exclude_inactive_users:
            checks.append(lambda k: k[2] == DEVICE or self._user_active(k[3]))
        if checks:
            rows = [k for k in rows if all(check(k) for check in checks)]
        self._remember(cache_key, rows)
        return rows

    def _user_active(self, client_user_id: str) -> bool:
        record = self.users.get(client_user_id)
        return record is not None and record.active

    def assignment_row(self, key: AssignmentKey, include_user_state: bool) -> dict[str, Any]:
        """An Assignment (with userStatus and idHash on user rows when asked)."""
        row = {"adamId": key[0], "pricingParam": key[1], key[2]: key[3]}
        if include_user_state and key[2] == USER:
            record = self.users.get(key[3])
            if record is not None:
                row["userStatus"] = record.status
                if record.id_hash is not None:
                    row["idHash"] = record.id_hash
        return row

    def query_users(self, *, active_only: bool = False, retired_only: bool = False, client_user_id: str | None = None, since: int | None = None) -> list[str]:
        """User record ids matching the filters, in stamp order (cached until the next write)."""
        cache_key = ("users", active_only, retired_only, client_user_id, since)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        store = self.users
        if client_user_id is not None:
            rows = store.record_ids_for(client_user_id)
            if since is not None:
                rows = since_suffix(rows, since, store.stamp_of)
        else:
            rows = store.record_ids() if since is None else store.record_ids_since(since)
        if active_only or retired_only:
            records = store.records
            rows = [rid for rid in rows if (not active_only or records[rid].active) and (not retired_only or not records[rid].active)]
        self._remember(cache_key, rows)
        return rows

    # ------------------------------------------------------------ out-of-band
    def new_adam_id(self) -> str:
        while True:
            adam_id = str(self.rng.randrange(300_000_000, 1_999_999_999))
            if not any(key[0] == adam_id for key in self.assets):
                return adam_id

    def purchase(
        self,
        adam_id: str | None = None,
        pricing_param: str = "STDQ",
        count: int = 10,
        product_type: str = "App",
        device_assignable: bool = True,
        revocable: bool = True,
        supported_platforms: Sequence[str] = ("iOS",),
        unlimited: bool = False,
        custom: bool = False,
    ) -> AssetKey:
        """Add licenses to an asset, creating it when new; returns (adamId, pricingParam).

        ``unlimited``: a free asset without a license limit; ``custom``: a custom (B2B) app
        whose metadata needs the ``itvt`` cookie."""
        from .seed import make_asset  # local import: seed depends on this module

        with self.lock:
            self.process_due()
            adam_id = str(adam_id) if adam_id is not None else self.new_adam_id()
            key = (adam_id, pricing_param)
            self._bump("assets")
            asset = self.assets.get(key)
            if asset is not None:
                asset.total += count
                self._count_changed(key, count)
                return key
            if product_type == "Book":
                device_assignable = revocable = False
            self.assets[key] = make_asset(
                self.rng,
                adam_id,
                pricing_param,
                product_type,
                UNLIMITED_COUNT if unlimited else count,
                device_assignable,
                revocable,
                tuple(supported_platforms),
                len(self.assets),
            )
            self._count_changed(key, count)
            self.assets[key].custom = custom
            return key

    def transfer(self, adam_id: str, pricing_param: str = "STDQ", count: int = 1) -> int:
        """Licenses moved between this location and another in Apple's portal: ``count`` > 0
        comes in, < 0 goes out (only unassigned licenses can leave). Returns the new total."""
        with self.lock:
            self.process_due()
            asset = self.assets.get((adam_id, pricing_param))
            if asset is None:
                raise ValueError("unknown asset")
            if count < 0 and -count > asset.available:
                raise ValueError(f"only {asset.available} unassigned license(s) can be transferred out")
            self._bump("assets")
            asset.total += count
            self._count_changed(asset.key, count)
            return asset.total

    def remove_asset(self, adam_id: str, pricing_param: str = "STDQ") -> bool:
        """Refund: the asset disappears entirely with its assignments."""
        with self.lock:
            self.process_due()
            asset = self.assets.get((adam_id, pricing_param))
            if asset is None:
                return False
            self._remove_assignments(self.assignments.keys_for_asset(adam_id, pricing_param))
            self._bump("assets")
            del self.assets[(adam_id, pricing_param)]
            self._count_changed((adam_id, pricing_param), -asset.total)
            return True

    refund = remove_asset

    def _target(self, serial_number: str | None, client_user_id: str | None) -> tuple[str, str]:
        if (serial_number is None) == (client_user_id is None):
            raise ValueError("give exactly one of serial_number and client_user_id")
        if serial_number is not None:
            return DEVICE, serial_number
        assert client_user_id is not None  # exactly one was given (checked above)
        return USER, client_user_id

    def assign_in_portal(self, adam_id: str, pricing_param: str = "STDQ", serial_number: str | None = None, client_user_id: str | None = None) -> bool:
        """Assign a license in Apple's portal; False if already held. ValueError if impossible."""
        kind, value = self._target(serial_number, client_user_id)
        with self.lock:
            self.process_due()
            asset = self.assets.get((adam_id, pricing_param))
            if asset is None:
                raise ValueError("unknown asset")
            key = (adam_id, pricing_param, kind, value)
            if key in self.assignments:
                return False
            if asset.available <= 0:
                raise ValueError("not enough licenses")
            if kind == DEVICE and not asset.device_assignable:
                raise ValueError("asset is not device assignable")
            if kind == USER and not self._user_can_receive(value):
                raise ValueError("user is not an associated user")
            self.assignments.add(key, self._bump("assignments", "assets"))
            asset.assigned += 1
            return True

    def remove_in_portal(self, adam_id: str, pricing_param: str = "STDQ", serial_number: str | None = None, client_user_id: str | None = None) -> bool:
        """Remove a license in Apple's portal; False if it was not assigned."""
        kind, value = self._target(serial_number, client_user_id)
        with self.lock:
            self.process_due()
            return self._remove_assignments([(adam_id, pricing_param, kind, value)]) == 1

    def retire_user(self, client_user_id: str) -> bool:
        """Retire a user out of band; False if unknown or already retired."""
        with self.lock:
            self.process_due()
            return self._retire(client_user_id)

    def create_user(self, client_user_id: str | None = None, email: str | None = None, managed_apple_id: str | None = None) -> str:
        """Create (or re-create a retired) user out of band; returns its clientUserId."""
        with self.lock:
            self.process_due()
            if client_user_id is None:
                client_user_id = f"user-oob-{self.rng.getrandbits(32):08x}"
            existing = self.users.get(client_user_id)
            if existing is not None and existing.active:
                raise ValueError("user already exists")
            if email is None:
                email = f"{client_user_id}@students.example.org"
            self.users.add(self.new_user_record(client_user_id, email, managed_apple_id, self._bump("users")))
            return client_user_id

    def accept_invite(self, client_user_id: str, apple_id: str | None = None) -> bool:
        """A Registered user opens the invitation: becomes Associated with an idHash."""
        with self.lock:
            self.process_due()
            record = self.users.get(client_user_id)
            if record is None or record.status != REGISTERED:
                return False
            record = self.users.touch(client_user_id, self._bump("users"))
            record.status = ASSOCIATED
            record.id_hash = make_id_hash(self.seed, client_user_id, apple_id or record.email or "")
            self.notify(
                "USER_ASSOCIATED",
                {
                    "associatedUsers": [
                        {
                            "clientUserId": record.client_user_id,
                            "email": record.email,
                            "idHash": record.id_hash,
                            "inviteCode": record.invite_code,
                            "status": ASSOCIATED,
                        }
                    ]
                },
            )
            return True

    def update_user_email(self, client_user_id: str, email: str) -> bool:
        with self.lock:
            self.process_due()
            record = self.users.get(client_user_id)
            if record is None or not record.active:
                return False
            self.users.touch(client_user_id, self._bump("users")).email = email
            return True

    def touch_dataset(self, dataset: str) -> None:
        """A real out-of-band write to `dataset` so its versionId changes (version_change fault)."""
        with self.lock:
            if dataset == "assets":
                if self.assets:
                    first = next(iter(self.assets.values()))
                    first.total += 1
                    self._bump("assets")
                    self._count_changed(first.key, 1)
                else:
                    self.purchase(count=1)
            elif dataset == "users":
                active = [cid for cid, rid in self.users.current.items() if self.users.records[rid].active]
                if active:
                    cid = self.rng.choice(active)
                    self.update_user_email(cid, f"{cid}+{self.rng.getrandbits(16):04x}@students.example.org")
                else:
                    self.create_user()
            elif dataset == "assignments":
                for asset in self.assets.values():
                    if asset.device_assignable and asset.available > 0:
                        serial = f"SIMVC{self.rng.getrandbits(28):07X}"[:12]
                        self.assign_in_portal(asset.adam_id, asset.pricing_param, serial_number=serial)
                        return
                keys = self.assignments.keys()
                if keys:
                    self._remove_assignments([keys[-1]])

    def mutate_fraction(self, fraction: float, seed: object = 0) -> dict[str, int]:
        """Change `fraction` of assignments (remove half, add half) and of users, in one go."""
        rng = random.Random(f"{self.seed}/mutate/{seed}")
        summary = {"assignments_removed": 0, "assignments_added": 0, "users_updated": 0, "users_retired": 0, "users_created": 0}
        with self.lock:
            self.process_due()
            keys = self.assignments.keys()
            n_changes = int(round(len(keys) * fraction))
            to_remove = [k for k in rng.sample(keys, min(len(keys), n_changes // 2 + n_changes % 2)) if self._revocable(k)]
            summary["assignments_removed"] = self._remove_assignments(to_remove)
            summary["assignments_added"] = self._add_random_assignments(rng, n_changes // 2, set(to_remove))
            current = [cid for cid, rid in self.users.current.items() if self.users.records[rid].active]
            n_users = int(round(len(current) * fraction))
            picked = rng.sample(current, min(len(current), n_users))
            n_retire = max(1, n_users // 5) if n_users else 0
            for cid in picked[:n_retire]:
                summary["users_retired"] += self._retire(cid)
            if picked[n_retire:]:
                stamp = self._bump("users")
                for cid in picked[n_retire:]:
                    record = self.users.touch(cid, stamp)
                    record.email = f"{cid}.{rng.getrandbits(20):05x}@students.example.org"
                    summary["users_updated"] += 1
            n_create = n_retire
            if n_create:
                stamp = self._bump("users")
                for _ in range(n_create):
                    cid = f"user-new-{rng.getrandbits(40):010x}"
                    if self.users.get(cid) is None:
                        self.users.add(self.new_user_record(cid, f"{cid}@students.example.org", f"{cid}@appleid.example.org", stamp))
                        summary["users_created"] += 1
        return summary

    def _add_random_assignments(self, rng: random.Random, count: int, exclude: set[AssignmentKey]) -> int:
        if count <= 0:
            return 0
        device_assets = [a for a in self.assets.values() if a.device_assignable]
        if not device_assets or not self.devices:
            return 0
        stamp = self._bump("assignments", "assets")
        added = 0
        attempts = 0
        while added < count and attempts < count * 4:
            attempts += 1
            asset = device_assets[int(rng.random() * len(device_assets))]
            if asset.available <= 0:
                asset.total += 1 + count // len(device_assets)
                self._count_changed(asset.key, 1 + count // len(device_assets))
            serial = self.devices[int(rng.random() * len(self.devices))]
            key = (asset.adam_id, asset.pricing_param, DEVICE, serial)
            if key not in exclude and self.assignments.add(key, stamp):
                asset.assigned += 1
                added += 1
        return added

    # ----------------------------------------------------------- inspection
    def snapshot(self) -> dict[str, Any]:
        """Plain data to compare a mirror against."""
        with self.lock:
            self.process_due()
            return {
                "assets": {key: asset.to_json() for key, asset in self.assets.items()},
                "assignments": set(self.assignments.stamps),
                "users": {cid: self.users.records[rid].snapshot() for cid, rid in self.users.current.items()},
            }

    def version_ids(self) -> dict[str, str]:
        with self.lock:
            self.process_due()
            return self.versions.as_dict()


def _assignment(key: AssignmentKey) -> dict[str, str]:
    """An assignment of a notification: adamId, pricingParam and the serial or clientUserId."""
    return {"adamId": key[0], "pricingParam": key[1], key[2]: key[3]}


def _failed_assignments(event: Event, item: dict[str, Any]) -> list[dict[str, str]]:
    """The assignments a failure names: its assets (else the event's) times its targets."""
    info = item.get("errorInfo") or {}
    assets = [(a["adamId"], a["pricingParam"]) for a in info.get("assets") or []] or list(event.payload.get("assets") or [])
    targets = [(DEVICE, s) for s in info.get("serialNumbers") or []] + [(USER, c) for c in info.get("clientUserIds") or []]
    if not assets:  # a revoke names devices and users only
        return [{kind: value} for kind, value in targets]
    return [_assignment((a, p, kind, value)) for a, p in assets for kind, value in targets]
