"""The host's engine and sessions: an SQLite file by default, or PostgreSQL (nothing else).

SQLite runs in WAL mode (checkpoints on a thread of their own: :mod:`.checkpoint`) with a
busy timeout, and write transactions start with ``BEGIN IMMEDIATE`` so concurrent writers
queue for the lock (bounded by the timeout) instead of failing with "database is locked" half-way through. Sessions are short: open one per unit
of work with ``session()`` (reads) or ``write_session()`` (writes), never across a hook call.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from mdm_core.db.bulk import register_binary_lists
from mdm_core.db.checkpoint import WalCheckpointer
from mdm_core.db.errors import database_error
from mdm_core.errors import ConfigError
from mdm_core.files import private_folder
from mdm_core.interrupts import check as _check_interrupted
from mdm_core.interrupts import deferred

log = logging.getLogger(__name__)
T = TypeVar("T")


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pessimistic disconnect handling (``pool_pre_ping``), for connections idle
    :data:`PING_AFTER_IDLE` or more: a dead one is replaced before anyone uses it."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["mdm_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("mdm_idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise DisconnectionError() from exc  # the pool connects again (SQLAlchemy retries the checkout)
            raise


def _interruption_point(*_args: Any) -> None:
    """Before each SQL statement: a pending SIGINT/SIGTERM is raised here (see interrupts)."""
    _check_interrupted()


#: Seconds a PostgreSQL connection may take (libpq's ``connect_timeout``) unless the URL sets
#: its own ``?connect_timeout=``: a host that drops packets fails in one line, not after minutes.
CONNECT_TIMEOUT = 10
#: URL schemes taken as PostgreSQL through psycopg, the one driver the host's bulk statements
#: (COPY, arrays) are written and tested for: ``postgresql://`` would be psycopg2 to SQLAlchemy
PSYCOPG_ALIASES = ("postgresql", "postgres")
#: A pooled PostgreSQL connection idle at least this long is pinged before it is handed out (a
#: server restarted, a connection cut by a firewall); one returned more recently worked then,
#: and is used without a round trip (a sync's event delivery checks out one per event).
PING_AFTER_IDLE = 1.0
#: the databases the host runs on (its statements use their own SQL: upserts, COPY, PRAGMAs);
#: any other URL is refused before anything connects
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
#: the largest row id every supported database holds (PostgreSQL's INTEGER; SQLite's is larger):
#: an id given beyond it (a path, a selector) is refused or matches nothing, never sent to overflow
MAX_ROW_ID = 2**31 - 1
#: libpq parameters that hold a secret when a URL gives them in its query (``?password=...``)
#: PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back
#: and running it again is the documented remedy (a busy SQLite file is retried by its words)
RETRY_STATES = frozenset({"40P01", "40001"})

SECRET_QUERY = re.compile(r"([?&](?:password|sslpassword)=)[^&]*", re.IGNORECASE)


class Database:
    """The host's engine and its session factories."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0, echo: bool = False):
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError("database URL is not valid: set [core] database_url or MDM_DATABASE_URL to an SQLAlchemy URL") from None
        if parsed.drivername in PSYCOPG_ALIASES:  # the scheme many tools and hosting services give
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url = parsed
        if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
            raise ConfigError(
                f"database {self.describe()} is not supported: use SQLite (sqlite:///PATH) or PostgreSQL "
                "(postgresql+psycopg://USER:PASSWORD@HOST/DATABASE) in [core] database_url or MDM_DATABASE_URL"
            )
        if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "psycopg":
            raise ConfigError(
                f"database {self.describe()}: the host reaches PostgreSQL through psycopg (pip install '.[postgres]'), "
                f"not {parsed.get_driver_name()}: write the URL as postgresql+psycopg://USER:PASSWORD@HOST/DATABASE"
            )
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        database = parsed.database or ""
        self.in_memory = self.is_sqlite and (database in ("", ":memory:") or database.startswith("file::memory:"))
        self.busy_timeout = busy_timeout
        self.engine = self._create_engine(echo)
        self.checkpointer = WalCheckpointer(self.engine) if self.is_sqlite and not self.in_memory else None
        self.write_engine = self.engine.execution_options(mdm_write=True) if self.is_sqlite else self.engine

    def _create_engine(self, echo: bool) -> Engine:
        if not self.is_sqlite:
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in self.url.query:
                connect_args["connect_timeout"] = CONNECT_TIMEOUT  # a silent host fails in seconds, not never
            try:
                register_binary_lists()  # before the engine: its dialect copies psycopg's adapters
                engine = create_engine(self.url, echo=echo, hide_parameters=True, connect_args=connect_args)
            except Exception as exc:  # an uninstalled driver, say
                raise ConfigError(f"database {self.describe()} cannot be used: {exc}") from None
            event.listen(engine, "before_cursor_execute", _interruption_point)
            _ping_when_idle(engine)
            return engine
        database = self.url.database or ""
        in_memory = self.in_memory
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": self.busy_timeout}}
        if in_memory:
            kwargs["poolclass"] = StaticPool
        try:
            engine = create_engine(self.url, echo=echo, hide_parameters=True, **kwargs)
        except ArgumentError:  # sqlite://var/mdm.sqlite3: a host part, two slashes instead of three
            raise ConfigError(
                f"database URL {self.describe()} is not valid: an SQLite file is sqlite:///PATH (relative "
                "to the project folder) or sqlite:////ABSOLUTE/PATH: fix [core] database_url or MDM_DATABASE_URL"
            ) from None

        if not in_memory:

            @event.listens_for(engine, "do_connect")
            def _private_file(*_args: Any) -> None:
                """A new database file, and its folder, are created at the first connection (not
                by a command that only looks, such as ``mdm db status`` on a mistyped path),
                readable by their owner only (SQLite gives its -wal and -shm files the same mode)."""
                try:
                    private_folder(Path(database).parent)
                except OSError as exc:
                    raise ConfigError(
                        f"database {self.describe()}: its folder {Path(database).parent} cannot be created ({exc.strerror}): "
                        "check [core] database_url or MDM_DATABASE_URL"
                    ) from None
                try:
                    os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                except FileExistsError:
                    pass
                except OSError as exc:  # a folder the host's user cannot write in, say
                    raise ConfigError(
                        f"database {self.describe()}: the file {database} cannot be created ({exc.strerror}): "
                        "check [core] database_url or MDM_DATABASE_URL, and that the user running mdm may write in its folder"
                    ) from None

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
            cursor = dbapi_connection.cursor()
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on a thread of their own (checkpoint.py)
            # a statement that writes many rows keeps the pages it changes in a statement journal
            # (to undo itself alone on an error): past 64 KiB SQLite writes it to a temporary
            # file. In memory instead: an incremental sync's insert of 1,500 licenses cost 0.028 s
            # of CPU with the file, 0.023 s without; its whole write transaction 0.178 -> 0.166 s
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        event.listen(engine, "before_cursor_execute", _interruption_point)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("mdm_write") else "BEGIN")

        return engine

    @property
    def _file(self) -> Path | None:
        """The SQLite database's file (None: PostgreSQL, or SQLite in memory)."""
        return Path(self.url.database or "") if self.is_sqlite and not self.in_memory else None

    @property
    def is_missing_file(self) -> bool:
        """True for an SQLite file that does not exist (the first connection creates it)."""
        return self._file is not None and not self._file.exists()

    @property
    def is_new_file(self) -> bool:
        """True for an SQLite file that does not exist yet or is empty (0 bytes, ``touch mdm.db``):
        SQLite takes both for a database without tables, which its first connection makes."""
        path = self._file
        return path is not None and (not path.exists() or path.stat().st_size == 0)

    @contextmanager
    def migration_connection(self) -> Iterator[Connection]:
        """A connection for schema changes: its transactions take the write lock
        (SQLite ``BEGIN IMMEDIATE``); on SQLite foreign keys are not enforced on it, so that a
        table rebuilt by a migration (copy, drop, rename) does not cascade-delete the rows
        that refer to it. ``PRAGMA foreign_key_check`` stands in for them (see migrate.py)."""
        try:
            conn = self.write_engine.connect()
        except OperationalError as exc:
            raise database_error(exc, self) from None
        try:
            if self.is_sqlite:  # a PRAGMA of no effect inside a transaction: run it before any
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]  # a checked-out connection has its driver connection
            yield conn
        finally:
            try:
                if conn.in_transaction():
                    conn.rollback()
                if self.is_sqlite:
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]  # a checked-out connection has its driver connection
            finally:
                conn.close()

    def describe(self) -> str:
        """The URL without its password (nor one given as ``?password=``), for messages."""
        return SECRET_QUERY.sub(r"\1***", self.url.render_as_string(hide_password=True))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A short session for reads (and writes that need no lock ordering)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads that need no transaction of their own (each statement sees
        what is committed when it runs): autocommit on PostgreSQL, so that a read is one round
        trip, without BEGIN and ROLLBACK (checks made once per event, the re-read assets'
        licenses). SQLite reads stay as they are (in-process, no round trip to save)."""
        conn = self.engine.connect()
        try:
            if not self.is_sqlite:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session whose transaction takes the write lock up front (SQLite ``BEGIN IMMEDIATE``).

        SIGINT/SIGTERM wait until it has ended (:mod:`mdm_core.interrupts`): a write is
        committed or rolled back, never left open by an interruption."""
        with deferred(), Session(self.write_engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A connection for writes whose statements each stand alone (none needs another's
        transaction): autocommit on PostgreSQL, one round trip a statement (no BEGIN, no COMMIT:
        the outbox's claim and mark); on SQLite one transaction that takes the write lock up front
        (``BEGIN IMMEDIATE``), committed at the end of the block. SIGINT/SIGTERM wait until it
        has ended, as for :meth:`write_session`."""
        with deferred(), self.write_engine.connect() as conn:
            if self.is_sqlite:
                with conn.begin():
                    yield conn
            else:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def run_write(self, work: Callable[[Session], T], *, attempts: int = 5) -> T:
        """Run ``work(session)`` in one write transaction and commit, running it again (up to
        ``attempts`` times) when SQLite was busy or PostgreSQL rolled it back for a deadlock or a
        serialization failure."""
        for attempt in range(1, attempts + 1):
            try:
                with self.write_session() as session:
                    result = work(session)
                    session.commit()
                    return result
            except OperationalError as exc:
                if not _worth_retrying(exc) or attempt == attempts:
                    raise
                log.info("database busy, retrying (%d/%d)", attempt, attempts)
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def read_or_add(self, read: Callable[[Session], T | None], row: Callable[[], Any]) -> T | None:
        """What ``read(session)`` finds, or else what it finds once ``row()`` is added: a row made
        at its first use, two processes making it at once agreeing on the first one written (the
        other's duplicate key is ignored)."""
        with self.session() as session:
            found = read(session)
        if found is not None:
            return found

        def work(session: Session) -> None:
            if read(session) is None:
                session.add(row())

        with suppress(IntegrityError):  # another process made it first: that one is read
            self.run_write(work)
        with self.session() as session:
            return read(session)

    def execute_write(self, statement: Any) -> int:
        """Run one ``UPDATE`` or ``DELETE`` in its own write transaction (:meth:`run_write`);
        returns the rows it changed (a conditional one: whether this process won)."""
        from mdm_core.db.typed import rowcount

        return self.run_write(lambda session: rowcount(session.execute(statement)))

    def analyze(self, *tables: str) -> None:
        """Refresh the query planner's statistics of ``tables`` (PostgreSQL), in a short
        transaction of its own. Rows bulk-loaded a moment ago have none until autovacuum passes,
        and a plan made for an empty table (nested loops) turns a join of 100,000 rows into
        10^10 steps. SQLite plans from its indexes: nothing to do."""
        self._maintain("ANALYZE", tables)

    def vacuum(self, *tables: str, analyze: bool = False) -> None:
        """``VACUUM`` (with ``analyze``: ``VACUUM (ANALYZE)``) of ``tables`` (PostgreSQL), on a
        connection of its own outside any transaction (VACUUM cannot run in one). SQLite:
        nothing. Raises what the server raised: callers decide what a failure means."""
        self._maintain("VACUUM (ANALYZE)" if analyze else "VACUUM", tables)

    def _maintain(self, command: str, tables: Sequence[str]) -> None:
        """``command`` (``ANALYZE``, ``VACUUM``) of ``tables`` on PostgreSQL, on a connection of
        its own in autocommit (each its own transaction; VACUUM cannot run in one)."""
        if self.url.get_backend_name() != "postgresql" or not tables:
            return
        names = ", ".join(f'"{t}"' for t in tables)
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"{command} {names}")

    def vacuum_changed(self, changed: Mapping[str, int], *, share: float = 0.1, minimum: int = 500) -> list[str]:
        """``VACUUM (ANALYZE)`` (PostgreSQL) of the tables in ``changed`` (name → rows just
        inserted, updated or deleted) whose change is large next to the rows their statistics
        count (``share`` of them plus ``minimum``); returns the tables vacuumed.

        A bulk write (a first full sync: 300,000 licenses) leaves statistics that say the
        table is empty until autovacuum passes; the next sync's joins with it are then planned
        as with an empty table (a 300,000-row sort for a 1,000-row anti-join, a sequential
        scan per staged user) and take seconds instead of milliseconds. It also leaves every
        page of the table out of the visibility map: until autovacuum passes, an index-only scan
        (the mirrored licenses an incremental sync compares with) fetches every row from the
        table too (64 assets' 19,120 licenses: 19,120 heap fetches, twice the statement's time
        of an all-visible table), and the first reader of each row writes its page (its hint
        bits). The vacuum sets both, and with the analysis costs what the analysis alone did
        (0.24 s against 0.25 s for the mirror's three tables at 300,000 licenses). SQLite: nothing."""
        if self.url.get_backend_name() != "postgresql":
            return []
        names = sorted(t for t, n in changed.items() if n >= minimum)
        if not names:
            return []
        with self.engine.connect() as conn:
            counted: dict[str, float] = dict(
                conn.exec_driver_sql(
                    "SELECT relname, greatest(reltuples, 0) FROM pg_class WHERE oid IN (SELECT to_regclass(n) FROM unnest(%(names)s::text[]) AS n)",
                    {"names": names},
                ).all()
            )
        stale = [t for t in names if changed[t] >= minimum + share * float(counted.get(t, 0))]
        self.vacuum(*stale, analyze=True)
        return stale

    def dispose(self) -> None:
        """Close every pooled connection (once the WAL checkpoints asked for are done)."""
        if self.checkpointer is not None:
            self.checkpointer.wait()
        self.engine.dispose()


def _worth_retrying(exc: OperationalError) -> bool:
    """A write that failed only because of another writer: run again, it may well succeed."""
    if getattr(exc.orig, "sqlstate", None) in RETRY_STATES:
        return True
    # SQLite says a busy file in words ("database is locked"); a PostgreSQL error is retried by
    # its SQLSTATE only: its text (a value, a constraint's name) may hold either word
    return isinstance(exc.orig, sqlite3.Error) and ("locked" in str(exc.orig) or "busy" in str(exc.orig))
