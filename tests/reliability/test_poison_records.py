"""Poison records (issue 17 point 12): values SQLite would store but PostgreSQL refuses (an
``adamId`` of 100,000 characters, a NUL byte, an ``assignedCount`` of 2**70, a lone UTF-16
surrogate), and values that are not what Apple documents (serial numbers that are not strings),
failed every sync with raw SQL and a traceback, or were stored as ``"['A', 'B']"``. They are
checked when the page is parsed: the sync fails with one line naming the record, the same on
both databases, and nothing is written. Licenses of an asset Apple does not list are reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import EventRecorder as Recorder
from mdm_core.testing import MdmRunner
from plugins.vpp.sync.run import sync_account

from .conftest import RELIABLE_CONFIG, count_figure, database_param, mirror_dump, stage_rows

LONG_ID = "1" * 100_000

#: (listing, record field, poison value, what the one-line error must say)
POISONS = {
    "adamId-100000-chars": ("assets", "adamId", LONG_ID, "'adamId' has 100000 characters (at most 32)"),
    "email-with-NUL": ("users", "email", "kid\x00@example.org", "'email' holds a NUL character"),
    "assignedCount-2**70": ("assets", "assignedCount", 2**70, "'assignedCount' is out of range (1180591620717411303424"),
    "negative-availableCount": ("assets", "availableCount", -5, "'availableCount' is out of range (-5"),
    "lone-surrogate-serial": ("assignments", "serialNumber", "ABC\ud800DEF", "'serialNumber' holds a lone UTF-16 surrogate"),
    "serialNumber-list": ("assignments", "serialNumber", ["A", "B"], "'serialNumber' is not a string (list): \"['A', 'B']\""),
    "clientUserId-300-chars": ("users", "clientUserId", "u" * 300, "'clientUserId' has 300 characters (at most 255)"),
    "inviteCode-NUL": ("users", "inviteCode", "\x00", "'inviteCode' holds a NUL character"),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    return database_param(request, project_dir)


@pytest.fixture
def synced_host(make_host: Callable[..., Host], recorder: Recorder, small_sim: Any, project_dir: Path, database_url: str) -> Host:
    import plugins.vpp.plugin
    from plugins.vpp.accounts import add_account

    host = make_host(plugins=[plugins.vpp.plugin, recorder], config=RELIABLE_CONFIG, database_url=database_url)
    add_account(host, "school", str(small_sim.write_token(project_dir / "school.vpptoken")), service_url=small_sim.base_url)
    assert sync_account(host, "school")["status"] == "ok"
    return host


def poison(sim: Any, listing: str, change: Callable[[list[dict[str, Any]]], None]) -> None:
    """Every page of ``listing`` the simulator answers goes through ``change`` (its records)."""
    original = sim.api._get[listing]

    def handler(query: Any) -> Any:
        response = original(query)
        if response.status == 200 and isinstance(response.payload, dict) and response.payload.get(listing):
            change(response.payload[listing])
        return response

    sim.api._get[listing] = handler


@pytest.mark.parametrize("case", POISONS)
def test_a_poison_record_fails_the_sync_in_one_line_on_both_databases(
    synced_host: Host, small_sim: Any, case: str, project_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    listing, field, value, expected = POISONS[case]
    before = mirror_dump(synced_host)
    touched: list[Any] = []

    def change(records: list[dict[str, Any]]) -> None:
        record = next((r for r in records if field in r or field in ("email", "inviteCode")), records[0])
        if field == "serialNumber":
            device = next((r for r in records if "serialNumber" in r), None)
            if device is None:
                return
            record = device
        record[field] = value
        touched.append(record)

    poison(small_sim, listing, change)
    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url, "MDM_DISABLED_PLUGINS": "mobile_apps"})
    code, out, err = mdm("vpp", "sync", "school", "--full")
    assert touched, "the poison never reached a page"
    assert code == 1, (out, err)
    (line,) = [said for said in err.splitlines() if said.startswith("school: ")]  # an account's error on stderr, nothing on stdout
    assert out == "" and expected in line, (out, err)
    assert "Traceback" not in out + err and "SQL" not in out + err and "INSERT" not in out + err
    assert len(line) < 400, "the message quotes the whole value"
    assert mirror_dump(synced_host) == before and stage_rows(synced_host) == 0
    count_figure("poison_records")


def test_licenses_of_an_asset_apple_does_not_list_are_reported(
    synced_host: Host, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def change(records: list[dict[str, Any]]) -> None:
        if not any(r.get("adamId") == "999000111" for r in records):
            records.append({"adamId": "999000111", "pricingParam": "STDQ", "serialNumber": "GHOST0000001"})

    poison(small_sim, "assignments", change)
    mdm = MdmRunner(
        project_dir,
        monkeypatch,
        capsys,
        environ={"MDM_DATABASE_URL": str(synced_host.db.url.render_as_string(hide_password=False)), "MDM_DISABLED_PLUGINS": "mobile_apps"},
    )
    code, out, err = mdm("vpp", "sync", "school", "--full", "--json")
    assert code == 0, err
    (report,) = json.loads(out)
    assert report["counts"]["licenses"]["unknown_assets"] == ["999000111"]
    assert report["counts"]["licenses"]["of_unknown_assets"] == 1
    code, out, err = mdm("vpp", "sync", "school", "--full")
    assert "1 license(s) of 1 asset(s) Apple does not list (999000111)" in out
