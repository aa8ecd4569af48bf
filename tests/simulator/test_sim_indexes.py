"""The simulator's indexes stay current through every kind of write, and a read after a write
builds none of them again (Apple's are current when its data changes: the first read after a
change costs what a repeated one does, so a benchmark's timed sync does not pay for the change
made before its clock)."""

from __future__ import annotations

import tracemalloc

from plugins.vpp.simulator import Simulator
from plugins.vpp.simulator.models import DEVICE
from plugins.vpp.simulator.state import SimState


def _assert_current(state: SimState) -> None:
    """Every asset's re-read and every since-listing equal what the rows themselves say."""
    stamps = state.assignments.stamps
    for adam_id in {key[0] for key in state.assets}:
        held = [key for key in stamps if key[0] == adam_id]  # stamp order: rows are kept in write order
        assert state.query_assignments(adam_id=adam_id) == held, adam_id
        for pricing_param in {key[1] for key in held}:
            assert state.query_assignments(adam_id=adam_id, pricing_param=pricing_param) == [k for k in held if k[1] == pricing_param]
    for since in range(state.versions.counters["assignments"] + 1):
        assert state.query_assignments(since=since) == [key for key, stamp in stamps.items() if stamp > since], since
    records = state.users.records
    for since in range(state.versions.counters["users"] + 1):
        assert state.query_users(since=since) == [rid for rid, record in records.items() if record.stamp > since], since


def test_indexes_stay_current_after_every_kind_of_write():
    sim = Simulator(seed=3, assets=8, devices=80, users=60, assignments=400, async_delay=0)
    state = sim.state
    _assert_current(state)  # every index read once before the writes, as a sync reads them
    sim.mutate_fraction(0.2, seed=1)  # many removals and additions at once, users retired and created
    _assert_current(state)
    device_asset = next(a for a in state.assets.values() if a.device_assignable and a.revocable)
    sim.purchase(device_asset.adam_id, device_asset.pricing_param, count=5)
    sim.assign_in_portal(device_asset.adam_id, device_asset.pricing_param, serial_number="SIMIDX000001")
    _assert_current(state)
    gone = next(k for k in state.assignments.keys_for_adam(device_asset.adam_id) if k[2] == DEVICE)
    assert sim.remove_in_portal(gone[0], gone[1], serial_number=gone[3])
    _assert_current(state)
    user = next(cid for cid in state.user_ids("Associated") if state.assignments.keys_for_user(cid))
    assert sim.retire_user(user)  # its licenses revoked
    _assert_current(state)
    largest = max(state.assets, key=lambda key: len(state.assignments.keys_for_asset(*key)))
    assert sim.remove_asset(*largest)  # every license of the asset at once
    _assert_current(state)
    assert sim.state.query_assignments(adam_id=largest[0]) == [k for k in state.assignments.stamps if k[0] == largest[0]]


def test_first_read_after_a_write_builds_no_index():
    sim = Simulator(seed=5, assets=2, devices=20000, users=3000, assignments=12000, async_delay=0)
    state = sim.state
    before = dict(state.versions.counters)
    adam_id = next(iter(state.assets))[0]
    for adam in {key[0] for key in state.assets}:
        state.query_assignments(adam_id=adam)  # read once before the change, as the previous sync did
    sim.mutate_fraction(0.002, seed=1)  # 24 assignments and 6 users change, over 12,000 and 3,000
    changed = [key for key, stamp in state.assignments.stamps.items() if stamp > before["assignments"]]
    assert adam_id in {key[0] for key in changed}
    tracemalloc.start()
    try:
        assert len(state.query_assignments(adam_id=adam_id)) > 3000  # the re-read of a changed asset
        assert state.query_assignments(since=before["assignments"]) == changed  # the since-listings
        assert 0 < len(state.query_users(since=before["users"])) < 20
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a list of the location's 12,000 assignments is 96 kB, of an asset's 6,000 48 kB, of the
    # 3,000 users' records 24 kB: none of them is built again
    assert peak < 8_000, f"the first reads after a write allocated {peak:,} bytes"
