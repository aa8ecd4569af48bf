"""Run ``mdm apps install`` in a child process and SIGKILL it at a chosen point (see
test_crash_install.py).

    python -m tests.reliability.crash_install CONFIG POINT APP SERIAL...

The database comes from ``MDM_DATABASE_URL``. POINT names where the process kills itself.
"""

from __future__ import annotations

import sys

from .crash_sync import after, before


def main(argv: list[str]) -> None:
    from mdm_core.cli import main as mdm
    from plugins.mobile_apps.installs import request
    from plugins.vpp import operations
    from plugins.vpp.apple import client

    config, point, app, *serials = argv
    points = {
        "intent-recorded": lambda: before(request, "_associate"),  # nothing asked of Apple yet
        "associate-sent": lambda: after(client.AppsBooksClient, "associate_assets"),  # Apple accepted, not followed
        "event-followed": lambda: after(operations, "follow_rounds"),  # Apple licensed, the mirror not written
        "mirror-written": lambda: after(operations, "manage_licenses"),  # the mirror written, no command
        "queueing": lambda: after(request, "queue_install"),  # inside the transaction of the commands
    }
    points[point]()
    args = ["--config", config, "apps", "install", app, "--wait", "5"]
    for serial in serials:
        args += ["--device", serial]
    print("READY", flush=True)
    code = mdm(args)
    print("DONE", code, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
