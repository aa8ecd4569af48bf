"""Test helpers for the host and for plugin authors (a pytest plugin).

Load it from a ``conftest.py`` with ``pytest_plugins = ["mdm_core.testing"]``; it gives:

- ``project_dir``: a project folder of the test's own (``conf/``, ``var/``);
- ``make_host``: ``make_host(plugins=[...], config="toml", environ={...})`` builds a host on a
  real SQLite file in that folder (``plugins=None`` loads the installed entry points, as ``mdm``
  does), closed after the test;
- ``mdm_cli``: ``mdm_cli("devices", "list")`` runs the ``mdm`` command in-process on the
  test's configuration and database and returns ``(exit code, stdout, stderr)``
  (:class:`MdmRunner` for other set-ups);
- :class:`EventRecorder`: a subscriber plugin object that keeps every delivered event;
- :class:`HookCallLog`: which hooks were called with at least one implementation, and
  :class:`HookCoverage`: a pytest plugin failing a whole-suite run in which a declared hook was
  never called with an implementation;
- :class:`RunTally`: counts summed over a whole run and printed at its end;
  both work under pytest-xdist (each worker sends what it saw to the controller);
- :func:`recorded_statements`: the SQL statements an engine runs inside a ``with`` block;
- ``closed_port``: a loopback port that refuses connections for the whole test (held, so that
  no other test or pytest-xdist worker takes it meanwhile; never a fixed port);
- ``restore_logging`` (automatic): ``mdm`` reconfigures the root logger; each test gets the
  logging it had back;
- :class:`MigratedTemplates` (automatic): a new, empty SQLite database is migrated once per
  set of migrations in each test process and copied afterwards, so that a database per test
  costs a file copy rather than every migration;
- :class:`SharedDialects` (automatic): the SQLite engines of a test process share one
  SQLAlchemy dialect and one compiled-statement cache, so that a statement is compiled once per
  process rather than once per test's engine.

For the VPP plugin's mirror compared with Apple's (simulated) state, see
``plugins.vpp.testing``: the core knows nothing about Apple.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import sqlite3
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mdm_core import hookimpl
from mdm_core.events import Event
from mdm_core.host import Host, create_host
from mdm_core.plugins import observe_hook_calls

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from mdm_core.db.engine import Database
    from mdm_core.db.migrate import History, MigrationSet, Step

TEST_SECRET_KEY = "test-secret-key"


# --------------------------------------------------------------------------- hosts


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A project folder with ``conf/`` and ``var/`` of its own."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "var").mkdir()
    return tmp_path


@pytest.fixture
def make_host(project_dir: Path) -> Iterator[Callable[..., Host]]:
    """Build hosts on a real SQLite file under the test's own folder; they are closed afterwards.

    ``make_host(plugins=[module, ...], config="toml text", environ={...}, database_url=None)``;
    ``plugins=None`` loads the installed entry points like ``mdm`` does. The secret key is a
    test key unless ``environ`` gives one (``{"MDM_SECRET_KEY": None}``: none, the key file).
    """
    hosts: list[Host] = []

    def make(plugins: Iterable[Any] | None = None, config: str = "", environ: Mapping[str, str | None] | None = None, database_url: str | None = None) -> Host:
        conf = project_dir / "conf" / "mdm.toml"
        conf.write_text(config)
        env = {k: v for k, v in {"MDM_SECRET_KEY": TEST_SECRET_KEY, **(environ or {})}.items() if v is not None}
        host = create_host(conf, environ=env, plugins=plugins, database_url=database_url or f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()


# --------------------------------------------------------------------------- migrated templates


class MigratedTemplates:
    """Migrates a new, empty SQLite database once per set of migrations, then copies it.

    ``install()`` wraps ``mdm_core.db.migrate.upgrade`` (which ``Host.db`` runs on a new
    database, and ``mdm db upgrade``): when the database is an SQLite file without any table,
    the first upgrade with a given set of histories (their names, dependencies, tables and the
    contents of their migration files) runs every migration as usual and keeps a copy of the
    result; later ones copy it into the database (SQLite's backup API) and return the same
    steps, logged and passed to ``on_step`` as the migrations would. Anything else (PostgreSQL,
    a database with tables, older revisions to upgrade, a failing migration) runs the real
    migrations. Each process keeps its own copies, in a folder removed by the outermost
    ``uninstall()``.
    """

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.steps: dict[str, list[Step]] = {}
        self._lock = threading.Lock()
        self._real: Callable[..., list[Step]] | None = None
        self._installed = 0

    def install(self) -> None:
        """Wrap the migrations (nested pytest sessions, e.g. pytester's, install it again)."""
        from mdm_core.db import migrate

        self._installed += 1
        if self._real is None:
            self._real = migrate.upgrade
            migrate.upgrade = self.upgrade  # same signature, see upgrade()

    def uninstall(self) -> None:
        """Undo the outermost ``install()`` and remove the copies."""
        from mdm_core.db import migrate

        self._installed -= 1
        if self._installed > 0:
            return
        if self._real is not None:
            migrate.upgrade = self._real  # the original function
            self._real = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        self.steps.clear()

    def upgrade(
        self,
        db: Database,
        sets: Sequence[MigrationSet],
        *,
        histories: Sequence[History] | None = None,
        on_step: Callable[[Step], None] | None = None,
    ) -> list[Step]:
        """``mdm_core.db.migrate.upgrade``, served from a template when the database is new."""
        from mdm_core.db import migrate

        assert self._real is not None
        histories = list(histories) if histories is not None else [migrate.History(s) for s in migrate.order(sets)]
        if not db.is_sqlite or db.in_memory or not _has_no_tables(db):
            return self._real(db, sets, histories=histories, on_step=on_step)
        key = _histories_key(histories)
        with self._lock:
            if self.folder is None:
                self.folder = Path(tempfile.mkdtemp(prefix="mdm-migrated-"))
            template = self.folder / f"{key}.sqlite3"
            known = self.steps.get(key)
        if known is None:
            steps = self._real(db, sets, histories=histories, on_step=on_step)
            with _driver_connection(db) as source, sqlite3.connect(template) as copy:
                source.backup(copy)
            copy.close()
            with self._lock:
                self.steps[key] = list(steps)
            return steps
        with sqlite3.connect(template) as source, _driver_connection(db) as target:
            source.backup(target)
        source.close()
        for step in known:
            migrate.log.info("%s", step.describe())
            if on_step is not None:
                on_step(step)
        return list(known)


def _has_tables(conf: Path) -> bool | None:
    """Whether the database ``conf`` (or MDM_DATABASE_URL) names has any table (an SQLite file
    that does not exist: none).

    Any table at all, deliberately not ``migrate.uninitialised`` (none of the loaded plugins'
    tables): :class:`MdmRunner` stands in for the admin's ``mdm db upgrade`` only on a database
    holding nothing, and leaves one holding anything (another application's tables, or only the
    history of a plugin no longer loaded) to the command, whose own refusal the test then sees;
    and it reads the configuration only, without loading the plugins that rule needs."""
    from mdm_core.config import load_config
    from mdm_core.db.engine import Database

    try:
        db = Database(load_config(conf, os.environ).database_url)
    except Exception:  # noqa: BLE001 - a configuration the command itself refuses
        return None
    try:
        return not db.is_new_file and not _has_no_tables(db)
    except Exception:  # noqa: BLE001 - unreadable here (a read-only mount): the command itself says why
        return None
    finally:
        db.dispose()


def _has_no_tables(db: Database) -> bool:
    """Whether the database has no table at all: the template copy replaces the whole file, so
    it may only stand in for the migrations of an empty one."""
    from sqlalchemy import inspect

    with db.engine.connect() as conn:
        return not inspect(conn).get_table_names()


@contextlib.contextmanager
def _driver_connection(db: Database) -> Iterator[sqlite3.Connection]:
    """The database's own sqlite3 connection (with its pragmas), back to its pool afterwards."""
    raw = db.engine.raw_connection()
    try:
        yield raw.driver_connection  # type: ignore[misc]  # an sqlite3.Connection on an SQLite engine
    finally:
        raw.close()


def _histories_key(histories: Sequence[History]) -> str:
    """What decides the schema a new database gets: each history's name, dependencies, tables
    and migration files (their names and contents)."""
    digest = hashlib.sha256()
    for history in histories:
        s = history.set
        digest.update(repr((s.name, s.depends_on, sorted(s.table_names))).encode())
        for path in sorted(Path(s.directory).glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


#: The migrated templates of this test process (installed while the plugin is loaded).
TEMPLATES = MigratedTemplates()


# --------------------------------------------------------------------------- shared dialects


class SharedDialects:
    """One SQLAlchemy dialect and one compiled-statement cache for the SQLite engines of a process.

    SQLAlchemy caches a statement's compiled SQL per engine, keyed by the engine's dialect: each
    test builds its own engines, so each test compiled every statement it ran again (and
    rebuilt the dialect's type processors), a fifth of the fast subset's CPU. ``install()``
    wraps ``Database._create_engine``: an SQLite engine executes with the dialect of the first
    engine of the same driver and URL options that connected in this process (the dialect is
    shared only once that first connection has initialised it), and compiles into one cache
    (the ``compiled_cache`` execution option). Connections, pools, pragmas and event listeners
    stay each engine's own; PostgreSQL engines are left as they are.
    """

    #: Compiled statements kept (least recently used dropped first); the fast subset compiles
    #: about 650 different ones per process.
    CAPACITY = 4000

    def __init__(self) -> None:
        from sqlalchemy.util import LRUCache

        self.dialects: dict[tuple[Any, ...], Any] = {}
        self.compiled: LRUCache[Any, Any] = LRUCache(self.CAPACITY)
        self._lock = threading.Lock()
        self._real: Callable[..., Any] | None = None
        self._installed = 0

    def install(self) -> None:
        """Wrap engine creation (nested pytest sessions install it again)."""
        from mdm_core.db.engine import Database

        self._installed += 1
        if self._real is None:
            self._real = Database._create_engine

            def _create_engine(db: Database, echo: bool) -> Engine:
                return self.create_engine(db, echo)

            Database._create_engine = _create_engine  # type: ignore[method-assign,assignment]  # same signature, called as a method

    def uninstall(self) -> None:
        """Undo the outermost ``install()`` and forget the dialects and statements."""
        from mdm_core.db.engine import Database

        self._installed -= 1
        if self._installed > 0:
            return
        if self._real is not None:
            Database._create_engine = self._real  # type: ignore[method-assign]  # the original method
            self._real = None
        self.dialects.clear()
        self.compiled.clear()

    def create_engine(self, db: Database, echo: bool) -> Engine:
        """``Database._create_engine``, executing SQLite statements with the shared dialect."""
        from sqlalchemy import event

        assert self._real is not None
        engine: Engine = self._real(db, echo)
        if not db.is_sqlite:
            return engine
        key = (engine.url.drivername, tuple(sorted(engine.url.query.items())), db.in_memory)
        with self._lock:
            shared = self.dialects.get(key)
        if shared is None:

            @event.listens_for(engine, "first_connect")
            def _initialised(*_args: Any) -> None:  # after SQLAlchemy's own first_connect: the dialect is initialised
                with self._lock:
                    self.dialects.setdefault(key, engine.dialect)

        else:
            engine.dialect = shared
        engine.update_execution_options(compiled_cache=self.compiled)
        return engine


#: The shared dialects of this test process (installed while the plugin is loaded).
DIALECTS = SharedDialects()


def pytest_configure(config: pytest.Config) -> None:
    TEMPLATES.install()
    DIALECTS.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    DIALECTS.uninstall()
    TEMPLATES.uninstall()


# --------------------------------------------------------------------------- the command line


class MdmRunner:
    """Runs ``mdm ARGS`` in-process on a project folder's configuration and database.

    ``runner("vpp", "sync")`` -> (exit code, stdout, stderr). The environment points the command
    at the folder's SQLite file and a test key (``environ`` adds or overrides variables,
    ``unset`` removes some); ``config`` (if given) is written to ``conf/mdm.toml``, which is
    created empty otherwise. ``runner(..., config="toml")`` rewrites it for one call.
    ``database_url`` (the ``database_url`` fixture's) runs it on that database instead of the file.

    The database is made before the first command, as an admin's ``mdm db upgrade`` makes a
    site's (every other command refuses a database without tables); ``initialise = False``
    (before the first call) leaves it as it is, for tests of a new or mistyped database.
    """

    initialise = True

    def __init__(
        self,
        project_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        *,
        config: str | None = None,
        environ: Mapping[str, str] | None = None,
        unset: Iterable[str] = (),
        chdir: bool = False,
        database_url: str | None = None,
    ):
        self.project_dir = project_dir
        self.conf = project_dir / "conf" / "mdm.toml"
        self.db = project_dir / "var" / "mdm.sqlite3"
        self.capsys = capsys
        monkeypatch.setenv("MDM_DATABASE_URL", database_url or f"sqlite:///{self.db}")
        monkeypatch.setenv("MDM_SECRET_KEY", TEST_SECRET_KEY)
        for name in ("MDM_CONFIG", *unset):
            monkeypatch.delenv(name, raising=False)
        for name, value in (environ or {}).items():
            monkeypatch.setenv(name, value)
        if chdir:
            monkeypatch.chdir(project_dir)
        if config is not None:
            self.conf.write_text(config)
        elif not self.conf.exists():
            self.conf.write_text("")

    def __call__(self, *args: str, config: str | None = None) -> tuple[int, str, str]:
        from mdm_core.cli import main

        if config is not None:
            self.conf.write_text(config)
        if self.initialise and args[:1] != ("db",):  # the database the command is given, MDM_DATABASE_URL set later too
            tables = _has_tables(self.conf)  # None: cannot tell (a configuration or a file the command itself refuses)
            if tables is not None:
                self.initialise = not tables and main(["--config", str(self.conf), "-q", "db", "upgrade"]) != 0  # again if it failed
        self.capsys.readouterr()
        code = main(["--config", str(self.conf), *args])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def mdm_cli(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> MdmRunner:
    """``mdm_cli("devices", "list")`` -> (exit code, stdout, stderr), with the installed plugins."""
    return MdmRunner(project_dir, monkeypatch, capsys)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback TCP port where nothing listens: connecting to it is refused. The port stays bound
    (not listening) until the test ends, so no other test or pytest-xdist worker can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``mdm_core.cli.main`` points the root logger at the (captured) stderr: undo it afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Statement:
    """One statement an engine ran: its SQL with whitespace collapsed to single spaces, its
    parameters, whether it ran as an executemany (once per row on the server), and whether
    SQLAlchemy compiled it (False: sent as text, e.g. ``exec_driver_sql``)."""

    sql: str
    parameters: Any
    many: bool
    compiled: bool


@contextlib.contextmanager
def recorded_statements(engine: Any) -> Iterator[list[Statement]]:
    """Record every statement ``engine`` (a SQLAlchemy engine, e.g. ``host.db.write_engine``)
    runs inside the ``with`` block, in order; the list stays readable afterwards."""
    from sqlalchemy import event

    seen: list[Statement] = []

    def look(_conn: Any, _cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append(Statement(" ".join(statement.split()), parameters, many, context is not None and context.compiled is not None))

    event.listen(engine, "before_cursor_execute", look)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", look)


# --------------------------------------------------------------------------- events


class EventRecorder:
    """A subscriber plugin object that keeps delivered events.

    ``EventRecorder()`` hears every event through ``mdm_event`` (``prefix`` keeps those whose
    name starts with it); ``EventRecorder(events=["vpp_sync_finished", ...])`` subscribes to
    those events' own hooks (``mdm_<name>``, optional: the plugin that declares them may be
    disabled), as a plugin would. Register it with ``host.pm.register(recorder)`` or
    ``make_host(plugins=[..., recorder])``; then ``names()``, ``named(name)`` (their payloads),
    ``ids()``, ``clear()``.
    """

    def __init__(self, events: Iterable[str] | None = None, prefix: str = "") -> None:
        self.prefix = prefix
        self.events: list[Event] = []
        self._lock = threading.Lock()
        for name in events if events is not None else ["event"]:
            setattr(self, f"mdm_{name}", self._subscriber())

    def _subscriber(self) -> Callable[..., None]:
        @hookimpl(optionalhook=True)
        def subscriber(host: Host, event: Event) -> None:
            self._keep(host, event)

        return subscriber

    def _keep(self, host: Host, event: Event) -> None:
        if event.name.startswith(self.prefix):
            with self._lock:
                self.events.append(event)

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.events if e.name == name]

    def ids(self) -> list[str]:
        return [e.id for e in self.events]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()


# --------------------------------------------------------------------------- hooks


class HookCallLog:
    """Which hooks were called, with how many implementations, while it is installed.

    ``log.install()`` observes every plugin manager made afterwards (``observe_hook_calls``);
    ``log.exercised()`` is the set of hook names called with at least one implementation, and
    ``log.on_call`` (if set) sees every call (name, keyword arguments).
    """

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.on_call: Callable[[str, Mapping[str, Any]], None] | None = None
        self._stop: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def install(self) -> None:
        self._stop = observe_hook_calls(self._observe)

    def uninstall(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def _observe(self, name: str, kwargs: Mapping[str, Any], implementations: int) -> None:
        if implementations:
            with self._lock:
                self.calls[name] = self.calls.get(name, 0) + 1
        if self.on_call is not None:
            self.on_call(name, kwargs)

    def exercised(self) -> set[str]:
        return set(self.calls)


def is_xdist_worker(config: pytest.Config) -> bool:
    """Whether this pytest process is a pytest-xdist worker (the controller sums up the run)."""
    return hasattr(config, "workerinput")


class HookCoverage:
    """A pytest plugin: a run of the whole suite fails if a declared hook was never called with
    an implementation, naming the hooks.

    ``HookCoverage(log, declared, suite)``: ``log`` is an installed :class:`HookCallLog`,
    ``declared()`` the names that must be exercised (e.g. ``declared_hooks(my.hookspecs)``),
    ``suite`` the tests folder. It decides only when the run passed and was the whole suite (no
    path narrowing it, no ``-k`` or ``-m``, nothing deselected). Under pytest-xdist each worker
    sends the hooks it saw (and what it deselected) to the controller, which decides. Register it
    from ``pytest_configure``: ``config.pluginmanager.register(HookCoverage(...), "hook-coverage")``.
    """

    KEY = "mdm_hooks_exercised"

    def __init__(self, log: HookCallLog, declared: Callable[[], set[str]], suite: Path) -> None:
        self.log = log
        self.declared = declared
        self.suite = suite.resolve()
        self.from_workers: set[str] = set()
        self.deselected = 0

    def pytest_deselected(self, items: list[Any]) -> None:
        self.deselected += len(items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {})
        self.from_workers.update(output.get(self.KEY, []))
        self.deselected += output.get(f"{self.KEY}_deselected", 0)

    def whole_suite(self, config: pytest.Config) -> bool:
        """The run was the whole suite: the tests folder (or its parent), unfiltered."""
        paths = {Path(str(arg).split("::")[0]).resolve() for arg in config.args} or {self.suite}
        filtered = bool(config.getoption("keyword", "") or config.getoption("markexpr", "") or self.deselected)
        return paths in ({self.suite}, {self.suite.parent}) and not filtered

    def missing(self) -> list[str]:
        """Declared hooks that no test (in this process or any worker) called with an implementation."""
        return sorted(self.declared() - self.log.exercised() - self.from_workers)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        config = session.config
        if is_xdist_worker(config):  # the controller decides, on what every worker saw
            config.workeroutput[self.KEY] = sorted(self.log.exercised())  # type: ignore[attr-defined]  # set by pytest-xdist on workers
            config.workeroutput[f"{self.KEY}_deselected"] = self.deselected  # type: ignore[attr-defined]  # set by pytest-xdist on workers
            return
        if exitstatus != 0 or not self.whole_suite(config):
            return
        missing = self.missing()
        if missing:
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"FAILED: hooks no test exercised (called with an implementation): {', '.join(missing)}", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


class RunTally:
    """Counts summed over a whole pytest run, pytest-xdist workers included (a pytest plugin).

    ``tally.add("crash_points")`` from any test; register the object from ``pytest_configure``
    (``config.pluginmanager.register(tally)``). Each worker sends its counts to the controller at
    the end; the controller prints ``label: name=count, ...`` in the terminal summary.
    ``counts`` holds this process's counts (the run's totals in the controller).
    """

    def __init__(self, label: str, key: str | None = None) -> None:
        self.label = label
        self.key = key or "mdm_tally_" + "".join(c if c.isalnum() else "_" for c in label)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if is_xdist_worker(session.config):
            session.config.workeroutput[self.key] = dict(self.counts)  # type: ignore[attr-defined]  # set by pytest-xdist on workers

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        for name, n in getattr(node, "workeroutput", {}).get(self.key, {}).items():
            self.add(name, n)

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if self.counts and not is_xdist_worker(config):
            terminalreporter.write_line(f"{self.label}: " + ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())))


def declared_hooks(*modules: Any) -> set[str]:
    """The ``mdm_*`` hookspecs declared in these hookspec modules."""
    return {name for module in modules for name, obj in vars(module).items() if name.startswith("mdm_") and hasattr(obj, "mdm_spec")}


def payload_problems(name: str, payload: Mapping[str, Any], schema: type) -> list[str]:
    """How ``payload`` of the event ``name`` departs from its ``TypedDict`` ``schema`` (keys only)."""
    required: frozenset[str] = getattr(schema, "__required_keys__", frozenset())
    optional: frozenset[str] = getattr(schema, "__optional_keys__", frozenset())
    problems = [f"{name}: '{key}' missing ({schema.__name__})" for key in sorted(required - set(payload))]
    problems += [f"{name}: '{key}' is not in {schema.__name__}" for key in sorted(set(payload) - required - optional)]
    return problems
