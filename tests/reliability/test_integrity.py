"""Integrity (issue 17): one writer per account, no silent truncation.

- A sync paused past its lock's expiry (a real SIGSTOP of the whole process, like a paused
  VM) while another sync takes the lock and finishes: when it resumes it commits nothing, and
  its staged rows were left alone meanwhile (point 1), on SQLite and on PostgreSQL.
- A sync longer than the lock's time to live keeps its lock while another process waits (the
  heartbeat; issue 16 b).
- A page without its list key, and a listing that ends before its ``totalPages``, fail the
  sync cleanly instead of emptying the mirror (points 2 and 3).
- A change at Apple during the per-asset re-reads never commits licenses newer than their
  counts (point 4).
- A lock whose holder is gone is taken at once, and "already running" names the holder
  (point 6).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mdm_core.host import Host
from mdm_core.locks import DbLock
from mdm_core.models import utcnow
from mdm_core.testing import EventRecorder as Recorder
from plugins.vpp.simulator.api import endpoint_for
from plugins.vpp.sync.run import recent_runs, sync_account
from plugins.vpp.testing import apple_state, mirror_state

from ..conftest import PG_ADMIN_URL, PG_SKIP_REASON
from .conftest import apple_changes, assert_converged, count_figure, database_param, mirror_dump, runs, stage_rows
from .test_crash import CRASH_CONFIG, ROOT


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    return database_param(request, project_dir)


@pytest.fixture
def synced_on(make_host: Callable[..., Host], recorder: Recorder, small_sim: Any, project_dir: Path, database_url: str) -> Host:
    """``school`` synced once on the chosen database, then changed at Apple."""
    import plugins.vpp.plugin
    from plugins.vpp.accounts import add_account

    host = make_host(plugins=[plugins.vpp.plugin, recorder], config=CRASH_CONFIG, database_url=database_url)
    add_account(host, "school", str(small_sim.write_token(project_dir / "school.vpptoken")), service_url=small_sim.base_url)
    assert sync_account(host, "school")["status"] == "ok"
    apple_changes(small_sim)
    recorder.clear()
    return host


def _spawn(project_dir: Path, database_url: str, point: str, full: bool = False) -> Any:
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        "-m",
        "tests.reliability.crash_sync",
        str(project_dir / "conf" / "mdm.toml"),
        database_url,
        point,
        "full" if full else "incremental",
    ]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _configure_children(project_dir: Path, **vpp: float) -> None:
    """Set ``[vpp]`` values in the configuration file the sync processes started later read
    (the test's own host keeps the settings it read)."""
    conf = project_dir / "conf" / "mdm.toml"
    toml = conf.read_text()
    for key, value in vpp.items():
        toml, found = re.subn(rf"^{key} = .*$", f"{key} = {value}", toml, flags=re.MULTILINE)
        assert found == 1, f"no {key} in {conf}"
    conf.write_text(toml)


class HeldPage:
    """The simulator holds its answer to one request of ``endpoint`` (the one after ``after``
    others) until :meth:`release`: a sync waits inside that page for as long as the test needs,
    on a busy machine too, instead of for a fixed delay. ``entered`` is set when it arrives."""

    def __init__(self, sim: Any, endpoint: str, after: int, hold_at_most: float = 120.0):
        self.entered, self._released = threading.Event(), threading.Event()
        self._seen = 0
        answer = sim.api.handle

        def handle(method: str, path: str, *args: Any) -> Any:
            if endpoint_for(path) == endpoint:
                self._seen += 1
                if self._seen == after + 1:
                    self.entered.set()
                    self._released.wait(hold_at_most)
            return answer(method, path, *args)

        sim.api.handle = handle

    def release(self) -> None:
        self._released.set()


def _wait_stopped(pid: int, timeout: float = 30.0) -> None:
    """Until the process is stopped (state T in /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.02)
    raise AssertionError("the child never paused")


def _wait_expired(host: Host, holder: str, timeout: float = 30.0) -> None:
    """Until the account's lock, still held by ``holder``, has expired by the clock its takers read."""
    lock = host.lock(f"vpp.sync.{_account_id(host)}")
    deadline = time.monotonic() + timeout
    while (info := lock.info()) is not None and info.holder == holder and (left := (info.expires_at - utcnow()).total_seconds()) >= 0:
        assert time.monotonic() < deadline, f"the lock never expired: {info}"
        time.sleep(left + 0.01)
    assert info is not None and info.holder == holder, f"the paused holder lost its lock to someone else: {info}"


def _staged_rows_of(host: Host, run_id: int) -> int:
    with host.db.engine.connect() as conn:
        return sum(
            conn.execute(text(f"SELECT count(*) FROM {t} WHERE run_id = :r"), {"r": run_id}).scalar_one() for t in ("vpp_stage_license", "vpp_stage_user")
        )


@pytest.mark.slow  # a real sync process
def test_a_sync_paused_past_its_lock_commits_nothing_when_it_resumes(
    synced_on: Host, small_sim: Any, project_dir: Path, database_url: str, recorder: Recorder
) -> None:
    """Point 1: the paused full sync read everything, then lost its lock to a second sync that
    finished. Before the fence it resumed and committed a full sync of a stage the second
    sync had deleted: licenses and users removed, reported ok."""
    host = synced_on
    child = _spawn(project_dir, database_url, "pause-before-apply", full=True)
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "READY"
        assert child.stdout.readline().strip() == "PAUSED"
        _wait_stopped(child.pid)
        paused_run = runs(host)[-1]
        assert paused_run["status"] == "running" and _staged_rows_of(host, paused_run["id"]) > 0
        _wait_expired(host, paused_run["holder"])  # the paused holder cannot renew it

        report = sync_account(host, "school", wait=0)  # takes the expired lock of a live (paused) holder
        assert report["status"] == "ok", report
        assert_converged_but_for_stage(host, small_sim)
        assert _staged_rows_of(host, paused_run["id"]) > 0, "a sync deleted the staged rows of a live holder"
        after_second = mirror_dump(host)
        recorder.clear()
    finally:
        os.kill(child.pid, signal.SIGCONT)
    out, err = child.communicate(timeout=60)
    assert "DONE error" in out, (out, err)
    assert "LockLost" in out and "lost the lock vpp.sync." in out
    assert mirror_dump(host) == after_second, "the paused sync wrote to the mirror after losing its lock"
    assert stage_rows(host) == 0
    resumed = next(r for r in runs(host) if r["id"] == paused_run["id"])
    assert resumed["status"] == "error" and resumed["error_type"] == "LockLost"
    assert_converged(host, small_sim)
    host.deliver_events()
    assert recorder.named("vpp_licenses_disassociated") == [] and recorder.named("vpp_users_added") == []
    count_figure("fencing_cases")


def assert_converged_but_for_stage(host: Host, sim: Any) -> None:
    mirror, apple = mirror_state(host), apple_state(sim)
    assert mirror == apple


@pytest.mark.slow  # a real sync process
def test_a_sync_longer_than_the_lock_ttl_keeps_its_lock_while_another_process_waits(
    synced_on: Host, small_sim: Any, project_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16 (b): the lock lives 3 s, and one page of the first sync lasts until the waiting
    sync has found the lock still held after its first expiry (however long that takes). The
    heartbeat keeps it: the waiting sync starts only after the first one has committed, and both
    succeed. Without the heartbeat the waiting sync takes the lock mid-sync and the first one is
    fenced. (A renewal is due every second and may come two seconds late: with a 1 s time to
    live, renewals 1.4 s apart were measured on a loaded machine, time enough to let the other
    sync in.)"""
    _configure_children(project_dir, lock_ttl=3.0, request_timeout=120.0)  # the held page is waited for, not retried
    page = HeldPage(small_sim, "assignments", after=1)
    child = _spawn(project_dir, database_url, "none", full=True)
    assert child.stdout is not None
    tries: list[tuple[datetime, bool, str | None]] = []  # the waiting sync's: (begun at, won, holder that kept it)
    try:
        assert child.stdout.readline().strip() == "READY"
        assert page.entered.wait(60), "the first sync never asked for its second page of assignments"
        first = synced_on.lock(f"vpp.sync.{_account_id(synced_on)}").info()
        assert first is not None and first.expires_at > utcnow()
        try_acquire = DbLock.try_acquire

        def watched(lock: DbLock) -> bool:
            begun = utcnow()
            won = try_acquire(lock)
            tries.append((begun, won, lock.busy.holder if lock.busy else None))
            if not won and tries[-1][2] == first.holder and begun > first.expires_at:
                page.release()  # the first sync has outlived its time to live while this one waited
            return won

        monkeypatch.setattr(DbLock, "try_acquire", watched)
        report = sync_account(synced_on, "school", wait=60)
    finally:
        page.release()
    out, err = child.communicate(timeout=60)
    assert "DONE ok" in out, (out, err, tries)
    assert report["status"] == "ok", report
    assert any(not won and holder == first.holder and begun > first.expires_at for begun, won, holder in tries), tries
    a, b = runs(synced_on)[-2:]
    assert (a["status"], b["status"]) == ("ok", "ok"), (a, b)
    assert a["finished_at"] <= b["started_at"], "the waiting sync ran while the first one was still syncing"
    assert_converged(synced_on, small_sim)
    count_figure("fencing_cases")


@pytest.mark.parametrize("dataset", ["assets", "users", "assignments"])
@pytest.mark.parametrize("shape", ["missing", "not a list"])
def test_a_page_without_its_list_fails_cleanly(synced_on: Host, small_sim: Any, dataset: str, shape: str, recorder: Recorder) -> None:
    """Point 2: a 200 page lacking ``assets`` / ``users`` / ``assignments`` (or with an object
    there) was read as an empty list, and a full sync deleted every asset, user or license,
    reported ok."""
    before = mirror_dump(synced_on)
    if shape == "missing":
        small_sim.faults.add("missing_field", endpoint=dataset, field=dataset, count=None)
    else:
        small_sim.faults.add("extra_field", endpoint=dataset, fields={dataset: {"records": []}}, count=None)
    report = sync_account(synced_on, "school", full=True)
    assert report["status"] == "error" and report["error_type"] == "MalformedResponseError", report
    assert (f"has no '{dataset}' list" if shape == "missing" else f"has a '{dataset}' that is not a list (dict)") in report["error"]
    assert mirror_dump(synced_on) == before and stage_rows(synced_on) == 0
    synced_on.deliver_events()
    assert not [n for n in recorder.names() if n.endswith(("_removed", "_disassociated"))]
    small_sim.faults.clear()
    assert sync_account(synced_on, "school")["status"] == "ok"
    assert_converged(synced_on, small_sim)
    count_figure("truncation_cases")


@pytest.mark.parametrize("dataset", ["assets", "users", "assignments"])
def test_a_listing_that_ends_before_total_pages_fails_cleanly(synced_on: Host, small_sim: Any, dataset: str) -> None:
    """Point 3: a page without ``nextPageIndex`` ended the traversal although ``totalPages``
    announced more: a full sync deleted what was on the pages never read."""
    before = mirror_dump(synced_on)
    small_sim.faults.add("missing_field", endpoint=dataset, field="nextPageIndex", count=None)
    report = sync_account(synced_on, "school", full=True)
    assert report["status"] == "error" and report["error_type"] == "IncompletePagesError", report
    assert "the listing ended early" in report["error"]
    assert mirror_dump(synced_on) == before and stage_rows(synced_on) == 0
    small_sim.faults.clear()
    assert sync_account(synced_on, "school")["status"] == "ok"
    assert_converged(synced_on, small_sim)
    count_figure("truncation_cases")


def _assert_counts_match_licenses(host: Host) -> None:
    from plugins.vpp.views import list_assets, list_licenses

    held: dict[tuple[str, str], int] = {}
    for lic in list_licenses(host, "school"):
        held[(lic["adamId"], lic["pricingParam"])] = held.get((lic["adamId"], lic["pricingParam"]), 0) + 1
    for asset in list_assets(host, "school"):
        assert asset["assignedCount"] == held.get((asset["adamId"], asset["pricingParam"]), 0), asset


def test_a_change_during_the_rereads_never_commits_licenses_newer_than_their_counts(synced_on: Host, small_sim: Any) -> None:
    """Point 4: an incremental sync re-reads the assignments of an asset whose count disagrees;
    a license assigned at Apple just then was committed with the count read before it."""
    small_sim.faults.clear()
    assert sync_account(synced_on, "school")["status"] == "ok"
    snap = small_sim.snapshot()
    adam_id, pricing, kind, target = next(tuple(a) for a in snap["assignments"] if a[2] == "serialNumber")
    small_sim.remove_in_portal(adam_id, pricing, serial_number=target)  # the count drops: this asset is re-read
    spare = next(
        s for s in small_sim.state.device_serials() if (adam_id, pricing, "serialNumber", s) not in {tuple(a) for a in small_sim.snapshot()["assignments"]}
    )
    original = small_sim.api._get["assignments"]
    fired: list[Any] = []

    def reread_with_a_change(query: Any) -> Any:
        if query.get("adamId") in (adam_id, [adam_id]) and not fired:
            fired.append(True)
            small_sim.assign_in_portal(adam_id, pricing, serial_number=spare)  # at Apple, just before the re-read answers
        return original(query)

    small_sim.api._get["assignments"] = reread_with_a_change
    report = sync_account(synced_on, "school")
    assert fired and report["status"] == "ok" and report["mode"] == "incremental", report
    _assert_counts_match_licenses(synced_on)
    assert_converged(synced_on, small_sim)
    count_figure("truncation_cases")


@pytest.mark.slow  # a real sync process
def test_a_dead_holders_lock_is_taken_at_once_and_a_busy_one_is_named(synced_on: Host, small_sim: Any, project_dir: Path, database_url: str) -> None:
    """Point 6: a killed sync blocked the account for lock_ttl ("already running" though
    nothing ran; scheduled syncs skipped too), and "already running" did not say who."""
    lock = synced_on.lock(f"vpp.sync.{_account_id(synced_on)}", ttl=300)
    lock.acquire()
    try:
        report = sync_account(synced_on, "school", wait=0)
        assert report["status"] == "already running"
        assert f"process {os.getpid()} on " in report["error"] and "its lock expires at" in report["error"]
    finally:
        lock.release()

    small_sim.faults.add("slow", endpoint="assignments", seconds=0.3)
    child = _spawn(project_dir, database_url, "none", full=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "READY"
    deadline = time.monotonic() + 20
    while not any(r["status"] == "running" for r in runs(synced_on)) and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert recent_runs(synced_on, "school")[0]["status"] == "interrupted"
    small_sim.faults.clear()
    started = time.monotonic()
    report = sync_account(synced_on, "school", wait=0)  # wait=0: a lock still held would be "already running", not a wait
    assert report["status"] == "ok", report
    assert time.monotonic() - started < 30  # far from the 300 s a dead holder's lock lasts by default, on a busy machine too
    assert [r["status"] for r in runs(synced_on)][-2:] == ["interrupted", "ok"]
    assert_converged(synced_on, small_sim)


def _account_id(host: Host) -> int:
    with host.db.engine.connect() as conn:
        return int(conn.execute(text("SELECT id FROM vpp_account WHERE name = 'school'")).scalar_one())


def _backend_alive(host: Host, pid: int) -> bool:
    with host.db.engine.connect() as conn:
        return conn.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).first() is not None


def test_a_postgres_holder_whose_session_died_frees_the_lock_at_once(make_host: Callable[..., Host], request: pytest.FixtureRequest) -> None:
    """Point 6 on PostgreSQL: a holder on another machine (its pid cannot be checked) whose
    database session ended: its session advisory lock died with it, so the lock is free."""
    if not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    from mdm_core.locks import DbLock

    host = make_host(plugins=[], database_url=request.getfixturevalue("pg_url"))
    remote = DbLock(host.db, "vpp.sync.7", ttl=300, holder="other-host.example:4242:abcdef01")
    remote.acquire()
    other = DbLock(host.db, "vpp.sync.7", ttl=300)
    assert not other.try_acquire() and other.busy is not None and "process 4242 on other-host.example" in other.busy.describe()
    backend = remote._pg_conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    remote._pg_conn.invalidate()  # its connection dies (a crashed machine); the row still says it holds the lock
    remote._pg_conn = None
    # The server ends the session (and its advisory lock) shortly after the socket closes.
    deadline = time.monotonic() + 10
    while _backend_alive(host, backend) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert other.try_acquire()
    other.release()


# ---------------------------------------------------------------------- interruptions (point 5)


def _lock_is_free(host: Host) -> bool:
    from mdm_core.models import utcnow

    with host.db.engine.connect() as conn:
        row = conn.execute(text("SELECT expires_at FROM core_lock WHERE name LIKE 'vpp.sync.%'")).scalar_one_or_none()
    if row is None:
        return True
    from mdm_core.db.types import as_utc

    return as_utc(row if not isinstance(row, str) else __import__("datetime").datetime.fromisoformat(row)) <= utcnow()


@pytest.mark.slow  # a real sync process
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_mdm_vpp_sync_rolls_back_releases_and_exits_130_at_once(
    synced_on: Host, small_sim: Any, project_dir: Path, database_url: str, signum: int
) -> None:
    """Point 5: Ctrl-C during a sync hung ~30 s and exited 1 with a raw "database is locked";
    SIGTERM left the run "running" and the lock held. Now: rollback, lock released, run
    interrupted, exit 130 at once (within a second on a quiet machine; the bound leaves room for
    a busy one and still catches the 30 s hang). The sync is interrupted while it waits for a
    page the simulator holds: mid-read, with staged rows, however long it took to get there."""
    import subprocess
    import sys

    before = mirror_dump(synced_on)
    _configure_children(project_dir, request_timeout=120.0)  # the held page is waited for, not retried
    page = HeldPage(small_sim, "assignments", after=1)
    env = {**os.environ, "MDM_DATABASE_URL": database_url, "MDM_SECRET_KEY": "test-secret-key", "MDM_DISABLED_PLUGINS": "mobile_apps"}
    env.pop("MDM_CONFIG", None)
    mdm = Path(sys.executable).with_name("mdm")
    child = subprocess.Popen(
        [str(mdm), "--config", str(project_dir / "conf" / "mdm.toml"), "vpp", "sync", "school", "--full"],
        env=env,
        cwd=project_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert page.entered.wait(120), "the sync never asked for its second page of assignments"
        deadline = time.monotonic() + 60  # the users, read beside the assignments, are being staged
        while stage_rows(synced_on) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runs(synced_on)[-1]["status"] == "running" and stage_rows(synced_on) > 0, "the sync never started staging"
        sent = time.monotonic()
        child.send_signal(signum)
        out, err = child.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        page.release()
    assert child.returncode == 130, (out, err)
    assert elapsed < 5.0, f"exited {elapsed:.2f}s after the signal"
    assert "Traceback" not in err and "SQL" not in err and "locked" not in err
    last = runs(synced_on)[-1]
    assert last["status"] == "interrupted" and last["finished_at"] is not None, last
    assert _lock_is_free(synced_on)
    assert stage_rows(synced_on) == 0 and mirror_dump(synced_on) == before
    assert err.strip().splitlines()[-1].startswith(f"mdm: interrupted ({signal.Signals(signum).name})"), err
    small_sim.faults.clear()
    assert sync_account(synced_on, "school", wait=0)["status"] == "ok"
    assert_converged(synced_on, small_sim)
    count_figure("interruption_cases")


@pytest.mark.slow  # a real sync process
def test_an_interruption_inside_a_staging_write_rolls_it_back(synced_on: Host, small_sim: Any, project_dir: Path, database_url: str) -> None:
    """Point 5: SIGINT landing inside a write transaction is raised once that transaction has
    rolled back, never half-way through the driver: nothing waits on the process's own write."""
    before = mirror_dump(synced_on)
    child = _spawn(project_dir, database_url, "sigint-in-staging", full=True)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130 and "INTERRUPTED" in out, (out, err)
    assert "locked" not in err and "Traceback" not in err, err
    assert runs(synced_on)[-1]["status"] == "interrupted"
    assert _lock_is_free(synced_on) and stage_rows(synced_on) == 0 and mirror_dump(synced_on) == before
    assert sync_account(synced_on, "school", wait=0)["status"] == "ok"
    assert_converged(synced_on, small_sim)
    count_figure("interruption_cases")
