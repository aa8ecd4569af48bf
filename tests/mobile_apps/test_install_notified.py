"""Installs with Apple's notifications on, end to end over loopback: the simulator posts to the
real endpoint of ``mdm run``'s web server, which acts on it, and the install goes ahead without
a sync and without asking Apple again."""

from __future__ import annotations

import time
from typing import Any, Callable

from mdm_core.host import Host
from mdm_core.inventory import add_device
from mdm_core.testing import EventRecorder
from plugins.mobile_apps.installs.commands import list_installs

from .conftest import app_id, commands, fixed_assets, free_serials, sync


def test_a_pending_install_is_queued_as_soon_as_apples_notification_arrives(make_apps_host: Callable[..., Host], mdm: Any,
                                                                          apps_events: EventRecorder) -> None:
    from plugins.vpp.accounts import set_account
    from plugins.vpp.simulator import Simulator
    from tests.vpp.notify_helpers import Endpoint, inbox, settle

    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=7, async_delay=60, notification_retry_delays=(0.05, 0.1)) as slow:
        host = make_apps_host(sim=slow)
        sync(host)
        endpoint = Endpoint(host)
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
