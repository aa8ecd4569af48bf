"""Progress of running syncs: pages and rows read per dataset, as the sync goes.

The sync reports each page here (one call in the reader); whoever wants to show progress
listens: ``mdm vpp sync`` prints a line to stderr every few seconds on a terminal (or with
``--progress``), a console in the same process can poll :func:`current`, and the sync's run
record carries it for the other processes (:mod:`.stored_progress`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

DATASETS = ("assets", "users", "assignments")


@dataclass
class SyncProgress:
    """One running sync: pages and rows per dataset so far."""

    account: str
    mode: str
    run_id: int | None = None
    phase: str = "reading"  # then "writing": the final transaction, which reads no page
    started: float = field(default_factory=time.monotonic)
    pages: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain values: account, mode, phase, elapsed seconds, and pages/rows per dataset."""
        return {
            "account": self.account,
            "mode": self.mode,
            "phase": self.phase,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "datasets": {d: {"pages": self.pages.get(d, 0), "rows": self.rows.get(d, 0)} for d in DATASETS if d in self.pages},
        }

    def line(self) -> str:
        """``school: full sync: assets 1 page, 12 rows; users 3 pages, 1,200 rows (4s)``"""
        parts = [f"{d} {self.pages[d]} page{'s' if self.pages[d] != 1 else ''}, {self.rows.get(d, 0):,} rows" for d in DATASETS if d in self.pages]
        return f"{self.account}: {self.mode} sync: {'; '.join(parts) or 'starting'} ({time.monotonic() - self.started:.0f}s)"


_lock = threading.Lock()
_running: dict[str, SyncProgress] = {}
_listeners: list[Callable[[SyncProgress], None]] = []


def started(account: str, mode: str, run_id: int | None = None) -> None:
    """A sync of ``account`` (its run ``run_id``) begins (the sync calls it)."""
    with _lock:
        _running[account] = SyncProgress(account, mode, run_id)


def finished(account: str) -> None:
    """The sync of ``account`` ended, well or not (the sync calls it)."""
    with _lock:
        _running.pop(account, None)


def set_phase(account: str, phase: str) -> None:
    """The sync of ``account`` is ``reading`` (Apple's pages) or ``writing`` (the final transaction)."""
    with _lock:
        progress = _running.get(account)
        if progress is not None:
            progress.phase = phase


def page(account: str, what: str, data: dict[str, Any], *, count_rows: bool = True) -> None:
    """One page of ``what`` (``assets``, ``users``, ``assignments``, ``assignments of ADAM_ID``)
    was read; ``count_rows`` False for a page read only to check a listing's ``versionId``
    (its rows were counted with the listing: 120 assets are not 240 rows)."""
    dataset = what.split(" ", 1)[0]
    rows = sum(len(v) for v in data.values() if isinstance(v, list)) if count_rows else 0
    with _lock:
        progress = _running.get(account)
        if progress is None:
            return
        progress.pages[dataset] = progress.pages.get(dataset, 0) + 1
        progress.rows[dataset] = progress.rows.get(dataset, 0) + rows
        listeners = list(_listeners)
    for listener in listeners:
        listener(progress)


def current() -> list[dict[str, Any]]:
    """The syncs running in this process, as plain values (for a console to poll)."""
    with _lock:
        return [p.as_dict() for p in _running.values()]


def snapshot(account: str) -> tuple[int | None, dict[str, Any]] | None:
    """The sync of ``account`` running in this process: its run id and its plain values
    (:meth:`SyncProgress.as_dict`); None when none runs here."""
    with _lock:
        progress = _running.get(account)
        return None if progress is None else (progress.run_id, progress.as_dict())


@contextmanager
def listening(callback: Callable[[SyncProgress], None]) -> Iterator[None]:
    """Call ``callback(progress)`` after each page while the block runs (from the sync's threads)."""
    with _lock:
        _listeners.append(callback)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(callback)


def every(seconds: float, out: Callable[[str], None]) -> Callable[[SyncProgress], None]:
    """A listener that writes the progress line at most every ``seconds``."""
    last: dict[str, float] = {}

    def show(progress: SyncProgress) -> None:
        now = time.monotonic()
        if now - last.get(progress.account, progress.started) >= seconds:
            last[progress.account] = now
            out(progress.line())

    return show
