"""Giving Apple our notification URL and secret (``POST client/config``).

With ``[web] public_url`` set, adding an account, renewing its token, ``--take-over`` and
``mdm vpp account set NAME --notifications on`` send ``notificationUrl`` =
``{public_url}/apple/apps-books/notify/{mdmInfo id}``, a fresh ``notificationAuthToken`` (32
random bytes, kept encrypted like the token, never shown) and ``notificationTypes``
(:data:`~.inbox.SUBSCRIBED`). Apple first posts ``TEST_NOTIFICATION`` there and refuses the
whole request (9728) if it cannot: so the new secret is committed as a *pending* secret
(``vpp_pending_secret``, keyed by the ``mdmInfo`` id, the account's or the one of an account
being added) before the request, where ``mdm run``, in another process, accepts Apple's test
with it; it becomes the account's secret in the transaction that records Apple's acceptance,
and is dropped on a refusal, leaving the previous one in place.

``--notifications off`` sends ``notificationTypes: []`` (Apple's list is the complete set
wanted) and forgets the secret: a late notification is then refused with 401. Without
``public_url`` nothing about notifications is sent and the account is synced by polling.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlmodel import Session, col

from mdm_core.errors import MdmError, UsageError
from mdm_core.models import utcnow

from ..apple.errors import VppError
from ..models import VppAccount, VppPendingSecret
from .inbox import PENDING_FOR, SUBSCRIBED

if TYPE_CHECKING:
    from mdm_core.host import Host

NOTIFY_PATH = "/apple/apps-books/notify/"

#: The console's control (the account's Apple's notifications row) and the API's field that do
#: what ``mdm vpp account set NAME --notifications on|off`` does.
TURN_ON, TURN_OFF = "click Turn on beside its Apple's notifications", "click Turn off beside its Apple's notifications"
API_ON, API_OFF = r'PATCH /api/v1/vpp/accounts/\1 {"notifications": "on"}', r'PATCH /api/v1/vpp/accounts/\1 {"notifications": "off"}'

#: The command line's advice about notifications (:func:`misdirected`, :func:`check`, a refused
#: URL, a removed account's notice) as the console and the API say it: (cli, console, api), for
#: ``web.add_wording``: the console's Turn on / Turn off, the API's ``"notifications"``.
WORDING = [
    (
        r": run mdm vpp account set (\S+) --notifications on \(or off\)",
        f": {TURN_ON} to give Apple this URL, or Turn off to sync by polling",
        f": {API_ON} gives Apple this URL" + ' (or "off" to sync by polling)',
    ),
    (
        r"set it again, or run mdm vpp account set (\S+) --notifications off",
        f"ask the host's operator to set it again, or {TURN_OFF}",
        f"ask the host's operator to set it again, or {API_OFF}",
    ),
    (
        r"and run `mdm vpp account set (\S+) --notifications off`",
        f"and {TURN_OFF}",
        f"and {API_OFF}",
    ),
    (
        r"and run `mdm vpp account set (\S+) --notifications on`",
        f"and {TURN_ON}",
        f"and {API_ON}",
    ),
    (
        r"set it to the https URL by which Apple reaches this host \(where `mdm run` serves the console\), then run this again",
        "ask the host's operator to set it to the https URL by which Apple reaches this host (where this console is served), then try again",
        "ask the host's operator to set it to the https URL by which Apple reaches this host (where this API is served), then send this again",
    ),
    (r"`mdm run` must be running, serving", "this host's web server must be running, serving", "this host's web server must be running, serving"),
    (
        r"or use --notifications off to sync by polling",
        "or leave the account's Apple's notifications off (Turn off, or off in Add an account) to sync by polling",
        'or send {"notifications": "off"} to sync by polling',
    ),
]
SECRET_BYTES = 32


def public_url(host: Host) -> str | None:
    """``[web] public_url`` without its trailing slash, or None when it is not set (checked
    when the configuration is read: :class:`mdm_core.web.settings.WebSettings`)."""
    from mdm_core.web.settings import WebSettings

    url = host.config.section("web", WebSettings).public_url
    return url.rstrip("/") if url else None


@dataclass
class Change:
    """What one ``POST client/config`` changes about an account's notifications.

    ``on`` True: configure ``url`` with ``secret`` (only ever in memory, in clear); False:
    turn them off; None: leave them as they are (only ``mdmInfo`` is sent)."""

    on: bool | None
    mdm_info_id: str = ""
    url: str | None = None
    secret: str | None = None
    pending_id: int | None = None

    def __repr__(self) -> str:
        return f"Change(on={self.on!r}, url={self.url!r})"

    def request(self) -> dict[str, Any]:
        """The notification keys of ``post_client_config``."""
        if self.on is None:
            return {}
        if not self.on:
            return {"notification_types": []}
        return {"notification_url": self.url, "notification_auth_token": self.secret, "notification_types": list(SUBSCRIBED)}

    def prepare(self, host: Host) -> None:
        """Commit the new secret as pending, before Apple is asked (and tests the URL)."""
        if not self.on:
            return
        assert self.secret is not None
        pending = VppPendingSecret(mdm_info_id=self.mdm_info_id, secret_ciphertext=host.secrets.encrypt(self.secret))

        def work(session: Session) -> int:
            session.execute(delete(VppPendingSecret).where(col(VppPendingSecret.created_at) < utcnow() - PENDING_FOR))
            session.add(pending)
            session.flush()
            assert pending.id is not None
            return pending.id

        self.pending_id = host.db.run_write(work)

    def accepted(self, session: Session, account: VppAccount) -> None:
        """In the transaction that records Apple's acceptance: the pending secret becomes the
        account's (or the secret goes, when turned off)."""
        if self.on is None:
            return
        if self.on:
            pending = session.get(VppPendingSecret, self.pending_id)
            assert pending is not None, "the pending notification secret vanished"
            account.notifications, account.notification_url = "on", self.url
            account.notification_secret = pending.secret_ciphertext
            if account.last_notification_at is None:  # an account being added: Apple accepted once its test arrived
                account.last_notification_at = utcnow()
            session.delete(pending)
        else:
            account.notifications, account.notification_url, account.notification_secret = "off", None, None
        session.add(account)

    def abandon(self, host: Host) -> None:
        """Apple refused (or we stopped): drop the pending secret."""
        if self.pending_id is not None:
            pending_id, self.pending_id = self.pending_id, None
            host.db.run_write(lambda session: session.execute(delete(VppPendingSecret).where(col(VppPendingSecret.id) == pending_id)))

    @contextmanager
    def abandoned_on_error(self, host: Host) -> Iterator[None]:
        """Drop the pending secret if the block fails (Apple refused, the final write failed)."""
        try:
            yield
        except BaseException:
            with suppress(Exception):  # it expires anyway: never hide the real error
                self.abandon(host)
            raise

    def failure(self, action: str, exc: VppError) -> MdmError:
        """A one-line error for a refused ``POST client/config``, saying what to do."""
        number = getattr(exc, "error_number", None)
        if self.on and number == 9728:
            return MdmError(
                f"Apple could not deliver a test notification to {self.url} (error 9728): `mdm run` must be running, "
                "serving [web] public_url and reachable from the internet, with the same database and key; "
                "or use --notifications off to sync by polling"
            )
        if self.on and number in (9710, 9711, 9712):
            return MdmError(
                f"Apple refused the notification URL {self.url} (error {number}): set [web] public_url "
                "to this host's https address (host and path, at most a few hundred characters)"
            )
        return MdmError(f"{action}: {exc}")


def check(host: Host, wanted: bool | None) -> str | None:
    """``public_url``; a one-line usage error when notifications are asked for without it."""
    base = public_url(host)
    if wanted and base is None:
        raise UsageError(
            "notifications need [web] public_url: set it to the https URL by which Apple reaches this host "
            "(where `mdm run` serves the console), then run this again"
        )
    return base


def misdirected(host: Host, account: VppAccount) -> str | None:
    """What to do when Apple posts the account's notifications elsewhere than ``[web]
    public_url`` says (it changed, or was removed, since they were turned on); None when they
    are off or go where they should."""
    if account.notifications != "on":
        return None
    base = public_url(host)
    if base is not None and account.notification_url == f"{base}{NOTIFY_PATH}{account.mdm_info_id}":
        return None
    where = f"Apple posts its notifications to {account.notification_url}"
    if base is None:
        return f"{where}, but [web] public_url is not set: set it again, or run mdm vpp account set {account.name} --notifications off"
    return f"{where}, not to [web] public_url {base}: run mdm vpp account set {account.name} --notifications on (or off)"


def renewal_plan(host: Host, account: VppAccount, wanted: bool | None) -> tuple[Change, str | None]:
    """The notification change of a token renewal and what to tell the user about it (or None).

    Notifications on whose secret the host's key cannot read (stored with a lost key) cannot
    stay as they are: each of Apple's posts would be refused with 401. Without ``public_url``
    no new secret can be given to Apple, so the renewal turns them off there and says how to
    turn them on again (with it, :func:`plan` already gives Apple a new secret)."""
    change = plan(host, account.mdm_info_id, account.notifications, wanted)
    secret = account.notification_secret
    if change.on is not None or account.notifications != "on" or not secret or host.secrets.can_decrypt(secret):
        return change, None
    return Change(False, account.mdm_info_id), (
        f"Apple's notifications of {account.name} were turned off: their secret was stored with a key this host no longer has, "
        "and [web] public_url is not set to give Apple a new one (each notification would be refused); the account is synced by polling; "
        f"to have them again, set [web] public_url and run `mdm vpp account set {account.name} --notifications on`"
    )


def drop_unreadable_pending(host: Host, session: Session, mdm_info_id: str) -> None:
    """At a token renewal (the accounts lock held: no add is under way), forget the pending
    secrets the host's key cannot read (stored with a lost key: no test notification is accepted
    with them, and `mdm secrets status` counts them) of ``mdm_info_id`` and of no account (an add
    that failed or was killed before Apple's answer: no later change of its account forgets them)."""
    accounts = select(col(VppAccount.mdm_info_id))
    mine_or_orphan = (col(VppPendingSecret.mdm_info_id) == mdm_info_id) | col(VppPendingSecret.mdm_info_id).not_in(accounts)
    rows = session.execute(select(VppPendingSecret).where(mine_or_orphan)).scalars()
    for pending in [p for p in rows if not host.secrets.can_decrypt(p.secret_ciphertext)]:
        session.delete(pending)


def plan(host: Host, mdm_info_id: str, current: str | None, wanted: bool | None) -> Change:
    """The notification change of the next ``POST client/config`` of an account.

    ``mdm_info_id``: the account's (its notification URL ends with it); ``current``: its
    ``notifications`` (None for an account being added); ``wanted``: True/False from
    ``--notifications on|off``, None otherwise (add, renewal, take-over): on when ``public_url``
    is set and the account has them on or is new, else unchanged."""
    base = check(host, wanted)
    if wanted is False:
        return Change(False, mdm_info_id)
    if base is None:
        return Change(None, mdm_info_id)
    if wanted is None and current == "off":
        return Change(None, mdm_info_id)
    return Change(True, mdm_info_id, f"{base}{NOTIFY_PATH}{mdm_info_id}", secrets.token_urlsafe(SECRET_BYTES))
