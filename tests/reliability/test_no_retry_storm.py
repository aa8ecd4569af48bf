"""No retry storm: a token error stops the scheduled syncs of that account (no request at all
reaches Apple) until the user acts; a manual sync tries again; a renewed token clears it; the
other accounts keep syncing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from plugins.vpp.accounts import add_account
from plugins.vpp.sync.run import sync_account

from .conftest import SIM_KWARGS, RequestCounter, account_info, assert_converged, count_figure, runs


def _token_error(sim: Any, kind: str) -> None:
    if kind == "error_200-9622":
        sim.faults.add("error_200", endpoint="client/config", error_number=9622)
    else:
        getattr(sim, kind)()


def _user_fixes(sim: Any, kind: str) -> None:
    """What the user does on Apple's side: a new token (here: the simulator's is valid again)."""
    sim.faults.clear()


def _scheduled(host: Host, name: str = "school") -> Any:
    """Run the account's job exactly as the scheduler would (inline)."""
    scheduler = host.build_scheduler(inline=True)
    job = scheduler.jobs[f"vpp.sync.{name}"]
    job.job.run()  # through the scheduler's wrapper: a failure is logged and recorded, not raised
    return job


EXPECTED = {"expire_token": "expired", "revoke_token": "revoked", "error_200-9622": "invalid", "claim_by_other_mdm": "taken_over"}


@pytest.mark.parametrize("kind", EXPECTED)
def test_token_error_pauses_scheduled_syncs_until_the_user_acts(
    synced: Host, small_sim: Any, project_dir: Path, kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _token_error(small_sim, kind)
    first = sync_account(synced, "school", trigger="schedule")
    assert first["status"] == "error"
    info = account_info(synced)
    assert (info["token_state"], info["paused"]) == (EXPECTED[kind], True)

    counter = RequestCounter(small_sim)
    for _ in range(5):
        report = sync_account(synced, "school", trigger="schedule")
        assert report["status"] == "skipped" and EXPECTED[kind].replace("_", " ") in report["error"]  # as account list says it
    _scheduled(synced)  # the real job function: returns without raising, records nothing
    assert counter.count == 0, "a paused account must not send any request to Apple"
    assert len([r for r in runs(synced)]) == 2  # the first sync and the failed one only

    # a manual sync tries again (and fails again while the token is still bad)
    again = sync_account(synced, "school", trigger="manual")
    assert again["status"] == "error" and counter.count >= 1
    assert account_info(synced)["paused"] is True

    # the user renews the token: `mdm vpp account set school --token-file ...`
    _user_fixes(small_sim, kind)
    token_file = small_sim.write_token(project_dir / "renewed.vpptoken")
    from mdm_core.cli import main

    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    monkeypatch.setenv("MDM_SECRET_KEY", "test-secret-key")
    take_over = ["--take-over"] if kind == "claim_by_other_mdm" else []  # the user confirms the other MDM stopped
    code = main(["--config", str(project_dir / "conf" / "mdm.toml"), "vpp", "account", "set", "school", "--token-file", str(token_file), *take_over])
    out, err = capsys.readouterr()
    assert code == 0, err
    info = account_info(synced)
    assert (info["token_state"], info["paused"]) == ("valid", False)
    counter = RequestCounter(small_sim)
    assert sync_account(synced, "school", trigger="schedule")["status"] == "ok"
    assert counter.count > 0
    assert_converged(synced, small_sim)
    count_figure("token_errors_paused")


def test_a_manual_sync_that_succeeds_unpauses(synced: Host, small_sim: Any) -> None:
    small_sim.revoke_token()
    assert sync_account(synced, "school")["status"] == "error"
    small_sim.restore_token()  # e.g. Apple's outage was wrongly reported as a revocation
    assert sync_account(synced, "school", trigger="schedule")["status"] == "skipped"
    assert sync_account(synced, "school", trigger="manual")["status"] == "ok"
    assert account_info(synced)["paused"] is False
    assert sync_account(synced, "school", trigger="schedule")["status"] == "ok"


def test_scheduled_job_fails_visibly_for_other_errors_but_keeps_trying(synced: Host, small_sim: Any) -> None:
    """A non-token error is not a pause: the job raises (recorded by the scheduler) and the next turn syncs."""
    from sqlalchemy import text

    small_sim.faults.add("malformed_json", endpoint="assets", count=1)
    _scheduled(synced)
    with synced.db.engine.connect() as conn:
        row = conn.execute(text("SELECT runs, failures, last_error FROM core_job_run WHERE name = 'vpp.sync.school'")).one()
    assert (row.runs, row.failures) == (1, 1) and "not JSON" in row.last_error
    assert account_info(synced)["paused"] is False
    assert sync_account(synced, "school", trigger="schedule")["status"] == "ok"


def test_second_account_keeps_syncing(synced: Host, small_sim: Any, project_dir: Path) -> None:
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=99, **SIM_KWARGS) as other:
        add_account(synced, "other", str(other.write_token(project_dir / "other.vpptoken")), service_url=other.base_url)
        small_sim.revoke_token()
        blocked = RequestCounter(small_sim)
        scheduler = synced.build_scheduler(inline=True)
        sent = []
        for _turn in range(3):
            other.create_user()
            for name in ("school", "other"):
                scheduler.jobs[f"vpp.sync.{name}"].job.run()
            sent.append(blocked.count)
        # the first turn found the revocation (service/config + client/config), then nothing more
        assert sent[0] <= 2 and sent == [sent[0]] * 3
        assert account_info(synced)["token_state"] == "revoked"
        assert account_info(synced, "other")["token_state"] == "valid"
        assert [r["status"] for r in runs(synced) if r["account_id"] == 2] == ["ok"] * 3
        assert_converged(synced, other, "other")
