"""What a database error means to the person running the host, in one line.

SQLAlchemy's messages carry the SQL statement and its parameters (user e-mails, encrypted
tokens): they must never reach a user, a log line or a recorded failure. :func:`database_error`
is the one place that turns a database error into a one-line :class:`~mdm_core.errors.MdmError`
naming the database, what went wrong and what to check; :func:`safe_text` is the same without
the database's name (for logs and records that already say where they come from).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdm_core.errors import MdmError, one_line

if TYPE_CHECKING:
    from mdm_core.db.engine import Database


class DatabaseError(MdmError):
    """The database refused or could not do what was asked (one line, no SQL, no values)."""

    def __init__(self, message: str, *, cause: str, retryable: bool = False):
        super().__init__(message)
        self.cause = cause
        self.retryable = retryable


# (substring of the driver's message or SQLSTATE, cause, what to check)
_SQLITE = (
    (
        "readonly",
        "read_only",
        "is read-only: check the permissions of the file, of its -wal and -shm files and of its folder, and that the disk is not mounted read-only",
    ),
    ("read-only", "read_only", "is read-only: check the permissions of the file and its folder, and the disk's mount"),
    ("database or disk is full", "disk_full", "cannot grow: the disk is full (or the database reached its size limit); free space, then try again"),
    ("disk i/o error", "io_error", "cannot be written: the disk reported an I/O error; check the disk and free space"),
    (
        "database is locked",
        "locked",
        "is locked by another process for longer than [core] sqlite_busy_timeout: look for a stuck `mdm` process, or raise the timeout",
    ),
    ("database table is locked", "locked", "is locked by another process: try again"),
    (
        "unable to open database file",
        "unreachable",
        "cannot be opened: check the path in [core] database_url or MDM_DATABASE_URL, that its folder exists and is writable",
    ),
    ("file is not a database", "corrupt", "is not an SQLite database (or is encrypted): check [core] database_url"),
    ("database disk image is malformed", "corrupt", "is damaged: restore it from a backup (sqlite3 .recover may save some of it)"),
    ("no such table", "schema", "lacks a table this release needs: run `mdm db upgrade`"),
    ("no such column", "schema", "lacks a column this release needs: run `mdm db upgrade`"),
)
_POSTGRES_STATES = {
    "25006": ("read_only", "is read-only (a standby, or default_transaction_read_only): point the host at the primary"),
    "53100": ("disk_full", "cannot grow: the database server's disk is full; free space on the server, then try again"),
    "53200": ("out_of_memory", "ran out of memory: check the database server"),
    "53300": ("unreachable", "accepts no more connections (too many clients): check max_connections or other clients"),
    "57P01": ("unreachable", "was shut down by an administrator: check the database server"),
    "57P03": ("unreachable", "is starting up or shutting down: try again shortly"),
    "55P03": ("locked", "is locked by another session: try again"),
    "40P01": ("locked", "found a deadlock with another session: try again"),
    "40001": ("locked", "could not serialize this change with another session's: try again"),
    "42501": ("permission", "refused the change (permission denied): check the database role's privileges"),
    "42P01": ("schema", "lacks a table this release needs: run `mdm db upgrade`"),
    "42703": ("schema", "lacks a column this release needs: run `mdm db upgrade`"),
    "3D000": ("unreachable", "does not exist: create it, or check [core] database_url"),
    "28P01": ("unreachable", "refused the password: check the credentials in [core] database_url"),
    "28000": ("unreachable", "refused the login: check the role and pg_hba.conf"),
}
_RETRYABLE = {"locked", "unreachable", "out_of_memory"}
CONNECT_HINT = "check [core] database_url or MDM_DATABASE_URL, and that the server is up"
_SETTING = "[core] database_url or MDM_DATABASE_URL"

#: A connection that failed, told in our words: (SQLSTATE or lower-case words of the driver,
#: what happened, what to check). ``{host}``, ``{port}``, ``{user}``, ``{database}`` come from
#: the URL. The driver's own wording ("connection to server at ... failed: FATAL: ...") is not
#: shown: it repeats the URL and reads differently for every driver and version.
_CONNECT_FAILURES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("28P01", "password authentication failed"), "the server refused the password of user {user}", f"check the user and password in {_SETTING}"),
    (
        ("3D000", 'database "{database}" does not exist'),
        "the server has no database {database}",
        f"create it (createdb -O {{user}} {{database}}) or correct its name in {_SETTING}",
    ),
    (
        ("no password supplied", "fe_sendauth"),
        "the server wants a password for user {user} and none is given",
        f"add it to {_SETTING} (postgresql+psycopg://{{user}}:PASSWORD@{{host}}/{{database}})",
    ),
    (('role "{user}" does not exist',), "the server has no role {user}", f"create it, or correct the user in {_SETTING}"),
    (("28000", "no pg_hba.conf entry"), "the server does not let user {user} in from this machine", "check the server's pg_hba.conf (and the user in the URL)"),
    (
        ("connection refused",),
        "nothing accepts connections at {host}:{port}",
        f"check that the database server runs there, and the host and port in {_SETTING}",
    ),
    (
        (
            "failed to resolve host",
            "could not translate host name",
            "name or service not known",
            "nodename nor servname",
            "temporary failure in name resolution",
        ),
        "the host name {host} is unknown (DNS)",
        f"check the host in {_SETTING}",
    ),
    (
        ("timeout expired", "timed out", "connection timeout"),
        "the server at {host}:{port} did not answer in time",
        f"check the host and port in {_SETTING}, that the server runs, and the network (a firewall)",
    ),
    (("ssl",), "the TLS connection failed", f"check the sslmode and certificates in {_SETTING} and the server's TLS settings"),
    (("too many clients", "53300"), "the server accepts no more connections (too many clients)", "check max_connections, or other clients of the server"),
    (
        ("the database system is starting up", "the database system is shutting down", "57p03"),
        "the server is starting up or shutting down",
        "try again shortly",
    ),
)


def connection_failure(exc: BaseException, url: Any) -> str:
    """What a failed connection means, in one line: what happened and what to check, with the
    host, port, user and database read from ``url`` (an SQLAlchemy URL; no password)."""
    orig = _orig(exc)
    state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None) or ""
    text = " ".join(str(orig).split()).lower()
    parts = {
        "host": getattr(url, "host", None) or "localhost",
        "port": getattr(url, "port", None) or 5432,
        "user": getattr(url, "username", None) or "(none)",
        "database": getattr(url, "database", None) or "(none)",
    }
    for needles, what, check in _CONNECT_FAILURES:
        if state in needles or any(n.format(**parts).lower() in text for n in needles):
            return f"{what.format(**parts)}: {check.format(**parts)}"
    detail = re.sub(r"^connection to server (at|on) .*? failed: (fatal: )?", "", driver_message(exc), flags=re.IGNORECASE)
    return f"the connection failed ({one_line(detail)[:200]}): {CONNECT_HINT}"


def driver_message(exc: BaseException) -> str:
    """The database driver's own words for a failure, on one line, without SQLAlchemy's
    wrapping ("(psycopg.OperationalError) ...", "Background on this error at: ...")."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    text = re.sub(r"^\([\w.]+\)\s*", "", text)
    return text or type(orig).__name__


def _orig(exc: BaseException) -> BaseException:
    """The driver's exception under SQLAlchemy's wrapper (or ``exc`` itself)."""
    return getattr(exc, "orig", None) or exc


def _first_line(exc: BaseException) -> str:
    text = str(_orig(exc)).strip().splitlines()
    return one_line(text[0]) if text else type(_orig(exc)).__name__


def classify(exc: BaseException) -> tuple[str, str] | None:
    """(cause, advice) of a database error, or None when it is not one we recognise."""
    orig = _orig(exc)
    state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    if isinstance(state, str):
        if state in _POSTGRES_STATES:
            return _POSTGRES_STATES[state]
        if state.startswith("08"):
            return "unreachable", "cannot be reached: check that the database server runs and accepts connections, and [core] database_url"
    text = str(orig).lower()
    for needle, cause, advice in _SQLITE:
        if needle in text:
            return cause, advice
    if (
        type(orig).__module__.startswith("psycopg")
        and any(c.__name__ == "OperationalError" for c in type(orig).__mro__)
        and (
            "connect" in text
            or "connection" in text
            or "server closed" in text
            or "timeout" in text
            or _is_connection_failure(exc)  # a host name that does not resolve, say: no SQL was sent
        )
    ):
        return "unreachable", "cannot be reached: check that the database server runs and accepts connections, and [core] database_url"
    return None


#: an SQLite file on a file system mounted read-only: SQLite cannot open it at all (WAL mode
#: writes its -shm file even to read), which it words as a file it cannot open
READ_ONLY_MOUNT = (
    "is on a file system mounted read-only, where SQLite cannot open it (even to read, it writes its -shm file beside it): "
    "remount it read-write, or move the database to a writable disk and change [core] database_url or MDM_DATABASE_URL"
)


def _on_read_only_mount(db: Any) -> bool:
    """True when the SQLite file of ``db`` (or the folder it would be in) is on a read-only mount."""
    path = Path(db.url.database or "")
    for where in (path, path.parent):
        try:
            return bool(os.statvfs(where).f_flag & os.ST_RDONLY)
        except (OSError, ValueError):
            continue
    return False


def _is_connection_failure(exc: BaseException) -> bool:
    """The connection itself failed (no SQL was sent): the driver's words are safe to show."""
    return getattr(exc, "statement", None) is None


def is_database_error(exc: BaseException) -> bool:
    """True for SQLAlchemy and database-driver errors."""
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        return True
    module = type(exc).__module__
    return module.startswith(("sqlite3", "psycopg")) or module == "_sqlite3"


def safe_text(exc: BaseException) -> str:
    """A database error in a few words, without SQL or parameters: ``disk full (...)``,
    else the driver's own first line (which names a constraint or a type, never a value)."""
    found = classify(exc)
    if found is not None:
        return f"the database {found[1]}"
    return f"the database refused the change ({type(_orig(exc)).__name__}: {_first_line(exc)})"


def database_error(exc: BaseException, db: Database | Any = None) -> DatabaseError:
    """The one-line error for ``exc``, naming the database ``db`` (its URL without password)."""
    where = db.describe() if db is not None and hasattr(db, "describe") else "the database"
    found = classify(exc)
    if found is not None:
        cause, advice = found
        if cause == "unreachable" and not getattr(db, "is_sqlite", False) and _is_connection_failure(exc):
            return DatabaseError(f"cannot connect to database {where}: {connection_failure(exc, getattr(db, 'url', None))}", cause=cause, retryable=True)
        if cause == "unreachable" and getattr(db, "is_sqlite", False) and _on_read_only_mount(db):
            return DatabaseError(f"database {where} {READ_ONLY_MOUNT}", cause="read_only")
        return DatabaseError(f"database {where} {advice}", cause=cause, retryable=cause in _RETRYABLE)
    return DatabaseError(f"database {where} refused the change ({type(_orig(exc)).__name__}: {_first_line(exc)})", cause="other")
