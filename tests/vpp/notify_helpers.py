"""Helpers of the notification tests: an endpoint on loopback, waiting for things to settle."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from mdm_core.host import Host


def inbox(host: Host, account: str = "school") -> list[Any]:
    """The recorded notifications of an account, oldest first."""
    from plugins.vpp.models import VppAccount, VppNotification

    with host.db.session() as session:
        return list(
            session.execute(
                select(VppNotification)
                .join(VppAccount, col(VppAccount.id) == col(VppNotification.account_id))
                .where(col(VppAccount.name) == account)
                .order_by(col(VppNotification.id))
            ).scalars()
        )


def settle(host: Host, sim: Any, timeout: float = 30.0) -> None:
    """Wait until the simulator sent everything due, then until every notification recorded
    was acted on (by the endpoint's background work, or here)."""
    from plugins.vpp.notifications.act import process_pending

    assert sim.wait_notifications(timeout), "the simulator still has notifications to send"
    deadline = time.monotonic() + timeout
    while any(n.status == "received" and n.attempts == 0 for n in inbox_all(host)) or _undelivered(host):
        process_pending(host)
        if time.monotonic() > deadline:
            raise AssertionError("notifications still waiting to be acted on, or their events to be delivered")
        time.sleep(0.02)


def act_until(host: Host, done: Any, timeout: float = 20.0) -> None:
    """Act on waiting notifications (here, or by the endpoint at the same time) until
    ``done()`` holds."""
    from plugins.vpp.notifications.act import process_pending

    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("the notifications never got there")
        process_pending(host)
        time.sleep(0.02)


def _undelivered(host: Host) -> int:
    from sqlalchemy import func

    from mdm_core.models import OutboxEvent

    with host.db.session() as session:
        return int(session.execute(select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.delivered_at).is_(None))).scalar_one())


def inbox_all(host: Host) -> list[Any]:
    from plugins.vpp.models import VppNotification

    with host.db.session() as session:
        return list(session.execute(select(VppNotification).order_by(col(VppNotification.id))).scalars())


#: How long the simulator waits for this host's answer to a notification, and (longer) the
#: host for Apple's answer to ``POST client/config``, which includes posting Apple's test
#: notification to the endpoint: bounds for a loaded machine, never waited for when all is well.
#: The host's bound is the longer one, so a slow endpoint is Apple's 9728, not a client timeout.
SIMULATOR_PATIENCE = 60.0
HOST_PATIENCE = 90.0


class Endpoint:
    """``mdm run``'s web server for ``host`` on a free loopback port (the real application, with
    the notification endpoint among its public routes), and ``[web] public_url`` pointing at it.
    With ``sim``, the simulator waits up to :data:`SIMULATOR_PATIENCE` for the endpoint's answer
    and the host up to :data:`HOST_PATIENCE` for the simulator's (the 10 s of the VPP tests'
    configuration timed out on a loaded 2-core machine while Apple's test notification was
    being answered)."""

    def __init__(self, host: Host, sim: Any = None) -> None:
        from mdm_core.web.server import WebServer
        from mdm_core.web.settings import WebSettings
        from plugins.vpp.settings import VppSettings

        self.server = WebServer(host, "127.0.0.1:0").start()
        self.public_url = self.server.url.rstrip("/")
        host.config.section("web", WebSettings).public_url = self.public_url
        if sim is not None:
            sim.notifier.timeout = SIMULATOR_PATIENCE
            vpp = host.config.section("vpp", VppSettings)
            vpp.request_timeout = max(vpp.request_timeout, HOST_PATIENCE)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until the work the endpoint started in the background (acting on what it
        received) has ended: on a loaded machine it can start after the test's next step."""
        assert self.server.app.state.background.wait_idle(timeout), "the endpoint's background work did not end"

    def close(self) -> None:
        self.server.stop()
