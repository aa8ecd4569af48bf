"""Property: for random sequences of Apple-side changes, full and incremental syncs and injected
faults (transient ones that retries absorb, fatal ones that fail the sync), after EVERY
successful sync the mirror equals Apple's state, and after a failed one it is unchanged."""

from __future__ import annotations

import contextlib
import functools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdm_core.host import create_host
from plugins.vpp.accounts import add_account, remove_account
from plugins.vpp.sync.run import sync_account
from plugins.vpp.testing import apple_state, mirror_state

from .conftest import RELIABLE_CONFIG, count_figure, mirror_dump, stage_rows

TRANSIENT = [
    dict(kind="rate_limit", count=1),
    dict(kind="server_error", status=503, count=2),
    dict(kind="server_error", status=500, body="empty", count=1),
    dict(kind="error_200", error_number=9603, count=1),
    dict(kind="drop", count=1),
    dict(kind="extra_field", count=None),
    dict(kind="error_200", error_number=9650, count=1),
]
FATAL = [
    dict(kind="malformed_json", count=1),
    dict(kind="truncated_json", count=1),
    dict(kind="error_200", error_number=9622, count=1),
    dict(kind="server_error", status=503, count=None),
    dict(kind="missing_field", field="assignedCount", count=None),
    dict(kind="missing_field", field="clientUserId", count=None),
    dict(kind="error_200", error_number=9650, count=None),
]
ENDPOINTS = ["assets", "assignments", "users"]

changes = st.one_of(
    st.tuples(st.just("purchase"), st.integers(1, 3)),
    st.tuples(st.just("assign_in_portal"), st.integers(0, 10**6)),
    st.tuples(st.just("remove_in_portal"), st.integers(0, 10**6)),
    st.tuples(st.just("retire_user"), st.integers(0, 10**6)),
    st.tuples(st.just("create_user"), st.just(0)),
    st.tuples(st.just("remove_asset"), st.integers(0, 10**6)),
    st.tuples(st.just("mutate_fraction"), st.integers(1, 30)),
)
syncs = st.tuples(st.just("sync"), st.booleans())
faulted = st.tuples(st.just("transient"), st.integers(0, len(TRANSIENT) - 1), st.sampled_from(ENDPOINTS), st.integers(0, 2), st.booleans()) | st.tuples(
    st.just("fatal"), st.integers(0, len(FATAL) - 1), st.sampled_from(ENDPOINTS), st.integers(0, 2), st.booleans()
)
steps = st.lists(st.one_of(changes, changes, syncs, faulted), min_size=1, max_size=10)


def _change(sim: Any, action: str, n: int) -> None:
    snap = sim.snapshot()
    assets, assignments, users = sorted(snap["assets"]), sorted(snap["assignments"]), sorted(snap["users"])
    if action == "purchase":
        sim.purchase(count=n)
    elif action == "assign_in_portal" and assets:
        adam, pricing = assets[n % len(assets)]
        serials = sim.state.device_serials()
        with contextlib.suppress(ValueError):  # no license left, or not device-assignable
            sim.assign_in_portal(adam, pricing, serial_number=serials[n % len(serials)])
    elif action == "remove_in_portal" and assignments:
        adam, pricing, kind, value = assignments[n % len(assignments)]
        with contextlib.suppress(ValueError):  # not revocable
            sim.remove_in_portal(adam, pricing, **({"serial_number": value} if kind == "serialNumber" else {"client_user_id": value}))
    elif action == "retire_user" and users:
        sim.retire_user(users[n % len(users)])
    elif action == "create_user":
        sim.create_user()
    elif action == "remove_asset" and assets:
        sim.remove_asset(*assets[n % len(assets)])
    elif action == "mutate_fraction":
        sim.mutate_fraction(n / 100, seed=n)


@pytest.fixture(scope="module")
def prop_host(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One host for every example (each example adds, then removes, its own account)."""
    import plugins.vpp.plugin

    folder = tmp_path_factory.mktemp("prop")
    (folder / "conf").mkdir()
    (folder / "conf" / "mdm.toml").write_text(RELIABLE_CONFIG)
    host = create_host(
        folder / "conf" / "mdm.toml", environ={"MDM_SECRET_KEY": "k"}, plugins=[plugins.vpp.plugin], database_url=f"sqlite:///{folder / 'mdm.sqlite3'}"
    )
    yield host
    host.close()


@pytest.mark.slow  # 40 examples of syncs
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), page_size=st.integers(3, 5), plan=steps)
def test_mirror_equals_apple_after_every_sync(prop_host: Any, monkeypatch: pytest.MonkeyPatch, seed: int, page_size: int, plan: list[tuple[Any, ...]]) -> None:
    from plugins.vpp import accounts
    from plugins.vpp.apple.transport import RetryPolicy
    from plugins.vpp.simulator import Simulator

    monkeypatch.setattr(accounts, "RetryPolicy", functools.partial(RetryPolicy, base_delay=0.01))
    count_figure("property_examples")
    host = prop_host
    with Simulator(seed=seed, assets=4, devices=8, users=6, page_size=page_size, async_delay=0) as sim, tempfile.TemporaryDirectory() as folder:
        add_account(host, "school", str(sim.write_token(Path(folder) / "t.vpptoken")), service_url=sim.base_url)
        try:
            for step in [*plan, ("sync", False)]:
                count_figure("property_steps")
                if step[0] not in ("sync", "transient", "fatal"):
                    _change(sim, step[0], step[1])
                    continue
                full = step[-1] if step[0] != "sync" else step[1]
                armed = None
                if step[0] != "sync":
                    spec = dict((TRANSIENT if step[0] == "transient" else FATAL)[step[1]])
                    kind, count = spec.pop("kind"), spec.pop("count")
                    armed = sim.faults.add(kind, endpoint=step[2], count=count, after=step[3], **spec)
                before = mirror_dump(host)
                report = sync_account(host, "school", full=full)
                sim.faults.clear()
                if step[0] == "transient":
                    assert report["status"] == "ok", (step, report)
                if report["status"] == "ok":
                    assert mirror_state(host) == apple_state(sim), step
                else:
                    assert step[0] == "fatal" and armed is not None and armed.fired, (step, report)
                    assert report["error_type"] and mirror_dump(host) == before, step
                    if report["error_type"] == "TokenInvalidError":
                        host_set_valid(host, sim, folder)
                assert stage_rows(host) == 0
        finally:
            remove_account(host, "school")


def host_set_valid(host: Any, sim: Any, folder: str) -> None:
    """The user renews the token after a token error (the simulator's is valid again)."""
    from plugins.vpp.accounts import set_account

    set_account(host, "school", token_file=str(sim.write_token(Path(folder) / "t2.vpptoken")))
