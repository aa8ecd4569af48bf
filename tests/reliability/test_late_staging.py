"""A thread of an interrupted sync that stages a page after the interruption was handled.

On Ctrl-C the sync does not wait for its reading threads (the users' thread, the re-reading
pool): it marks its run interrupted and drops the run's staged rows. A thread that had not seen
the stop yet used to commit its page afterwards, leaving staged rows behind the "nothing
written" the command had just printed. Each staging write now checks, inside its transaction,
that its run is still running, and the interruption ends the run before it drops the rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mdm_core.db.bulk import insert_rows
from mdm_core.db.typed import table_of
from mdm_core.host import Host
from plugins.vpp.models import VppStageLicense, VppStageUser
from plugins.vpp.sync.read import LICENSE_COLUMNS, USER_COLUMNS, RunEnded, StageBuffer, check_running
from plugins.vpp.sync.run import _new_run, end_interrupted

from .conftest import runs, stage_rows

SL = table_of(VppStageLicense)
SU = table_of(VppStageUser)
LICENSE = ("408709785", "STDQ", "device", "SERIAL0001")


@pytest.fixture
def host(make_host: Callable[..., Host], project_dir: Path, database_url: str | None) -> Iterator[Host]:
    """A host with the account ``school``, on SQLite and on PostgreSQL (``database_url``)."""
    import plugins.vpp.plugin
    from plugins.vpp.accounts import add_account
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=5, assets=2, devices=3, users=2, page_size=5, async_delay=0) as sim:
        h = make_host(plugins=[plugins.vpp.plugin], database_url=database_url)
        add_account(h, "school", str(sim.write_token(project_dir / "school.vpptoken")), service_url=sim.base_url)
        yield h


def _running_run(host: Host) -> int:
    from plugins.vpp.accounts import get_account

    with host.db.session() as session:
        account_id = get_account(session, "school").id
    assert account_id is not None
    return host.db.run_write(lambda s: _new_run(s, account_id, "manual", "incremental", "test-holder"))


@pytest.mark.parametrize("table,columns,row", [(SL, LICENSE_COLUMNS, LICENSE), (SU, USER_COLUMNS, ("user-1", "a@example.org", "Associated", None, None, 0))])
def test_a_page_staged_after_the_interruption_is_not_written(host: Host, table: Any, columns: tuple[str, ...], row: tuple[Any, ...]) -> None:
    run_id = _running_run(host)
    buffer = StageBuffer(host, table, run_id, columns)
    buffer.add([row])  # a thread's page, not written yet when Ctrl-C is handled
    end_interrupted(host, run_id, "interrupted (SIGINT): nothing written")
    with pytest.raises(RunEnded, match=f"sync run {run_id} is interrupted"):
        buffer.flush()
    assert stage_rows(host) == 0
    assert runs(host)[-1]["status"] == "interrupted"


def test_the_interruption_waits_for_a_staging_write_under_way_then_drops_its_rows(host: Host) -> None:
    """A staging write past its check when the interruption comes: the interruption's
    transaction waits for it (PostgreSQL: the run's row read FOR SHARE; SQLite: the write lock)
    and drops its rows too. Dropping first and marking after (the old order) left them."""
    run_id = _running_run(host)
    with host.db.write_session() as session:
        check_running(session, run_id)
        insert_rows(session, SL, ("run_id", *LICENSE_COLUMNS), [(run_id, *LICENSE)])
        ended = threading.Event()
        errors: list[BaseException] = []

        def interrupt() -> None:
            try:
                end_interrupted(host, run_id, "interrupted (SIGINT): nothing written")
            except BaseException as exc:  # pragma: no cover - shown by the assertion below
                errors.append(exc)
            finally:
                ended.set()

        thread = threading.Thread(target=interrupt)
        thread.start()
        assert not ended.wait(0.3), "the interruption did not wait for the staging write under way"
        session.commit()
    thread.join(timeout=60)
    assert ended.is_set() and not errors, errors
    assert stage_rows(host) == 0
    assert runs(host)[-1]["status"] == "interrupted"
