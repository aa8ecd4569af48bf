"""Serve the console with uvicorn on a thread of ``mdm run``, beside the scheduler.

The socket is bound here first, so a port in use is a one-line error before anything starts,
and port 0 picks a free port (its number is printed). uvicorn runs on its own thread without
signal handlers: ``mdm run`` owns SIGINT/SIGTERM and stops the server when it stops.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import TYPE_CHECKING

from mdm_core.errors import MdmError

from .access import web_settings
from .settings import parse_listen

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)


class WebServer:
    """A running console: ``url``, ``app`` (its FastAPI application), ``stop()``."""

    def __init__(self, host: Host, listen: str):
        import uvicorn

        from .app import create_app
        from .head_limit import MAX_HEAD, BoundedH11Protocol
        from .stoppable import StoppableServer

        address, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            sock.close()
            raise MdmError(f"cannot listen on {listen} ({exc.strerror}): choose another address with `mdm run --listen HOST:PORT` or [web] listen") from None
        sock.listen(128)
        self.socket = sock
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
        self.url = f"http://{shown}:{bound[1]}/"
        self.app = create_app(host)
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            proxy_headers=True,
            forwarded_allow_ips=web_settings(host).trusted_proxies,
            access_log=False,
            lifespan="on",
            http=BoundedH11Protocol,  # an over-long URL or headers: one line (414, 431), not a reset
            h11_max_incomplete_event_size=MAX_HEAD,
        )
        self.server = StoppableServer(config)
        self.thread = threading.Thread(target=self._serve, name="web", daemon=True)

    def _serve(self) -> None:
        self.server.run(sockets=[self.socket])

    def start(self) -> WebServer:
        """Start serving; returns once the server accepts connections."""
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            self.thread.join(0.02)
        if not self.server.started:
            raise MdmError(f"the web console could not start on {self.url}: run with -v for details")
        return self

    def stop(self) -> None:
        """Stop accepting, finish the requests under way and the background work."""
        self.server.stop()
        self.thread.join(30)
        self.socket.close()
