"""Indexed stores for assignments and users, plus per-dataset versionIds.

Rows are kept in dicts in modification order (a modified row is re-inserted at
the end), so every ordered list is sorted by its `stamp` (the dataset counter of
its last write) and a `sinceVersionId` delta is a suffix: walked back from the
newest row, or found by bisection in an index. The adamId index is kept current
by every write, as Apple's are: the first read after a change builds nothing
(a re-read of a changed asset costs what a repeated one does). The full ordered
key lists are built on demand (full listings, out-of-band changes).
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Iterable
from typing import TypeVar

from .models import DEVICE, AssignmentKey, UserRecord

DATASETS = ("assets", "assignments", "users")
#: up to this many assignments of one asset removed at once are taken out of its index one by
#: one (a scan each); more, and the index is filtered once
_FEW = 16
_NAMESPACE = uuid.UUID("7c1f3c52-8f47-4a7e-9d5b-5a4e6f0b9a11")


class Versions:
    """A counter per dataset and its uuid-looking versionId (uuid5 of seed, dataset, counter)."""

    def __init__(self, seed: object) -> None:
        self._seed = seed
        self.counters: dict[str, int] = {name: 0 for name in DATASETS}
        self._current: dict[str, str] = {}
        self._known: dict[str, tuple[str, int]] = {}
        for name in DATASETS:
            self._register(name, 0)

    def _register(self, name: str, counter: int) -> None:
        version_id = str(uuid.uuid5(_NAMESPACE, f"{self._seed}/{name}/{counter}"))
        self._current[name] = version_id
        self._known[version_id] = (name, counter)

    def bump(self, name: str) -> int:
        """Record a write to `name`; returns the new counter (the stamp of written rows)."""
        self.counters[name] += 1
        self._register(name, self.counters[name])
        return self.counters[name]

    def current(self, name: str) -> str:
        return self._current[name]

    def counter_of(self, name: str, version_id: str) -> int | None:
        """The counter a versionId of `name` stands for, or None when unknown."""
        found = self._known.get(version_id)
        if found is None or found[0] != name:
            return None
        return found[1]

    def as_dict(self) -> dict[str, str]:
        return dict(self._current)


Row = TypeVar("Row")


def since_suffix(keys: list, since: int, stamp_of) -> list:
    """The rows of a stamp-ordered list written after counter `since`."""
    return keys[bisect_right(keys, since, key=stamp_of) :]


def newest_since(newest_first: Iterable[tuple[Row, int]], since: int) -> list[Row]:
    """The rows written after counter `since`, oldest first, from (row, stamp) pairs newest first."""
    rows = []
    for row, stamp in newest_first:
        if stamp <= since:
            break
        rows.append(row)
    rows.reverse()
    return rows


class AssignmentStore:
    """Assignments keyed by (adamId, pricingParam, kind, value) with adamId and target indexes,
    each kept current by every write (the adamId one in stamp order)."""

    def __init__(self) -> None:
        self.stamps: dict[AssignmentKey, int] = {}
        self._by_adam: dict[str, list[AssignmentKey]] = {}
        self._by_serial: dict[str, dict[AssignmentKey, None]] = {}
        self._by_user: dict[str, dict[AssignmentKey, None]] = {}
        self._keys: list[AssignmentKey] | None = None

    def __len__(self) -> int:
        return len(self.stamps)

    def __contains__(self, key: object) -> bool:
        return key in self.stamps

    def stamp_of(self, key: AssignmentKey) -> int:
        return self.stamps[key]

    def add(self, key: AssignmentKey, stamp: int) -> bool:
        """Insert a new assignment (`stamp` no older than any held); False if it already exists."""
        if key in self.stamps:
            return False
        self.stamps[key] = stamp
        self._by_adam.setdefault(key[0], []).append(key)
        (self._by_serial if key[2] == DEVICE else self._by_user).setdefault(key[3], {})[key] = None
        self._keys = None
        return True

    def remove(self, key: AssignmentKey) -> bool:
        """Delete an assignment; False if absent."""
        return self.remove_many((key,)) == 1

    def remove_many(self, keys: Iterable[AssignmentKey]) -> int:
        """Delete the assignments held among `keys`; returns how many went. Each asset's index is
        rewritten once, however many of its assignments go."""
        gone: dict[str, set[AssignmentKey]] = {}
        for key in keys:
            if self.stamps.pop(key, None) is None:
                continue
            index = self._by_serial if key[2] == DEVICE else self._by_user
            rows = index[key[3]]
            del rows[key]
            if not rows:
                del index[key[3]]
            gone.setdefault(key[0], set()).add(key)
        for adam_id, removed in gone.items():
            held = self._by_adam[adam_id]
            if len(removed) <= _FEW:
                for key in removed:
                    held.remove(key)
            else:
                held[:] = [k for k in held if k not in removed]
            if not held:
                del self._by_adam[adam_id]
        if gone:
            self._keys = None
        return sum(len(removed) for removed in gone.values())

    def bulk_load(self, keys: Iterable[AssignmentKey], stamp: int) -> None:
        """Fast initial load (keys must be new and unique)."""
        stamps, by_adam, by_serial, by_user = self.stamps, self._by_adam, self._by_serial, self._by_user
        for key in keys:
            stamps[key] = stamp
            held = by_adam.get(key[0])
            if held is None:
                held = by_adam[key[0]] = []
            held.append(key)
            index = by_serial if key[2] == DEVICE else by_user
            rows = index.get(key[3])
            if rows is None:
                rows = index[key[3]] = {}
            rows[key] = None
        self._keys = None

    def keys(self) -> list[AssignmentKey]:
        """All assignments in stamp order."""
        if self._keys is None:
            self._keys = list(self.stamps)
        return self._keys

    def keys_since(self, since: int) -> list[AssignmentKey]:
        """The assignments written after counter `since`, in stamp order (only they are walked)."""
        return newest_since(reversed(self.stamps.items()), since)

    def keys_for_adam(self, adam_id: str) -> list[AssignmentKey]:
        """The asset's assignments in stamp order: the live index, current until the next write
        (read it under the state's lock, never change it)."""
        return self._by_adam.get(adam_id, [])

    def keys_for_serial(self, serial: str) -> list[AssignmentKey]:
        return list(self._by_serial.get(serial, ()))

    def keys_for_user(self, client_user_id: str) -> list[AssignmentKey]:
        return list(self._by_user.get(client_user_id, ()))

    def keys_for_asset(self, adam_id: str, pricing_param: str) -> list[AssignmentKey]:
        return [k for k in self._by_adam.get(adam_id, ()) if k[1] == pricing_param]

    def serials(self) -> list[str]:
        return list(self._by_serial)


class UserStore:
    """User records in stamp order; `current` maps a clientUserId to its latest record."""

    def __init__(self) -> None:
        self.records: dict[str, UserRecord] = {}
        self.current: dict[str, str] = {}
        self._by_cid: dict[str, list[str]] = {}
        self._keys: list[str] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def get(self, client_user_id: str) -> UserRecord | None:
        """The latest record of a clientUserId (possibly Retired)."""
        record_id = self.current.get(client_user_id)
        return None if record_id is None else self.records[record_id]

    def add(self, record: UserRecord) -> str:
        """Store a new record (a new incarnation when the clientUserId exists); returns its id."""
        cid = record.client_user_id
        history = self._by_cid.setdefault(cid, [])
        record_id = cid if not history else f"{cid}#{len(history)}"
        history.append(record_id)
        self.records[record_id] = record
        self.current[cid] = record_id
        self._keys = None
        return record_id

    def touch(self, client_user_id: str, stamp: int) -> UserRecord:
        """Mark the latest record of a clientUserId modified at `stamp` (moves it to the end)."""
        record_id = self.current[client_user_id]
        record = self.records.pop(record_id)
        record.stamp = stamp
        self.records[record_id] = record
        self._keys = None
        return record

    def record_ids(self) -> list[str]:
        if self._keys is None:
            self._keys = list(self.records)
        return self._keys

    def record_ids_since(self, since: int) -> list[str]:
        """The records written after counter `since`, in stamp order (only they are walked)."""
        return newest_since(((rid, record.stamp) for rid, record in reversed(self.records.items())), since)

    def record_ids_for(self, client_user_id: str) -> list[str]:
        ids = self._by_cid.get(client_user_id, [])
        return sorted(ids, key=lambda rid: self.records[rid].stamp)

    def stamp_of(self, record_id: str) -> int:
        return self.records[record_id].stamp
