"""Helpers of the notification tests: an endpoint on loopback, waiting for things to settle."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from mdm_core.host import Host


def inbox(host: Host, account: str = "school") -> list[Any]:
    """The recorded notifications of an account, oldest first."""
    from plugins.vpp.models import VppAccount, VppNotification

    with host.db.session() as session:
        return list(session.execute(select(VppNotification).join(VppAccount, VppAccount.id == VppNotification.account_id)
                                    .where(VppAccount.name == account).order_by(VppNotification.id)).scalars())


def settle(host: Host, sim: Any, timeout: float = 10.0) -> None:
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
        return int(session.execute(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.delivered_at.is_(None))).scalar_one())


def inbox_all(host: Host) -> list[Any]:
    from plugins.vpp.models import VppNotification

    with host.db.session() as session:
        return list(session.execute(select(VppNotification).order_by(VppNotification.id)).scalars())


class Endpoint:
    """This host's notification endpoint on a free loopback port, acting in the background
    after each answer, as ``mdm run`` does. ``public_url`` is what ``[web] public_url`` would be."""

    def __init__(self, host: Host) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from plugins.vpp.accounts import settings
        from plugins.vpp.notifications.act import process_pending
        from plugins.vpp.notifications.configure import NOTIFY_PATH
        from plugins.vpp.notifications.inbox import receive

        limit = settings(host).notification_max_bytes

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                notify_id = self.path[len(NOTIFY_PATH):] if self.path.startswith(NOTIFY_PATH) else ""
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receipt = receive(host, notify_id, self.headers.get("Authorization"), body, max_bytes=limit)
                self.send_response(receipt.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if receipt.new:
                    process_pending(host, receipt.account_id)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.public_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
