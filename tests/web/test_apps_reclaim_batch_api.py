"""``POST /api/v1/apps/{app}/reclaim`` with many holders (a class's iPads given back at once):
the app's licenses and its account's assets are read once for the batch, not once per holder
(50 devices read them 50 times), with the same line per license or per holder."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from mdm_core.host import Host
from plugins.mobile_apps import reclaims

from .conftest import PASSWORD, WEB_CONFIG, token_for


class Walked(list[Any]):
    """A list that counts how many times it is walked through."""

    walked = 0

    def of(self, rows: list[Any]) -> Walked:
        self[:] = rows
        return self

    def __iter__(self) -> Any:
        self.walked += 1
        return super().__iter__()


@pytest.fixture
def class_sim() -> Any:
    """A simulator with one app licensed to 50 iPads (and 10 seeded serials holding none of it)."""
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=5, assets=2, devices=60, users=3, page_size=200, async_delay=0) as sim:
        yield sim


def test_fifty_holders_are_reclaimed_with_one_read_of_licenses_and_assets(
    make_host: Any, database_url: str, class_sim: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app
    from plugins.mobile_apps.vpp_port import VppPort
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    adam_id, _ = class_sim.purchase(count=60)
    serials = sorted(class_sim.state.device_serials())
    for serial in serials[:50]:
        assert class_sim.assign_in_portal(adam_id, serial_number=serial)
    host: Host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD, "admin")
    add_simulated_account(host, class_sim, project_dir)
    assert sync_account(host, "school")["status"] == "ok"

    reads = {"assets": 0, "licenses": 0}
    for name in reads:
        real = getattr(VppPort, name)

        def counted(self: VppPort, *args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            reads[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(VppPort, name, counted)
    walks = Walked()
    real_reclaim = reclaims.reclaim
    monkeypatch.setattr(reclaims, "reclaim", lambda *args, **kwargs: walks.of(real_reclaim(*args, **kwargs)))
    wanted = [s.lower() for s in serials[:50]] + [serials[55]]  # as typed; the last holds none
    with TestClient(create_app(host)) as client:
        response = client.post(f"/api/v1/apps/{adam_id}/reclaim", headers=token_for(host, "admin"), json={"devices": wanted})
    assert response.status_code == 200, response.text
    assert response.json()["results"] == [
        {"target": s.lower(), "adamId": adam_id, "pricingParam": "STDQ", "status": "done", "message": "license reclaimed"} for s in serials[:50]
    ] + [
        {
            "target": serials[55],
            "adamId": None,
            "pricingParam": None,
            "status": "unknown",
            "message": "not enrolled in this MDM: check the serial number against GET /api/v1/devices",
        }
    ]
    assert reads == {"assets": 1, "licenses": 1}, reads  # the old code: 51 of each
    assert walks.walked <= 2, walks.walked  # the reclaims answered, indexed by holder once: it searched them once per holder (52)
    held = {a[3] for a in class_sim.snapshot()["assignments"] if a[0] == adam_id}
    assert not held & set(serials[:50])
