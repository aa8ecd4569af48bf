"""Receiving Apple's notifications: bearer, body, record, answer.

:func:`receive` is the endpoint without its web framework: it checks
``Authorization: Bearer`` against the account's secret in constant time (401 for an unknown
account or a wrong secret: nothing is read further, nothing changes), checks the size and the
shape of the body (413, 400: nothing recorded), then records the notification in
``vpp_notification`` and commits before answering 200. Acting on it comes afterwards
(:mod:`.act`), so a crash between the answer and the act loses nothing. A ``notificationId``
already recorded for the account is answered 200 again and recorded once.

:func:`wait_for_event` lets a request that follows an Apple event (associate, disassociate,
revoke, users) learn from the inbox, in any process, that a notification about that event
arrived, instead of polling Apple every fraction of a second.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlmodel import Session, col

from mdm_core.db.typed import rowcount, stored_id, table_of
from mdm_core.errors import MdmError
from mdm_core.models import utcnow
from mdm_core.repeats import Throttled
from mdm_core.text import bad_character, json_strings

from ..apple.errors import MalformedResponseError
from ..apple.protocol import page_assignments, page_users
from ..models import VppAccount, VppNotification, VppPendingSecret

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)

#: the types this host subscribes to, and Apple's test
SUBSCRIBED = ("ASSET_MANAGEMENT", "ASSET_COUNT", "USER_MANAGEMENT", "USER_ASSOCIATED")
TYPES = ("TEST_NOTIFICATION", *SUBSCRIBED)
_DUMMY = "x" * 43  # compared against when the account is unknown: the same work either way
PENDING_FOR = timedelta(hours=1)  # a secret being given to Apple is accepted this long at most


_REFUSALS: weakref.WeakKeyDictionary[Host, Throttled] = weakref.WeakKeyDictionary()
_REFUSALS_LOCK = threading.Lock()


def refusals(host: Host) -> Throttled:
    """How ``host`` logs refused notifications: anyone can post forged ones, so a scanner would
    fill ``mdm run``'s log; one line of each kind, then a count every few minutes."""
    with _REFUSALS_LOCK:
        if host not in _REFUSALS:
            _REFUSALS[host] = Throttled(log)
        return _REFUSALS[host]


class BadNotification(ValueError):
    """The body is not a notification this host understands (answered 400, nothing recorded)."""


@dataclass(frozen=True)
class Receipt:
    """How a notification was answered: HTTP ``status``, a short ``message`` (never the body
    or the secret), the account it was for, whether it is new, and whether to act on it."""

    status: int
    message: str
    account_id: int | None = None
    new: bool = False
    to_act: bool = False  # new and not Apple's test: something to act on


# --------------------------------------------------------------------------- the bearer


def bearer(authorization: str | None) -> str | None:
    """The value of an ``Authorization: Bearer <value>`` header, or None."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


@dataclass(frozen=True)
class Caller:
    """Who presented a valid bearer: the account (None while it is being added) at ``notify_id``."""

    account: VppAccount | None


def authenticate(host: Host, notify_id: str, authorization: str | None) -> Caller | None:
    """The caller whose notification URL is ``notify_id`` if the bearer is that account's
    secret or one being given to Apple, compared in constant time; None otherwise."""
    presented = bearer(authorization) or ""
    account = None
    ciphertexts: list[str] = []
    if 0 < len(notify_id) <= 64:
        with host.db.session() as session:
            account = session.execute(select(VppAccount).where(col(VppAccount.mdm_info_id) == notify_id)).scalar_one_or_none()
            ciphertexts = list(
                session.execute(
                    select(col(VppPendingSecret.secret_ciphertext)).where(
                        col(VppPendingSecret.mdm_info_id) == notify_id, col(VppPendingSecret.created_at) > utcnow() - PENDING_FOR
                    )
                ).scalars()
            )
    if account is not None and account.notification_secret:
        ciphertexts.append(account.notification_secret)
    secrets: list[str] = []
    unreadable = False
    for ciphertext in ciphertexts:
        try:
            secrets.append(host.secrets.decrypt(ciphertext))
        except MdmError:
            unreadable = True
    if unreadable:  # once per POST (its stored and pending secrets alike), forged ones too: throttled as the 401 warning
        refusals(host).error(
            f"unreadable secret {notify_id}",
            "a notification secret of %s cannot be decrypted with this host's key: Apple's notification is refused; "
            "`mdm run` needs the key it was stored with (MDM_SECRET_KEY or var/secret.key, as the command that turned "
            "notifications on had; a key restored from a backup may be another one: see `mdm secrets status`)%s",
            f"account {account.name}" if account else "an account being added",
            f"; if that key is lost, renew the token: `mdm vpp account set {account.name} --token-file FILE --key-lost`" if account else "",
        )
    match = False
    for secret in secrets or [_DUMMY]:
        match |= hmac.compare_digest(presented.encode(), secret.encode())
    return Caller(account) if secrets and presented and match else None


# --------------------------------------------------------------------------- the body


def parse(body: bytes, uid: str | None) -> dict[str, Any]:
    """The envelope, checked: ``notificationId``, a known ``notificationType``, a
    ``notification`` object of the right shape, the account's ``uId``; else ``BadNotification``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadNotification("the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadNotification("the body is not a JSON object")
    for text in json_strings(data):  # the console's check of a JSON body (storable_input), here after the bearer
        bad = bad_character(text)
        if bad is not None:
            raise BadNotification(f"the body holds {bad}, which cannot be stored")
    notification_id, ntype, payload = data.get("notificationId"), data.get("notificationType"), data.get("notification")
    if not isinstance(notification_id, str) or not 0 < len(notification_id) <= 255:
        raise BadNotification("notificationId is missing or not a string of at most 255 characters")
    if ntype not in TYPES:
        raise BadNotification(f"notificationType {str(ntype)[:40]!r} is not one this host subscribes to")
    if not isinstance(payload, dict):
        raise BadNotification("notification is missing or not an object")
    if data.get("uId") is not None and uid is not None and str(data["uId"]) != uid:
        raise BadNotification("uId is not this account's location")
    try:
        _check_payload(ntype, payload)
    except MalformedResponseError as exc:
        raise BadNotification(f"{ntype}: {exc}") from None
    return data


def _one_of(payload: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = payload.get(name)
    if value not in allowed:
        raise MalformedResponseError(f"'{name}' is not one of {', '.join(allowed)}")
    return str(value)


def _check_payload(ntype: str, payload: dict[str, Any]) -> None:
    if ntype == "ASSET_COUNT":
        adam_id, pricing, delta = payload.get("adamId"), payload.get("pricingParam"), payload.get("countDelta")
        if not isinstance(adam_id, (str, int)) or isinstance(adam_id, bool) or not str(adam_id).strip():
            raise MalformedResponseError("'adamId' is missing")
        if not isinstance(pricing, str) or not pricing:
            raise MalformedResponseError("'pricingParam' is missing")
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise MalformedResponseError("'countDelta' is not an integer")
    elif ntype == "ASSET_MANAGEMENT":
        _one_of(payload, "type", ("ASSOCIATE", "DISASSOCIATE", "REVOKE"))
        result = _one_of(payload, "result", ("SUCCESS", "FAILURE"))
        _event_id(payload)
        assignments = payload.get("assignments") or []
        if not isinstance(assignments, list):
            raise MalformedResponseError("'assignments' is not a list")
        if result == "SUCCESS":
            page_assignments({"assignments": assignments})
        else:  # a failure may name devices or users without an asset (a revoke)
            for item in assignments:
                if not isinstance(item, dict) or not (isinstance(item.get("serialNumber"), str) or isinstance(item.get("clientUserId"), str)):
                    raise MalformedResponseError("a failed assignment names no serialNumber or clientUserId")
            error = payload.get("error")
            if error is not None and not isinstance(error, dict):
                raise MalformedResponseError("'error' is not an object")
    elif ntype == "USER_MANAGEMENT":
        _one_of(payload, "type", ("CREATE", "UPDATE", "RETIRE"))
        result = _one_of(payload, "result", ("SUCCESS", "FAILURE"))
        _event_id(payload)
        users = payload.get("users") or []
        if result == "SUCCESS":
            page_users({"users": users})
        elif not isinstance(users, list) or any(not isinstance(u, dict) or not isinstance(u.get("clientUserId"), str) for u in users):
            raise MalformedResponseError("a refused user has no clientUserId")
    elif ntype == "USER_ASSOCIATED":
        page_users({"users": payload.get("associatedUsers") or []})


def _event_id(payload: dict[str, Any]) -> str:
    value = payload.get("eventId")
    if not isinstance(value, str) or not 0 < len(value) <= 255:
        raise MalformedResponseError("'eventId' is missing")
    return value


# --------------------------------------------------------------------------- recording


def receive(host: Host, notify_id: str, authorization: str | None, body: bytes, *, max_bytes: int, too_large: bool = False) -> Receipt:
    """Answer one notification POSTed to ``.../notify/{notify_id}`` (see the module docstring);
    ``too_large``: the body was not read, its declared size being over ``max_bytes``."""
    caller = authenticate(host, notify_id, authorization)
    if caller is None:
        refusals(host).warning("401", "notification refused (401): unknown notification URL or wrong secret")
        return Receipt(401, "unknown notification URL or wrong bearer secret")
    account = caller.account
    who = f"account {account.name}" if account else "account being added"
    if too_large or len(body) > max_bytes:
        refusals(host).warning(f"413 {who}", "%s: notification refused (413): more than [vpp] notification_max_bytes (%d)", who, max_bytes)
        return Receipt(413, f"notification larger than {max_bytes} bytes")
    try:
        data = parse(body, account.uid if account else None)
    except BadNotification as exc:
        refusals(host).warning(f"400 {who}", "%s: notification refused (400): %s", who, exc)
        return Receipt(400, str(exc))
    if account is None:  # Apple's test while the account is added: nothing to record or act on
        if data["notificationType"] == "TEST_NOTIFICATION":
            log.info("account being added: Apple's test notification received")
            return Receipt(200, "test received")
        log.info("account being added: %s notification refused until it is (Apple retries)", data["notificationType"])
        return Receipt(503, "the account is being added: try again")
    account_id = stored_id(account)
    new = host.db.run_write(lambda session: record(session, account_id, data))
    wake_waiters()
    kind = data["notificationType"]
    if new:
        log.info("account %s: %s notification %s recorded", account.name, kind, data["notificationId"])
        return Receipt(200, "recorded", account.id, new=True, to_act=kind != "TEST_NOTIFICATION")
    log.info("account %s: %s notification %s received again (already recorded)", account.name, kind, data["notificationId"])
    return Receipt(200, "already recorded", account.id)


def record(session: Session, account_id: int, data: dict[str, Any]) -> bool:
    """Add a notification to the inbox unless its ``notificationId`` is there; note when the
    account last heard from Apple. True if it is new."""
    from ..sync.apply import insert_ignoring_duplicates

    now = utcnow()
    ntype = data["notificationType"]
    payload = data["notification"]
    event_id = payload.get("eventId") if ntype in ("ASSET_MANAGEMENT", "USER_MANAGEMENT") else None
    done = ntype == "TEST_NOTIFICATION"  # nothing to act on: it proves Apple reaches us
    table = table_of(VppNotification)
    inserted = rowcount(
        session.execute(
            insert_ignoring_duplicates(session, table).values(
                account_id=account_id,
                notification_id=data["notificationId"],
                notification_type=ntype,
                event_id=event_id,
                body=data,
                received_at=now,
                status="done" if done else "received",
                attempts=0,
                processed_at=now if done else None,
                detail="Apple reaches this host" if done else None,
            )
        )
    )
    session.execute(update(VppAccount).where(col(VppAccount.id) == account_id).values(last_notification_at=now))
    return bool(inserted)


# --------------------------------------------------------------------------- waiting for an event

_arrived = threading.Condition()


def wake_waiters() -> None:
    """A notification was recorded in this process: waiters look at the inbox at once."""
    with _arrived:
        _arrived.notify_all()


def newest_about(host: Host, account_id: int, event_id: str) -> int:
    """The id of the newest notification about Apple event ``event_id`` of this account (0: none)."""
    with host.db.session() as session:
        newest = session.execute(
            select(func.max(VppNotification.id)).where(col(VppNotification.account_id) == account_id, col(VppNotification.event_id) == event_id)
        ).scalar_one_or_none()
    return int(newest or 0)


def wait_for_event(host: Host, account_id: int, event_id: str, seconds: float, *, after: int = 0, every: float = 0.2) -> int:
    """Wait up to ``seconds`` for a notification about ``event_id`` newer than inbox id
    ``after``; returns its id as soon as there is one, else 0. Looks at the inbox every
    ``every`` seconds (another process may record it) and at once when this process records one."""
    deadline = time.monotonic() + seconds
    while True:
        newest = newest_about(host, account_id, event_id)
        if newest > after:
            return newest
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return 0
        with _arrived:
            _arrived.wait(min(every, remaining))


def waiter(host: Host, account_id: int) -> Callable[[str, float], None]:
    """A ``notified(event_id, seconds)`` for the client's event polling: it sleeps at most
    ``seconds`` but returns as soon as a new notification about the event arrives, so that the
    next status request (which confirms what Apple did) is sent at once."""
    seen: dict[str, int] = {}

    def notified(event_id: str, seconds: float) -> None:
        newest = wait_for_event(host, account_id, event_id, seconds, after=seen.get(event_id, 0))
        if newest:
            seen[event_id] = newest

    return notified
