"""``mdm jobs run vpp.sync.NAME`` (a host run from cron) says what the sync did as ``mdm vpp
sync`` does: its failure once on stderr (the job's line, not also a log line), its counts when
it succeeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mdm_core.testing import MdmRunner
from plugins.vpp.testing import add_simulated_account


def test_a_failed_sync_is_told_once(make_host: Any, simulator: Any, project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    host = make_host()
    add_simulated_account(host, simulator, project_dir)
    mdm = MdmRunner(project_dir, monkeypatch, capsys)
    simulator.revoke_token()

    code, out, err = mdm("jobs", "run", "vpp.sync.school")
    assert code == 1 and err.startswith("vpp.sync.school: failed in ") and "sync of school failed: " in err, (out, err)
    assert len(err.splitlines()) == 1 and out == "", (out, err)  # was: on stdout, where `mdm vpp sync` says its failure on stderr


def test_mdm_run_still_logs_a_failed_scheduled_sync(make_host: Any, simulator: Any, project_dir: Path, caplog: Any) -> None:
    """Once (was: by plugins.vpp.sync.run and by mdm_core.scheduler, the same failure twice),
    with the account's name and the one-line reason."""
    host = make_host()
    add_simulated_account(host, simulator, project_dir)
    simulator.revoke_token()
    scheduler = host.build_scheduler(inline=True)
    scheduler.make_due("vpp.sync.school")
    with caplog.at_level("INFO"):
        scheduler.run_pending()  # one turn of `mdm run`: its log is how a daemon reports
    said = [r for r in caplog.records if "school" in r.getMessage() and "fail" in r.getMessage()]
    assert len(said) == 1, [(r.name, r.getMessage()) for r in said]
    message = said[0].getMessage()
    assert said[0].levelname == "ERROR" and "sync of school failed: " in message and "revoked" in message and "\n" not in message, message


def test_a_synced_account_says_its_counts_as_mdm_vpp_sync_does(make_host: Any, simulator: Any, project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    host = make_host()
    add_simulated_account(host, simulator, project_dir)
    mdm = MdmRunner(project_dir, monkeypatch, capsys)
    code, out, err = mdm("vpp", "sync", "school")
    assert code == 0, err
    manual = out.split(" pages: ", 1)[1]  # school: full sync ok in 0.2s, 1 pages: assets +3 ~0 -0; ...
    simulator.purchase(count=2)  # a new asset: something to count

    code, out, err = mdm("jobs", "run", "vpp.sync.school")
    assert code == 0 and out.startswith("vpp.sync.school: ok in ") and err == "", (out, err)
    said = out.split("s: ", 1)[1]
    assert said.startswith(("incremental sync, ", "full sync, ")) and " pages: assets +" in said and "licenses +" in said, out
    assert said.split(" pages: ", 1)[1] != manual and "assets +1 " in said, out  # this sync's counts: the new asset
    code, out, _ = mdm("jobs", "run", "vpp.sync.school", "--json")
    [row] = json.loads(out)
    assert code == 0 and row["status"] == "ok" and set(row["result"]) >= {"assets", "users", "licenses"} and row["result"]["licenses"]["added"] == 0
    assert row["note"].startswith(("incremental sync, ", "full sync, ")), row
