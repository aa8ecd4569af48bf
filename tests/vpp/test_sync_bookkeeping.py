"""A sync's own records (its lock, its run, its account) are written by plain statements, with the same
outcome: no ORM object of them is flushed (each cost a fresh ``mdm vpp sync`` process the
unit of work's machinery and a statement compiled for it), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from mdm_core.db.typed import table_of
from mdm_core.host import Host
from mdm_core.models import Lock
from plugins.vpp.models import VppAccount, VppSyncRun
from plugins.vpp.sync.run import recent_runs, sync_account
from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple
from tests.conftest import PG_ADMIN_URL, PG_SKIP_REASON


@pytest.fixture(params=["sqlite", "postgres"])
def vpp_host(request: pytest.FixtureRequest, make_host: Callable[..., Host], simulator: Any, project_dir: Any) -> Host:
    import plugins.vpp.plugin

    if request.param == "postgres" and not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    host = make_host(plugins=[plugins.vpp.plugin], database_url=url)
    add_simulated_account(host, simulator, project_dir)
    return host


@pytest.fixture
def flushed() -> Iterator[list[type]]:
    """The classes of the ORM objects every session flushes while the test runs."""
    seen: list[type] = []

    def note(session: Session, _context: Any, _instances: Any) -> None:
        seen.extend(type(o) for o in (*session.new, *session.dirty, *session.deleted))

    event.listen(Session, "before_flush", note)
    yield seen
    event.remove(Session, "before_flush", note)


def test_full_and_incremental_syncs_write_their_lock_and_run_without_orm_objects(vpp_host: Host, simulator: Any, flushed: list[type]) -> None:
    first = sync_account(vpp_host, "school")
    simulator.mutate_fraction(0.1, seed=3)
    second = sync_account(vpp_host, "school")

    assert (first["status"], first["mode"], second["status"], second["mode"]) == ("ok", "full", "ok", "incremental")
    assert not {VppSyncRun, Lock, VppAccount} & set(flushed)
    assert_mirror_equals_apple(vpp_host, simulator)
    runs = recent_runs(vpp_host, "school")
    assert [(r["mode"], r["status"], r["progress"], r["error"]) for r in runs] == [("incremental", "ok", None, None), ("full", "ok", None, None)]
    assert runs[0]["counts"] == second["counts"] and runs[1]["counts"] == first["counts"]
    assert runs[0]["pages"] == second["pages"] and runs[0]["finished_at"] >= runs[0]["started_at"] >= runs[1]["finished_at"]
    assert runs[0]["holder"] != runs[1]["holder"]
    # the lock's row: released, a new generation per sync, held last by the second sync's holder
    locks = table_of(Lock)
    with vpp_host.db.session() as session:
        holder, generation = session.execute(select(locks.c.holder, locks.c.generation).where(locks.c.name.like("vpp.sync.%"))).one()
    assert (holder, generation) == (runs[0]["holder"], 2)
    # the account as the syncs left it: Apple's versionIds, both syncs' times, its token's state
    with vpp_host.db.session() as session:
        account = session.execute(select(VppAccount).where(VppAccount.name == "school")).scalar_one()
    assert (account.last_sync_result, account.paused, account.token_state, account.state_detail) == ("ok (incremental)", False, "valid", None)
    assert account.users_version_id and account.assignments_version_id and account.assets_version_id and account.invitation_template
    assert account.last_full_sync_at is not None and account.last_sync_at is not None and account.last_full_sync_at < account.last_sync_at
    assert account.last_full_sync_at == runs[1]["finished_at"] and account.last_sync_at == runs[0]["finished_at"]
