"""VPP accounts: add (claim the location), renew, re-time, remove, list; and their clients.

The token is decrypted only to build a client; it never leaves this module in clear except
as the client's bearer value.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlmodel import Session, col

from mdm_core.db.typed import table_of
from mdm_core.errors import Conflict, MdmError, UsageError, describe

from . import installation, token_state
from .apple.client import DEFAULT_SERVICE_URL, AppsBooksClient
from .apple.errors import MdmConflictError, VppError
from .apple.limiter import TokenGate
from .apple.protocol import apple_asset, client_config_fields, parse_apple_date
from .apple.stoken import SToken, TokenFileError, load_token_file
from .apple.transport import RetryPolicy
from .models import VppAccount, VppAsset, VppAssetCount, VppLicense, VppNotification, VppSyncRun, VppUser
from .payloads import Account
from .settings import VppSettings
from .sync.events import record_chunks
from .views import get_account  # the lookup lives with the other reads of the mirror (light to import)

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.locks import DbLock

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
log = logging.getLogger(__name__)
_GATES: weakref.WeakKeyDictionary[Host, dict[tuple[str, str], TokenGate]] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def account_lock(host: Host, account_id: int | None) -> DbLock:
    """The account's lock: one writer of its mirror at a time, across processes (a sync,
    notifications being acted on, the account's removal)."""
    return host.lock(f"vpp.sync.{account_id}", ttl=settings(host).lock_ttl)


def settings(host: Host) -> VppSettings:
    """The validated ``[vpp]`` section."""
    return host.config.section("vpp", VppSettings)


def token_file_label(path: str, label: str | None = None) -> str:
    """How messages name a token file: ``label`` when given (the console names the uploaded
    file, whose path is a temporary file of the server's), else ``token file PATH``."""
    return label or f"token file {path}"


def read_token(path: str, label: str | None = None) -> SToken:
    """Load a token file; a bad or expired one is a one-line usage error naming the file as
    :func:`token_file_label` does."""
    label = token_file_label(path, label)
    try:
        token = load_token_file(path, label)
    except TokenFileError as exc:
        raise UsageError(str(exc)) from None
    if token.is_expired():
        raise UsageError(
            f"{label} expired on {token.expires_at:%Y-%m-%d}: download a new token from "
            "Apple School Manager or Apple Business Manager (Settings > Apps and Books)"
        )
    return token


class AccountBackoff:
    """The account row keeps Apple's back-off, so that every process on the database honours it.

    It holds the host's database, not the host: the gates are kept per host in a
    ``WeakKeyDictionary``, whose values must not refer to their key (the host would never go)."""

    def __init__(self, host: Host, account_id: int) -> None:
        self.db, self.account_id = host.db, account_id

    def load(self) -> datetime | None:
        with self.db.session() as session:
            account = session.get(VppAccount, self.account_id)
            return account.backoff_until if account is not None else None

    def save(self, until: datetime) -> None:
        def work(session: Session) -> None:
            account = session.get(VppAccount, self.account_id)
            if account is not None and (account.backoff_until is None or account.backoff_until < until):
                account.backoff_until = until
                session.add(account)

        try:
            self.db.run_write(work)
        except Exception as exc:  # the in-process gate still holds it; never fail a request for this
            log.warning("could not record Apple's back-off in the database: %s", type(exc).__name__)


def token_gate(host: Host, token: SToken, service_url: str, account_id: int | None, backoff_until: datetime | None | EllipsisType = ...) -> TokenGate:
    """The one gate (5 requests in flight, Apple's back-off) of this token in this process;
    ``backoff_until``: the account's stored back-off as the caller has just read it (else read)."""
    key = (service_url.rstrip("/"), token.fingerprint)
    with _GATES_LOCK:
        gates = _GATES.setdefault(host, {})
        gate = gates.get(key)
        if gate is None:
            gate = gates[key] = TokenGate()
        if account_id is not None and gate.store is None:
            gate.store = AccountBackoff(host, account_id)
    gate.refresh(backoff_until)  # a back-off another process recorded since
    return gate


def make_client(
    host: Host,
    token: SToken,
    service_url: str,
    mdm_info_id: str | None,
    *,
    interactive: bool = False,
    account_id: int | None = None,
    account: str | None = None,
    backoff_until: datetime | None | EllipsisType = ...,
) -> AppsBooksClient:
    """A client with the host's timeouts and retry bounds, sharing the token's gate.

    ``interactive`` (someone is waiting at the command line): one quick retry at most, so a
    wrong ``--service-url`` fails in a second with one line instead of backing off for minutes.
    ``account``: the stored account's name, in the advice when another MDM claimed the location
    or Apple refuses its token (None: a token being added or renewed). ``backoff_until``: see
    :func:`token_gate`.
    """
    s = settings(host)
    retry = RetryPolicy(max_attempts=s.max_attempts, max_total_wait=s.max_total_wait)
    if interactive:
        retry = RetryPolicy(max_attempts=min(2, s.max_attempts), base_delay=0.2, max_total_wait=min(2.0, s.max_total_wait))
    return AppsBooksClient(
        token,
        service_url,
        mdm_info_id=mdm_info_id,
        account=account,
        timeout=(min(10.0, s.request_timeout), s.request_timeout),
        retry=retry,
        gate=token_gate(host, token, service_url, account_id, backoff_until),
    )


def account_token(host: Host, account: VppAccount) -> SToken:
    """Decrypt an account's token."""
    return SToken.parse(host.secrets.decrypt(account.token_ciphertext), source=f"stored token of account {account.name}")


def client_for(host: Host, account: VppAccount, *, interactive: bool = False, read_now: bool = False) -> AppsBooksClient:
    """A client for a stored account, checking that ``mdmInfo`` is still ours (``interactive``:
    see :func:`make_client`). ``read_now``: ``account`` was read just now (a sync, under its
    lock): the back-off it holds is current, its row is not read again for it."""
    token = account_token(host, account)
    backoff: datetime | None | EllipsisType = account.backoff_until if read_now else ...
    return make_client(
        host, token, account.service_url, account.mdm_info_id, interactive=interactive, account_id=account.id, account=account.name, backoff_until=backoff
    )


def _mdm_info(host: Host, mdm_info_id: str, here: str | None = None) -> dict[str, str]:
    """The ``mdmInfo`` of a claim; ``here``: this installation's id when the caller read it
    (else read, and made at the first claim)."""
    return {"id": mdm_info_id, "name": settings(host).mdm_name, "metadata": installation.metadata(here or installation.installation_id(host))}


def _other_mdm(mdm_info: Any) -> str:
    if not isinstance(mdm_info, dict):
        return "another MDM"
    name, metadata = mdm_info.get("name") or "another MDM", mdm_info.get("metadata")
    return f"{name} ({metadata})" if metadata else str(name)


class ClaimedByOtherMdm(MdmError):
    """The location is managed by another MDM: adding or renewing needs an explicit take-over."""

    def __init__(self, message: str, other: str, location: str):
        super().__init__(message)
        self.other = other
        self.location = location  # its name (or uId), for a page that asks to confirm


class SyncRunning(Conflict):
    """A sync of the account holds its lock: it cannot be removed now (exit code 1, 409 on the web)."""


class LocationTaken(Conflict, UsageError):
    """The token's location is already another account of this host (exit code 2, 409 on the web)."""


class NameTaken(Conflict, UsageError):
    """An account of this name exists already (exit code 2, 409 on the web)."""


def check_name(name: str) -> None:
    """Raise a one-line :class:`UsageError` unless ``name`` is a valid account name (letters,
    digits, ``.``, ``_``, ``-``; at most 128; compared as given, case included)."""
    if not NAME_RE.match(name):
        raise UsageError(f"account name '{name}' is not valid: use letters, digits, '.', '_' or '-' (at most 128)")


def check_name_free(session: Session, name: str, advice: str | None = None) -> None:
    """Raise :class:`NameTaken` if an account is named ``name`` (``advice``: what to do instead,
    by default changing that account)."""
    if session.execute(select(col(VppAccount.id)).where(col(VppAccount.name) == name)).first():
        raise NameTaken(f"an account named '{name}' already exists: {advice or f'choose another name or `mdm vpp account set {name}`'}")


def _account_of(host: Host, uid: str) -> str | None:
    """The name of this host's account of location ``uid``, if any."""
    with host.db.session() as session:
        return session.execute(select(col(VppAccount.name)).where(col(VppAccount.uid) == uid)).scalar_one_or_none()


def _vpp_failure(action: str, exc: VppError) -> MdmError:
    return MdmError(f"{action}: {exc}")


ACCOUNTS_LOCK = "vpp.accounts"  # serialises adding, renewing and renaming accounts: one claim at Apple at a time


def _is_ours(host: Host, mdm_info: Any) -> bool:
    """``mdmInfo`` written from this database (its metadata carries this installation's id): an
    earlier claim of ours whose database write did not happen (a full disk, an interrupted add),
    or a location whose account was removed here. Another MDM's claim is never ours, nor another
    installation's on this machine (another database), whatever its name and host name."""
    return installation.claimed_here(host, mdm_info)


@contextmanager
def accounts_lock(host: Host) -> Iterator[None]:
    """Hold the accounts lock: also proves, before Apple is called, that the database takes
    writes (a read-only or full database stops here with one line, nothing claimed)."""
    from mdm_core.locks import LockBusy

    lock = host.lock(ACCOUNTS_LOCK, ttl=120)
    try:
        lock.acquire(wait=30)
    except LockBusy as exc:
        raise MdmError(f"another command is adding, renewing or renaming a VPP account ({exc.info.describe() if exc.info else 'busy'}): try again") from None
    try:
        yield
    finally:
        lock.release()


SERVICE_URL_SHAPE = f"is not an http(s) URL of a host and a path (no user name, password, query or fragment) like {DEFAULT_SERVICE_URL}"


def service_url_problem(text: str) -> str | None:
    """Why ``text`` is no Apps and Books base URL (http(s), a host and a path), as ``URL is not
    ...``, or None. A user name, password, query or fragment is refused (a credential there
    would be stored, and printed by every message naming the URL) and shown as ``***``."""
    from urllib.parse import urlsplit

    from mdm_core.web.settings import shown_url

    try:
        parts = urlsplit(text)
        shown = shown_url(text)
        valid = parts.scheme in ("https", "http") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # a port that is not a number, a bracket left open
        return f"the URL given {SERVICE_URL_SHAPE}"
    if not valid or "@" in parts.netloc or parts.query or parts.fragment:
        return f"{shown} {SERVICE_URL_SHAPE}"
    return None


def check_service_url(text: str) -> str:
    """``text`` without trailing slashes, or a one-line :class:`UsageError` saying why it is no
    Apps and Books base URL (the console's Add form and the API's ``service_url`` come here)."""
    problem = service_url_problem(text.strip())
    if problem:
        raise UsageError(f"--service-url {problem}")
    return text.strip().rstrip("/")


def check_key(host: Host, key_lost: bool) -> None:
    """Refuse to store a token with a key that reads none of the stored secrets (a wrong key
    file restored) unless ``key_lost``: the admin says the right key is gone for good."""
    from mdm_core.secrets_cli import refuse_wrong_key

    if not key_lost:
        refuse_wrong_key(host, token_state.KEY_LOST)


def add_account(
    host: Host,
    name: str,
    token_file: str,
    *,
    interval: int | None = None,
    service_url: str | None = None,
    take_over: bool = False,
    notifications: bool | None = None,
    token_label: str | None = None,
    key_lost: bool = False,
) -> Account:
    """Add an account: validate the token, read the location, refuse conflicts, claim it.

    ``token_label`` names the token in messages instead of ``token file PATH`` (the console's
    upload, whose path is a temporary file of the server's).

    Nothing is claimed at Apple that cannot be recorded here: the database must take writes
    (the accounts lock is one) and the token must encrypt with the host's key before the
    claim; adds are serialised, so two adds of one name or one location never both claim. A
    location this database claimed before (``mdmInfo`` carrying its installation id: a removed
    account, an add whose final write failed) is taken back without ``take_over``; another
    installation's on this machine needs it, as any other MDM's.

    ``notifications`` (None: on when ``[web] public_url`` is set) goes in the same claim; its
    secret is committed as pending first, so that ``mdm run`` answers Apple's test notification
    while the claim is under way (:mod:`.notifications.configure`).
    """
    from .notifications import configure

    check_name(name)
    interval = check_interval(host, interval if interval is not None else settings(host).default_interval)
    service_url = check_service_url(service_url) if service_url else DEFAULT_SERVICE_URL
    label = token_file_label(token_file, token_label)
    token = read_token(token_file, label)
    check_key(host, key_lost)
    ciphertext = host.secrets.encrypt(token.bearer())  # the key works (or says what is wrong) before Apple is called
    configure.check(host, notifications)
    with accounts_lock(host):
        with host.db.session() as session:
            check_name_free(session, name)
        with make_client(host, token, service_url, None, interactive=True) as client:
            try:
                config = client.get_client_config()
            except VppError as exc:
                raise _vpp_failure(f"cannot read the location of {label} from {service_url}", exc) from None
            try:
                fields = client_config_fields(config, service_url)
            except VppError as exc:
                raise MdmError(str(exc)) from None
            uid = fields["uid"]
            other = _account_of(host, uid)
            if other:
                renew = f"`mdm vpp account set {other} --token-file {token_file}`"  # the console's Renew token: web.WORDING
                raise LocationTaken(f"this token's location {fields['location_name'] or uid} is already account '{other}': renew it with {renew}")
            current = config.get("mdmInfo")
            here = installation.stored_installation_id(host)  # read once for the check and the claim
            ours = here is not None and installation.claimed_by(current, here)
            if isinstance(current, dict) and current.get("id") and not ours and not take_over:
                here = " (this machine: another installation on it, or this one before its upgrade)" if installation.claimed_from_this_machine(current) else ""
                raise ClaimedByOtherMdm(
                    f"location {fields['location_name'] or uid} is managed by {_other_mdm(current)}{here}: "
                    "two MDMs on one location give unpredictable license assignment; stop the other MDM using it, or add --take-over",
                    _other_mdm(current),
                    fields["location_name"] or uid,
                )
            mdm_info_id = str(current["id"])[:64] if ours and isinstance(current, dict) else str(uuid.uuid4())
            change = configure.plan(host, mdm_info_id, None, notifications)
            change.prepare(host)
            try:
                client.post_client_config(mdm_info=_mdm_info(host, mdm_info_id, here), **change.request())
            except VppError as exc:
                change.abandon(host)
                raise change.failure("cannot claim the location (POST client/config)", exc) from None

        account = VppAccount(
            name=name,
            org_name=token.org_name,
            service_url=service_url,
            token_ciphertext=ciphertext,
            token_fingerprint=token.fingerprint,
            token_expires_at=_expiry_from(config, token),
            mdm_info_id=mdm_info_id,
            interval_seconds=interval,
            **fields,
        )

        def work(session: Session) -> None:
            session.add(account)
            session.flush()
            change.accepted(session, account)
            token_state.token_added(host, session, account)

        with change.abandoned_on_error(host):
            host.db.run_write(work)
    host.deliver_events()
    return describe_account(account)


def set_account(
    host: Host,
    name: str,
    *,
    interval: int | None = None,
    token_file: str | None = None,
    take_over: bool = False,
    notifications: bool | None = None,
    service_url: str | None = None,
    token_label: str | None = None,
    key_lost: bool = False,
) -> Account:
    """Re-time an account, renew its token (the new token must belong to the same location),
    turn Apple's notifications on or off (``notifications``), or move it to another service URL
    (``service_url``: checked first, the location there must be this account's and still ours).

    Only a renewed token and ``notifications`` send Apple the client config (and the
    notification URL, which Apple tests first: error 9728 refuses the whole change, nothing
    written). What this host alone keeps sends Apple nothing: ``interval`` (Apple is not called
    at all) and ``service_url`` (the location is only read there, to check it).

    Renewing claims the location back for this host; if another MDM claimed it meanwhile,
    that needs ``take_over`` (the user confirms the other MDM no longer uses the token). A
    renewal gives Apple a fresh notification secret when the account's notifications are on
    and ``[web] public_url`` is set; without it, notifications whose secret the key cannot read
    (a lost key) are turned off, the returned ``notice`` saying so. ``token_label`` names the token file in messages (as in
    :func:`add_account`).
    """
    from .notifications import configure

    if take_over and token_file is None:  # the claim comes with a token: alone, it would be dropped without a word
        raise UsageError(
            "--take-over goes with --token-file FILE (renewing the token claims the location back), "
            "or with `mdm vpp account add NAME --token-file FILE --take-over`"
        )
    if interval is None and token_file is None and notifications is None and service_url is None:
        raise UsageError("nothing to change: give --interval SECONDS, --token-file PATH, --notifications on|off and/or --service-url URL")
    if token_file is not None:
        check_key(host, key_lost)
    with host.db.session() as session:
        account = get_account(session, name)
    updates: dict[str, Any] = {}
    if interval is not None:
        updates["interval_seconds"] = check_interval(host, interval)
    if service_url is not None:
        service_url = check_service_url(service_url)
        updates["service_url"] = account.service_url = service_url
        if token_file is None:  # check the stored token there: same location, still ours
            with make_client(host, account_token(host, account), service_url, None, interactive=True, account_id=account.id) as client:
                try:
                    config = client.get_client_config()
                except VppError as exc:
                    raise _vpp_failure(f"cannot read account {name}'s location from {service_url}", exc) from None
            if str(config.get("uId")) != account.uid:
                raise UsageError(
                    f"{service_url} answers for location {config.get('locationName') or config.get('uId')}, "
                    f"not for account '{name}' ({account.location_name}): check the URL"
                )
            current = config.get("mdmInfo")
            if isinstance(current, dict) and current.get("id") and current.get("id") != account.mdm_info_id and not _is_ours(host, current):
                raise MdmError(
                    f"location {account.location_name or account.uid} at {service_url} is managed by {_other_mdm(current)}: "
                    "renew the token there with --token-file and --take-over once the other MDM stopped using it"
                )
    notice: str | None = None
    if token_file is None and notifications is None:  # nothing Apple holds changes: nothing is sent (its test notification cannot refuse it)
        change = configure.Change(None, account.mdm_info_id)
    elif token_file is None:
        change = configure.plan(host, account.mdm_info_id, account.notifications, notifications)
    else:  # a secret stored with a lost key is replaced, or turned off (notice says so)
        change, notice = configure.renewal_plan(host, account, notifications)
    renewed_expiry: datetime | None = None

    def work(session: Session) -> VppAccount:
        row = get_account(session, name)
        for key, value in updates.items():
            setattr(row, key, value)
        change.accepted(session, row)
        session.add(row)
        if renewed_expiry is not None:
            token_state.token_renewed(host, session, row, renewed_expiry)
            configure.drop_unreadable_pending(host, session, row.mdm_info_id)
        return row

    if token_file is None:
        if change.on is None:
            row = host.db.run_write(work)
        else:
            with accounts_lock(host), change.abandoned_on_error(host):
                change.prepare(host)
                with client_for(host, account) as client:  # refuses, naming it, a location another MDM took
                    try:
                        client.get_client_config()
                        client.post_client_config(mdm_info=_mdm_info(host, account.mdm_info_id), **change.request())
                    except VppError as exc:
                        raise change.failure("cannot change the notifications (POST client/config)", exc) from None
                row = host.db.run_write(work)
        host.deliver_events()
        return describe_account(row)
    label = token_file_label(token_file, token_label)
    token = read_token(token_file, label)
    updates.update(token_ciphertext=host.secrets.encrypt(token.bearer()), token_fingerprint=token.fingerprint)
    with accounts_lock(host), change.abandoned_on_error(host):  # the database takes writes before the location is claimed again
        change.prepare(host)
        with make_client(host, token, account.service_url, None, interactive=True, account_id=account.id) as client:
            try:
                config = client.get_client_config()
            except VppError as exc:
                raise _vpp_failure(f"cannot check {label}", exc) from None
            uid = str(config.get("uId"))
            if uid != account.uid:
                location, other = config.get("locationName") or uid, _account_of(host, uid)
                if other:  # the console's Renew token of that account, the API's PATCH of it (web.WORDING)
                    raise LocationTaken(
                        f"{label} belongs to location {location}, already account '{other}', not to account '{name}' ({account.location_name}): "
                        f"renew it with `mdm vpp account set {other} --token-file {token_file}`"
                    )
                raise UsageError(f"{label} belongs to location {location}, not to account '{name}' ({account.location_name}): add it as a new account instead")
            current = config.get("mdmInfo")
            ours = _is_ours(host, current)
            theirs = isinstance(current, dict) and current.get("id") and current.get("id") != account.mdm_info_id and not ours
            if theirs and not take_over:
                raise ClaimedByOtherMdm(
                    f"location {account.location_name or account.uid} is now managed by {_other_mdm(current)}: "
                    "stop the other MDM using it, then run this again with --take-over",
                    _other_mdm(current),
                    account.location_name or account.uid,
                )
            # an earlier release's claim (the host name alone in its metadata) gets this installation's id
            if not isinstance(current, dict) or not ours or current.get("id") != account.mdm_info_id or change.on is not None:
                try:
                    client.post_client_config(mdm_info=_mdm_info(host, account.mdm_info_id), **change.request())
                except VppError as exc:
                    raise change.failure("cannot claim the location again (POST client/config)", exc) from None
        renewed_expiry = _expiry_from(config, token)
        row = host.db.run_write(work)
    host.deliver_events()
    described = describe_account(row)
    if notice:
        described["notice"] = notice
    return described


def account_contents(host: Host, name: str) -> dict[str, int]:
    """How many assets, licenses and VPP users the account's mirror holds (what removing it
    forgets), and ``notifications`` 1 when Apple's are on (removing it turns them off)."""
    from sqlalchemy import func

    with host.db.session() as session:
        account = get_account(session, name)
        counts = {
            label: int(session.execute(select(func.count()).select_from(table).where(table.c.account_id == account.id)).scalar_one())
            for label, table in (("assets", table_of(VppAsset)), ("licenses", table_of(VppLicense)), ("users", table_of(VppUser)))
        }
    return {**counts, "notifications": int(account.notifications == "on")}


def remove_account(host: Host, name: str) -> str | None:
    """Forget an account and its mirror; subscribers hear its assets removed. Apple is told to
    stop its notifications first, when they are on (best effort: the account is removed even
    when Apple cannot be told; the returned notice then says so, else None).

    Takes the account's sync lock (waiting ``[vpp] lock_wait``), so that a running sync is
    never left writing to an account that no longer exists.
    """
    from mdm_core.locks import LockBusy

    with host.db.session() as session:
        account = get_account(session, name)
    lock = account_lock(host, account.id)
    try:
        lock.acquire(wait=settings(host).lock_wait)
    except LockBusy:
        raise SyncRunning(f"a sync of {name} is running: remove the account when it has finished") from None
    try:
        notice = _stop_notifications(host, account) if account.notifications == "on" else None
        host.db.run_write(lambda session: _remove(host, session, name))
    finally:
        lock.release()
    host.deliver_events()
    return notice


def _stop_notifications(host: Host, account: VppAccount) -> str | None:
    """Ask Apple to stop posting the account's notifications (``POST client/config`` with no
    notification types; its ``mdmInfo`` stays, so the location stays this host's to add again).
    Without it, Apple posts to an account that no longer exists, each post refused, for good."""
    from .notifications import configure

    try:
        with client_for(host, account, interactive=True) as client:
            client.get_client_config()  # still ours (else MdmConflictError: the other MDM's notifications are not ours to stop)
            client.post_client_config(mdm_info=_mdm_info(host, account.mdm_info_id), **configure.Change(False, account.mdm_info_id).request())
    except MdmConflictError:
        return None
    except (VppError, MdmError) as exc:
        return (  # shown by the caller (the command line, the console)
            f"Apple could not be told to stop posting notifications to {account.notification_url} ({describe(exc)}): "
            "it keeps posting there, each post refused; to stop it, add the location again and run "
            f"`mdm vpp account set {account.name} --notifications off`"
        )
    return None


def _remove(host: Host, session: Session, name: str) -> None:
    account = get_account(session, name)
    assets = [apple_asset(a.model_dump(), account.name) for a in session.execute(select(VppAsset).where(col(VppAsset.account_id) == account.id)).scalars()]
    record_chunks(host, session, account, "vpp_assets_removed", assets)
    for model in (VppNotification, VppLicense, VppUser, VppAssetCount, VppAsset, VppSyncRun):
        table = table_of(model)
        session.execute(delete(table).where(table.c.account_id == account.id))
    host.events.record(session, "vpp_account_removed", {"account": account.name, "accountId": account.id})
    session.delete(account)


def unreadable_action(name: str, key_lost: bool) -> str:
    """What to do about an account whose stored token this host's key cannot decrypt; the
    command names --key-lost when ``key_lost`` (the key reads none of the stored secrets)."""
    from mdm_core.secrets import token_again

    return (
        "the stored token cannot be decrypted with this host's secret key: restore the key it was stored with "
        f"(var/secret.key or MDM_SECRET_KEY), or enter the token again: {token_again(key_lost, name)}"
    )


def list_accounts(host: Host) -> list[Account]:
    """Every account, described without its token; one whose token this host's key cannot
    decrypt says so (``token_state`` ``unreadable``) instead of showing its last known state,
    and one whose notifications Apple posts elsewhere than ``[web] public_url`` has
    ``notifications`` ``misdirected``."""
    return describe_accounts(host, _all_accounts(host))


def accounts_with_notices(host: Host) -> list[tuple[Account, str | None]]:
    """Every account as :func:`list_accounts` describes it, but with its token's What to do
    alone in ``action``, and what to do about its misdirected notifications apart (None when
    they are fine): ``mdm status`` says each on its own line."""
    return _described(host, _all_accounts(host))


def _all_accounts(host: Host) -> list[VppAccount]:
    with host.db.session() as session:
        return list(session.execute(select(VppAccount).order_by(VppAccount.name)).scalars())


def describe_accounts(host: Host, accounts: Iterable[VppAccount]) -> list[Account]:
    """``accounts`` as :func:`list_accounts` describes them (the command line, the console and
    the API alike): token readability and misdirected notifications included."""
    rows = []
    for row, notice in _described(host, accounts):
        row["action"] = account_action(row["action"], notice)
        rows.append(row)
    return rows


def _described(host: Host, accounts: Iterable[VppAccount]) -> list[tuple[Account, str | None]]:
    """Each account described with its token's action, and its notifications' (or None)."""
    from mdm_core.secrets_cli import key_reads_none

    from .notifications import configure

    readable = token_readability(host)
    lost: list[bool] = []  # asked at the first unreadable token, once

    def key_lost() -> bool:
        if not lost:
            lost.append(key_reads_none(host))
        return lost[0]

    rows = []
    for account in accounts:
        row = describe_readable(account, readable, key_lost)
        notice = configure.misdirected(host, account)
        if notice:
            row["notifications"] = "misdirected"
        rows.append((row, notice))
    return rows


def account_action(token_action: str, notice: str | None) -> str:
    """An account's What to do: its token's (``nothing to do`` when it is fine), then what to do
    about notifications Apple posts elsewhere (:func:`.notifications.configure.misdirected`);
    the command line's table, ``--json``, the console and the API all say this one."""
    if notice is None:
        return token_action
    return notice if token_action == token_state.NOTHING_TO_DO else f"{token_action}; {notice}"


def token_readability(host: Host) -> Callable[[VppAccount], bool]:
    """Whether this host's secret key decrypts an account's stored token. The key is read at
    the first account: with none, nothing is read (nor a key file created by a listing)."""
    boxes: list[Any] = []

    def readable(account: VppAccount) -> bool:
        if not boxes:
            try:
                boxes.append(host.secrets)
            except MdmError:  # no key at all: none can be read
                boxes.append(None)
        return boxes[0] is not None and bool(boxes[0].can_decrypt(account.token_ciphertext))

    return readable


def describe_readable(account: VppAccount, readable: Callable[[VppAccount], bool], key_lost: Callable[[], bool]) -> Account:
    """:func:`describe_account`, saying ``unreadable`` when this host cannot decrypt the token
    (``key_lost``: whether its key reads none of the stored secrets, :func:`unreadable_action`)."""
    row = describe_account(account)
    if not readable(account):
        row["token_state"] = "unreadable"
        row["token_status"] = "unreadable (wrong or missing secret key)"
        row["action"] = unreadable_action(account.name, key_lost())
    return row


def describe_account(account: VppAccount) -> Account:
    """Plain values for `account list` and the ``mdm_vpp_accounts`` hook (never the token)."""
    state = token_state.effective_state(account)
    return {
        "name": account.name,
        "locationName": account.location_name,
        "orgName": account.org_name,
        "uId": account.uid,
        "countryISO2ACode": account.country,
        "defaultPlatform": account.default_platform,
        "tokenExpirationDate": account.token_expires_at.isoformat(),
        "token_state": state,
        "token_status": token_state.describe(state, account.token_expires_at, account.state_detail),
        "action": token_state.action(state, account.name),
        "paused": account.paused,
        "interval_seconds": account.interval_seconds,
        "service_url": account.service_url,
        "last_sync_at": account.last_sync_at.isoformat() if account.last_sync_at else None,
        "last_sync_result": account.last_sync_result,
        "notifications": account.notifications,
        "notification_url": account.notification_url,
        "last_notification_at": account.last_notification_at.isoformat() if account.last_notification_at else None,
    }


def _expiry_from(config: dict[str, Any], token: SToken) -> datetime:
    """Apple's ``tokenExpirationDate`` when given, else the token's own ``expDate``."""
    return parse_apple_date(config.get("tokenExpirationDate")) or token.expires_at


def check_interval(host: Host, value: Any, what: str = "--interval") -> int:
    """An Account Synchronization Interval: whole seconds (a number, or digits from a form) from
    ``[vpp] min_interval`` to a year; otherwise a one-line ``UsageError`` naming ``what``. A whole
    number under the minimum is "too short" however it came (the console's ``-1`` was "not
    valid" while ``--interval -5`` and the API's ``-5`` were "too short")."""
    from mdm_core.scheduler import MAX_INTERVAL

    shortest = settings(host).min_interval
    text = value.strip() if isinstance(value, str) else None
    whole = text is not None and re.fullmatch(r"[+-]?[0-9]+", text) is not None  # ASCII digits: '²' is a digit int() refuses
    interval = int(text) if text is not None and whole else value
    if isinstance(interval, bool) or not isinstance(interval, int) or interval > MAX_INTERVAL:
        shown = repr(value) if text is not None and not whole else json.dumps(interval, default=str)  # a form's text quoted (an empty one shows); JSON as sent
        raise UsageError(f"{what} {shown} is not valid: give whole seconds from {shortest} to {MAX_INTERVAL} (a year)")
    if interval < shortest:
        raise UsageError(f"{what} {interval} is too short: the Account Synchronization Interval is at least {shortest} seconds ([vpp] min_interval)")
    return interval
