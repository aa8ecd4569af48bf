"""No child process outlives the test that started it.

A child a test started and left running (a hung ``mdm`` whose ``communicate(timeout=...)``
raised) failed a second test: its ``Popen``, garbage-collected there while the process still
ran, warned ``ResourceWarning: subprocess N is still running``, an error in this suite, in
whatever test ran next on that worker. :func:`no_child_left` (the suite's autouse fixture)
kills and waits for every process started with :class:`subprocess.Popen` during a test once
the test ends, whatever the test's own code did: a hung child fails its own test only.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any

#: How long a killed child may take to be reaped (SIGKILL: at once, unless the machine is very busy).
REAP_TIMEOUT = 30.0


def reap(child: subprocess.Popen[Any]) -> None:
    """Kill ``child`` if it still runs, wait for it, and close its pipes."""
    if child.poll() is None:
        child.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(REAP_TIMEOUT)
    for stream in (child.stdin, child.stdout, child.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


@contextlib.contextmanager
def no_child_left() -> Iterator[list[subprocess.Popen[Any]]]:
    """Every ``Popen`` made while the block runs (from any thread) is reaped when it ends;
    yields the list of them."""
    started: list[subprocess.Popen[Any]] = []
    popen = subprocess.Popen  # the class itself, whatever a test sets subprocess.Popen to meanwhile
    real = popen.__init__

    def init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        started.append(self)

    popen.__init__ = init  # type: ignore[method-assign]
    try:
        yield started
    finally:
        popen.__init__ = real  # type: ignore[method-assign]
        for child in started:
            reap(child)
