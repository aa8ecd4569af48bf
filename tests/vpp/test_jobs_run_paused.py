"""``mdm jobs run vpp.sync.NAME`` (a host run from cron) of an account whose token waits for the
admin: the scheduled sync is skipped, as it must be (no retry storm against Apple), but the
command said ``vpp.sync.school: ok in 0.047s`` as if the account had been synced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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


def test_mdm_jobs_says_the_last_run_did_not_sync(
    make_host: Any, simulator: Any, project_dir: Path, monkeypatch: Any, capsys: Any, database_url: str | None
) -> None:
    """`mdm jobs` listed the job of an account whose token had expired weeks ago as
    `vpp.sync.school ... ok`, every interval, like an account that syncs. Its last result now
    says it as needing the admin (`attention: not synced: token expired: ...`: it read `ok: ...`,
    a line starting with ok for an account that stopped syncing); JSON keeps `ok` and gives it
    as `last_note`. Once the account syncs again, it is a plain `ok`."""
    host = make_host(database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url} if database_url else None)
    simulator.expire_token()
    assert mdm("vpp", "sync", "school")[0] == 1
    assert mdm("jobs", "run", "vpp.sync.school")[0] == 0

    def listed() -> tuple[str, dict[str, Any]]:
        code, out, err = mdm("jobs")
        assert code == 0, err
        header, *lines = out.splitlines()
        [line] = [line for line in lines if line.startswith("vpp.sync.school ")]
        rows = {r["name"]: r for r in json.loads(mdm("jobs", "--json")[1])}
        return line[header.index("last_result") :].rstrip(), rows["vpp.sync.school"]

    text, row = listed()
    assert text == f"attention: {NOTE}"
    assert (row["last_result"], row["last_note"], row["last_error"]) == ("ok", NOTE, None)

    simulator.restore_token()
    assert mdm("vpp", "sync", "school")[0] == 0
    assert mdm("jobs", "run", "vpp.sync.school")[0] == 0
    text, row = listed()
    assert text == "ok" and (row["last_result"], row["last_note"]) == ("ok", None)


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("expired", "token expired"),
        ("revoked", "token revoked"),
        ("invalid", "token invalid"),
        ("taken_over", "token taken over by another MDM (OtherMDM (other.example))"),
    ],
)
def test_the_note_says_the_tokens_state_in_the_products_words(make_host: Any, simulator: Any, project_dir: Path, state: str, said: str) -> None:
    """`mdm jobs` said `ok: not synced: token taken_over: waiting for the user to act`, the
    state's internal name; it now says it as `mdm vpp account list` (token_status) does."""
    from sqlmodel import select

    from plugins.vpp.accounts import list_accounts
    from plugins.vpp.jobs import AccountJob
    from plugins.vpp.models import VppAccount

    host = make_host()
    add_simulated_account(host, simulator, project_dir)

    def pause(session: Any) -> None:
        account = session.exec(select(VppAccount)).one()
        account.token_state, account.paused = state, True
        account.state_detail = "OtherMDM (other.example)" if state == "taken_over" else None
        session.add(account)

    host.db.run_write(pause)
    note = AccountJob(host, "school").run()
    assert note == f"not synced: {said}: waiting for the user to act (`mdm vpp sync school` syncs it anyway)", note
    assert f"token {list_accounts(host)[0]['token_status']}:" in str(note)
