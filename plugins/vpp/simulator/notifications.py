"""Apple's notifications, as the simulator sends them to the MDM's ``notificationUrl``.

Once an MDM sets ``notificationUrl``, ``notificationAuthToken`` and ``notificationTypes`` with
``POST client/config``, the location tells it what changed (Apple's "Subscribing to
notifications"; the envelope and the types are in docs/apple-api.md, "Notifications"):

- ``TEST_NOTIFICATION`` while ``POST client/config`` is answered: if that delivery fails the
  whole configuration is refused with 9728 and nothing changes.
- ``ASSET_MANAGEMENT`` when an associate, disassociate or revoke event ends: one ``SUCCESS``
  notification with the assignments done, one ``FAILURE`` per error (``error`` holds
  ``errorNumber`` and ``errorMessage``, ``assignments`` the targets it names); large events
  are split into several notifications of at most ``chunk`` assignments.
- ``USER_MANAGEMENT`` when a users create, update or retire event ends (``SUCCESS`` with the
  users' records, ``FAILURE`` naming the users refused).
- ``USER_ASSOCIATED`` when a Registered user accepts the invitation.
- ``ASSET_COUNT`` when an asset's total changes outside the API: a purchase, a transfer
  between locations, a refund (``countDelta`` may be negative).

Each goes out as ``POST`` with ``Authorization: Bearer <notificationAuthToken>`` and the
envelope ``{notificationId, notificationType, notification, uId}``. Delivery is best effort,
like Apple's: ``attempts`` tries in all (3), waiting ``retry_delays`` between them (Apple
retries over one to five minutes; tests pass fractions of a second); any 2xx counts as
delivered. Faults (``notification_drop``, ``notification_delay``, ``notification_duplicate``,
optionally for one ``type``) lose, hold back or repeat notifications.

The sender thread also runs due events as soon as they are due (instead of at the next
request) once notifications are configured, so that a notification follows its event at once.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faults import Faults
    from .state import SimState

log = logging.getLogger(__name__)

TEST_NOTIFICATION = "TEST_NOTIFICATION"
#: Apple: "about 3 attempts within 1-5 minutes"
DEFAULT_ATTEMPTS = 3
DEFAULT_RETRY_DELAYS = (60.0, 240.0)
DEFAULT_CHUNK = 1000


def envelope(notification_type: str, notification: dict[str, Any], uid: str) -> dict[str, Any]:
    """Apple's notification envelope with a fresh ``notificationId``."""
    return {"notificationId": str(uuid.uuid4()), "notificationType": notification_type, "notification": notification, "uId": uid}


@dataclass
class Delivery:
    """One notification on its way: what was sent, how each attempt went."""

    body: dict[str, Any]
    attempts: int = 0
    status: str = "queued"  # queued, delivered, failed (every attempt), dropped (a fault)
    answers: list[int | str] = field(default_factory=list)  # HTTP status or the error of each attempt
    copy: bool = False  # a duplicate sent by the notification_duplicate fault

    def describe(self) -> dict[str, Any]:
        """Plain values for the control API and tests (never the auth token)."""
        return {
            "notificationId": self.body["notificationId"],
            "notificationType": self.body["notificationType"],
            "notification": self.body["notification"],
            "status": self.status,
            "attempts": self.attempts,
            "answers": list(self.answers),
            "duplicate": self.copy,
        }


class Notifier:
    """Sends a location's notifications from one thread, in order, with Apple's retries."""

    def __init__(
        self,
        state: SimState,
        faults: Faults,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
        timeout: float = 10.0,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.state = state
        self.faults = faults
        self.attempts = attempts
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self.timeout = timeout
        self.chunk = chunk
        self.log: list[Delivery] = []
        self._queue: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = 0
        self._stop = False
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<Notifier queued={len(self._queue)} sent={len(self.log)}>"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the sender thread (idle until there is something to send or an event to run)."""
        with self._cond:
            if self._thread is not None:
                return
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="vpp-simulator-notifier", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop sending (what is still queued is never sent)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self.timeout + 5)

    def wake(self) -> None:
        """Something changed (a new event, a new notification): look again at what is due."""
        with self._cond:
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued, being sent, or waiting to run as an event; True if so.

        Looked at under the state's lock (then this one, the order ``enqueue`` takes them in):
        an event is run under the state's lock, so it is either still waiting or its
        notifications are queued, never half-way (taken off the events, not yet queued)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.state.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                try:
                    with self._cond:
                        if not self._queue and not self._busy and self.state.next_event_due() is None:
                            return True
                finally:
                    self.state.lock.release()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(min(remaining, 0.05))

    # ------------------------------------------------------------------ sending
    def enqueue(self, body: dict[str, Any]) -> None:
        """Queue a notification (called by the state under its lock: never blocks on the network)."""
        ntype = body["notificationType"]
        fired = {f.kind: f for f in self.faults.select_notification(ntype)}
        delivery = Delivery(body)
        if "notification_drop" in fired:
            delivery.status = "dropped"
            self.log.append(delivery)
            log.debug("notification %s dropped by a fault", ntype)
            return
        delay = float(fired["notification_delay"].params.get("seconds", 1.0)) if "notification_delay" in fired else 0.0
        copies = [delivery]
        if "notification_duplicate" in fired:
            copies.append(Delivery(body, copy=True))
        with self._cond:
            for item in copies:
                self.log.append(item)
                heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), item))
            self._cond.notify_all()

    def send_test(self, url: str, auth_token: str) -> bool:
        """Deliver ``TEST_NOTIFICATION`` to ``url`` now, once; True when it answered 2xx."""
        body = envelope(TEST_NOTIFICATION, {}, self.state.uid)
        delivery = Delivery(body)
        self.log.append(delivery)
        if any(f.kind == "notification_drop" for f in self.faults.select_notification(TEST_NOTIFICATION)):
            delivery.status = "dropped"
            return False
        ok = self._post(delivery, url, auth_token)
        delivery.status = "delivered" if ok else "failed"
        return ok

    def _post(self, delivery: Delivery, url: str, auth_token: str) -> bool:
        delivery.attempts += 1
        data = json.dumps(delivery.body, separators=(",", ":")).encode()
        request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json", "Authorization": f"Bearer {auth_token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310 (the MDM's URL)
                answer.read()
                delivery.answers.append(answer.status)
                return 200 <= answer.status < 300
        except urllib.error.HTTPError as exc:
            delivery.answers.append(exc.code)
            exc.close()
        except (OSError, ValueError) as exc:  # refused, timed out, bad URL
            delivery.answers.append(type(exc).__name__)
        return False

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                now = time.monotonic()
                due_event = self.state.next_event_due()
                if due_event is not None and due_event <= now:
                    item = None
                elif self._queue and self._queue[0][0] <= now:
                    _, _, item = heapq.heappop(self._queue)
                    self._busy += 1
                else:
                    wake_at = min([t for t in (due_event, self._queue[0][0] if self._queue else None) if t is not None], default=None)
                    self._cond.wait(None if wake_at is None else max(0.0, wake_at - now))
                    continue
            if item is None:
                self._run_due_events()
                continue
            try:
                self._attempt(item)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _run_due_events(self) -> None:
        with self.state.lock:
            self.state.process_due()
        with self._cond:
            self._cond.notify_all()

    def _attempt(self, delivery: Delivery) -> None:
        with self.state.lock:
            url, token = self.state.notification_url, self.state.notification_auth_token
        if not url or not token:  # notifications were turned off meanwhile
            delivery.status = "dropped"
            return
        if self._post(delivery, url, token):
            delivery.status = "delivered"
            return
        if delivery.attempts >= self.attempts:
            delivery.status = "failed"
            log.info("notification %s not delivered after %d attempts: %s", delivery.body["notificationType"], delivery.attempts, delivery.answers)
            return
        delay = self.retry_delays[min(delivery.attempts - 1, len(self.retry_delays) - 1)] if self.retry_delays else 0.0
        with self._cond:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), delivery))


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` cut into lists of at most ``size`` (one empty list for no items)."""
    if not items:
        return [[]]
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]
