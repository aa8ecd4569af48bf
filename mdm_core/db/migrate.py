"""Schema migrations with Alembic: one history per plugin, each with its own version table.

The core's history lives in ``mdm_core/migrations/``; a plugin returns a ``MigrationSet``
from ``mdm_register_migrations`` naming the folder that holds its own, beside its models.
Each history has its own version table, ``<name>_alembic_version``, so that a disabled or
uninstalled plugin never blocks the others' upgrades and revision ids of different plugins
never collide. Histories are applied in dependency order, the core's first.

Every migration runs in its own transaction, which first takes the database's write lock
(SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``pg_advisory_xact_lock``) and then re-reads the
revision: two hosts upgrading together never apply the same migration twice, and a migration
that fails is rolled back whole (PostgreSQL and SQLite both have transactional DDL), leaving
the database at the previous revision.

A database made by release 0.1.0 (tables, no version table) is recognised: when a history's
tables exist without its version table and match its first migration (tables, columns,
indexes), that migration is recorded as applied instead of being run.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

from mdm_core.db.engine import Database
from mdm_core.db.errors import database_error
from mdm_core.db.revision_files import explain, plain_head
from mdm_core.errors import MdmError, PluginError, UsageError, describe

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory

# Alembic is imported where it is used (reading the scripts, migrating): every command checks
# the schema, and a database at this release's heads is told so without it (:func:`at_heads`);
# importing it cost each command 80 ms and 10 MB of its peak memory

log = logging.getLogger(__name__)

ALEMBIC_DIR = Path(__file__).with_name("alembic")
CORE_MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
UPGRADE_HINT = "run `mdm db upgrade`"
VERSION_TABLE_SUFFIX = "_alembic_version"  # each history's version table: <name>_alembic_version
_PG_LOCK_KEY = 0x6D646D5F6D6967  # "mdm_mig": one advisory lock for every migration of a database
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class SchemaBehind(MdmError):
    """The database lacks migrations this release has."""


class SchemaAhead(MdmError):
    """The database has migrations this release does not know (a newer release ran on it)."""


class NotInitialised(UsageError):
    """The database has none of this release's tables (a mistyped path, an empty PostgreSQL
    database) and the command is not one that creates it (exit 2)."""


class MigrationFailed(MdmError):
    """A migration raised; its transaction was rolled back."""


class _OrphanRows(Exception):
    """A migration left rows whose foreign key has no parent (SQLite checks it by hand)."""


@dataclass(frozen=True)
class MigrationSet:
    """Where one history's migrations are and what must be migrated before them.

    ``name``: the history's name (``core``, ``vpp``, ...), lower-case, also the prefix of its
    version table ``<name>_alembic_version``. ``directory``: the folder of its revision files.
    ``depends_on``: names of histories applied before this one (the core's always is).
    ``tables``: the SQLModel classes the history creates; the host fills it from the same
    plugin's ``mdm_register_tables``.
    """

    name: str
    directory: Path
    depends_on: tuple[str, ...] = ()
    tables: tuple[type[SQLModel], ...] = field(default=(), compare=False)

    @property
    def version_table(self) -> str:
        """The table holding this history's current revision."""
        return f"{self.name}{VERSION_TABLE_SUFFIX}"

    @property
    def table_names(self) -> set[str]:
        """Names of the tables of this history's models."""
        return {str(t.__tablename__) for t in self.tables}  # a str on every table class (SQLModel types it str or a callable)


@dataclass
class HistoryState:
    """Where one history stands in a database."""

    name: str
    current: str | None  # the revision recorded in the database (None: no version table)
    head: str | None  # None for a history no loaded plugin declares
    pending: list[str]
    state: str  # "current", "behind", "ahead", "new" (nothing created), "unstamped" (tables, no version), "not loaded"

    def as_dict(self) -> dict[str, Any]:
        """Plain values for ``mdm db status --json``."""
        return {"plugin": self.name, "current": self.current, "head": self.head, "pending": self.pending, "state": self.state}


@dataclass
class Step:
    """One migration applied (or, for a 0.1.0 database, recognised and recorded)."""

    history: str
    previous: str | None
    revision: str
    message: str
    adopted: bool = False
    seconds: float = 0.0

    def describe(self) -> str:
        """One line for ``mdm db upgrade``."""
        if self.adopted:
            return f"{self.history}: existing tables match {self.revision} ({self.message}): recorded as applied"
        return f"{self.history}: applied {self.revision} ({self.message}) in {self.seconds:.2f}s"


# ---------------------------------------------------------------------- scripts


class History:
    """One MigrationSet and its Alembic scripts."""

    def __init__(self, migration_set: MigrationSet):
        self.set = migration_set
        self.name = migration_set.name
        self.config = alembic_config(migration_set)
        try:
            self.script, heads, self.revisions = _read_scripts(migration_set.directory, self.config)
        except Exception as exc:  # Alembic's own error about a file written by hand: say which file lacks what
            why = explain(self.name, migration_set.directory)
            if why is not None:
                raise PluginError(why) from None
            from alembic.util import CommandError

            if isinstance(exc, CommandError):
                raise PluginError(f"migrations of {self.name} in {migration_set.directory} cannot be read: {describe(exc)}") from None
            raise
        if len(heads) != 1:
            if not heads:
                raise PluginError(f"migrations of {self.name}: no revision in {migration_set.directory}")
            raise PluginError(
                f"migrations of {self.name} have several heads ({', '.join(sorted(heads))}): two migrations follow the same "
                "revision; make one follow the other (its down_revision) and renumber it"
            )
        self.head: str = heads[0]
        self.ids = [r.revision for r in self.revisions]

    def message(self, revision: str) -> str:
        """The first paragraph of a revision's docstring, on one line (a summary that wraps
        onto a second line is not cut mid-sentence)."""
        script = self.script.get_revision(revision)
        if script is None or not script.doc:
            return ""
        first, _, _ = script.doc.strip().partition("\n\n")
        return " ".join(first.split())

    def after(self, revision: str | None) -> list[str]:
        """Revisions still to apply after ``revision`` (all of them after None)."""
        if revision is None:
            return list(self.ids)
        return self.ids[self.ids.index(revision) + 1 :]


_SCRIPTS: dict[tuple[Any, ...], tuple[ScriptDirectory, tuple[str, ...], list[Script]]] = {}
_SCRIPTS_LOCK = threading.Lock()


def _read_scripts(directory: Path, config: Config) -> tuple[ScriptDirectory, tuple[str, ...], list[Script]]:
    """A folder's revision scripts, its heads and its revisions oldest first. Alembic reads a
    folder by executing every file in it; the result is kept while no file in the folder is
    added, removed or changed (names, sizes, modification times), as every host made in one
    process (in-process commands, tests) reads the same folders."""
    try:
        files = tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(directory) if e.name.endswith(".py")))
    except OSError:
        files = ()
    key = (str(directory), files)
    with _SCRIPTS_LOCK:
        known = _SCRIPTS.get(key)
    if known is None:
        from alembic.script import ScriptDirectory

        with warnings.catch_warnings():  # a down_revision naming no revision: told in one line by History
            warnings.simplefilter("ignore", UserWarning)
            script = ScriptDirectory.from_config(config)
            heads = tuple(script.get_heads())
            known = (script, heads, list(reversed(list(script.walk_revisions()))))
        with _SCRIPTS_LOCK:
            _SCRIPTS[key] = known
    return known[0], known[1], list(known[2])


def alembic_config(migration_set: MigrationSet, **attributes: Any) -> Config:
    """An Alembic configuration for one history: the shared env.py, the history's folder."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(migration_set.directory))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["migration_set"] = migration_set
    config.attributes.update(attributes)
    return config


def core_migration_set(tables: Iterable[type[SQLModel]]) -> MigrationSet:
    """The core's own history."""
    return MigrationSet("core", CORE_MIGRATIONS, depends_on=(), tables=tuple(tables))


def order(sets: Sequence[MigrationSet]) -> list[MigrationSet]:
    """The histories in dependency order, the core's first; a missing dependency or a cycle is an error."""
    by_name: dict[str, MigrationSet] = {}
    for s in sets:
        if not _NAME.match(s.name):
            raise PluginError(f"migration history name {s.name!r} is not valid: use lower-case letters, digits and _")
        if s.name in by_name:
            raise PluginError(f"two plugins declare the migration history {s.name!r}: each plugin needs its own name")
        by_name[s.name] = s
    ordered: list[MigrationSet] = []
    visiting: set[str] = set()

    def visit(s: MigrationSet) -> None:
        if s in ordered:
            return
        if s.name in visiting:
            raise PluginError(f"migrations of {s.name} depend on themselves (a cycle through depends_on)")
        visiting.add(s.name)
        for dep in ("core", *s.depends_on) if s.name != "core" else s.depends_on:
            if dep not in by_name:
                raise PluginError(f"migrations of {s.name} depend on {dep!r}, which is not loaded: enable that plugin")
            visit(by_name[dep])
        visiting.discard(s.name)
        ordered.append(s)

    for s in sorted(sets, key=lambda s: (s.name != "core", s.name)):
        visit(s)
    return ordered


# ---------------------------------------------------------------------- state


def _current_revision(conn: Connection, history: History, tables: set[str]) -> str | None:
    if history.set.version_table not in tables:
        return None
    rows = [r[0] for r in conn.execute(text(f'SELECT version_num FROM "{history.set.version_table}"'))]
    if len(rows) > 1:
        raise MdmError(f"{history.set.version_table} holds several revisions ({', '.join(rows)}): keep the right one and run `mdm db upgrade`")
    return rows[0] if rows else None


def _state(conn: Connection, history: History, tables: set[str]) -> HistoryState:
    current = _current_revision(conn, history, tables)
    if current is None:
        state = "unstamped" if history.set.table_names & tables else "new"
        return HistoryState(history.name, None, history.head, history.after(None), state)
    if current not in history.ids:
        return HistoryState(history.name, current, history.head, [], "ahead")
    pending = history.after(current)
    return HistoryState(history.name, current, history.head, pending, "behind" if pending else "current")


def read_states(db: Database, histories: Sequence[History], *, unloaded: bool = False) -> list[HistoryState]:
    """Each history's state, read without taking the write lock. With ``unloaded``, also the
    histories the database has but no loaded plugin declares (state ``not loaded``). An SQLite
    file that does not exist is not created: every history is ``new``."""
    if db.is_new_file:
        return [HistoryState(h.name, None, h.head, h.after(None), "new") for h in histories]
    try:
        with db.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            states = [_state(conn, h, tables) for h in histories]
            if unloaded:
                known = {h.set.version_table for h in histories}
                for table in sorted(t for t in tables if t.endswith(VERSION_TABLE_SUFFIX) and t not in known):
                    rows = [r[0] for r in conn.execute(text(f'SELECT version_num FROM "{table}"'))]
                    states.append(HistoryState(table[: -len(VERSION_TABLE_SUFFIX)], ", ".join(rows) or None, None, [], "not loaded"))
            conn.rollback()
            return states
    except SQLAlchemyError as exc:
        raise database_error(exc, db) from None


def behind_message(states: Sequence[HistoryState]) -> str:
    """The one line a command prints when the database needs ``mdm db upgrade``."""
    parts = []
    for s in states:
        if s.state in ("behind", "new", "unstamped"):
            start = {"new": "nothing", "unstamped": "release 0.1.0 tables"}.get(s.state, s.current)
            parts.append(f"{s.name} {start} -> {s.head}")
    return f"database schema is behind this release: {UPGRADE_HINT} (pending: {', '.join(parts)})"


def ahead_message(states: Sequence[HistoryState]) -> str:
    """The one line a command prints when a newer release has migrated the database."""
    parts = ", ".join(f"{s.name} is at {s.current}, this release knows up to {s.head}" for s in states if s.state == "ahead")
    return (
        f"database schema is ahead of this release ({parts}): a newer mdm-host has upgraded it; run that release, or restore the backup made before the upgrade"
    )


def ensure_current(
    db: Database,
    sets: Sequence[MigrationSet],
    *,
    notify: Callable[[str], None] | None = None,
    check: Callable[[Sequence[HistoryState]], None] | None = None,
) -> list[Step]:
    """Check at start that the database is at this release's revisions, without the write lock.

    ``check(states)`` may refuse first (the host refuses a database without tables there:
    :func:`refuse_uninitialised`). A new, empty database is otherwise created by running every
    migration, and so are the tables of a plugin used for the first time on this database (no
    version table, none of its tables); ``notify`` says so. A database behind this release stops with ``SchemaBehind`` (``mdm db
    upgrade``, ``Host.upgrade_database``); one ahead stops with ``SchemaAhead``.
    """

    if at_heads(db, sets):
        return []

    def checks(states: Sequence[HistoryState], _new_file: bool) -> None:
        """Only a new database, or new plugins' tables, are created: a history behind or ahead stops."""
        if check is not None:
            check(states)
        refusal = schema_refusal(states)
        if refusal is not None:
            raise refusal

    return bring_current(db, sets, checks, notify=notify or _to_stderr)


def at_heads(db: Database, sets: Sequence[MigrationSet]) -> bool:
    """Whether every history's version table holds the head its files name (:func:`plain_head`):
    the schema check of every command, answered without Alembic. False sends the caller to the
    full check (a database behind, ahead, new or unstamped; files only Alembic can read)."""
    if db.is_new_file or db.in_memory:
        return False
    heads: dict[str, str] = {}
    for migration_set in sets:
        head = plain_head(migration_set.directory)
        if head is None:
            return False
        heads[migration_set.version_table] = head
    try:
        with db.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            held = {table: [r[0] for r in conn.execute(text(f'SELECT version_num FROM "{table}"'))] for table in heads if table in tables}
            conn.rollback()
    except SQLAlchemyError as exc:
        raise database_error(exc, db) from None
    return all(held.get(table) == [head] for table, head in heads.items())


def uninitialised(db: Database, states: Sequence[HistoryState]) -> bool:
    """Whether ``states`` (:func:`read_states`'s; ``not loaded`` ones aside) say the database has
    none of this release's tables: an SQLite file that does not exist or is empty (0 bytes), an
    empty PostgreSQL database. The one rule of :func:`refuse_uninitialised`, ``mdm status`` and
    ``mdm db status`` (schema ``new``, :func:`uninitialised_message`). Never an in-memory
    database: its first use makes it."""
    loaded = [s for s in states if s.state != "not loaded"]  # as every command reads them: loaded plugins only
    return not db.in_memory and bool(loaded) and all(s.state == "new" for s in loaded)


def refuse_uninitialised(db: Database, states: Sequence[HistoryState], source: str) -> None:
    """Refuse a database without any of this release's tables (``NotInitialised``, before anything
    is created): every command but those that create one (``mdm db upgrade``, ``mdm demo``'s own)."""
    if uninitialised(db, states):
        raise NotInitialised(uninitialised_message(db, source))


def uninitialised_message(db: Database, source: str) -> str:
    """The one line naming a database without tables, where its URL came from (``source``) and
    the fix; a PostgreSQL URL without its password."""
    if db.is_missing_file:
        return f"database file {db.url.database} does not exist ({source}): create it with `mdm db upgrade`, or correct the path"
    where = db.url.database if db.is_sqlite else db.describe()
    return f"database {where} is not initialised, it has no tables ({source}): create them with `mdm db upgrade`, or correct the URL"


def schema_refusal(states: Sequence[HistoryState]) -> SchemaAhead | SchemaBehind | None:
    """What every command stops with on a database with tables in ``states``: ``SchemaAhead``
    (a newer release upgraded it), ``SchemaBehind`` (a history behind or unstamped: ``mdm db
    upgrade``); None when they go on (current, or only plugins' first tables to make). The one
    rule of :func:`ensure_current` and ``mdm db status``'s exit code."""
    if any(s.state == "ahead" for s in states):
        return SchemaAhead(ahead_message(states))
    if any(s.state in ("behind", "unstamped") for s in states):
        return SchemaBehind(behind_message(states))
    return None


def bring_current(
    db: Database,
    sets: Sequence[MigrationSet],
    check: Callable[[Sequence[HistoryState], bool], None],
    *,
    on_step: Callable[[Step], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> list[Step]:
    """Run the pending migrations of ``sets`` unless every history is current; returns the steps.
    ``check(states, new_file)`` may refuse first (nothing is changed); each step is told to
    ``on_step`` as it is applied, then a new database (or plugins' first tables) to ``notify``
    (:func:`created_note`). What :func:`ensure_current` and ``Host.upgrade_database`` share."""
    new_file = db.is_new_file
    histories = [History(s) for s in order(sets)]
    states = read_states(db, histories)
    if all(s.state == "current" for s in states):
        return []
    check(states, new_file)
    steps = upgrade(db, sets, histories=histories, on_step=on_step)
    note = created_note(db, states, new_file) if steps else None
    if note and notify is not None:
        notify(note)
    return steps


def created_note(db: Database, states: Sequence[HistoryState], new_file: bool) -> str | None:
    """What to say once migrations ran from ``states``, said after their steps: a new database (or
    the tables of an empty one), or the tables of plugins used for the first time (the others
    current), with where, so that a mistyped path is noticed. None for an upgrade, whose steps
    already say which tables they created (``alerts: applied 0001 (alerts tables ...)``), and
    for an in-memory database."""
    created = [s.name for s in states if s.state == "new"]
    if not created or db.in_memory:
        return None
    where = db.url.database if db.is_sqlite else db.describe()
    if len(created) == len(states):
        return f"created new database at {where}" if new_file else f"created the tables in empty database {where}"
    if all(s.state in ("new", "current") for s in states):
        return f"created the tables of {', '.join(created)} (first use on this database)"
    return None


def _to_stderr(message: str) -> None:
    print(f"mdm: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- upgrade


def upgrade(
    db: Database,
    sets: Sequence[MigrationSet],
    *,
    histories: Sequence[History] | None = None,
    on_step: Callable[[Step], None] | None = None,
) -> list[Step]:
    """Apply every pending migration, history by history in dependency order; returns the steps.

    Stops before changing anything if a history is ahead of this release. A failing migration
    raises ``MigrationFailed`` after its transaction was rolled back (earlier ones stay).
    """
    histories = list(histories) if histories is not None else [History(s) for s in order(sets)]
    states = read_states(db, histories)
    if any(s.state == "ahead" for s in states):
        raise SchemaAhead(ahead_message(states))
    steps: list[Step] = []
    for history in histories:
        while (step := _step(db, history)) is not None:
            log.info("%s", step.describe())
            steps.append(step)
            if on_step is not None:
                on_step(step)
    return steps


def _lock(conn: Connection) -> None:
    """The database-wide migration lock for this transaction (SQLite: BEGIN IMMEDIATE already holds it)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _step(db: Database, history: History) -> Step | None:
    """Apply the next migration of ``history`` in one transaction; None when it is at its head."""
    from alembic import command

    started = time.monotonic()
    target = previous = None
    try:
        with db.migration_connection() as conn:
            with conn.begin():
                _lock(conn)
                tables = set(inspect(conn).get_table_names())
                state = _state(conn, history, tables)
                if state.state == "ahead":
                    raise SchemaAhead(ahead_message([state]))
                if state.state == "current":
                    return None
                if state.state == "unstamped":
                    target = history.ids[0]
                    _check_matches_first(conn, history, tables)
                    command.stamp(alembic_config(history.set, connection=conn), target)
                    return Step(history.name, None, target, history.message(target), adopted=True)
                previous, target = state.current, state.pending[0]
                command.upgrade(alembic_config(history.set, connection=conn), target)
                _check_foreign_keys(conn)
            return Step(history.name, previous, target, history.message(target), seconds=time.monotonic() - started)
    except MdmError:
        raise
    except Exception as exc:
        if target is None:
            raise MdmError(f"migrations of {history.name} cannot run on {db.describe()}: {describe(exc)}") from exc
        raise MigrationFailed(
            f"{history.name}: migration {target} ({history.message(target)}) failed and was rolled back; "
            f"{history.name} stays at {previous or 'nothing'}: {exc if isinstance(exc, _OrphanRows) else describe(exc)}"
        ) from exc


def _check_foreign_keys(conn: Connection) -> None:
    """SQLite: foreign keys are off while migrating (see ``Database.migration_connection``);
    check the result still honours them before committing."""
    if conn.dialect.name != "sqlite":
        return
    broken = conn.execute(text("PRAGMA foreign_key_check")).fetchall()
    if broken:
        table, rowid, parent, _ = broken[0]
        raise _OrphanRows(f"the migration left {len(broken)} row(s) whose foreign key has no parent (first: {table} row {rowid} -> {parent})")


# ---------------------------------------------------------------------- release 0.1.0


def schema_of(conn: Connection, tables: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Tables, columns (with nullability) and named indexes, comparable across SQLite and PostgreSQL."""
    inspector = inspect(conn)
    found: dict[str, dict[str, Any]] = {}
    for table in sorted(tables):
        columns = {c["name"]: bool(c["nullable"]) for c in inspector.get_columns(table)}
        indexes = {i["name"]: tuple(i["column_names"]) for i in inspector.get_indexes(table) if i.get("name") and not i.get("duplicates_constraint")}
        found[table] = {"columns": columns, "indexes": indexes}
    return found


def first_revision_schema(history: History) -> dict[str, dict[str, Any]]:
    """What the history's first migration creates, built in a scratch in-memory SQLite database."""
    from alembic import command

    scratch = Database("sqlite://")
    try:
        with scratch.migration_connection() as conn, conn.begin():
            command.upgrade(alembic_config(history.set, connection=conn), history.ids[0])
            made = set(inspect(conn).get_table_names()) - {history.set.version_table}
            return schema_of(conn, made)
    finally:
        scratch.dispose()


def _check_matches_first(conn: Connection, history: History, tables: set[str]) -> None:
    expected = first_revision_schema(history)
    missing = sorted(set(expected) - tables)
    if missing:
        raise MdmError(
            f"{history.name}: the database has some of its tables but not {', '.join(missing)}, so it is not a database of "
            f"release 0.1.0 (or of {history.ids[0]}): restore a backup, or move the {history.name} tables away and run `mdm db upgrade`"
        )
    actual = schema_of(conn, expected)
    for table, want in expected.items():
        have = actual[table]
        if have != want:
            diff = _first_difference(want, have)
            raise MdmError(
                f"{history.name}: table {table} does not match revision {history.ids[0]} ({diff}), so it was not made by "
                "release 0.1.0 and is left untouched: restore a backup or fix the table by hand"
            )


def _first_difference(want: Mapping[str, Any], have: Mapping[str, Any]) -> str:
    for name in sorted(set(want["columns"]) | set(have["columns"])):
        if name not in have["columns"]:
            return f"column {name} is missing"
        if name not in want["columns"]:
            return f"column {name} is unexpected"
        if want["columns"][name] != have["columns"][name]:
            return f"column {name} is {'nullable' if have['columns'][name] else 'NOT NULL'}"
    for name in sorted(set(want["indexes"]) | set(have["indexes"])):
        if want["indexes"].get(name) != have["indexes"].get(name):
            return f"index {name} differs"
    return "it differs"


# ---------------------------------------------------------------------- env.py


def run_env(context: Any) -> None:
    """The body of the shared ``env.py``: run Alembic on the connection this module passes in."""
    from sqlmodel import SQLModel

    config = context.config
    migration_set: MigrationSet = config.attributes["migration_set"]
    conn: Connection = config.attributes["connection"]
    own = migration_set.table_names

    def include_name(name: str | None, type_: str, parent_names: Mapping[str, Any]) -> bool:  # database side
        return type_ != "table" or name in own

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:  # models side
        return type_ != "table" or name in own

    def skip_empty(context: Any, revision: Any, directives: list[Any]) -> None:
        if config.attributes.get("skip_empty") and directives and directives[0].upgrade_ops.is_empty():
            directives[:] = []  # `mdm db revision --autogenerate` found nothing to do: write no file

    context.configure(
        connection=conn,
        process_revision_directives=skip_empty,
        version_table=migration_set.version_table,
        target_metadata=SQLModel.metadata,
        include_name=include_name,
        include_object=include_object,
        render_as_batch=True,  # SQLite has no ALTER for most changes: Alembic's batch mode rebuilds the table
        compare_type=True,
        render_item=render_item,
        transaction_per_migration=False,
    )
    with context.begin_transaction():  # the caller's transaction: nothing more here
        context.run_migrations()


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate writes database types, not the models' Python types (migrations import no app code)."""
    from sqlmodel.sql.sqltypes import AutoString

    from mdm_core.db.types import UTCDateTime

    if type_ == "type":
        if isinstance(obj, UTCDateTime):
            return "sa.DateTime(timezone=True)"
        if isinstance(obj, AutoString):
            return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


# ---------------------------------------------------------------------- new revisions


def new_revision(sets: Sequence[MigrationSet], name: str, message: str, *, autogenerate: bool) -> tuple[Path, str]:
    """Write the next revision file of history ``name``; returns its path and id.

    Ids are four-digit numbers (``0002``), files ``<id>_<slug>.py``. With ``autogenerate`` the
    operations are what differs between the history's models and its migrations, compared on a
    scratch SQLite database built by running every migration.
    """
    from alembic import command

    ordered = order(sets)
    by_name = {s.name: s for s in ordered}
    if name not in by_name:
        raise MdmError(f"no migration history named {name!r}: choose one of {', '.join(by_name)}")
    target = by_name[name]
    target.directory.mkdir(parents=True, exist_ok=True)
    existing = [History(target)] if any(target.directory.glob("*.py")) else []
    numbers = [int(r) for r in (existing[0].ids if existing else []) if r.isdigit()]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    scratch = Database("sqlite://")
    try:
        needed = [s for s in ordered if s.name in _ancestry(by_name, name) and (s.name != name or existing)]
        upgrade(scratch, needed)
        with scratch.migration_connection() as conn, conn.begin():
            script = command.revision(
                alembic_config(target, connection=conn, skip_empty=autogenerate),
                message=message,
                autogenerate=autogenerate,
                rev_id=rev_id,
                version_path=str(target.directory),
            )
    finally:
        scratch.dispose()
    if not script:  # None or [] (Alembic's answer when the directive was dropped)
        raise MdmError(f"no difference between the models of {name} and its migrations: no migration written")
    assert not isinstance(script, list)
    return Path(script.path), rev_id


def _ancestry(by_name: Mapping[str, MigrationSet], name: str) -> set[str]:
    found = {name, "core"}
    for dep in by_name[name].depends_on:
        found |= _ancestry(by_name, dep)
    return found


def with_tables(migration_set: MigrationSet, tables: Iterable[type]) -> MigrationSet:
    """The same set with these model tables added."""
    return replace(migration_set, tables=tuple(dict.fromkeys((*migration_set.tables, *tables))))
