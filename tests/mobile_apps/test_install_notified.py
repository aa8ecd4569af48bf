"""Installs with Apple's notifications on, end to end over loopback: the simulator posts to the
real endpoint of ``mdm run``'s web server, which acts on it, and the install goes ahead without
a sync and without asking Apple again."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mdm_core.host import Host
from mdm_core.inventory import add_device
from mdm_core.testing import EventRecorder
from plugins.mobile_apps.installs.commands import list_installs

from .conftest import app_id, commands, fixed_assets, free_serials, sync


def test_a_pending_install_is_queued_as_soon_as_apples_notification_arrives(make_apps_host: Callable[..., Host], mdm: Any, apps_events: EventRecorder) -> None:
    from plugins.vpp.accounts import set_account
    from plugins.vpp.simulator import Simulator
    from tests.vpp.notify_helpers import Endpoint, inbox, settle

    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=7, async_delay=60, notification_retry_delays=(0.05, 0.1)) as slow:
        host = make_apps_host(sim=slow)
        sync(host)
        endpoint = Endpoint(host, slow)
        try:
            set_account(host, "school", notifications=True)
            a = fixed_assets(slow)[0]
            serial = free_serials(slow, a["adamId"])[0]
            add_device(host, serial, "iOS")
            code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device", serial, "--wait", "0")
            assert code == 0 and f"{serial}: pending" in out, out + err
            assert commands(host, serial) == []
            with slow.state.lock:
                slow.state.process_due(now=time.monotonic() + 120)  # Apple completes the event and notifies (no sync follows)
            settle(host, slow)
            [command] = commands(host, serial)
            assert list_installs(host, "pending") == []
            [queued] = apps_events.named("mobile_apps_install_queued")
            assert (queued["serialNumber"], queued["commandUuid"], queued["source"]) == (serial, command["uuid"], "pending")
            [managed] = [n for n in inbox(host) if n.notification_type == "ASSET_MANAGEMENT"]
            assert managed.status == "done"
        finally:
            endpoint.close()


def test_a_pending_install_apple_refuses_fails_as_soon_as_apples_notification_arrives(
    make_apps_host: Callable[..., Host], mdm: Any, apps_events: EventRecorder
) -> None:
    """Two installs left pending, one event each; Apple refuses the first (9709) and grants the
    second: the first fails at once with Apple's reason (no job, no new question to Apple), the
    second is queued."""
    from plugins.vpp.accounts import set_account
    from plugins.vpp.simulator import Simulator
    from tests.vpp.notify_helpers import Endpoint, inbox, settle

    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=7, async_delay=60, notification_retry_delays=(0.05, 0.1)) as slow:
        host = make_apps_host(sim=slow)
        sync(host)
        endpoint = Endpoint(host, slow)
        try:
            set_account(host, "school", notifications=True)
            a = fixed_assets(slow)[0]
            refused, granted = free_serials(slow, a["adamId"])[:2]
            for serial in (refused, granted):
                add_device(host, serial, "iOS")
                code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--device", serial, "--wait", "0")
                assert code == 0 and f"{serial}: pending" in out, out + err
            slow.fail_next_event("ASSOCIATE", 9709)  # the older event: the first install's
            asked = slow.in_flight.total
            with slow.state.lock:
                slow.state.process_due(now=time.monotonic() + 120)  # Apple ends both events and notifies (no sync follows)
            settle(host, slow)
            assert commands(host, refused) == [] and len(commands(host, granted)) == 1
            [failed] = list_installs(host, "failed")
            assert failed["target"] == refused and "Apple error 9709" in failed["error"] and "nothing queued" in failed["error"]
            assert list_installs(host, "pending") == []
            [event] = apps_events.named("mobile_apps_install_failed")
            assert (event["serialNumber"], event["errorNumber"], event["source"]) == (refused, 9709, "request")
            assert {n.body["notification"]["result"] for n in inbox(host) if n.notification_type == "ASSET_MANAGEMENT"} == {"SUCCESS", "FAILURE"}
            assert slow.in_flight.total == asked  # nothing asked of Apple again: the notifications said it all
        finally:
            endpoint.close()


def _waiting_user(host: Host, sim: Any, mdm: Any) -> tuple[str, str, dict[str, Any]]:
    """A Registered VPP user with an enrolled iPhone asks for an app: the install waits."""
    from mdm_core.inventory import add_user

    registered = sim.state.user_ids("Registered")[0]
    add_user(host, registered)
    a = fixed_assets(sim)[0]
    serial = free_serials(sim, a["adamId"])[0]
    add_device(host, serial, "iOS", owner=registered)
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--user", registered)
    assert code == 0 and f"{registered}: waiting: waiting for the user to accept the invitation" in out, out + err
    assert "associateVPPUserWithITSAccount" in out  # the invitation URL to send them
    assert [(r["target"], r["kind"]) for r in list_installs(host, "invited")] == [(registered, "user")]
    code, out, err = mdm("apps", "install", app_id(host, a["adamId"]), "--user", registered)  # asked twice: one install waits
    assert code == 0 and len(list_installs(host, "invited")) == 1
    assert commands(host, serial) == []
    return registered, serial, a


def test_an_install_waiting_for_the_invitation_goes_ahead_when_apple_says_it_was_accepted(
    make_apps_host: Callable[..., Host], mdm: Any, simulator: Any, apps_events: EventRecorder
) -> None:
    from plugins.vpp.accounts import set_account
    from tests.vpp.notify_helpers import Endpoint, inbox, settle

    simulator.notifier.retry_delays = (0.05, 0.1)
    host = make_apps_host()
    sync(host)
    endpoint = Endpoint(host, simulator)
    try:
        set_account(host, "school", notifications=True)
        registered, serial, a = _waiting_user(host, simulator, mdm)
        simulator.accept_invite(registered)  # USER_ASSOCIATED reaches the endpoint: no sync
        settle(host, simulator)
        [command] = commands(host, serial)
        assert list_installs(host, "invited") == [] and [r["target"] for r in list_installs(host, "queued")] == [registered]
        assert registered in {t[3] for t in simulator.snapshot()["assignments"] if t[0] == a["adamId"]}  # licensed at Apple
        [queued] = apps_events.named("mobile_apps_install_queued")
        assert (queued["clientUserId"], queued["serialNumber"], queued["commandUuid"]) == (registered, serial, command["uuid"])
        settle(host, simulator)  # the license's own notification is sent after the associate that USER_ASSOCIATED started
        types = [n.notification_type for n in inbox(host)]
        assert "USER_ASSOCIATED" in types and types[-1] == "ASSET_MANAGEMENT", types  # the license's own notification came too
    finally:
        endpoint.close()


def test_without_notifications_the_next_sync_lets_it_go_ahead(make_apps_host: Callable[..., Host], mdm: Any, simulator: Any) -> None:
    host = make_apps_host()
    sync(host)
    registered, serial, _ = _waiting_user(host, simulator, mdm)
    simulator.accept_invite(registered)
    assert commands(host, serial) == []  # nobody told this host yet
    sync(host)  # the sync finds the user Associated: same event, same outcome
    assert len(commands(host, serial)) == 1 and list_installs(host, "invited") == []


def test_users_accepting_the_invitation_without_an_install_waiting_take_no_write(make_apps_host: Callable[..., Host], mdm: Any, simulator: Any) -> None:
    """A sync's ``vpp_users_changed`` names users who became Associated (hundreds after the
    benchmark's spread change); when no install of the account waits for an invitation (almost
    always) the event is answered by one read, without a write transaction (was: one for each
    event) and without binding its users; when one waits, it goes ahead as before."""
    from sqlalchemy import event as sa_event

    from mdm_core.events import Event

    host = make_apps_host()
    sync(host)
    registered = simulator.state.user_ids("Registered")
    writes: list[str] = []
    run_write = host.db.run_write

    def counted(work: Any, **kwargs: Any) -> Any:
        writes.append(getattr(work, "__qualname__", ""))
        return run_write(work, **kwargs)

    host.db.run_write = counted  # type: ignore[method-assign]
    users = [{"clientUserId": u, "status": "Associated"} for u in registered[1:4]]
    statements: list[str] = []
    listener = lambda _c, _cur, statement, *_a: statements.append(statement)  # noqa: E731
    sa_event.listen(host.db.engine, "before_cursor_execute", listener)
    try:
        host.events.dispatch(Event(name="vpp_users_changed", payload={"account": "school", "users": users}))
    finally:
        sa_event.remove(host.db.engine, "before_cursor_execute", listener)
    assert writes == []
    [read] = [s for s in statements if "mobile_apps_install" in s]
    assert "target" not in read.split("WHERE", 1)[1]  # no install invited in the account: the users are not even bound
    host.db.run_write = run_write  # type: ignore[method-assign]
    waiting, serial, _ = _waiting_user(host, simulator, mdm)
    simulator.accept_invite(waiting)
    sync(host)
    assert len(commands(host, serial)) == 1 and list_installs(host, "invited") == []


def test_an_install_waiting_for_a_removed_user_or_device_is_canceled_at_once(host, simulator, mdm):
    """A user removed while an install waited for their invitation (their VPP user is retired, so
    it never would go ahead) stayed listed by `mdm apps installs --status invited` for ever; a
    device removed while its install was pending stayed pending until the installs job."""
    from mdm_core.inventory import remove_device, remove_user

    registered, _, a = _waiting_user(host, simulator, mdm)
    serial = free_serials(simulator, a["adamId"])[1]
    add_device(host, serial, "iOS")
    simulator.faults.add("server_error", endpoint="assets/associate")
    assert mdm("apps", "install", app_id(host, a["adamId"]), "--device", serial, "--wait", "0")[0] == 0
    simulator.faults.clear()
    remove_user(host, registered)
    remove_device(host, serial)
    assert list_installs(host, "invited") == [] and list_installs(host, "pending") == []
    rows = {r["target"]: r for r in list_installs(host, "canceled")}
    assert "user was removed" in rows[registered]["error"] and "device was removed" in rows[serial]["error"]
    code, out, _ = mdm("apps", "installs", "--status", "invited")
    assert code == 0 and registered not in out
