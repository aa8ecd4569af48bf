"""Admins, API tokens and sign-in: the one place that decides who may use the console.

Passwords are hashed with Argon2 (``pwdlib``); API tokens are random (256 bits) and kept as
SHA-256 (a slow hash adds nothing to a random token and would slow every API call). Failed
sign-ins are counted in the database, per name and per address, so every ``mdm run`` process
on it throttles the same guesses.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlmodel import col

from mdm_core.errors import MdmError, NotFound, UsageError, one_line
from mdm_core.models import utcnow

from .models import REVOKED_BY_MAX, ROLES, Admin, ApiToken, LoginAttempt
from .settings import WebSettings

if TYPE_CHECKING:
    from mdm_core.host import Host

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._-]{0,127}$")
TOKEN_PREFIX = "mdm_"
MIN_PASSWORD = 10


@dataclass(frozen=True)
class Principal:
    """Who makes a request: an admin signed in to the console, or an API token."""

    name: str
    role: str
    kind: str  # "session" or "token"

    @property
    def can_change(self) -> bool:
        """Only the ``admin`` role syncs, installs, reclaims or changes settings."""
        return self.role == "admin"


def web_settings(host: Host) -> WebSettings:
    """The validated ``[web]`` section."""
    return host.config.section("web", WebSettings)


def _hasher() -> Any:
    from pwdlib import PasswordHash

    return PasswordHash.recommended()  # Argon2id with the library's current parameters


def _check_name(kind: str, name: str) -> str:
    if not NAME_RE.match(name):
        raise UsageError(f"{kind} name '{name}' is not valid: use letters, digits, '@', '.', '_' or '-' (at most 128)")
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"role '{role}' is not known: use {' or '.join(ROLES)}")
    return role


# ---------------------------------------------------------------------- admins


def add_admin(host: Host, name: str, password: str, role: str | None = None) -> dict[str, Any]:
    """Add an admin (role ``admin`` unless given), or set the password of an existing one, and
    its role when given (its sessions end). Returns ``name``, ``role``, ``added`` and
    ``previous_role`` (None for a new admin)."""
    _check_name("admin", name)
    if role is not None:
        _check_role(role)
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    hashed = _hasher().hash(password)

    def work(session: Any) -> dict[str, Any]:
        row = session.get(Admin, name)
        previous = None if row is None else row.role
        if row is None:
            row = Admin(name=name, role=role or "admin", password_hash=hashed)
        else:
            row.role, row.password_hash, row.session_epoch = role or row.role, hashed, row.session_epoch + 1
        session.add(row)
        return {"name": name, "role": row.role, "added": previous is None, "previous_role": previous}

    return host.db.run_write(work)


def list_admins(host: Host) -> list[dict[str, Any]]:
    """Admins without their password hashes."""
    with host.db.session() as session:
        return [
            {"name": a.name, "role": a.role, "created_at": a.created_at, "last_login_at": a.last_login_at}
            for a in session.execute(select(Admin).order_by(Admin.name)).scalars()
        ]


def remove_admin(host: Host, name: str) -> None:
    """Remove an admin; their open sessions end at their next request."""

    def work(session: Any) -> None:
        if session.execute(delete(Admin).where(col(Admin.name) == name)).rowcount == 0:
            raise NotFound(f"no admin named '{name}' (see `mdm admins list`)")

    host.db.run_write(work)


class SignInRefused(MdmError):
    """A sign-in that failed or is throttled; the message never says which part was wrong."""

    def __init__(self, message: str, *, throttled: bool = False):
        super().__init__(message)
        self.throttled = throttled


def sign_in(host: Host, name: str, password: str, address: str) -> Principal:
    """Check a name and password, counting failures per name and per address."""
    s = web_settings(host)
    now = utcnow()
    since = now - timedelta(seconds=s.login_window)
    name = name.strip()[:128]
    address = (address or "unknown")[:64]
    with host.db.session() as session:
        by_name = session.execute(select(func.count()).where(col(LoginAttempt.name) == name, col(LoginAttempt.at) >= since)).scalar_one()
        by_address = session.execute(select(func.count()).where(col(LoginAttempt.address) == address, col(LoginAttempt.at) >= since)).scalar_one()
        admin = session.get(Admin, name)
    minutes = max(1, s.login_window // 60)
    if by_name >= s.login_max_failures_per_name or by_address >= s.login_max_failures_per_address:
        raise SignInRefused(f"too many failed sign-ins: wait {minutes} minutes and try again", throttled=True)
    hasher = _hasher()
    if admin is None:
        hasher.verify(password, _dummy_hash())  # the same work whether or not the name exists
        ok = False
    else:
        ok = hasher.verify(password, admin.password_hash)
    if not ok:

        def fail(session: Any) -> None:
            session.execute(delete(LoginAttempt).where(col(LoginAttempt.at) < since))
            session.add(LoginAttempt(name=name, address=address, at=now))

        host.db.run_write(fail)
        raise SignInRefused("wrong name or password")
    assert admin is not None

    def succeed(session: Any) -> None:
        session.execute(delete(LoginAttempt).where(col(LoginAttempt.name) == name))
        session.execute(update(Admin).where(col(Admin.name) == name).values(last_login_at=now))

    host.db.run_write(succeed)
    return Principal(admin.name, admin.role, "session")


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(_hasher().hash(secrets.token_hex(16)))
    return _DUMMY[0]


def session_principal(host: Host, name: str | None, epoch: Any) -> Principal | None:
    """The admin a session cookie names, if they still exist with the same password."""
    if not name:
        return None
    with host.db.session() as session:
        admin = session.get(Admin, name)
    if admin is None or admin.session_epoch != epoch:
        return None
    return Principal(admin.name, admin.role, "session")


def end_sessions(host: Host, name: str) -> None:
    """End every session of an admin (sign-out): a signed cookie is otherwise valid until it
    expires, so a copy of it would outlive the sign-out."""

    def work(session: Any) -> None:
        row = session.get(Admin, name)
        if row is not None:
            row.session_epoch += 1
            session.add(row)

    host.db.run_write(work)


def admin_epoch(host: Host, name: str) -> int:
    """The session epoch stored in a new session cookie."""
    with host.db.session() as session:
        admin = session.get(Admin, name)
    return admin.session_epoch if admin else -1


# ---------------------------------------------------------------------- API tokens


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(host: Host, name: str, role: str = "viewer") -> dict[str, Any]:
    """Create an API token; the returned ``token`` is shown once and never stored."""
    _check_name("token", name)
    _check_role(role)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)

    def work(session: Any) -> None:
        if session.execute(select(col(ApiToken.id)).where(col(ApiToken.name) == name, col(ApiToken.revoked_at).is_(None))).first() is not None:
            raise UsageError(f"an API token named '{name}' exists: revoke it first or choose another name")
        session.add(ApiToken(name=name, role=role, token_hash=_token_hash(token)))

    host.db.run_write(work)
    return {"name": name, "role": role, "token": token}


#: the order tokens are listed in: by name, then age (``id``, unique: a key for keyset pages)
TOKEN_ORDER = (col(ApiToken.name), col(ApiToken.id))


def token_fields(t: ApiToken) -> dict[str, Any]:
    """What is told of a token: never its hash (nor the token, which is not stored)."""
    return {"name": t.name, "role": t.role, "created_at": t.created_at, "last_used_at": t.last_used_at, "revoked_at": t.revoked_at, "revoked_by": t.revoked_by}


def list_tokens(host: Host) -> list[dict[str, Any]]:
    """API tokens without their hashes, the revoked ones too (``revoked_at`` and ``revoked_by``
    set), by name then age."""
    with host.db.session() as session:
        return [token_fields(t) for t in session.execute(select(ApiToken).order_by(*TOKEN_ORDER)).scalars()]


def active_token(host: Host, name: str) -> dict[str, Any] | None:
    """The token named ``name`` that is not revoked (there is at most one), or ``None``."""
    with host.db.session() as session:
        row = session.execute(select(ApiToken).where(col(ApiToken.name) == name, col(ApiToken.revoked_at).is_(None))).scalar_one_or_none()
    return None if row is None else token_fields(row)


def token_id(host: Host, token: str) -> int | None:
    """The row id of the API token a value is (revoked or not), or ``None``: never the token."""
    row = _token_row(host, token) if token.startswith(TOKEN_PREFIX) else None
    return None if row is None else row.id


class UnknownToken(NotFound):
    """No API token, revoked or not, has the name given."""


def revoke_token(host: Host, name: str, by: str) -> dict[str, Any]:
    """Revoke an API token at once, in every process; its row stays so that a request still
    sending it is told so, with ``by``: who revoked it (the command line's ``cli_actor()``, the
    console's and the API's ``web_actor()``).
    Returns ``name``, ``revoked_at``, ``revoked_by`` and ``already`` (it was revoked before:
    nothing changed, and those are of that revocation)."""
    now, by = utcnow(), one_line(by)[:REVOKED_BY_MAX]

    def work(session: Any) -> dict[str, Any]:
        active = (col(ApiToken.name) == name, col(ApiToken.revoked_at).is_(None))
        if session.execute(update(ApiToken).where(*active).values(revoked_at=now, revoked_by=by)).rowcount == 1:
            return {"name": name, "revoked_at": now, "revoked_by": by, "already": False}
        last = last_revocation(session, name)
        if last is None:
            raise UnknownToken(f"no API token named '{name}' (see `mdm api-tokens list`)")
        return {"name": name, "revoked_at": last[0], "revoked_by": last[1], "already": True}

    return host.db.run_write(work)


def last_revocation(session: Any, name: str) -> tuple[datetime | None, str | None] | None:
    """When the last token named ``name`` was revoked and by whom (``None, None`` if one of
    that name is not revoked), or ``None``: no token of that name."""
    last = session.execute(
        select(col(ApiToken.revoked_at), col(ApiToken.revoked_by)).where(col(ApiToken.name) == name).order_by(col(ApiToken.revoked_at).desc()).limit(1)
    ).first()
    return None if last is None else (last[0], last[1])


def revoked_token(host: Host, token: str) -> tuple[str, datetime] | None:
    """The name of the revoked API token a bearer value is and when it was revoked, or ``None``
    (the value is not a token of this host's, or one that is not revoked)."""
    row = _token_row(host, token) if token.startswith(TOKEN_PREFIX) else None
    return None if row is None or row.revoked_at is None else (row.name, row.revoked_at)


def _token_row(host: Host, token: str) -> ApiToken | None:
    """The stored API token a bearer value is (found by its hash), revoked or not."""
    with host.db.session() as session:
        return session.execute(select(ApiToken).where(col(ApiToken.token_hash) == _token_hash(token))).scalar_one_or_none()


def token_principal(host: Host, token: str) -> Principal | None:
    """The API token a bearer value belongs to, or ``None``."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = _token_row(host, token)
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    last = row.last_used_at
    if last is None or (now - last).total_seconds() > 60:
        host.db.run_write(lambda s: s.execute(update(ApiToken).where(col(ApiToken.id) == row.id).values(last_used_at=now)))
    return Principal(row.name, row.role, "token")


def web_actor(principal: Principal) -> str:
    """Who revokes through the web, for ``revoked_by``: ``console:ADMIN`` for an admin signed in
    to the console (on its pages, or calling the API with the session), ``api:TOKEN`` for a
    bearer token (on the API, or on a page)."""
    return f"{'api' if principal.kind == 'token' else 'console'}:{principal.name}"
