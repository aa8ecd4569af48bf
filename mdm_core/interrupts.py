"""Stopping a command cleanly on SIGINT (Ctrl-C) and SIGTERM.

While a command runs, both signals raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the
main thread at once, so a command waiting on the network or sleeping between retries stops
within a second. Inside a database write session (:func:`deferred`, which the host's write
sessions use) it is raised at the next SQL statement (:func:`check`, called by the engine
before each one) or when the session ends, never half-way through the database driver or the
connection pool: the transaction is rolled back (or was committed) and no transaction is left
open that the process's own cleanup (releasing a lock, recording the run) would wait for.

``mdm run`` installs its own handlers (stop after the running jobs) instead.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_depth = 0  # nesting of deferred() in the main thread
_pending: int | None = None


class Interrupted(KeyboardInterrupt):
    """The command was interrupted by ``signum``: roll back, release, record, exit 130."""

    def __init__(self, signum: int = signal.SIGINT):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


#: What the interruption line says by default (``mdm: interrupted (SIGINT): ...``).
ROLLED_BACK = "what was being written was rolled back"


def note(exc: BaseException, what: str) -> None:
    """Say what the interruption ``exc`` stopped (the line ``mdm`` prints for it); the first
    note, that of the innermost code, stays."""
    if getattr(exc, "what", None) is None:
        exc.what = what  # type: ignore[attr-defined]


def note_more(exc: BaseException, more: str) -> None:
    """Add ``more`` to what the interruption ``exc`` stopped (an outer loop's own words after
    its innermost code's :func:`note`)."""
    exc.what = f"{stopped(exc)}; {more}"  # type: ignore[attr-defined]


def stopped(exc: BaseException) -> str:
    """What the interruption ``exc`` stopped: its :func:`note`, else :data:`ROLLED_BACK`."""
    return getattr(exc, "what", None) or ROLLED_BACK


def _on_signal(signum: int, _frame: Any) -> None:
    global _pending
    if _depth:
        _pending = signum
        return
    raise Interrupted(signum)


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` while the block runs (main thread only)."""
    if not _main():
        yield
        return
    previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def check() -> None:
    """Raise a pending interruption now (main thread only): a safe point, between statements."""
    global _pending
    if _pending is not None and _main():
        signum, _pending = _pending, None
        raise Interrupted(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """An interruption that arrives during the block is raised when the block ends (after the
    transaction inside it has committed or rolled back). Other threads are not affected."""
    global _depth, _pending
    if not _main():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            raise Interrupted(signum)
