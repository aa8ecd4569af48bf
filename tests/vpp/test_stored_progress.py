"""A running sync's stored progress (``vpp_sync_run.progress``) as another process reads it:
its age by the database's clock whatever the hosts' clocks say, and a ``writing`` mark that a
heartbeat's write under way never replaces. The sync's steps are driven directly (no sleeps),
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from mdm_core.host import Host
from plugins.vpp.models import VppSyncRun
from plugins.vpp.sync import progress, stored_progress
from plugins.vpp.sync.run import get_run


@pytest.fixture(params=["sqlite", "postgresql"])
def school(request: pytest.FixtureRequest, make_host: Callable[..., Host], simulator: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    """A host with the account ``school`` (not synced); a recorder's figures are due at every look."""
    from plugins.vpp.testing import add_simulated_account

    from ..conftest import PG_ADMIN_URL, PG_SKIP_REASON

    if request.param == "sqlite":
        url = f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"
    elif not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    else:
        url = str(request.getfixturevalue("pg_url"))
    monkeypatch.setattr(stored_progress, "TICK", 0.0)
    monkeypatch.setattr(stored_progress, "STORE_EVERY", 0.0)
    monkeypatch.setattr(stored_progress, "SQLITE_GRACE", 0.0)
    host = make_host(database_url=url)
    add_simulated_account(host, simulator, project_dir)
    return host


@contextmanager
def a_sync_reading(host: Host) -> Iterator[tuple[int, stored_progress.ProgressRecorder]]:
    """``school`` as its sync has it while it reads: its lock held, its run recorded, a page
    of two users read; its run id and its progress recorder."""
    from plugins.vpp.accounts import account_lock
    from plugins.vpp.sync.run import _new_run
    from plugins.vpp.views import get_account

    with host.db.session() as session:
        account_id = get_account(session, "school").id
    assert account_id is not None
    lock = account_lock(host, account_id)
    lock.acquire()
    try:
        run_id = host.db.run_write(lambda s: _new_run(s, account_id, "manual", "full", lock.holder))
        progress.started("school", "full", run_id)
        progress.page("school", "users", {"users": [{"clientUserId": "u1"}, {"clientUserId": "u2"}]})
        with stored_progress.recording(host, run_id, "school") as recorder:
            yield run_id, recorder
    finally:
        progress.finished("school")
        lock.release()


def _clock(monkeypatch: pytest.MonkeyPatch, hours: float) -> None:
    """This process's clock, as stored progress reads it, ``hours`` off (another host's)."""
    from mdm_core.models import utcnow

    monkeypatch.setattr(stored_progress, "utcnow", lambda: utcnow() + timedelta(hours=hours))


def _stored(host: Host, run_id: int) -> Any:
    with host.db.session() as session:
        run = session.get(VppSyncRun, run_id)
        assert run is not None
        return run.progress


def _store(host: Host, run_id: int, values: dict[str, Any]) -> None:
    host.db.run_write(lambda session: session.execute(update(VppSyncRun).where(col(VppSyncRun.id) == run_id).values(progress=values)))


@pytest.mark.parametrize("school", ["postgresql"], indirect=True)  # SQLite has no clock of its own: its hosts share one machine's
def test_the_age_is_by_the_databases_clock_whatever_the_hosts_clocks(school: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: with the writing and the reading host an hour off either way, the age is the
    seconds since the figures were written (it showed 0 for ever, or two hours)."""
    for writer, reader in ((1, -1), (-1, 1)):
        with a_sync_reading(school) as (run_id, recorder):
            _clock(monkeypatch, writer)
            recorder.tick()
            progress.finished("school")  # read as another process does
            _clock(monkeypatch, reader)
            shown = get_run(school, run_id)
        assert shown is not None and shown["progress"]["datasets"]["users"]["rows"] == 2, shown
        assert 0 <= shown["progress"]["age_s"] < 5, (writer, reader, shown["progress"])


def test_figures_stamped_in_the_readers_future_show_no_age(school: Host) -> None:
    """A stamp ahead of the reader's clock (a clock that was wrong) shows the figures without
    an age rather than age 0 for ever; a few seconds ahead is age 0, one behind its age."""
    with a_sync_reading(school) as (run_id, recorder):
        recorder.tick()
        progress.finished("school")  # read as another process does
        written = datetime.fromisoformat(_stored(school, run_id)["at"])  # now, by the clock it was stamped with
        ages = []
        for ahead in (3600, 2, -30):
            _store(school, run_id, {**_stored(school, run_id), "at": (written + timedelta(seconds=ahead)).isoformat()})
            shown = get_run(school, run_id)
            assert shown is not None and shown["status"] == "running" and shown["progress"]["datasets"]["users"]["rows"] == 2, shown
            ages.append(shown["progress"]["age_s"])
    assert ages[:2] == [None, 0.0] and 30 <= ages[2] < 35, ages


def test_a_heartbeat_write_under_way_never_replaces_the_writing_mark(school: Host) -> None:
    """The heartbeat took its figures (phase ``reading``), then the sync's thread stored the
    ``writing`` mark before the heartbeat's write landed: the mark stays. Reading again (the
    sync's fallback) replaces it, and the heartbeat writes again."""
    with a_sync_reading(school) as (run_id, recorder):
        claim, marks = recorder._claim, ["writing"]

        def claim_then_mark(grace: float) -> dict[str, Any] | None:
            values = claim(grace)
            if marks:
                marks.pop()
                recorder.writing()
            return values

        setattr(recorder, "_claim", claim_then_mark)  # noqa: B010 (the instance's, for this test)
        recorder.tick()
        assert _stored(school, run_id)["phase"] == "writing"
        recorder.tick()  # nothing while the changes are written
        assert _stored(school, run_id)["phase"] == "writing"

        recorder.reading()
        assert _stored(school, run_id)["phase"] == "reading"
        progress.page("school", "users", {"users": [{"clientUserId": "u3"}]})
        recorder.tick()
        stored = _stored(school, run_id)
        assert (stored["phase"], stored["datasets"]["users"]["rows"]) == ("reading", 3)


@pytest.mark.parametrize("school", ["postgresql"], indirect=True)
def test_a_progress_write_is_one_statement_stamped_by_the_database(school: Host) -> None:
    """PostgreSQL: a heartbeat's write of the figures is its UPDATE alone, which stamps them
    with the server's clock itself (it read the clock with a statement of its own first); the
    stored JSON is the text the column's serializer writes, ``at`` as ``isoformat`` writes it."""
    import json

    from sqlalchemy import event, text

    with a_sync_reading(school) as (run_id, recorder):
        seen: list[str] = []

        def look(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            seen.append(statement)

        before = stored_progress.database_now(school)
        event.listen(school.db.write_engine, "before_cursor_execute", look)
        try:
            recorder.tick()
        finally:
            event.remove(school.db.write_engine, "before_cursor_execute", look)
        after = stored_progress.database_now(school)
        with school.db.session() as session:
            stored = session.execute(text("SELECT progress::text FROM vpp_sync_run WHERE id = :id"), {"id": run_id}).scalar_one()
    assert len(seen) == 1 and seen[0].lstrip().upper().startswith("UPDATE"), seen
    values = json.loads(stored)
    assert stored == json.dumps(values) and values["datasets"]["users"]["rows"] == 2, stored
    at = datetime.fromisoformat(values["at"])
    assert before <= at <= after and values["at"] == at.isoformat() and at.utcoffset() == timedelta(0), (before, values["at"], after)


def test_the_lock_and_the_progress_are_written_by_core_statements(school: Host) -> None:
    """A lock taken, renewed, checked in a write transaction (the apply's fence), released, and a
    sync's progress stored (a tick, the ``writing`` mark): each by a Core statement, none through
    the ORM's bulk-update path (0.4-0.9 ms of CPU more a statement, with nothing to synchronize,
    four of them on a sync's own thread at its serial steps). What they write is as before."""
    from sqlalchemy import event
    from sqlalchemy.orm import ORMExecuteState
    from sqlalchemy.orm import Session as OrmSession

    from mdm_core.locks import DbLock
    from mdm_core.models import utcnow

    written: list[str] = []

    def look(state: ORMExecuteState) -> None:
        if not state.is_select and state.bind_mapper is not None:
            written.append(state.bind_mapper.class_.__name__)

    event.listen(OrmSession, "do_orm_execute", look)
    try:
        with a_sync_reading(school) as (run_id, recorder):
            recorder.tick()
            assert _stored(school, run_id)["phase"] == "reading"
            recorder.writing()
            assert _stored(school, run_id)["phase"] == "writing"
        lock = DbLock(school.db, "test.core-statements", ttl=60)
        lock.acquire()
        held = lock.info()
        lock.refresh()
        school.db.run_write(lock.fence)
        renewed = lock.info()
        lock.release()
    finally:
        event.remove(OrmSession, "do_orm_execute", look)
    assert [name for name in written if name in ("Lock", "VppSyncRun")] == []
    assert held is not None and renewed is not None and renewed.generation == held.generation and renewed.expires_at >= held.expires_at
    released = DbLock(school.db, "test.core-statements").info()
    assert released is not None and released.holder == held.holder and released.expires_at < utcnow()
