"""How the host uses Python's cyclic garbage collector.

Reference counting frees almost everything a sync makes (rows, tuples, dicts). The cyclic
collector only has to find reference cycles, but by default it scans its youngest generation
every 700 net allocations, and every tenth scan the next generation too: a sync that holds
hundreds of thousands of rows alive for a while (the mirrored licenses it compares, the rows of
a page) pays for scanning them again and again. Two measures keep that cost down:

- :func:`freeze_startup_objects`: what the process loaded at start-up (modules, classes,
  mappers) is never scanned again;
- :func:`fewer_collections`: bulk work (a sync) scans the youngest generation every
  :data:`BULK_THRESHOLD` allocations instead, so the rows it holds are rarely promoted and
  scanned again. The cycles made meanwhile (a few per statement) wait a little longer.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: The youngest generation's threshold while bulk work runs (Python's default: 700). An
#: incremental sync of the benchmark's account (625 pages, 170,000 mirrored licenses compared)
#: ran the collector 620 times, 0.08-0.11 s in all; with 20,000: 3 times, 0.016 s.
BULK_THRESHOLD = 20_000

_lock = threading.Lock()
_active = 0  # bulk works running (threads of this process)
_saved: tuple[int, int, int] | None = None  # the thresholds before the first of them

_frozen = False


def freeze_startup_objects() -> None:
    """Once a process has loaded its first plugins, move every object alive then (modules,
    classes, mappers, compiled schemas: they live as long as the process) out of the cyclic
    collector's reach (``gc.freeze``): a full collection then scans only what the process made
    since, instead of the whole import-time heap each time (a sync's one or two full
    collections took 0.06 s of CPU each). Once only: a later freeze would also keep the
    garbage of its time forever."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


@contextmanager
def fewer_collections(threshold: int = BULK_THRESHOLD) -> Iterator[None]:
    """Within this block, the collector scans its youngest generation every ``threshold`` net
    allocations (never fewer than it already did). Several threads may be inside at once: the
    process's thresholds are set by the first to enter and restored by the last to leave, as
    they were, also when the block raises."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            first, *older = _saved
            gc.set_threshold(max(first, threshold), *older)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
