"""Serve this host's notification endpoint in a child process that dies (SIGKILL) the moment it
starts acting on a notification it has just recorded (see test_crash_notify.py).

    python -m tests.reliability.crash_notify CONFIG DATABASE_URL

Prints ``URL <base url>`` once ``mdm run``'s web server accepts connections, then serves until
it is killed.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main(argv: list[str]) -> None:
    import plugins.vpp.plugin
    from mdm_core.host import create_host
    from mdm_core.testing import TEST_SECRET_KEY
    from mdm_core.web.server import WebServer
    from plugins.vpp.notifications import web

    def die(*args: object, **kwargs: object) -> None:  # after the record committed, before any act
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    web.process_pending = die  # type: ignore[assignment]
    config, database_url = argv[:2]
    host = create_host(config, environ={"MDM_SECRET_KEY": TEST_SECRET_KEY}, plugins=[plugins.vpp.plugin], database_url=database_url)
    server = WebServer(host, "127.0.0.1:0").start()
    print("URL", server.url.rstrip("/"), flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1:])
