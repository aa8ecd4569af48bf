"""A failure that comes back at every turn of ``mdm run``'s loop, logged once rather than every
second.

While the database was unreachable (a PostgreSQL restart, a cut network), each turn of the loop
(one a second) logged ``event delivery failed, retrying later`` and ``failed deliveries could
not be retried, retrying later`` at ERROR: 40 lines a host for a 20-second outage, 2,400 for ten
minutes, and nothing when it worked again. :class:`Repeated` logs the first failure at ERROR,
again when its message changes and every :data:`REMIND` seconds while it lasts (with how long),
the others at DEBUG, and once at WARNING when it works again.

:class:`Throttled` does the same for what callers outside can repeat at will (a scanner posting
forged requests to a public route): one WARNING (or ERROR) line of each kind, the others at DEBUG,
and with the next one after :data:`REMIND` seconds the exact count of those not logged meanwhile.
A burst followed by silence has no next one: ``mdm run``'s loop calls :func:`tell_counts` each
turn, which logs the count of each kind whose :data:`REMIND` seconds are over, and at shutdown
those of every kind.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

REMIND = 300.0  # seconds between two ERROR lines of one failure that lasts


class Repeated:
    """One repeating task's failures (see the module docstring)."""

    def __init__(self, log: logging.Logger, failed: str, works_again: str, *, remind: float = REMIND, clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.failed_words = failed
        self.again_words = works_again
        self.remind = remind
        self.clock = clock
        self.since: float | None = None  # when the failures began
        self.told: tuple[float, str] | None = None  # when the last ERROR line was logged, and its message
        self.count = 0

    def failed(self, message: str) -> None:
        """Another failure, ``message`` being what went wrong (one line)."""
        now = self.clock()
        self.count += 1
        if self.since is None:
            self.since = now
        if self.told is None or self.told[1] != message or now - self.told[0] >= self.remind:
            lasting = "" if self.count == 1 else f" (failing for {now - self.since:.0f} s, {self.count} tries)"
            self.log.error("%s, retrying later%s: %s", self.failed_words, lasting, message)
            self.told = (now, message)
        else:
            self.log.debug("%s again: %s", self.failed_words, message)

    def succeeded(self) -> None:
        """It worked: said once (WARNING) after failures."""
        if self.since is not None:
            self.log.warning("%s after %.0f s (%d failed tries)", self.again_words, self.clock() - self.since, self.count)
        self.since, self.told, self.count = None, None, 0


@dataclass
class _Told:
    """A kind's last line above DEBUG: when, at which level; how many came since, not logged,
    and the last of them (``message % args``)."""

    at: float
    level: int
    count: int = 0
    message: str = ""
    args: tuple[object, ...] = ()


class Throttled:
    """Warnings of kinds an outside caller repeats at will (see the module docstring); thread-safe."""

    def __init__(self, log: logging.Logger, *, remind: float = REMIND, clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.remind = remind
        self.clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, _Told] = {}
        _LIVE.add(self)

    def warning(self, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` at WARNING if it is the first of ``kind`` or ``remind`` seconds
        after the last one logged (saying how many came meanwhile), else at DEBUG."""
        self.log_at(logging.WARNING, kind, message, *args)

    def error(self, kind: str, message: str, *args: object) -> None:
        """:meth:`warning` at ERROR (what needs the admin, though anyone can repeat it)."""
        self.log_at(logging.ERROR, kind, message, *args)

    def log_at(self, level: int, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` at ``level`` if it is the first of ``kind`` or ``remind`` seconds
        after the last one logged (saying how many came meanwhile), else at DEBUG."""
        now = self.clock()
        with self._lock:
            told = self._kinds.get(kind)
            if told is not None and now - told.at < self.remind:
                told.count, told.message, told.args = told.count + 1, message, args
                self.log.debug(message, *args)
                return
            self._kinds[kind] = _Told(now, level)
        if told and told.count:
            self.log.log(level, message + " (and %d more in the last %.0f s, not logged)", *args, told.count, now - told.at)
        else:
            self.log.log(level, message, *args)

    def tell_counts(self, *, every: bool = False) -> None:
        """For each kind whose ``remind`` seconds are over (``every``: each kind, at shutdown), log
        how many came since its last line, not logged (at its level, with the last of them), and
        forget it: its next one is logged again."""
        now = self.clock()
        with self._lock:
            ended = {kind: told for kind, told in self._kinds.items() if every or now - told.at >= self.remind}
            for kind in ended:
                del self._kinds[kind]
        for told in ended.values():
            if told.count:
                self.log.log(told.level, told.message + " (%d like this in the last %.0f s were not logged)", *told.args, told.count, now - told.at)


_LIVE: weakref.WeakSet[Throttled] = weakref.WeakSet()


def tell_counts(*, every: bool = False) -> None:
    """:meth:`Throttled.tell_counts` of every :class:`Throttled` of this process (``mdm run``'s
    loop each turn; ``every`` at its shutdown)."""
    for throttled in list(_LIVE):
        throttled.tell_counts(every=every)
