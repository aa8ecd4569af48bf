"""Token states pause scheduled syncs (no retry storm); one sync per account at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from mdm_core.errors import MdmError
from plugins.vpp.accounts import add_account, list_accounts, set_account
from plugins.vpp.simulator import Simulator
from plugins.vpp.sync.run import sync_account, sync_accounts
from plugins.vpp.testing import assert_mirror_equals_apple, mirror_state

from .conftest import account_row


def _state(host: Any, name: str = "school") -> Mapping[str, Any]:
    return next(a for a in list_accounts(host) if a["name"] == name)


@pytest.mark.parametrize("action, state", [("expire_token", "expired"), ("revoke_token", "revoked")])
def test_token_error_pauses_schedule_until_manual_sync(synced: Any, simulator: Any, recorder: Any, request_counter: Any, action: str, state: str) -> None:
    before = mirror_state(synced)
    simulator.purchase(count=3)  # a change the failed syncs must not bring in
    getattr(simulator, action)()
    report = sync_account(synced, "school", trigger="schedule")
    assert report["status"] == "error" and report["error_type"].startswith("Token")
    acc = _state(synced)
    assert acc["token_state"] == state and acc["paused"] is True
    assert acc["last_sync_result"].startswith("error: ")
    assert "mdm vpp account set school --token-file" in acc["action"]
    assert mirror_state(synced) == before
    [changed] = recorder.named("vpp_token_state_changed")
    assert changed["account"] == "school" and changed["previous"] == "valid" and changed["state"] == state
    assert "mdm vpp account set school --token-file" in changed["action"]

    # scheduled syncs are skipped without a single request to Apple
    seen = request_counter.seen
    for _ in range(3):
        skipped = sync_account(synced, "school", trigger="schedule")
        assert skipped["status"] == "skipped" and state in skipped["error"]
    assert request_counter.seen == seen
    # a manual sync tries again (and fails again, without a second state event)
    again = sync_account(synced, "school")
    assert again["status"] == "error" and request_counter.seen > seen
    assert len(recorder.named("vpp_token_state_changed")) == 1

    simulator.restore_token()
    recorder.clear()
    ok = sync_account(synced, "school")
    assert ok["status"] == "ok"
    acc = _state(synced)
    assert acc["token_state"] == "valid" and acc["paused"] is False
    assert [(e["previous"], e["state"]) for e in recorder.named("vpp_token_state_changed")] == [(state, "valid")]
    assert_mirror_equals_apple(synced, simulator)
    assert sync_account(synced, "school", trigger="schedule")["status"] == "ok"


def test_renewed_token_clears_paused_state(synced: Any, simulator: Any, token_file: Path, recorder: Any) -> None:
    simulator.revoke_token()
    assert sync_account(synced, "school")["status"] == "error"
    assert _state(synced)["token_state"] == "revoked"
    simulator.restore_token()
    recorder.clear()
    acc = set_account(synced, "school", token_file=str(token_file))
    assert acc["token_state"] == "valid" and acc["paused"] is False
    assert [(e["previous"], e["state"]) for e in recorder.named("vpp_token_state_changed")] == [("revoked", "valid")]
    assert sync_account(synced, "school", trigger="schedule")["status"] == "ok"


def test_taken_over_names_other_mdm(synced: Any, simulator: Any, recorder: Any, token_file: Path) -> None:
    before = mirror_state(synced)
    simulator.remove_in_portal(
        *next((a, p, None, t) for a, p, k, t in sorted(before["assignments"]) if k == "clientUserId")[:2],
        client_user_id=next(t for a, p, k, t in sorted(before["assignments"]) if k == "clientUserId"),
    )
    simulator.claim_by_other_mdm(name="RivalMDM", metadata="rival.example.com")
    report = sync_account(synced, "school")
    assert report["status"] == "error" and report["error_type"] == "MdmConflictError"
    assert "RivalMDM" in report["error"]
    # the advice is the command that works (was: `set` without --take-over, which refuses, "or add it again", refused for an existing account)
    assert report["error"].endswith("then take the location back with `mdm vpp account set school --token-file FILE --take-over`"), report["error"]
    acc = _state(synced)
    assert acc["token_state"] == "taken_over" and acc["paused"]
    assert "RivalMDM" in acc["token_status"]
    [event] = recorder.named("vpp_token_state_changed")
    assert event["state"] == "taken_over" and "RivalMDM" in event["detail"]
    assert mirror_state(synced) == before
    assert sync_account(synced, "school", trigger="schedule")["status"] == "skipped"
    # renewing refuses while another MDM holds the location, naming it; --take-over claims it back
    with pytest.raises(MdmError, match="RivalMDM.*--take-over"):
        set_account(synced, "school", token_file=str(token_file))
    assert simulator.state.mdm_info["id"] != account_row(synced).mdm_info_id
    set_account(synced, "school", token_file=str(token_file), take_over=True)
    assert simulator.state.mdm_info["id"] == account_row(synced).mdm_info_id
    assert sync_account(synced, "school", trigger="schedule")["status"] == "ok"
    assert_mirror_equals_apple(synced, simulator)


def test_other_account_keeps_syncing(synced: Any, simulator: Any, project_dir: Path) -> None:
    with Simulator(seed=23, assets=4, devices=6, users=5, page_size=5, async_delay=0) as other:
        path = other.write_token(project_dir / "college.vpptoken")
        add_account(synced, "college", str(path), service_url=other.base_url)
        simulator.expire_token()
        reports = {r["account"]: r for r in sync_accounts(synced, None, trigger="schedule")}
        assert reports["school"]["status"] == "error" and reports["college"]["status"] == "ok"
        reports = {r["account"]: r for r in sync_accounts(synced, None, trigger="schedule")}
        assert reports["school"]["status"] == "skipped" and reports["college"]["status"] == "ok"
        assert_mirror_equals_apple(synced, other, "college")
        assert _state(synced, "college")["token_state"] == "valid"


@pytest.mark.parametrize("action", ["expire_token", "revoke_token"])
def test_a_refused_token_s_sync_says_the_command_that_renews_it(synced: Any, simulator: Any, cli: Any, action: str) -> None:
    """`mdm vpp sync` on a token Apple refuses names the command that stores a new one, as
    `mdm vpp account list` does (was: "... and upload it again", the console's words)."""
    getattr(simulator, action)()
    code, out, err = cli("vpp", "sync", "school")
    renew = (
        "download a new token from Apple School Manager or Apple Business Manager (Settings > Apps and Books), "
        "then `mdm vpp account set school --token-file NEW.vpptoken`"
    )
    assert code == 1 and renew in out + err and "upload it" not in out + err, out + err
    code, out, _ = cli("vpp", "account", "list", "--json")
    assert code == 0 and renew in out  # its last result


def test_second_trigger_while_locked(synced: Any, cli: Any) -> None:
    lock = synced.lock(f"vpp.sync.{account_row(synced).id}", ttl=60)
    lock.acquire()
    try:
        report = sync_account(synced, "school")
        assert report["status"] == "already running"
        code, out, err = cli("vpp", "sync", "school")
        assert code == 1 and out == "" and "already running" in err
    finally:
        lock.release()
    assert sync_account(synced, "school")["status"] == "ok"


def test_wait_for_running_sync(synced: Any, cli: Any) -> None:
    lock = synced.lock(f"vpp.sync.{account_row(synced).id}", ttl=60)
    lock.acquire()
    timer = threading.Timer(0.2, lock.release)
    timer.start()
    try:
        started = time.monotonic()
        code, out, err = cli("vpp", "sync", "school", "--wait", "10")
        assert code == 0, out + err
        assert time.monotonic() - started >= 0.15
        assert "sync ok" in out
    finally:
        timer.join()


def test_expired_lock_is_taken_over(synced: Any) -> None:
    from datetime import datetime, timedelta

    from freezegun import freeze_time

    lock = synced.lock(f"vpp.sync.{account_row(synced).id}", ttl=60)
    with freeze_time(datetime.now(UTC) - timedelta(seconds=61)):
        lock.acquire()  # a minute ago, by a holder that "crashed" since: its lock has expired
    report = sync_account(synced, "school")
    assert report["status"] == "ok"


def test_waiting_scheduled_sync_sees_the_pause(synced: Any, simulator: Any, request_counter: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduled sync that waited for the lock uses the account as the other sync left it:
    paused by a token error, it is skipped instead of asking Apple again."""
    from mdm_core.locks import DbLock
    from plugins.vpp.sync import run as runner

    lock = synced.lock(f"vpp.sync.{account_row(synced).id}", ttl=60)
    lock.acquire()
    results: list[Mapping[str, Any]] = []
    waiting = threading.Event()
    try_acquire = DbLock.try_acquire

    def tried(self: DbLock) -> bool:
        won = try_acquire(self)
        if not won and threading.current_thread() is waiter:
            waiting.set()
        return won

    monkeypatch.setattr(DbLock, "try_acquire", tried)
    waiter = threading.Thread(target=lambda: results.append(sync_account(synced, "school", trigger="schedule", wait=10)))
    waiter.start()
    try:
        assert waiting.wait(10), "the scheduled sync never waited for the lock"
        simulator.expire_token()
        report = runner._locked_sync(synced, account_row(synced), False, "manual", lock, 86400)
        assert report["status"] == "error"
        seen = request_counter.seen
    finally:
        lock.release()
        waiter.join()
    assert results[0]["status"] == "skipped"
    assert request_counter.seen == seen


def test_remove_refused_while_a_sync_runs(synced: Any, cli: Any) -> None:
    lock = synced.lock(f"vpp.sync.{account_row(synced).id}", ttl=60)
    lock.acquire()
    try:
        code, out, err = cli("vpp", "account", "remove", "school", "--yes")
        assert (code, err.strip().splitlines()[-1]) == (1, "mdm: error: a sync of school is running: remove the account when it has finished"), (
            err
        )  # as the API and console say it
        assert account_row(synced).name == "school"
    finally:
        lock.release()
    assert cli("vpp", "account", "remove", "school", "--yes")[0] == 0


def test_sync_all_goes_on_when_an_account_is_removed_meanwhile(synced: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import plugins.vpp.sync.run as runner
    from plugins.vpp.accounts import remove_account

    real = runner.sync_account
    names: list[str] = []

    def remove_first(host: Any, name: str, **kwargs: Any) -> Mapping[str, Any]:
        names.append(name)
        if name == "ghost":
            remove_account(host, "ghost")  # another process removed it after the list was read
        return real(host, name, **kwargs)

    from mdm_core.models import utcnow
    from plugins.vpp.models import VppAccount

    row = account_row(synced)
    synced.db.run_write(
        lambda s: s.add(
            VppAccount(
                name="ghost",
                uid="ghost-uid",
                service_url=row.service_url,
                token_ciphertext=row.token_ciphertext,
                token_fingerprint="x",
                token_expires_at=utcnow(),
                mdm_info_id="ghost",
            )
        )
    )
    monkeypatch.setattr(runner, "sync_account", remove_first)
    reports = {r["account"]: r for r in sync_accounts(synced, None)}
    assert reports["ghost"]["status"] == "skipped" and "no VPP account named 'ghost'" in reports["ghost"]["error"]
    assert reports["school"]["status"] == "ok"


def test_an_apply_longer_than_the_lock_ttl_still_holds_the_lock_after_its_commit(synced: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The apply transaction holds the lock's row from its first statement (the fence), so the
    heartbeat cannot extend the lock meanwhile (it waits on that row): an apply that outlasts
    the TTL must extend the lock itself before it commits, or another host could take the
    account as soon as it commits, while this sync still delivers its events."""
    from datetime import timedelta

    from mdm_core import locks
    from plugins.vpp.sync import run as runner

    name = f"vpp.sync.{account_row(synced).id}"
    lock = synced.lock(name, ttl=600)
    lock.acquire()
    real_fence, real_now = locks.DbLock.fence, locks.utcnow
    fences: list[str] = []

    def fence_begun_long_ago(self: locks.DbLock, session: Any) -> None:
        if not fences:  # the apply's first statement, as if the apply had begun 700 s ago
            with monkeypatch.context() as m:
                m.setattr(locks, "utcnow", lambda: real_now() - timedelta(seconds=700))
                real_fence(self, session)
        else:
            real_fence(self, session)
        fences.append(self.name)

    monkeypatch.setattr(locks.DbLock, "fence", fence_begun_long_ago)
    try:
        report = runner._locked_sync(synced, account_row(synced), True, "manual", lock, 86400)
        assert report["status"] == "ok", report
        info = lock.info()
        assert info is not None and info.holder == lock.holder
        assert info.expires_at > real_now(), "the lock expired at the commit of a long apply"
        assert not synced.lock(name, ttl=600).try_acquire(), "another holder took the account right after the sync's commit"
    finally:
        lock.release()
