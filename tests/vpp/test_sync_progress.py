"""Progress of long syncs on stderr, and a report time that is the command's wall time."""

from __future__ import annotations

import re
from typing import Any

import pytest

from plugins.vpp.sync import progress


def test_progress_lines_name_pages_and_rows_per_dataset(school: Any, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import plugins.vpp.cli

    monkeypatch.setattr(plugins.vpp.cli, "PROGRESS_EVERY", 0.0)  # a line per page (every few seconds for people)
    code, out, err = cli("vpp", "sync", "school", "--progress")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("school: full sync: ")]
    assert lines, err
    last = lines[-1]
    assert re.search(r"assets \d+ pages?, [\d,]+ rows", last) and re.search(r"users \d+ pages?, [\d,]+ rows", last)
    assert re.search(r"assignments \d+ pages?, [\d,]+ rows", last), last
    assert out.startswith("school: full sync ok")  # the report stays on stdout
    assert progress.current() == []  # nothing left running


def test_no_progress_when_stderr_is_not_a_terminal(school: Any, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import plugins.vpp.cli

    monkeypatch.setattr(plugins.vpp.cli, "PROGRESS_EVERY", 0.0)
    code, out, err = cli("vpp", "sync", "school")
    assert code == 0 and " sync: assets" not in err, out + err
    code, out, err = cli("vpp", "sync", "school", "--no-progress")
    assert code == 0 and " sync: assets" not in err, out + err


def test_a_console_can_poll_a_running_sync(school: Any) -> None:
    seen: list[dict[str, Any]] = []
    with progress.listening(lambda p: seen.append(p.as_dict())):
        [report] = school.pm.hook.mdm_vpp_sync(host=school, account="school", full=True, trigger="manual", wait=0)
    assert report["status"] == "ok"
    assert seen and seen[-1]["account"] == "school" and seen[-1]["mode"] == "full"
    assert sum(d["pages"] for d in seen[-1]["datasets"].values()) == report["pages"]


def test_the_run_record_holds_every_page_read_while_the_changes_are_written(school: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Other processes see the whole read, marked ``writing``, during the final transaction
    (which reads nothing, and may take minutes); nothing once the run has ended."""
    from sqlmodel import select

    from plugins.vpp.models import VppSyncRun
    from plugins.vpp.sync import run

    stored: list[Any] = []
    apply_read = run.apply_read

    def apply(host: Any, account: Any, run_id: int, read: Any, lock: Any, *more: Any) -> Any:
        with host.db.session() as session:
            stored.append(session.get(VppSyncRun, run_id).progress)
        return apply_read(host, account, run_id, read, lock, *more)

    monkeypatch.setattr(run, "apply_read", apply)
    simulator.faults.add("slow", endpoint="assignments", seconds=1.5, count=1)  # a read long enough to store figures
    report = run.sync_account(school, "school", full=True)
    assert report["status"] == "ok", report
    [values] = stored
    assert values["phase"] == "writing" and values["account"] == "school" and values["mode"] == "full", values
    assert sum(d["pages"] for d in values["datasets"].values()) == report["pages"], values
    with school.db.session() as session:
        assert list(session.execute(select(VppSyncRun.progress)).scalars()) == [None]


@pytest.mark.parametrize("full", [True, False], ids=["full", "incremental"])
def test_each_asset_is_one_row_of_the_assets_progress(synced: Any, full: bool) -> None:
    """The sync reads the first page of the assets again at the end, only to check their
    ``versionId``: a page read, but not rows to count again (before, 2 pages and 240 rows for
    120 assets)."""
    from sqlmodel import func, select

    from plugins.vpp.models import VppAsset

    seen: list[dict[str, Any]] = []
    with progress.listening(lambda p: seen.append(p.as_dict())):
        [report] = synced.pm.hook.mdm_vpp_sync(host=synced, account="school", full=full, trigger="manual", wait=0)
    assert report["status"] == "ok", report
    with synced.db.session() as session:
        assets = session.exec(select(func.count()).select_from(VppAsset)).one()
    last = seen[-1]["datasets"]["assets"]
    assert assets and last["rows"] == assets, (last, assets)
    assert sum(d["pages"] for d in seen[-1]["datasets"].values()) == report["pages"]  # every page read is counted
