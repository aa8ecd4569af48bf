"""The same host on PostgreSQL: inventory, outbox, locks and a full + incremental VPP sync.

Runs when ``MDM_TEST_POSTGRES_URL`` names a database the tests may wipe (``.ci/run`` starts
a local PostgreSQL server and sets it); without it the module is skipped, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import create_engine, text

from mdm_core import inventory
from mdm_core.host import Host

PG_URL = os.environ.get("MDM_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="set MDM_TEST_POSTGRES_URL to run the PostgreSQL tests (.ci/run does)")


@pytest.fixture
def pg_host(make_host: Callable[..., Host]) -> Host:
    """A host on a freshly emptied PostgreSQL database."""
    assert PG_URL
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return make_host(database_url=PG_URL)


def _mirror(host: Host) -> set[tuple[str, str, str, str]]:
    from plugins.vpp.views import list_licenses

    return {
        (l["adamId"], l["pricingParam"], "serialNumber" if "serialNumber" in l else "clientUserId", l.get("serialNumber") or l.get("clientUserId"))
        for l in list_licenses(host, "school")
    }


def test_sync_on_postgres_mirrors_apple_after_full_and_incremental(pg_host: Host, simulator: Any, project_dir: Path) -> None:
    from plugins.vpp.accounts import add_account
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.views import list_assets

    assert pg_host.db.url.get_backend_name() == "postgresql"
    serial = simulator.state.device_serials()[0]
    inventory.add_device(pg_host, serial, "iOS")
    simulator.write_token(project_dir / "t.vpptoken")
    add_account(pg_host, "school", str(project_dir / "t.vpptoken"), service_url=simulator.base_url)
    assert sync_account(pg_host, "school")["status"] == "ok"
    assert _mirror(pg_host) == {tuple(a) for a in simulator.snapshot()["assignments"]}

    adam_id, pricing, _, target = next(tuple(a) for a in simulator.snapshot()["assignments"] if a[2] == "serialNumber")
    simulator.remove_in_portal(adam_id, pricing, serial_number=target)
    new_adam, _ = simulator.purchase(count=4)
    report = sync_account(pg_host, "school")
    assert (report["status"], report["mode"]) == ("ok", "incremental")
    assert report["counts"]["licenses"]["removed"] == 1
    assert _mirror(pg_host) == {tuple(a) for a in simulator.snapshot()["assignments"]}
    assert new_adam in {a["adamId"] for a in list_assets(pg_host, "school")}


def test_inventory_outbox_and_locks_on_postgres(pg_host: Host, tmp_path: Path) -> None:
    from mdm_core.errors import UsageError
    from mdm_core.locks import LockBusy

    csv = tmp_path / "devices.csv"
    csv.write_text("serial_number,platform,udid,model,user\nAAA111,iOS,,,\nBBB222,windows,,,\n")
    with pytest.raises(UsageError, match="line 3"):
        inventory.import_devices(pg_host, csv)
    assert inventory.list_devices(pg_host) == []

    inventory.add_device(pg_host, "AAA111", "ios")
    inventory.remove_device(pg_host, "AAA111")
    assert pg_host.deliver_events() == 0  # delivered as part of each change

    first, second = pg_host.lock("vpp.sync.1", ttl=60), pg_host.lock("vpp.sync.1", ttl=60)
    first.acquire()
    with pytest.raises(LockBusy, match="already running"):
        second.acquire(wait=0)
    first.release()
    second.acquire()
    second.release()
