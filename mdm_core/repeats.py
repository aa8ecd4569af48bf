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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

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


class Throttled:
    """Warnings of kinds an outside caller repeats at will (see the module docstring); thread-safe."""

    def __init__(self, log: logging.Logger, *, remind: float = REMIND, clock: Callable[[], float] = time.monotonic):
        self.log = log
        self.remind = remind
        self.clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[float, int]] = {}  # kind: when its last line above DEBUG was logged, how many since

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
            if told is not None and now - told[0] < self.remind:
                self._kinds[kind] = (told[0], told[1] + 1)
                self.log.debug(message, *args)
                return
            self._kinds[kind] = (now, 0)
        if told and told[1]:
            self.log.log(level, message + " (and %d more in the last %.0f s, not logged)", *args, told[1], now - told[0])
        else:
            self.log.log(level, message, *args)
