"""Run one sync in a child process and SIGKILL it at a chosen point (see test_crash.py).

    python -m tests.reliability.crash_sync CONFIG DATABASE_URL POINT [FULL]

POINT names where the process kills itself (``none``: it runs to the end, and the parent
kills it from outside at a time offset; ``pause-...``: it stops itself with SIGSTOP and goes
on when continued). Prints ``READY`` once the host is built, then ``DONE <status>`` and
``ERROR <type> <message>``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def after(obj: Any, name: str, calls: int = 1) -> None:
    """Kill the process right after the ``calls``-th call of ``obj.name`` returns."""
    original: Callable[..., Any] = getattr(obj, name)
    seen = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        seen[0] += 1
        if seen[0] >= calls:
            die()
        return result

    setattr(obj, name, wrapper)


def before(obj: Any, name: str) -> None:
    """Kill the process when ``obj.name`` is called."""
    setattr(obj, name, lambda *a, **k: die())


def pause_before(obj: Any, name: str) -> None:
    """Stop the whole process (SIGSTOP, like a paused VM: every thread) when ``obj.name`` is
    called; once continued (SIGCONT), the call goes on.

    The pause waits for the other threads' write transactions to end (the lock's heartbeat
    renews it and records the progress, a few milliseconds every third of a second) and lets
    none begin until the process goes on: a process frozen inside a write transaction holds
    SQLite's write lock, and every other process waits for it (PostgreSQL ends such a
    transaction after the lock's time to live: tests/test_postgres.py). Pausing wherever the
    heartbeat happened to be made the other sync fail now and then with "database is locked"."""
    gate = _write_gate()
    original: Callable[..., Any] = getattr(obj, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with gate.closed():
            print("PAUSED", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        return original(*args, **kwargs)

    setattr(obj, name, wrapper)


class _WriteGate:
    """Counts the write transactions under way; ``closed()`` waits until there are none and
    holds new ones back until its block ends."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = 0
        self._closed = False

    @contextmanager
    def passing(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._closed)
            self._open += 1
        try:
            yield
        finally:
            with self._cond:
                self._open -= 1
                self._cond.notify_all()

    @contextmanager
    def closed(self) -> Iterator[None]:
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: self._open == 0)
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()


def _write_gate() -> _WriteGate:
    """A gate that every write transaction of this process (``Database.write_session``) passes."""
    from mdm_core.db.engine import Database

    gate = _WriteGate()
    original = Database.write_session

    @contextmanager
    def write_session(self: Database) -> Iterator[Any]:
        with gate.passing(), original(self) as session:
            yield session

    Database.write_session = write_session  # type: ignore[method-assign]
    return gate


def sigint_inside_a_staging_write() -> None:
    """Send ourselves SIGINT right after the first staged INSERT, inside its write transaction
    (staged rows are written by ``insert_rows``, before ``run_write`` commits)."""
    from plugins.vpp.sync import read

    original = read.insert_rows
    sent = [False]

    def insert_rows(session: Any, table: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(session, table, *args, **kwargs)
        if not sent[0] and table.name == "vpp_stage_license":
            sent[0] = True
            os.kill(os.getpid(), signal.SIGINT)
        return result

    read.insert_rows = insert_rows


def _after_two_direct_batches() -> None:
    """Kill after the second batch of licenses a first full sync wrote straight into the
    mirror (PostgreSQL), with batches of 5 rows so that a small sync writes several."""
    from plugins.vpp.sync import read

    read.STAGE_BATCH = 5
    after(read.DirectLicenses, "write", 2)


def main(argv: list[str]) -> None:
    import plugins.vpp.plugin
    from mdm_core.events import EventBus
    from mdm_core.host import create_host
    from plugins.vpp.apple import client
    from plugins.vpp.sync import apply, read
    from plugins.vpp.sync import run as runner

    config, database_url, point = argv[:3]
    full = len(argv) > 3 and argv[3] == "full"
    points = {
        "none": lambda: None,
        "run-recorded": lambda: before(runner, "client_for"),
        "paging-assets": lambda: after(client.AppsBooksClient, "_fetch_page", 2),
        "paging-assignments": lambda: after(client.AppsBooksClient, "_fetch_page", 7),
        "staged-users": lambda: after(read.StageBuffer, "flush", 1),
        "staged-assignments": lambda: after(read.StageBuffer, "flush", 2),
        "direct-licenses-written": _after_two_direct_batches,
        "apply-assets-written": lambda: after(apply.MirrorUpdate, "_apply_assets"),
        "apply-licenses-written": lambda: after(apply.MirrorUpdate, "_apply_licenses"),
        "apply-before-commit": lambda: after(apply.MirrorUpdate, "apply"),
        "committed-not-delivered": lambda: before(EventBus, "deliver_pending"),
        "delivery-claimed": lambda: before(EventBus, "dispatch"),
        "pause-before-apply": lambda: pause_before(runner, "apply_read"),
        "sigint-in-staging": sigint_inside_a_staging_write,
    }
    points[point]()
    host = create_host(config, environ={"MDM_SECRET_KEY": "test-secret-key"}, plugins=[plugins.vpp.plugin], database_url=database_url)
    _ = host.db
    print("READY", flush=True)
    from mdm_core import interrupts

    try:
        with interrupts.handled():
            report = runner.sync_account(host, "school", full=full)
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
        host.close()
        sys.exit(130)
    print("DONE", report["status"], flush=True)
    print("ERROR", report.get("error_type"), report.get("error"), flush=True)
    host.close()


if __name__ == "__main__":
    main(sys.argv[1:])
