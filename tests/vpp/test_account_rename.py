"""`mdm vpp account rename OLD NEW`: the account, its mirror, its runs and its scheduled job
go on under the new name; the old one is unknown; a bad, taken or same name and a running sync
refuse it in one line with nothing changed. In-process ``mdm``, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import MdmRunner
from plugins.vpp.simulator import Simulator
from plugins.vpp.testing import add_simulated_account

from .conftest import FAST_CONFIG, account_row


@pytest.fixture
def school(make_host: Callable[..., Host], project_dir: Path, database_url: str | None, simulator: Any) -> Host:
    """A host on SQLite or PostgreSQL with the account ``school``, synced once by its scheduled job."""
    import plugins.vpp.plugin

    host = make_host(plugins=[plugins.vpp.plugin], config=FAST_CONFIG, database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    host.build_scheduler(inline=True).run_now("vpp.sync.school")
    return host


@pytest.fixture
def mdm(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str | None) -> MdmRunner:
    environ = {"MDM_DISABLED_PLUGINS": "mobile_apps,alerts", **({"MDM_DATABASE_URL": database_url} if database_url else {})}
    return MdmRunner(project_dir, monkeypatch, capsys, config=FAST_CONFIG, environ=environ)


def _jobs(mdm: MdmRunner) -> dict[str, dict[str, Any]]:
    code, out, err = mdm("jobs", "--json")
    assert code == 0, err
    return {job["name"]: job for job in json.loads(out) if job["name"].startswith("vpp.sync.")}


def _events(host: Host, name: str) -> list[dict[str, Any]]:
    """The payloads of the events ``name`` in the outbox (recorded by any process)."""
    from sqlalchemy import select
    from sqlmodel import col

    from mdm_core.models import OutboxEvent

    with host.db.session() as session:
        return [dict(e.payload) for e in session.execute(select(OutboxEvent).where(col(OutboxEvent.name) == name)).scalars()]


def test_a_renamed_account_syncs_and_is_scheduled_under_its_new_name(school: Host, mdm: MdmRunner) -> None:
    before = _jobs(mdm)["vpp.sync.school"]
    assert before["last_result"] == "ok"
    runs = json.loads(mdm("vpp", "runs", "school", "--json")[1])

    assert mdm("vpp", "account", "rename", "school", "district") == (0, "renamed account school to district\n", "")

    [account] = json.loads(mdm("vpp", "account", "list", "--json")[1])
    assert account["name"] == "district" and account["last_sync_result"] == "ok (full)"
    jobs = _jobs(mdm)
    assert list(jobs) == ["vpp.sync.district"]  # the job is the new name's, with the old name's last run
    assert (jobs["vpp.sync.district"]["last_finished_at"], jobs["vpp.sync.district"]["last_result"]) == (before["last_finished_at"], "ok")
    assert [r["id"] for r in json.loads(mdm("vpp", "runs", "district", "--json")[1])] == [r["id"] for r in runs]
    assert _events(school, "vpp_account_renamed") == [{"account": "district", "previous": "school", "accountId": account_row(school, "district").id}]

    code, out, err = mdm("vpp", "sync", "district")
    assert code == 0 and out.startswith("district: incremental sync ok"), (out, err)
    code, out, err = mdm("jobs", "run", "vpp.sync.district")
    assert code == 0 and "vpp.sync.district: ok" in out, err
    code, out, err = mdm("vpp", "sync", "school")
    assert (code, out, err) == (2, "", "mdm: error: no VPP account named 'school' (known accounts: district)\n")
    code, out, err = mdm("jobs", "run", "vpp.sync.school")
    assert (code, err) == (2, "mdm: error: no job named 'vpp.sync.school': `mdm jobs` lists the names\n")


def test_the_rename_and_the_removal_name_the_account_by_its_id(school: Host, mdm: MdmRunner) -> None:
    """A subscriber can tell the renamed account from another one given its name later: the
    events carry the account's database id, the same through the rename and at its removal."""
    account_id = account_row(school).id
    assert mdm("vpp", "account", "rename", "school", "district")[0] == 0
    assert mdm("vpp", "account", "remove", "district", "--yes")[0] == 0
    assert _events(school, "vpp_account_renamed") == [{"account": "district", "previous": "school", "accountId": account_id}]
    assert _events(school, "vpp_account_removed") == [{"account": "district", "accountId": account_id}]


@pytest.mark.parametrize(
    "new, code, error",
    [
        ("bad name!", 2, "account name 'bad name!' is not valid: use letters, digits, '.', '_' or '-' (at most 128)"),
        ("x" * 129, 2, f"account name '{'x' * 129}' is not valid: use letters, digits, '.', '_' or '-' (at most 128)"),
        ("school", 2, "account 'school' is already named 'school': give the new name"),
        ("district", 2, "an account named 'district' already exists: choose another name"),
    ],
)
def test_a_bad_or_taken_name_is_refused_with_nothing_changed(school: Host, mdm: MdmRunner, project_dir: Path, new: str, code: int, error: str) -> None:
    with Simulator(seed=3, assets=1, devices=1, users=1, async_delay=0) as other:
        add_simulated_account(school, other, project_dir, name="district")
        assert mdm("vpp", "account", "rename", "school", new) == (code, "", f"mdm: error: {error}\n")
        assert sorted(a["name"] for a in json.loads(mdm("vpp", "account", "list", "--json")[1])) == ["district", "school"]
        assert sorted(_jobs(mdm)) == ["vpp.sync.district", "vpp.sync.school"] and _jobs(mdm)["vpp.sync.school"]["last_result"] == "ok"


def test_names_keep_their_case(school: Host, mdm: MdmRunner) -> None:
    """Names are compared as given (as `account add` and every lookup do): ``School`` is another name."""
    assert mdm("vpp", "account", "rename", "school", "School")[0] == 0
    assert account_row(school, "School").name == "School"
    assert mdm("vpp", "sync", "school")[0] == 2 and mdm("vpp", "sync", "School")[0] == 0


def test_an_unknown_account_is_one_line(school: Host, mdm: MdmRunner) -> None:
    assert mdm("vpp", "account", "rename", "schol", "district") == (2, "", "mdm: error: no VPP account named 'schol' (known accounts: school)\n")


@pytest.mark.parametrize("held", ["sync", "job"])
def test_a_rename_while_a_sync_runs_is_refused_at_once(school: Host, mdm: MdmRunner, held: str) -> None:
    """A sync holding the account's lock (a manual one, in any process), or its scheduled job
    holding the job's: refused without waiting ([vpp] lock_wait, 0), nothing changed."""
    name = f"vpp.sync.{account_row(school).id}" if held == "sync" else "job.vpp.sync.school"
    lock = school.lock(name, ttl=60)
    lock.acquire(wait=0)
    try:
        code, out, err = mdm("vpp", "account", "rename", "school", "district")
    finally:
        lock.release()
    assert (code, out, err) == (1, "", "mdm: error: a sync of school is running: rename the account when it has finished\n")
    assert account_row(school).name == "school" and list(_jobs(mdm)) == ["vpp.sync.school"]
    assert mdm("vpp", "account", "rename", "school", "district")[0] == 0  # once it has finished


def test_a_stale_job_history_of_the_new_name_is_replaced(school: Host, mdm: MdmRunner, project_dir: Path) -> None:
    """An account once named ``district`` (removed since) left its job's last run: the renamed
    account's job shows its own."""
    with Simulator(seed=3, assets=1, devices=1, users=1, async_delay=0) as other:
        add_simulated_account(school, other, project_dir, name="district")
        other.faults.add("server_error", endpoint="client/config", count=5, status=503)
        assert mdm("jobs", "run", "vpp.sync.district")[0] == 1
        assert mdm("vpp", "account", "remove", "district", "--yes")[0] == 0
    assert mdm("vpp", "account", "rename", "school", "district")[0] == 0
    assert _jobs(mdm)["vpp.sync.district"]["last_result"] == "ok"


def test_mdm_run_follows_a_rename_without_a_failed_sync(school: Host, mdm: MdmRunner) -> None:
    """A running ``mdm run`` scheduled the old name's job: until its next refresh of the accounts,
    that job falling due says the account is gone (not a failed sync); the refresh schedules the
    new name's."""
    from plugins.vpp.jobs import refresh_account_jobs

    scheduler = school.build_scheduler(inline=True)
    assert mdm("vpp", "account", "rename", "school", "district")[0] == 0
    state = scheduler.run_now("vpp.sync.school")
    assert (state.last_error, state.last_result) == (None, "not synced: there is no account school any more (renamed or removed)")
    refresh_account_jobs(school, scheduler)
    assert sorted(j for j in scheduler.jobs if j.startswith("vpp.sync.")) == ["vpp.sync.district"]
    assert scheduler.run_now("vpp.sync.district").last_error is None
