"""Test helpers for the VPP plugin and for plugins built on it.

- :func:`add_simulated_account`: an account on a running simulator
  (``plugins.vpp.simulator.Simulator``).
- :func:`mirror_state` / :func:`apple_state`: the mirror (read through the ``mdm_vpp_*``
  hooks, as any plugin sees it) and Apple's state (the simulator's snapshot) in one shape;
  :func:`assert_mirror_equals_apple` compares them (and :func:`assert_license_counts_exact`
  checks the stored per-asset license counts).
- :func:`delete_licenses_as_another_writer`: licenses taken out of the mirror (and its counts)
  by another writer, e.g. between a sync's read and its apply.
- :func:`skip_client_waits`: the VPP client's waits (``Retry-After``, back-off) recorded and
  skipped on a :class:`SkippedWaits` clock, for integration tests of retries without sleeping.

The generic helpers (hosts on a temporary database, the event recorder, the CLI runner) are
in :mod:`mdm_core.testing`.
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from mdm_core.host import Host


def add_simulated_account(host: Host, sim: Any, folder: Path, name: str = "school", **options: Any) -> Path:
    """Write the simulator's token under ``folder`` and add it as account ``name``; returns the token file.

    ``options`` go to ``add_account`` (``interval``, ``take_over``).
    """
    from plugins.vpp.accounts import add_account

    token_file = sim.write_token(Path(folder) / f"{name}.vpptoken")
    add_account(host, name, str(token_file), service_url=sim.base_url, **options)
    return Path(token_file)


def apple_state(sim: Any) -> dict[str, Any]:
    """What Apple (the simulator) holds, in the shape of :func:`mirror_state`."""
    snap = sim.snapshot()
    assets = {key: {**asset, "supportedPlatforms": sorted(asset["supportedPlatforms"])} for key, asset in snap["assets"].items()}
    # Apple sends inviteCode only while the user is Registered
    users = {cid: {**user, "inviteCode": user["inviteCode"] if user["status"] == "Registered" else None} for cid, user in snap["users"].items()}
    return {"assets": assets, "assignments": set(snap["assignments"]), "users": users}


def mirror_state(host: Host, account: str | None = "school") -> dict[str, Any]:
    """The mirror as read through the plugin's hooks (Apple's field names)."""
    hook = host.pm.hook
    assets = {}
    for row in hook.mdm_vpp_assets(host=host, account=account):
        row = dict(row)
        row.pop("account")
        row["supportedPlatforms"] = sorted(row["supportedPlatforms"])
        assets[(row["adamId"], row["pricingParam"])] = row
    assignments = set()
    for row in hook.mdm_vpp_licenses(
        host=host, account=account, adam_id=None, serial_number=None, client_user_id=None, serial_numbers=None, client_user_ids=None
    ):
        kind = "serialNumber" if "serialNumber" in row else "clientUserId"
        assignments.add((row["adamId"], row["pricingParam"], kind, row[kind]))
    users = {
        row["clientUserId"]: {"email": row["email"], "status": row["status"], "idHash": row["idHash"], "inviteCode": row["inviteCode"]}
        for row in hook.mdm_vpp_users(host=host, account=account, client_user_ids=None)
    }
    return {"assets": assets, "assignments": assignments, "users": users}


def assert_mirror_equals_apple(host: Host, sim: Any, account: str = "school") -> None:
    """The account's mirror holds exactly Apple's assets, assignments and users."""
    mirror, apple = mirror_state(host, account), apple_state(sim)
    assert mirror["assets"] == apple["assets"]
    assert mirror["assignments"] == apple["assignments"]
    assert mirror["users"] == apple["users"]
    assert_license_counts_exact(host)


def assert_license_counts_exact(host: Host) -> None:
    """Every mirrored asset's stored license count is the licenses the mirror holds for it."""
    from sqlalchemy import func, select

    from mdm_core.db.typed import table_of
    from plugins.vpp.models import VppAsset, VppLicense

    A, L = table_of(VppAsset), table_of(VppLicense)
    with host.db.session() as session:
        stored = {(r.account_id, r.adam_id, r.pricing_param): r.license_count for r in session.execute(select(A))}
        key = (L.c.account_id, L.c.adam_id, L.c.pricing_param)
        held = {(r[0], r[1], r[2]): r[3] for r in session.execute(select(*key, func.count()).group_by(*key))}
    assert stored == {key: held.get(key, 0) for key in stored}, "vpp_asset.license_count differs from the mirrored licenses"


class SkippedWaits:
    """A clock for the VPP client on which its waits pass at once.

    ``sleep(seconds)`` records the wait in ``waits`` and returns; ``monotonic()`` is the real
    monotonic clock plus every wait skipped so far, so the client's time budget
    (``max_total_wait``) counts the waits as if they had been slept. Real time (request
    timeouts, slow answers) still passes as usual.
    """

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._skipped = 0.0
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
            self._skipped += max(0.0, seconds)

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._skipped

    def waited_at_least(self, seconds: float) -> int:
        """How many waits lasted ``seconds`` (a back-off is a deadline counted from Apple's
        answer, so a wait may start a few milliseconds after it and be that much shorter)."""
        with self._lock:
            return sum(1 for wait in self.waits if wait >= seconds - 0.05)

    def wall(self) -> float:
        """The wall clock (epoch seconds) plus every wait skipped so far: a back-off Apple asked
        for, recorded as a deadline on this clock, has passed once it was waited."""
        with self._lock:
            return time.time() + self._skipped


def delete_licenses_as_another_writer(host: Host, account_id: int, keys: list[tuple[str, str, str, str]]) -> None:
    """Delete these (adamId, pricingParam, kind, target) licenses of the account from the mirror
    and move its stored counts, in a transaction of its own, as another writer on the host does."""
    from sqlalchemy import delete

    from mdm_core.db.typed import table_of
    from plugins.vpp.license_counts import add_license_counts
    from plugins.vpp.models import VppLicense

    L = table_of(VppLicense)

    def write(session: Any) -> None:
        for a, p, k, t in keys:
            session.execute(delete(L).where(L.c.account_id == account_id, L.c.adam_id == a, L.c.pricing_param == p, L.c.kind == k, L.c.target == t))
            add_license_counts(session, account_id, {(a, p): -1})

    host.db.run_write(write)


def skip_client_waits(monkeypatch: pytest.MonkeyPatch) -> SkippedWaits:
    """Every VPP client the host makes from now on (syncs, account commands, scheduled jobs)
    waits on a new :class:`SkippedWaits` clock, which it returns."""
    from plugins.vpp import accounts
    from plugins.vpp.apple.client import AppsBooksClient

    clock = SkippedWaits()
    monkeypatch.setattr(accounts, "AppsBooksClient", functools.partial(AppsBooksClient, sleep=clock.sleep, monotonic=clock.monotonic, wall_clock=clock.wall))
    return clock
