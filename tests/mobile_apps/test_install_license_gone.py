"""A user's license that Apple granted and then let go before the install was written (the
user retired, or the license taken back, while the request waited on Apple): the install is
failed with the reason, and nothing is queued for a license that is not there."""

from __future__ import annotations

from typing import Any

import pytest

from mdm_core.inventory import add_device, add_user, remove_device
from plugins.mobile_apps.installs.commands import list_installs
from plugins.mobile_apps.installs.released import let_go
from plugins.mobile_apps.installs.request import install
from plugins.mobile_apps.vpp_port import VppPort

from .conftest import app_id, commands, fixed_assets, free_serials, holders


def _let_go(host: Any, how: str, adam_id: str, user: str) -> None:
    port = VppPort(host)
    if how == "retired":  # `mdm vpp users retire USER`
        port.retire_users("school", [user], wait=5.0)
    else:  # `mdm apps reclaim APP --user USER`
        port.disassociate("school", adam_id, "STDQ", client_user_ids=[user], wait=5.0)


def _user_with_device(host: Any, simulator: Any) -> tuple[dict[str, Any], str, str]:
    """An iOS-only asset, and an MDM user (an Associated VPP user holding none of its licenses)
    owning an enrolled device that holds none either."""
    a = fixed_assets(simulator)[0]  # iOS only
    user = next(u for u in simulator.state.user_ids("Associated") if u not in holders(simulator, a["adamId"]))
    [serial] = free_serials(simulator, a["adamId"])[:1]
    add_user(host, user)
    add_device(host, serial, "iOS", owner=user)
    return a, user, serial


@pytest.mark.parametrize("how", ["retired", "reclaimed"])
def test_a_user_license_let_go_right_after_apple_granted_it_queues_no_install(on_both, simulator, monkeypatch, how):
    """The request said ``licensed`` and queued InstallApplication on the user's device though
    Apple had already released the license (the user retired, or the license taken back, while
    the request waited): the device asked the App Store for an app it holds no license for."""
    host, _ = on_both
    a, user, serial = _user_with_device(host, simulator)
    real = VppPort.associate

    def associate(port, *args, **kwargs):  # Apple grants, then lets go before the install is written
        result = real(port, *args, **kwargs)
        _let_go(host, how, a["adamId"], user)
        return result

    monkeypatch.setattr(VppPort, "associate", associate)
    outcome = install(host, app_id(host, a["adamId"]), user=user)
    lines = [tuple(line.values()) for line in outcome.as_dicts()]
    gone = "retired at Apple" if how == "retired" else "taken back at Apple"
    assert [(t, s) for t, s, _ in lines] == [(user, "failed")], lines
    assert gone in lines[0][2] and "nothing was queued" in lines[0][2], lines
    assert not outcome.ok
    assert commands(host, serial) == []
    [row] = list_installs(host)
    assert (row["status"], row["command_uuids"]) == ("failed", []) and gone in row["error"], row
    assert user not in holders(simulator, a["adamId"])


@pytest.mark.parametrize("how", ["retired", "reclaimed"])
def test_a_pending_user_install_whose_license_apple_let_go_before_its_event_queues_nothing(on_both, simulator, monkeypatch, apps_events, how):
    """The installs job asks Apple again for a pending user install; Apple grants, and the user
    is retired (or the license taken back) before the grant's license event is delivered: the
    event's handler queued InstallApplication for a license that was not there any more."""
    from plugins.mobile_apps.installs.pending import retry_pending
    from plugins.mobile_apps.models import Install

    host, _ = on_both
    a, user, serial = _user_with_device(host, simulator)
    install_row = Install(account="school", adam_id=a["adamId"], pricing_param="STDQ", kind="user", target=user, source="request", status="pending")
    host.db.run_write(lambda s: s.add(install_row))
    real_associate, real_deliver = VppPort.associate, host.deliver_events
    granted: list[bool] = []

    def associate(port, *args, **kwargs):
        granted.append(True)
        return real_associate(port, *args, **kwargs)

    def deliver(*args, **kwargs):  # the grant is in the mirror, its event not delivered yet
        if granted and granted.pop():
            _let_go(host, how, a["adamId"], user)
        return real_deliver(*args, **kwargs)

    monkeypatch.setattr(VppPort, "associate", associate)
    monkeypatch.setattr(host, "deliver_events", deliver)
    counts = retry_pending(host)
    gone = "retired at Apple" if how == "retired" else "taken back at Apple"
    assert commands(host, serial) == []
    [row] = list_installs(host)
    assert (row["status"], row["command_uuids"]) == ("failed", []) and gone in row["error"] and "nothing was queued" in row["error"], row
    assert counts["queued"] == 0, counts
    [failed] = apps_events.named("mobile_apps_install_failed")
    assert failed["clientUserId"] == user and gone in failed["error"]
    assert user not in holders(simulator, a["adamId"])


def test_the_check_reads_the_mirror_once_for_a_whole_batch_of_users(on_both, simulator):
    """An install for many users checked, before its write, whether each still held its license
    with one read of the mirror per user (and, for any that did not, one of every VPP user of
    the account): a batch of 20 users made 20 reads where one does. The answer is the same."""
    from sqlalchemy import event

    host, _ = on_both
    a = fixed_assets(simulator)[0]
    held = holders(simulator, a["adamId"])
    status = {u["clientUserId"]: u["status"] for u in simulator.state.user_records()}
    users = sorted(status)
    for user in users:
        add_user(host, user)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def check(batch: list[str]) -> tuple[dict[str, str], int]:
        engines = {id(e): e for e in (host.db.engine, host.db.write_engine)}.values()
        for engine in engines:
            event.listen(engine, "before_cursor_execute", count)
        try:
            statements.clear()
            gone = host.db.run_write(lambda session: let_go(host, session, "school", a["adamId"], "STDQ", batch))
            return gone, len(statements)
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", count)

    one, for_one = check(users[:1])
    every, for_all = check([*users, "nobody-here"])
    assert for_all == for_one, (for_one, for_all)
    expected = {u: "reclaimed" if status[u] in ("Registered", "Associated") else "retired" for u in users if u not in held}
    assert every == {**expected, "nobody-here": "removed"}
    assert {"reclaimed", "retired"} <= set(every.values()) and len(every) < len(users), every  # the batch has each kind


def test_a_retirement_committed_while_the_install_is_written_waits_for_it(on_both, simulator, monkeypatch):
    """On PostgreSQL the check read the mirror on a connection of its own: a retirement another
    process committed after that read and before the install's commit slipped through, and
    InstallApplication was queued for a user retired before the install was written. The
    check now reads in the install's transaction and holds what it read until the commit: the
    retirement waits for the install (here, whose wait is cut short: refused at once)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from plugins.mobile_apps.installs import request

    host, _ = on_both
    a, user, serial = _user_with_device(host, simulator)
    quick = {"timeout": 0} if host.db.is_sqlite else {"options": "-c lock_timeout=200"}  # no wait for a lock held
    other = create_engine(host.db.url, connect_args=quick)
    retire = [
        text("UPDATE vpp_user SET status = 'Retired' WHERE client_user_id = :user"),
        text("DELETE FROM vpp_license WHERE kind = 'user' AND target = :user"),
    ]
    tried: list[str] = []

    def retired_elsewhere() -> None:  # another process's retirement, as the VPP plugin writes it
        try:
            with other.begin() as conn:
                for statement in retire:
                    conn.execute(statement, {"user": user})
            tried.append("committed")
        except OperationalError:
            tried.append("waits")

    real = request.let_go

    def let_go(*args, **kwargs):  # between the check and the install's write
        gone = real(*args, **kwargs)
        retired_elsewhere()
        return gone

    monkeypatch.setattr(request, "let_go", let_go)
    try:
        outcome = install(host, app_id(host, a["adamId"]), user=user)
        queued = commands(host, serial)
        assert not (tried == ["committed"] and queued), "a user retired before the install was written got InstallApplication"
        assert tried == ["waits"] and outcome.ok and len(queued) == 1, (tried, outcome.as_dicts())
        retired_elsewhere()  # the install committed: the retirement goes through, after it
        assert tried == ["waits", "committed"]
    finally:
        other.dispose()


@pytest.mark.parametrize("with_device", [True, False], ids=["with-device", "no-device"])
def test_an_automatic_install_for_a_user_retired_before_its_event_queues_nothing(
    make_host, simulator, project_dir, apps_events, database_url, monkeypatch, capsys, with_device
):
    """With ``auto_install``, a sync finds a license assigned to a user in Apple's portal; the
    user is retired before the sync's license event is handled: the handler queued
    InstallApplication for a license that was not there any more. Now nothing is queued and the
    install is failed and announced, in the pending path's words; also for a user with no
    enrolled device, for whom nothing was recorded (``mdm apps installs`` said "no installs")."""
    from mdm_core.testing import MdmRunner
    from plugins.vpp.testing import add_simulated_account

    from .conftest import BASE_CONFIG, sync

    host = make_host(config=BASE_CONFIG + "auto_install = true\n", database_url=database_url)
    host.pm.register(apps_events)
    add_simulated_account(host, simulator, project_dir)
    sync(host)
    a, user, serial = _user_with_device(host, simulator)
    if not with_device:
        remove_device(host, serial)
    simulator.assign_in_portal(a["adamId"], client_user_id=user)
    real_deliver, armed = host.deliver_events, [True]

    def deliver(*args, **kwargs):  # the sync's event recorded, not delivered yet
        if armed and armed.pop():
            _let_go(host, "retired", a["adamId"], user)
        return real_deliver(*args, **kwargs)

    monkeypatch.setattr(host, "deliver_events", deliver)
    sync(host)
    assert not armed  # the sync delivered its events after the retirement
    assert commands(host, serial) == []
    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url} if database_url else None)
    code, out, err = mdm("apps", "installs")
    assert code == 0 and user in out and "failed" in out and "retired at Apple" in out, (out, err)
    [row] = list_installs(host)
    assert (row["source"], row["status"], row["target"], row["command_uuids"]) == ("auto", "failed", user, []), row
    assert "retired at Apple" in row["error"] and "nothing was queued" in row["error"], row
    [failed] = apps_events.named("mobile_apps_install_failed")
    assert failed["clientUserId"] == user and failed["source"] == "auto" and "retired at Apple" in failed["error"]


def test_automatic_installs_for_many_users_read_their_devices_once(make_host, simulator, project_dir, database_url):
    """With ``auto_install``, a license event naming many users read each user's devices by a
    statement of its own (an event carries up to 500): now one read for the event, and every
    user's device still gets its InstallApplication."""
    from sqlalchemy import event

    from plugins.vpp.testing import add_simulated_account

    from .conftest import BASE_CONFIG, sync

    host = make_host(config=BASE_CONFIG + "auto_install = true\n", database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    sync(host)
    a = fixed_assets(simulator)[0]  # iOS only
    users = [u for u in simulator.state.user_ids("Associated") if u not in holders(simulator, a["adamId"])][:6]
    serials = free_serials(simulator, a["adamId"])[: len(users)]
    for user, serial in zip(users, serials, strict=True):
        add_user(host, user)
        add_device(host, serial, "iOS", owner=user)
        simulator.assign_in_portal(a["adamId"], client_user_id=user)
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM core_device" in statement and "owner" in statement:
            reads.append(statement)

    event.listen(host.db.engine, "before_cursor_execute", count)  # the write engine's statements too (it shares its events)
    try:
        sync(host)
    finally:
        event.remove(host.db.engine, "before_cursor_execute", count)
    assert all(len(commands(host, serial)) == 1 for serial in serials), [commands(host, s) for s in serials]
    assert len(reads) == 1, [r[-300:] for r in reads]
