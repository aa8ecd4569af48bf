"""Stopping a command cleanly on SIGINT (Ctrl-C) and SIGTERM.

While a command runs, both signals raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the
main thread at once, so a command waiting on the network or sleeping between retries stops
within a second. Inside a database write session (:func:`deferred`, which the host's write
sessions use) it is raised at the next SQL statement (:func:`check`, called by the engine
before each one) or when the session ends, never half-way through the database driver or the
connection pool: the transaction is rolled back (or was committed) and no transaction is left
open that the process's own cleanup (releasing a lock, recording the run) would wait for.

``mdm run`` installs its own handlers (stop after the running jobs) instead.

The kernel hands a process's signal to any of its threads; Python runs the handler in the main
thread only, when that thread next runs Python code. A main thread blocked meanwhile (joining a
thread that waits for an HTTP answer, waiting for a future or a lock) would only notice the
signal once that wait ended (a sync's Ctrl-C once seen ignored for as long as Apple took to
answer a page). So while :func:`handled` is active the main thread is woken whichever thread
received the signal (:func:`_main_woken`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_depth = 0  # nesting of deferred() in the main thread
_pending: int | None = None

#: Sent to the main thread to wake it when another thread received SIGINT/SIGTERM: a signal
#: mdm gives no meaning to and that is ignored by default (a late one, once the handlers are
#: restored, does nothing), the one the Go runtime sends its own threads for the same reason.
WAKE = signal.SIGURG


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
        with _main_woken():
            yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _main_woken() -> Iterator[None]:
    """While the block runs, a SIGINT/SIGTERM that another thread received wakes the main
    thread: whichever thread receives a signal, Python's own handler writes its number to the
    wakeup fd, and a thread that reads it sends :data:`WAKE` (whose handler does nothing) to
    the main thread. Its blocking call is interrupted and Python runs the handlers pending, that
    of the SIGINT/SIGTERM among them, at once (a main thread that received the signal itself has
    run it already: the wake then does nothing)."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    main = threading.main_thread().ident or 0
    wanted = {int(signum) for signum in SIGNALS}

    def watch() -> None:
        try:
            while data := os.read(read_end, 64):  # empty: the block ended (the write end closed)
                if wanted.intersection(data):
                    with contextlib.suppress(OSError):  # the main thread has ended meanwhile
                        signal.pthread_kill(main, WAKE)
        finally:
            os.close(read_end)

    try:
        threading.Thread(target=watch, name="mdm-signal-watch", daemon=True).start()
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    try:
        previous_wake = signal.signal(WAKE, _woken)
        try:
            previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
            try:
                yield
            finally:
                signal.set_wakeup_fd(previous_fd)
        finally:
            signal.signal(WAKE, previous_wake)
    finally:
        os.close(write_end)  # the watcher reads the end of the pipe, and ends


def _woken(_signum: int, _frame: Any) -> None:
    """:data:`WAKE`'s handler: nothing (the main thread is woken; the handlers pending run)."""


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
