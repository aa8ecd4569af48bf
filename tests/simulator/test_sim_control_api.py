"""The /_sim/ HTTP control API."""

from __future__ import annotations


def _control(api, method, route, body=None):
    return api.session.request(method, f"{api.sim.root_url}/_sim/{route}", json=body, timeout=5)


def test_faults_over_http(fresh):
    armed = _control(fresh, "POST", "faults", {"kind": "rate_limit", "endpoint": "users", "count": 2, "retry_after": 5})
    assert armed.status_code == 201 and armed.json()["fault"]["kind"] == "rate_limit"
    assert fresh.get("users").status_code == 429
    listed = _control(fresh, "GET", "faults").json()
    assert listed["hits"] == {"rate_limit": 1} and listed["faults"][0]["fired"] == 1
    assert _control(fresh, "DELETE", "faults").json() == {"cleared": True}
    assert fresh.get("users").status_code == 200
    assert _control(fresh, "POST", "faults", {"kind": "nope"}).status_code == 400
    assert _control(fresh, "POST", "faults", {"kind": "drop", "bogus": 1}).status_code == 201
    assert _control(fresh, "DELETE", "faults").ok
    assert _control(fresh, "POST", "faults", {"kind": "revoke_token"}).status_code == 201
    assert fresh.get("users").json()["errorNumber"] == 9625
    assert _control(fresh, "POST", "faults", {"kind": "claim_by_other_mdm", "name": "X"}).status_code == 201
    assert _control(fresh, "DELETE", "faults").ok
    assert fresh.get("users").json()["mdmInfo"]["name"] == "X"


def test_changes_over_http(fresh):
    sim = fresh.sim
    bought = _control(fresh, "POST", "change", {"action": "purchase", "count": 4, "product_type": "App"})
    assert bought.status_code == 200
    adam_id, pricing = bought.json()["result"]
    assert sim.snapshot()["assets"][(adam_id, pricing)]["totalCount"] == 4
    assert bought.json()["versions"] == sim.versions()
    assert _control(fresh, "POST", "change", {"action": "assign", "adam_id": adam_id, "pricing_param": pricing, "serial_number": "CTRL00000001"}).ok
    assert (adam_id, pricing, "serialNumber", "CTRL00000001") in sim.snapshot()["assignments"]
    assert _control(fresh, "POST", "change", {"action": "remove", "adam_id": adam_id, "pricing_param": pricing, "serial_number": "CTRL00000001"}).ok
    assert (adam_id, pricing, "serialNumber", "CTRL00000001") not in sim.snapshot()["assignments"]
    user = sim.state.user_ids("Associated")[0]
    assert _control(fresh, "POST", "change", {"action": "retire_user", "client_user_id": user}).json()["result"]
    assert sim.snapshot()["users"][user]["status"] == "Retired"
    assert _control(fresh, "POST", "change", {"action": "remove_asset", "adam_id": adam_id, "pricing_param": pricing}).json()["result"] is True
    assert (adam_id, pricing) not in sim.snapshot()["assets"]
    mutated = _control(fresh, "POST", "change", {"action": "mutate_fraction", "fraction": 0.2, "seed": 1})
    assert mutated.json()["result"]["assignments_added"] > 0
    assert _control(fresh, "POST", "change", {"action": "expire_token"}).ok
    assert fresh.get("assets").json()["errorNumber"] == 9621
    assert _control(fresh, "POST", "change", {"action": "restore_token"}).ok
    assert _control(fresh, "POST", "change", {"action": "claim_by_other_mdm", "id": "o"}).ok
    assert fresh.get("assets").json()["mdmInfo"]["id"] == "o"
    assert _control(fresh, "POST", "change", {"action": "revoke_token"}).ok
    assert fresh.get("assets").json()["errorNumber"] == 9625
    assert _control(fresh, "POST", "change", {"action": "explode"}).status_code == 400
    assert _control(fresh, "POST", "change", {"action": "purchase", "nope": 1}).status_code == 400


def test_snapshot_and_token_over_http(fresh):
    sim = fresh.sim
    snap = _control(fresh, "GET", "snapshot").json()
    python = sim.snapshot()
    assert {tuple(row) for row in snap["assignments"]} == python["assignments"]
    assert {(a["adamId"], a["pricingParam"]): a for a in snap["assets"]} == python["assets"]
    assert snap["users"] == python["users"]
    assert snap["versions"] == sim.versions() == _control(fresh, "GET", "versions").json()
    token = _control(fresh, "GET", "token").json()
    assert token["token"] == sim.token and token["status"] == "valid"
    assert _control(fresh, "GET", "nothing").status_code == 404
