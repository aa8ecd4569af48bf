"""``POST /api/v1/apps/{app}/reclaim`` and ``POST /api/v1/apps/reclaim`` with ``{"unused": true}``:
the licenses held by devices removed from this MDM, as ``mdm apps reclaim APP|--all --unused``
(the API had only one holder's reclaim): the same candidates, dry run and confirmation."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from mdm_core import inventory
from mdm_core.host import Host

from .conftest import PASSWORD, WEB_CONFIG, token_for


def _school(make_host: Any, database_url: str, simulator: Any, project_dir: Any) -> Host:
    from mdm_core.web.access import add_admin
    from plugins.vpp.accounts import add_account
    from plugins.vpp.sync.run import sync_account

    host: Host = make_host(config=WEB_CONFIG, database_url=database_url)
    add_admin(host, "alice", PASSWORD, "admin")
    add_account(host, "school", str(simulator.write_token(project_dir / "school.vpptoken")), service_url=simulator.base_url)
    assert sync_account(host, "school")["status"] == "ok"
    return host


def _removed_holder(host: Host, simulator: Any) -> tuple[tuple[str, str], str, str]:
    """A revocable app's asset key, a device holding its license that this MDM removed (Apple
    unreachable for the removal's revoke, so the license stays), and a holder never enrolled."""
    snap = simulator.snapshot()
    for key, asset in sorted(simulator.state.assets.items()):
        holders = sorted(a[3] for a in snap["assignments"] if (a[0], a[1]) == key and a[2] == "serialNumber" and a[3] in simulator.state.device_serials())
        if asset.product_type == "App" and asset.revocable and len(holders) >= 2:
            inventory.add_device(host, holders[0], "iOS")
            simulator.faults.add("drop", endpoint="assets/revoke")
            inventory.remove_device(host, holders[0])
            simulator.faults.clear()
            return key, holders[0], holders[1]
    raise AssertionError("the simulator's seed has no such asset")


def _held(simulator: Any, key: tuple[str, str], target: str) -> bool:
    return any((a[0], a[1]) == key and a[3] == target for a in simulator.snapshot()["assignments"])


def test_unused_licenses_are_reclaimed_through_the_api_as_the_cli_does(make_host: Any, database_url: str, simulator: Any, project_dir: Any) -> None:
    host = _school(make_host, database_url, simulator, project_dir)
    key, removed, stranger = _removed_holder(host, simulator)
    admin, viewer = token_for(host, "admin"), {"Authorization": token_for(host, "viewer")["Authorization"]}
    from mdm_core.web.app import create_app

    with TestClient(create_app(host)) as client:
        url = f"/api/v1/apps/{key[0]}/reclaim"
        assert client.post(url, headers=viewer, json={"unused": True, "yes": True}).status_code == 403

        dry = client.post(url, headers=admin, json={"unused": True, "dry_run": True})
        assert dry.status_code == 200, dry.text
        assert dry.json() == {
            "ok": True,
            "dry_run": True,
            "counts": {"reclaimable": 1, "irrevocable": 0},
            "results": [
                {"target": removed, "account": "school", "adamId": key[0], "pricingParam": key[1], "status": "reclaimable", "message": "would be reclaimed"}
            ],
        }
        unconfirmed = client.post(url, headers=admin, json={"unused": True})  # the command's question, as one line
        assert unconfirmed.status_code == 409
        assert unconfirmed.json()["error"] == (
            'this would reclaim 1 license(s) held by devices and users removed from this MDM: add "yes": true to do it, '
            'or "dry_run": true to list what it would do; nothing was reclaimed'
        )
        for bad in ({"unused": True, "devices": [removed]}, {"unused": "yes"}, {"devices": [removed], "yes": True}, {"unused": True, "force": True}):
            response = client.post(url, headers=admin, json=bad)
            assert response.status_code == 422, (bad, response.text)
        assert _held(simulator, key, removed)  # nothing changed so far

        done = client.post(url, headers=admin, json={"unused": True, "yes": True})
        assert done.status_code == 200, done.text
        assert [(r["target"], r["status"], r["message"]) for r in done.json()["results"]] == [(removed, "done", "license reclaimed")]
        assert not _held(simulator, key, removed) and _held(simulator, key, stranger)  # never in this MDM: kept

        again = client.post("/api/v1/apps/reclaim", headers=admin, json={"unused": True, "dry_run": True})  # every app: nothing left
        assert again.status_code == 200 and (removed, key[0]) not in {(r["target"], r["adamId"]) for r in again.json()["results"]}
        assert client.post("/api/v1/apps/reclaim", headers=admin, json={}).status_code == 422  # --all needs --unused
        missing = client.post("/api/v1/apps/0000/reclaim", headers=admin, json={"unused": True, "dry_run": True})
        assert missing.status_code == 404 and missing.json()["error"].startswith("no application '0000'")


def test_reclaim_of_every_app_asks_for_confirmation_and_reports_irrevocable(make_host: Any, database_url: str, simulator: Any, project_dir: Any) -> None:
    """``POST /api/v1/apps/reclaim`` is ``mdm apps reclaim --all --unused``."""
    host = _school(make_host, database_url, simulator, project_dir)
    key, removed, _ = _removed_holder(host, simulator)
    admin = token_for(host, "admin")
    from mdm_core.web.app import create_app

    with TestClient(create_app(host)) as client:
        assert client.post("/api/v1/apps/reclaim", headers=admin, json={"unused": True}).status_code == 409
        assert _held(simulator, key, removed)
        done = client.post("/api/v1/apps/reclaim", headers=admin, json={"unused": True, "yes": True})
        assert (removed, "done") in {(r["target"], r["status"]) for r in done.json()["results"]}, done.text
        assert done.status_code == (200 if done.json()["ok"] else 409)
        assert not _held(simulator, key, removed)
