"""Token states: what an account's token is worth, what the user should do, and every change.

This module is the only place an account's ``token_state`` (and ``state_detail``, and the pause
of its scheduled syncs on a blocking state) changes, and the only one that records
``vpp_token_state_changed``. Each change is recorded in the caller's transaction:

- :func:`token_added`: a new account starts in the state its expiry date gives.
- :func:`token_renewed`: a renewed token clears a blocking state and the pause.
- :func:`sync_succeeded`: a sync that worked re-reads the expiry (Apple's
  ``tokenExpirationDate``) and lifts the pause.
- :func:`apple_refused`: Apple refused the token (expired, revoked, invalid) or another MDM
  claimed the location: a blocking state, and scheduled syncs pause until the user acts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlmodel import Session

from mdm_core.db.typed import stored_id, table_of
from mdm_core.output import days_text, days_until

from .apple.errors import MdmConflictError, TokenError
from .models import VppAccount
from .recording import record_event

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mdm_core.host import Host

    from .payloads import Account

ACCOUNTS = table_of(VppAccount)

# States that only the user can clear (a manual sync or a renewed token).
BLOCKING = ("expired", "revoked", "invalid", "taken_over")
STATES = ("valid", "expiring_30", "expiring_14", "expiring_7", *BLOCKING)

NOTHING_TO_DO = "nothing to do"
ACTIONS = {
    "valid": NOTHING_TO_DO,
    "expiring_30": "renew the token before it expires: mdm vpp account set NAME --token-file NEW.vpptoken",
    "expiring_14": "renew the token before it expires: mdm vpp account set NAME --token-file NEW.vpptoken",
    "expiring_7": "renew the token this week: mdm vpp account set NAME --token-file NEW.vpptoken",
    "expired": "download a new token from Apple School/Business Manager, then: mdm vpp account set NAME --token-file NEW.vpptoken",
    "revoked": "the token was revoked in Apple School/Business Manager: download a new one, then mdm vpp account set NAME --token-file NEW.vpptoken",
    "invalid": "Apple rejects the token: download a new one, then mdm vpp account set NAME --token-file NEW.vpptoken",
    "taken_over": "another MDM claimed this location: stop it using the token, "
    "then mdm vpp account set NAME --token-file NEW.vpptoken --take-over (or remove the account)",
}

#: The commands of that advice (and of ``accounts.unreadable_action``) as the console says them,
#: where the token is renewed by uploading it with Renew token, and as the API does (``PATCH``
#: the account with the token's text, ``\1`` its name), in ``web.add_wording``'s (cli, console,
#: api) triples.
UPLOAD = "upload it with Renew token"
API_UPLOAD = r'send its text as "token" in PATCH /api/v1/vpp/accounts/\1'
KEY = "give it the key the token was stored with (MDM_SECRET_KEY or var/secret.key, the same on every host)"
#: What to do when the key the stored tokens were encrypted with is lost (``accounts.check_key``).
KEY_LOST = "run this again with --key-lost, then enter each other token again with `mdm vpp account set NAME --token-file FILE`"
#: The console's and the API's --key-lost: the confirmation of Add or Renew token, ``"key_lost": true``.
CONFIRMED = "confirming that the key is lost"
API_KEY_LOST = 'with "key_lost": true'
WORDING = [
    (
        re.escape(KEY_LOST),
        "confirm it below, then upload each other token again with Renew token",
        f'send this again {API_KEY_LOST}, then send each other token\'s text as "token" in PATCH /api/v1/vpp/accounts/NAME',
    ),
    (
        r"then mdm vpp account set (\S+) --token-file NEW\.vpptoken --take-over",
        f"then {UPLOAD} and confirm the take-over",
        API_UPLOAD.replace("send", "then send") + ' with "take_over": true',
    ),
    (
        r"download a new token from Apple School/Business Manager, then: mdm vpp account set (\S+) --token-file NEW\.vpptoken",
        f"download a new .vpptoken from Apple School/Business Manager and {UPLOAD}",
        f"download a new .vpptoken from Apple School/Business Manager and {API_UPLOAD}",
    ),
    (r", then mdm vpp account set (\S+) --token-file NEW\.vpptoken", f" and {UPLOAD}", f" and {API_UPLOAD}"),
    (
        r": mdm vpp account set (\S+) --token-file NEW\.vpptoken",
        f": download a new .vpptoken from Apple School/Business Manager and {UPLOAD}",
        f": download a new .vpptoken from Apple School/Business Manager and {API_UPLOAD}",
    ),
    (
        r"restore the key it was stored with \(var/secret\.key or MDM_SECRET_KEY\), or enter the token again: "
        r"`mdm vpp account set (\S+) --token-file FILE --key-lost`",
        f"{KEY}, or upload the token again with Renew token, {CONFIRMED}, then each other token with Renew token",
        f'{KEY}, or send the token\'s text as "token" {API_KEY_LOST} in PATCH /api/v1/vpp/accounts/\\1, then each other token\'s text as "token" in its PATCH',
    ),
    (
        r"restore the key it was stored with \(var/secret\.key or MDM_SECRET_KEY\), or enter the token again: `mdm vpp account set (\S+) --token-file FILE`",
        f"{KEY}, or upload the token again with Renew token",
        f"{KEY}, or {API_UPLOAD.replace('its text', 'the token again')}",
    ),
]


def expiry_state(expires_at: datetime, now: datetime | None = None) -> str:
    """``valid``, ``expiring_30``/``_14``/``_7`` or ``expired`` from the expiry date alone."""
    now = now or datetime.now(UTC)
    days = (expires_at - now).total_seconds() / 86400
    if days <= 0:
        return "expired"
    if days <= 7:
        return "expiring_7"
    if days <= 14:
        return "expiring_14"
    if days <= 30:
        return "expiring_30"
    return "valid"


def effective_state(account: VppAccount, now: datetime | None = None) -> str:
    """A blocking state Apple told us about, else the state the expiry date gives."""
    if account.token_state in BLOCKING:
        return account.token_state
    return expiry_state(account.token_expires_at, now)


def days_left(expires_at: datetime, now: datetime | None = None) -> int:
    """Days until the token expires, rounded up (at least 1 before it does, negative once it
    has): :func:`mdm_core.output.days_until`."""
    return days_until(expires_at, now)


def describe(state: str, expires_at: datetime, detail: str | None = None, now: datetime | None = None) -> str:
    """A short human text: ``expiring in 12 days``, ``taken over by OtherMDM`` ..."""
    if state.startswith("expiring"):
        return f"expiring in {days_text(days_left(expires_at, now))}"
    if state == "taken_over":
        return f"taken over by another MDM ({detail})" if detail else "taken over by another MDM"
    return state


def paused_note(account: VppAccount) -> str:
    """Why a paused account's scheduled sync did not run, its state said as ``describe`` says it
    (``token taken over by another MDM (X): ...``, never the state's internal name)."""
    state = effective_state(account)
    return f"token {describe(state, account.token_expires_at, account.state_detail)}: waiting for the user to act"


def attention(accounts: Iterable[tuple[Account, str | None]]) -> dict[str, list[str]]:
    """``mdm status``'s lines about the accounts (``accounts.accounts_with_notices``): a problem
    for each token that stopped syncing until the admin acts (a blocking state, or
    ``unreadable`` with this host's key), a warning for each one expiring within 30 days (it
    still works: the exit code is unchanged), each with its token's What to do alone; and a
    warning for each account whose notifications Apple posts elsewhere, with theirs (it still
    syncs on its interval). Each advice is said once, on its own line."""
    found: dict[str, list[str]] = {"problems": [], "warnings": []}
    for account, notice in accounts:
        state = account["token_state"]
        line = f"VPP account '{account['name']}': token {account['token_status']}"
        if state in (*BLOCKING, "unreadable"):
            found["problems"].append(f"{line}, the account cannot sync: {account['action']}")
        elif state.startswith("expiring"):
            found["warnings"].append(f"{line} (on {account['tokenExpirationDate'][:10]}): {account['action']}")
        if notice:
            found["warnings"].append(f"VPP account '{account['name']}': {notice}")
    return found


def action(state: str, account_name: str) -> str:
    """What the user should do about ``state``, with the account's name filled in (the
    command to run; the console's Renew token instead through ``WORDING``)."""
    return ACTIONS[state].replace("NAME", account_name)


# ---------------------------------------------------------------------- transitions


def token_added(host: Host, session: Session, account: VppAccount) -> None:
    """A new account (already added to ``session`` and flushed): its first state, announced."""
    state = expiry_state(account.token_expires_at)
    account.token_state, account.state_detail = state, None
    session.add(account)
    _record(host, session, account, None, state, None)


def token_renewed(host: Host, session: Session, account: VppAccount, expires_at: datetime) -> None:
    """A renewed token was stored: the state its expiry gives; the pause of a blocking state ends."""
    account.token_expires_at = expires_at
    account.paused = False
    _move(host, session, account, expiry_state(expires_at), None)


def sync_succeeded(host: Host, session: Session, account_id: int, token_expiration: datetime | None, values: dict[str, Any]) -> None:
    """A sync of account ``account_id`` worked: Apple's expiry (when it sent one) decides the
    state; no pause. ``values`` (the other columns the sync sets) go in the same UPDATE: the
    columns the state needs are read, one Core statement each way (no ORM object of the account)."""
    row = ACCOUNTS.c.id == account_id
    name, stored_expiry, previous = session.execute(select(ACCOUNTS.c.name, ACCOUNTS.c.token_expires_at, ACCOUNTS.c.token_state).where(row)).one()
    expires = stored_expiry if token_expiration is None else token_expiration
    state = expiry_state(expires)
    session.execute(update(ACCOUNTS).where(row).values(**values, token_expires_at=expires, paused=False, token_state=state, state_detail=None))
    if previous != state:
        _recorded(host, session, account_id, name, expires, previous, state, None)


def apple_refused(host: Host, session: Session, account: VppAccount, exc: BaseException) -> None:
    """A sync failed with ``exc``: a token error or another MDM's claim blocks the account (its
    scheduled syncs pause until the user acts); any other error changes nothing here."""
    if isinstance(exc, MdmConflictError):
        other = exc.other_name or "another MDM"
        detail = f"{other} ({exc.other_metadata})" if exc.other_metadata else other
        state = "taken_over"
    elif isinstance(exc, TokenError):
        state, detail = exc.token_state, None
    else:
        return
    account.paused = True
    _move(host, session, account, state, detail)


def _move(host: Host, session: Session, account: VppAccount, state: str, detail: str | None) -> None:
    previous = account.token_state
    account.token_state, account.state_detail = state, detail
    session.add(account)
    if previous != state:
        _record(host, session, account, previous, state, detail)


def _record(host: Host, session: Session, account: VppAccount, previous: str | None, state: str, detail: str | None) -> None:
    _recorded(host, session, stored_id(account), account.name, account.token_expires_at, previous, state, detail)


def _recorded(host: Host, session: Session, account_id: int, name: str, expires: datetime, previous: str | None, state: str, detail: str | None) -> None:
    """The event ``vpp_token_state_changed`` of account ``account_id`` (named ``name``)."""
    record_event(
        host,
        session,
        account_id,
        "vpp_token_state_changed",
        {
            "account": name,
            "previous": previous,
            "state": state,
            "detail": detail,
            "tokenExpirationDate": expires.isoformat(),
            "action": action(state, name),
        },
    )
