"""A host stays listed among the live hosts across a cut of its PostgreSQL connections.

On PostgreSQL a holder's liveness is its session advisory lock (:func:`mdm_core.locks.holder_is_dead`).
When the server restarted (or a firewall cut the connections), every running ``mdm run`` lost
that lock while staying alive: the others counted it gone for as long as it lived, so each
host owned every account, and ``mdm db upgrade`` was no longer refused while they all ran."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from mdm_core.cluster import Cluster, refuse_upgrade_while_running
from mdm_core.errors import MdmError
from mdm_core.host import Host
from mdm_core.locks import DbLock

from ..conftest import PG_ADMIN_URL, PG_SKIP_REASON

pytestmark = pytest.mark.skipif(not PG_ADMIN_URL, reason=PG_SKIP_REASON)


@dataclass
class _State:
    name: str
    state: str


def _cut(host: Host, lock: DbLock) -> None:
    """The server ends the session that holds ``lock``'s advisory lock (a restart, a cut
    connection), and the test waits until it is gone."""
    backend = lock._pg_conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with host.db.engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar_one() is True
        conn.commit()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with host.db.engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": backend}).first() is None:
                return
        time.sleep(0.01)  # the server's own teardown, not a clock the test controls
    raise AssertionError("the session did not end")


def test_a_running_host_whose_session_was_cut_is_listed_again_at_its_next_refresh(make_host: Callable[..., Host], pg_url: str) -> None:
    host = make_host(plugins=[], database_url=pg_url)
    running = Cluster(host.db, ttl=3600)  # its own refresh thread stays asleep: the test refreshes
    running.join()
    try:
        assert running.lock is not None
        _cut(host, running.lock)
        running.lock.refresh()  # what its membership thread does every 10 seconds
        assert Cluster(host.db).members() == [running.holder]
        with pytest.raises(MdmError, match=r"`mdm run` is running on database .*: stop it first"):
            refuse_upgrade_while_running(host.db, [_State("vpp", "behind")])
    finally:
        running.leave()


def test_a_lock_whose_session_was_cut_is_not_taken_from_its_live_holder(make_host: Callable[..., Host], pg_url: str) -> None:
    host = make_host(plugins=[], database_url=pg_url)
    job = DbLock(host.db, "job.mobile_apps.reclaim", ttl=300, holder="other-host.example:4242:abcdef01")
    job.acquire()
    try:
        _cut(host, job)
        job.refresh()  # its heartbeat's renewal
        other = DbLock(host.db, "job.mobile_apps.reclaim", ttl=300)
        assert not other.try_acquire()
        assert other.busy is not None and "process 4242 on other-host.example" in other.busy.describe()
    finally:
        job.release()


@pytest.mark.parametrize(("skew", "said"), [(60, "60 s ahead of"), (-45, "45 s behind")])
def test_mdm_run_warns_when_its_clock_is_off_the_database_servers(
    make_host: Callable[..., Host], pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, skew: int, said: str
) -> None:
    """The hosts compare the expiries other hosts wrote with their own clocks: one more than the
    membership's 30 s off counted the others gone (or was counted gone), without a word."""
    from datetime import timedelta

    import mdm_core.cluster
    from mdm_core.models import utcnow

    host = make_host(plugins=[], database_url=pg_url)
    monkeypatch.setattr(mdm_core.cluster, "utcnow", lambda: utcnow() + timedelta(seconds=skew))
    running = Cluster(host.db, ttl=3600)
    with caplog.at_level("WARNING", logger="mdm_core.cluster"):
        running.join()
    running.leave()
    [line] = [r.getMessage() for r in caplog.records if "clock" in r.getMessage()]
    assert line.startswith(f"this host's clock is {said} the database server's: ") and line.endswith("set the clocks right (NTP)")
    caplog.clear()
    monkeypatch.setattr(mdm_core.cluster, "utcnow", utcnow)
    with caplog.at_level("WARNING", logger="mdm_core.cluster"):
        running.join()
    running.leave()
    assert not [r for r in caplog.records if "clock" in r.getMessage()]
