"""A JSON body sent as ``curl -d`` sends it, labelled ``application/x-www-form-urlencoded``:
the check for text no database holds parsed it as a form, which consumed the body, and every
POST and PATCH of the API then answered 500 "internal error" (Starlette: "Stream consumed")."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from mdm_core import inventory
from mdm_core.host import Host

from .conftest import WEB_CONFIG, token_for

CURL_D = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d '{...}'` sends without -H


def test_json_sent_as_curl_d_sends_it_is_read_on_both_databases(make_host: Any, database_url: str, simulator: Any, project_dir: Any) -> None:
    from mdm_core.web.app import create_app
    from plugins.vpp.accounts import list_accounts
    from plugins.vpp.sync.run import sync_account

    host: Host = make_host(config=WEB_CONFIG, database_url=database_url)
    token = simulator.write_token(project_dir / "school.vpptoken").read_text()
    headers = {**token_for(host, "admin"), **CURL_D}
    with TestClient(create_app(host), headers=headers, raise_server_exceptions=False) as api:
        added = api.post("/api/v1/vpp/accounts", content=json.dumps({"name": "school", "token": token, "service_url": simulator.base_url}))
        assert added.status_code == 201, added.text
        assert token not in added.text
        assert sync_account(host, "school")["status"] == "ok"

        patched = api.patch("/api/v1/vpp/accounts/school", content=json.dumps({"interval_seconds": 7200}))
        assert patched.status_code == 200 and patched.json()["interval_seconds"] == 7200, patched.text

        inventory.add_device(host, "CURLDEV00001", "iOS")
        asset = next(a.to_json() for a in simulator.state.assets.values() if a.to_json()["deviceAssignable"])
        body = json.dumps({"devices": ["CURLDEV00001"]})
        installed = api.post(f"/api/v1/apps/{asset['adamId']}/install", content=body)
        if installed.status_code == 422:  # the adamId has several pricing params: any of its apps
            app = next(a for a in api.get("/api/v1/apps").json()["items"] if a["adamId"] == asset["adamId"])
            installed = api.post(f"/api/v1/apps/{app['id']}/install", content=body)
        assert installed.status_code == 200 and installed.json()["results"][0]["status"] == "queued", installed.text

        nul = api.post(f"/api/v1/apps/{asset['adamId']}/reclaim", content=json.dumps({"devices": ["CURL\x00DEV"]}))
        assert (nul.status_code, nul.json()) == (422, {"error": "the JSON body holds a NUL character, which cannot be stored: remove it"})
        assert api.post("/api/v1/alerts/retry", content=b"").json() == {"queued": 0}  # no body: every failed delivery, as before
        assert api.post("/api/v1/apps/1/install", content=b"not json").status_code == 400

    assert [a["interval_seconds"] for a in list_accounts(host)] == [7200]
