"""``POST /api/v1/apps/{app}/install`` with ``"devices"`` and ``"users"`` is all or nothing as a
whole: with 10 licenses left for 6 devices and 6 users, the devices were licensed and the users
then refused (each group checked alone); now the 12 are counted together and each refused, Apple
asked nothing, no install recorded."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select

from mdm_core.host import Host
from mdm_core.inventory import add_device, add_user

from .conftest import PASSWORD, WEB_CONFIG, token_for

PUPILS = [f"pupil-{n}" for n in range(6)]
CARTS = [f"CARTPAD{n:05d}" for n in range(6)]  # a cart of shared iPads: device licenses


def test_devices_and_users_short_of_licenses_together_are_each_refused(make_host: Any, database_url: str, project_dir: Any) -> None:
    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app
    from plugins.mobile_apps.models import Install
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    with Simulator(seed=17, assets=1, devices=0, users=0, async_delay=0) as sim:
        for pupil in PUPILS:
            sim.create_user(client_user_id=pupil)
            sim.accept_invite(pupil)
        adam_id, _ = sim.purchase(count=10)
        host: Host = make_host(config=WEB_CONFIG, database_url=database_url)
        add_admin(host, "alice", PASSWORD, "admin")
        add_simulated_account(host, sim, project_dir)
        for pupil in PUPILS:
            add_user(host, pupil, email=f"{pupil}@school.example")
        for serial in CARTS:
            add_device(host, serial, "iPadOS")
        assert sync_account(host, "school")["status"] == "ok"
        url, auth = f"/api/v1/apps/{adam_id}/install", token_for(host, "admin")
        with TestClient(create_app(host)) as client:
            asked = sim.requests["assets/associate"]
            refused = client.post(url, headers=auth, json={"devices": CARTS, "users": PUPILS})
            assert refused.status_code == 409, refused.text
            results = refused.json()["results"]
            assert [(r["target"], r["status"]) for r in results] == [(t, "refused") for t in [*CARTS, *PUPILS]]
            assert all("not enough licenses: 10 available in account 'school', 12 needed" in r["message"] for r in results)
            assert sim.requests["assets/associate"] == asked  # Apple asked nothing
            assert not [a for a in sim.snapshot()["assignments"] if a[0] == adam_id]
            with host.db.session() as session:
                assert not list(session.exec(select(Install)))  # nothing recorded as licensed (or asked)

            done = client.post(url, headers=auth, json={"devices": CARTS, "users": PUPILS[:4]})  # 10 for 10
            assert done.status_code == 200, done.text
            statuses = {(r["target"], r["status"]) for r in done.json()["results"]}
        assert statuses >= {*((s, "queued") for s in CARTS), *((p, "licensed") for p in PUPILS[:4])}
        held = {a[3] for a in sim.snapshot()["assignments"] if a[0] == adam_id}
        assert held == {*CARTS, *PUPILS[:4]}
