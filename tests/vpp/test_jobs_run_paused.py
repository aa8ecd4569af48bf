"""``mdm jobs run vpp.sync.NAME`` (a host run from cron) of an account whose token waits for the
admin: the scheduled sync is skipped, as it must be (no retry storm against Apple), but the
command said ``vpp.sync.school: ok in 0.047s`` as if the account had been synced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mdm_core.testing import MdmRunner
from plugins.vpp.testing import add_simulated_account

NOTE = "not synced: token expired: waiting for the user to act (`mdm vpp sync school` syncs it anyway)"


def test_a_paused_accounts_job_says_it_did_not_sync(make_host: Any, simulator: Any, project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    host = make_host()
    add_simulated_account(host, simulator, project_dir)
    mdm = MdmRunner(project_dir, monkeypatch, capsys)
    assert mdm("vpp", "sync", "school")[0] == 0
    simulator.expire_token()
    assert mdm("vpp", "sync", "school")[0] == 1  # Apple says 9621: the account waits for a new token
    before = sum(simulator.requests.values())

    code, out, err = mdm("jobs", "run", "vpp.sync.school")
    assert code == 0 and out.startswith("vpp.sync.school: ok in ") and out.endswith(f"s: {NOTE}\n"), (out, err)
    code, out, _ = mdm("jobs", "run", "vpp.sync.school", "--json")
    [row] = json.loads(out)
    assert code == 0 and row["status"] == "ok" and row["note"] == NOTE and row["result"] is None
    assert sum(simulator.requests.values()) == before  # Apple was not called

    simulator.restore_token()
    assert mdm("vpp", "sync", "school")[0] == 0  # the admin acted: the job syncs again, and says what it synced
    code, out, _ = mdm("jobs", "run", "vpp.sync.school", "--json")
    [row] = json.loads(out)
    assert code == 0 and row["status"] == "ok" and row["note"].startswith(("incremental sync, ", "full sync, ")) and "not synced" not in row["note"]
