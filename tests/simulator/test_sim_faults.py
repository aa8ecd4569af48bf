"""Fault injection: each kind fires as specified and disarms after `count`."""

from __future__ import annotations

import json
import time

import pytest
import requests


def test_rate_limit_with_and_without_retry_after(fresh):
    faults = fresh.sim.faults
    faults.add("rate_limit", endpoint="assets", count=1, retry_after=7)
    limited = fresh.get("assets")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()["errorNumber"] == 9646
    assert fresh.get("assets").status_code == 200
    assert faults.hits["rate_limit"] == 1 and faults.active == []
    faults.add("rate_limit", count=1)
    bare = fresh.get("users")
    assert bare.status_code == 429 and "Retry-After" not in bare.headers


def test_server_errors(fresh):
    fresh.sim.faults.add("server_error", endpoint="assignments", count=1, status=503, body="empty", retry_after=3)
    fresh.sim.faults.add("server_error", endpoint="users", count=1)
    unavailable = fresh.get("assignments")
    assert (unavailable.status_code, unavailable.content, unavailable.headers["Retry-After"]) == (503, b"", "3")
    internal = fresh.get("users")
    assert internal.status_code == 500 and internal.json()["errorNumber"] == 9603
    assert fresh.get("assignments").status_code == 200 and fresh.get("users").status_code == 200


def test_error_200(fresh):
    fresh.sim.faults.add("error_200", endpoint="client/config", count=1, error_number=9622)
    response = fresh.get("client/config")
    assert response.status_code == 200 and response.json()["errorNumber"] == 9622
    assert "locationName" in fresh.get("client/config").json()


def test_slow(fresh):
    fresh.sim.faults.add("slow", endpoint="service/config", count=1, seconds=0.2)
    started = time.monotonic()
    assert fresh.get("service/config").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_drop(fresh):
    fresh.sim.faults.add("drop", endpoint="status", count=1)
    with pytest.raises(requests.ConnectionError):
        fresh.get("status", {"eventId": "x"})
    assert fresh.get("status", {"eventId": "x"}).json()["errorNumber"] == 9708
    assert fresh.sim.faults.hits["drop"] == 1


def test_truncated_and_malformed_json(fresh):
    full = fresh.get("assets").content
    fresh.sim.faults.add("truncated_json", endpoint="assets", count=1)
    cut = fresh.get("assets")
    assert cut.status_code == 200 and int(cut.headers["Content-Length"]) == len(cut.content)
    assert cut.content == full[: len(full) // 2]
    with pytest.raises(ValueError):
        json.loads(cut.content)
    fresh.sim.faults.add("malformed_json", endpoint="users", count=1)
    garbage = fresh.get("users")
    assert garbage.status_code == 200
    with pytest.raises(ValueError):
        garbage.json()
    assert fresh.get("assets").content == full


def test_missing_and_extra_fields(fresh):
    fresh.sim.faults.add("missing_field", endpoint="assets", count=1, field="assignedCount")
    assets = fresh.get("assets").json()["assets"]
    assert assets and all("assignedCount" not in a and "availableCount" in a for a in assets)
    fresh.sim.faults.add("missing_field", endpoint="assignments", count=1, field="nextPageIndex")
    assert "nextPageIndex" not in fresh.get("assignments").json()
    fresh.sim.faults.add("extra_field", endpoint="users", count=1)
    page = fresh.get("users").json()
    assert "simUnknownField" in page and all("simUnknownField" in u for u in page["users"])
    fresh.sim.faults.add("extra_field", endpoint="assets", count=1, fields={"brandNew": 1})
    assert all(a["brandNew"] == 1 for a in fresh.get("assets").json()["assets"])
    assert all("assignedCount" in a and "brandNew" not in a for a in fresh.get("assets").json()["assets"])


@pytest.mark.parametrize("dataset", ["assignments", "users", "assets"])
def test_version_change_mid_paging(fresh, dataset):
    fresh.sim.faults.add("version_change", endpoint=dataset, count=1)
    first = fresh.get(dataset).json()
    second = fresh.get(dataset, {"pageIndex": 1}).json()
    assert first["versionId"] != second["versionId"]
    assert second["versionId"] == fresh.sim.versions()[dataset]
    third = fresh.get(dataset, {"pageIndex": 1}).json()
    assert third["versionId"] == second["versionId"]


def test_after_hits_a_later_page_only(fresh):
    fresh.sim.faults.add("rate_limit", endpoint="assignments", after=1, count=1)
    assert fresh.get("assignments").status_code == 200
    assert fresh.get("assignments", {"pageIndex": 1}).status_code == 429
    assert fresh.get("assignments", {"pageIndex": 1}).status_code == 200


def test_endpoint_matching_is_exact(fresh):
    fresh.sim.faults.add("rate_limit", endpoint="assets")
    assert fresh.get("assignments").status_code == 200
    key = fresh.sim.purchase(count=1)
    ok = fresh.post("assets/associate", {"assets": [{"adamId": key[0], "pricingParam": key[1]}], "serialNumbers": ["M1"]})
    assert ok.status_code == 200
    assert fresh.get("assets").status_code == 429 and fresh.get("assets").status_code == 429
    fresh.sim.faults.clear()
    assert fresh.get("assets").status_code == 200


def test_unknown_fault_kind_rejected(fresh):
    with pytest.raises(ValueError):
        fresh.sim.faults.add("explode")


def test_state_faults(fresh):
    sim = fresh.sim
    sim.faults.claim_by_other_mdm(id="x-1", name="Rival", metadata="rival.example.com")
    expected = {"id": "x-1", "name": "Rival", "metadata": "rival.example.com"}
    assert fresh.get("client/config").json()["mdmInfo"] == expected
    assert fresh.get("users").json()["mdmInfo"] == expected
    sim.faults.expire_token()
    assert fresh.get("assets").json()["errorNumber"] == 9621
    sim.faults.clear()  # clearing makes the token valid again
    assert fresh.get("assets").status_code == 200
    sim.faults.revoke_token()
    assert fresh.get("assets").json()["errorNumber"] == 9625
    sim.faults.restore_token()
    assert fresh.get("assets").status_code == 200
    assert {"claim_by_other_mdm", "expire_token", "revoke_token", "restore_token"} <= set(sim.faults.hits)
