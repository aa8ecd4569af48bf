"""The running host: configuration, plugins, database, events, locks and the scheduler.

Build one with ``create_host()``; nothing is created at import time, and each test builds
its own (``create_host(database_url="sqlite://", plugins=[...])``).
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pluggy

from mdm_core.config import Config, load_config, refuse_empty
from mdm_core.db import Database
from mdm_core.errors import PluginError, describe
from mdm_core.events import EventBus
from mdm_core.locks import DbLock
from mdm_core.plugins import PluginRecord, blocked_names, call_hook, call_isolated, call_per_plugin, get_plugin_manager, load_plugins
from mdm_core.repeats import Repeated, tell_counts
from mdm_core.scheduler import HostScheduler, JobState
from mdm_core.secrets import KEY_FILE_NAME, KeyMissing, SecretBox

if TYPE_CHECKING:
    from mdm_core.cluster import Cluster
    from mdm_core.db.migrate import HistoryState, Step

log = logging.getLogger(__name__)
RUN_DELIVERY_SLICE = 2.0  # seconds of event delivery per turn of `mdm run`'s loop (then the scheduler's turn)


class Host:
    """What plugins receive in every hook: ``host.config``, ``host.db``, ``host.events`` ..."""

    #: whether a database without tables (a new SQLite file, an empty PostgreSQL database) is
    #: created at first use: by a host built in code (tests, ``mdm demo``'s own) and by the
    #: ``mdm`` commands that create a site (``mdm db upgrade``); every other command refuses it
    #: in one line, exit 2 (a mistyped path: ``migrate.refuse_uninitialised``)
    creates_database: bool = True

    def __init__(
        self,
        config: Config,
        pm: pluggy.PluginManager,
        plugins: list[PluginRecord],
        *,
        database_url: str | None = None,
        unloaded: list[PluginRecord] | None = None,
        database_source: str | None = None,
    ):
        self.config = config
        self.pm = pm
        self.plugins = plugins  # the loaded ones
        self.unloaded = unloaded or []  # disabled by name, or broken (left out by `mdm`, see PluginRecord.error)
        self._database_source = database_source  # how messages say where a given database_url came from
        self._database_url = database_url
        self._scheduler: HostScheduler | None = None
        self.delivery_budget: float | None = config.core.delivery_budget  # None: deliver everything (mdm run)
        self.stop_event = threading.Event()
        self.key_file_warned = False  # the key file's loose permissions are said once per command
        self._retry_outage = Repeated(log, "failed deliveries could not be retried", "failed deliveries are retried again")

    # ------------------------------------------------------------------ resources

    @cached_property
    def unchecked_db(self) -> Database:
        """The database, opened without checking its schema (the ``mdm db`` commands use it)."""
        return Database(self._database_url or self.config.database_url, busy_timeout=self.config.core.sqlite_busy_timeout)

    @cached_property
    def db(self) -> Database:
        """The host's database, its schema checked against this release's migrations.

        A new, empty database is created by the migrations; one behind this release stops with
        a one-line ``SchemaBehind`` (``mdm db upgrade`` fixes it), one ahead with ``SchemaAhead``.
        The check only reads: it never takes the write lock.
        """
        from mdm_core.db.migrate import ensure_current

        ensure_current(self.unchecked_db, self.migration_sets(), notify=self._notify_database, check=self._refuse_uninitialised)
        return self.unchecked_db

    @contextmanager
    def database_as_it_is(self) -> Iterator[None]:
        """For the block, :attr:`db` is the database as it is, its schema not brought current:
        ``mdm status`` calls the plugins' status hooks on a database where a plugin's tables are
        not made yet, and creates nothing (a hook reading those tables fails as any query would)."""
        checked = "db" in self.__dict__
        if not checked:
            self.__dict__["db"] = self.unchecked_db
        try:
            yield
        finally:
            if not checked:
                del self.__dict__["db"]  # the next use checks the schema, as before the block

    def _refuse_uninitialised(self, states: Sequence[HistoryState]) -> None:
        """Refuse a database without tables unless this host :attr:`creates_database`: what the
        schema check at first use and :meth:`upgrade_database` both ask first."""
        from mdm_core.db.migrate import refuse_uninitialised

        if not self.creates_database:
            refuse_uninitialised(self.unchecked_db, states, self.database_source)

    @property
    def database_source(self) -> str:
        """Where the database URL comes from, for messages (``from MDM_DATABASE_URL``, ...)."""
        if self._database_url is None:
            return self.config.database_source
        return self._database_source or "given to this host"

    def _notify_database(self, message: str) -> None:
        """Say on stderr that a database (or a plugin's tables) was created, and where the URL
        came from, so that a mistyped path or a configuration outside conf/ is noticed."""
        import sys

        if message.startswith(("created new database", "created the tables in empty database")):
            message += f" ({self.database_source})"
        print(f"mdm: {message}", file=sys.stderr, flush=True)

    def upgrade_database(self, on_step: Callable[[Step], None] | None = None, notify: Callable[[str], None] | None = None) -> list[Step]:
        """Apply pending migrations (``mdm db upgrade``; ``[core] auto_upgrade`` at ``mdm run``),
        each step told to ``on_step`` as it is applied, then a new database (or plugins' first
        tables) told to ``notify`` (``migrate.created_note``); returns the steps. Refused while
        another ``mdm run`` runs on the database (see ``refuse_upgrade_while_running``)."""
        from mdm_core.cluster import refuse_upgrade_while_running
        from mdm_core.db.migrate import bring_current

        db = self.unchecked_db

        def check(states: Sequence[HistoryState], new_file: bool) -> None:
            self._refuse_uninitialised(states)  # `mdm run` with auto_upgrade: it upgrades a site, never makes one
            if not new_file:
                refuse_upgrade_while_running(db, states)

        steps = bring_current(db, self.migration_sets(), check, on_step=on_step, notify=notify)
        self.__dict__["db"] = db
        return steps

    @cached_property
    def events(self) -> EventBus:
        """The outbox: ``host.events.record(session, name, payload)``."""
        return EventBus(self.db, self.pm, self)

    def _configured_secret_key(self) -> str:
        """The key ``[core] secret_key`` refers to; a reference that does not resolve is one line
        naming the file and the key (was: the variable or file alone, as if from nowhere)."""
        from mdm_core.errors import ConfigError

        ref = self.config.core.secret_key
        assert ref is not None  # not a key file: [core] secret_key is set
        try:
            return ref.resolve(self.config)
        except ConfigError as exc:
            raise ConfigError(f"{self.config.source}: [core] secret_key: {exc}") from None

    @cached_property
    def secrets(self) -> SecretBox:
        """Encryption for secrets stored in the database.

        The key file is created on first use, but never while the database holds secrets:
        those were encrypted with the key that is missing, so a new one would silently make
        them unreadable (``KeyMissing`` says how to restore it instead)."""
        source = self.secret_key_source()
        if source != "key file":
            material = self.config.environ.get("MDM_SECRET_KEY") or self._configured_secret_key()
            return SecretBox(material)
        path = self.config.var_dir / KEY_FILE_NAME
        if not path.exists():
            stored = self.stored_secrets()
            if stored:
                from mdm_core.secrets import token_again

                raise KeyMissing(
                    f"the secret key file {path} is missing, but the database holds {stored} secret(s) encrypted with it: "
                    "restore the file from a backup (or set MDM_SECRET_KEY to that key); if the key is lost, run "
                    f"`mdm secrets new-key`, then enter each token again with {token_again(True)}"  # the new key reads none
                )
        box = SecretBox.from_key_file(path)
        self.warn_key_file_exposure()
        return box

    def key_file_exposure(self) -> str | None:
        """The line saying the key file is open to other users (mode 0644, say), else None."""
        if self.secret_key_source() != "key file":
            return None
        path = self.config.var_dir / KEY_FILE_NAME
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:  # not there (yet): nothing to say here
            return None
        if not mode & 0o077:
            return None
        return f"the secret key file {path} is open to other users (mode {mode:04o}): run chmod 600 {path}"

    def warn_key_file_exposure(self) -> None:
        """Say :meth:`key_file_exposure` on stderr, once per command; the key is still used."""
        if self.key_file_warned:
            return
        message = self.key_file_exposure()
        if message:
            self.key_file_warned = True
            print(f"mdm: warning: {message}", file=sys.stderr, flush=True)

    def secret_key_source(self) -> str:
        """Where the key comes from: ``MDM_SECRET_KEY``, ``[core] secret_key`` or ``key file``.

        ``MDM_SECRET_KEY`` set but empty (a failed secret lookup in a deploy script) is a
        ``ConfigError``, never a silent fall back to the next source."""
        value = self.config.environ.get("MDM_SECRET_KEY")
        fallback = "[core] secret_key" if self.config.core.secret_key is not None else f"the key file {self.config.var_dir / KEY_FILE_NAME}"
        refuse_empty(self.config.environ, "MDM_SECRET_KEY", "the key", fallback)
        if value:
            return "MDM_SECRET_KEY"
        return "[core] secret_key" if self.config.core.secret_key is not None else "key file"

    def secret_columns(self) -> list[Any]:
        """Every column of the enabled plugins' tables that holds encrypted secrets."""
        from mdm_core.secrets import secret_columns

        return secret_columns(t for s in self.migration_sets() for t in s.tables)

    def stored_secrets(self, *, unchecked: bool = False) -> int:
        """How many encrypted secrets the database holds (reads only); ``unchecked``: on a
        database whose schema is not checked first (one behind this release, ``mdm db backup``)."""
        from sqlalchemy import func, select

        count = 0
        with (self.unchecked_db if unchecked else self.db).session() as session:
            for column in self.secret_columns():
                count += session.execute(select(func.count()).select_from(column.table).where(column.is_not(None), column != "")).scalar_one()
        return count

    def migration_sets(self) -> list[Any]:
        """Every migration history of the enabled plugins, in dependency order (the core's first),
        each with the model tables of its plugin.

        The core's history holds every ``core_`` table, even when the built-in inventory plugin
        is disabled. A plugin that registers tables without migrations is an error.
        """
        from mdm_core.db.migrate import MigrationSet, core_migration_set, order, with_tables
        from mdm_core.models import CORE_TABLES

        core = core_migration_set(CORE_TABLES)
        tables_by_plugin = self._results_by_plugin("mdm_register_tables")
        sets: dict[str, MigrationSet] = {}
        for plugin, result in self._results_by_plugin("mdm_register_migrations").items():
            if result is None:
                continue
            if not isinstance(result, MigrationSet):
                raise PluginError(f"plugin '{plugin}': mdm_register_migrations returned {result!r}, not a MigrationSet")
            sets[plugin] = result
        for plugin, tables in tables_by_plugin.items():
            for table in tables or []:
                if getattr(table, "__table__", None) is None:
                    raise PluginError(f"mdm_register_tables returned {table!r}, which is not an SQLModel class with table=True")
            own = [t for t in tables or [] if t not in core.tables]
            if own and plugin not in sets:
                names = ", ".join(t.__tablename__ for t in own)
                raise PluginError(
                    f"plugin '{plugin}' registers tables ({names}) but no migrations: return a MigrationSet from "
                    "mdm_register_migrations (README, Writing a plugin)"
                )
            if own:
                sets[plugin] = with_tables(sets[plugin], own)
        return order([core, *sets.values()])

    def _results_by_plugin(self, hook_name: str) -> dict[str, Any]:
        """Call a no-argument registration hook per implementation: {plugin name: result}."""
        return call_per_plugin(self.pm, hook_name)

    @cached_property
    def cluster(self) -> Cluster:
        """The hosts sharing this database (``mdm run`` joins it): who is alive, who owns which
        share of the work (:mod:`mdm_core.cluster`)."""
        from mdm_core.cluster import Cluster

        return Cluster(self.db)

    def lock(self, name: str, *, ttl: float = 600.0) -> DbLock:
        """A lock shared by every process on this database."""
        return DbLock(self.db, name, ttl=ttl)

    def hook(self, name: str) -> Any:
        """The caller of a hook, or ``None`` when no plugin declares it."""
        return getattr(self.pm.hook, name, None)

    # ------------------------------------------------------------------ events

    def deliver_events(self) -> int:
        """Deliver what the outbox holds, within ``delivery_budget`` seconds (``[core]
        delivery_budget`` for a command, none for ``mdm run``); returns how many were delivered."""
        return self.events.deliver_pending(budget=self.delivery_budget)

    # ------------------------------------------------------------------ scheduler

    @property
    def scheduler(self) -> HostScheduler:
        """The host's one scheduler, with every plugin's jobs registered."""
        if self._scheduler is None:
            self._scheduler = self.build_scheduler()
        return self._scheduler

    def build_scheduler(self, *, inline: bool = False) -> HostScheduler:
        """A scheduler with every plugin's jobs (``inline`` runs jobs on the caller's thread)."""
        from mdm_core import housekeeping
        from mdm_core.job_lock import running_alone

        scheduler = HostScheduler(
            workers=self.config.core.workers,
            inline=inline,
            on_finish=self._record_job,
            history=self._job_last_started,
            guard=lambda state: running_alone(self.db, state.name),  # once across hosts and processes
            plans_depend_on=self._live_hosts,  # a host gone or come: its share moves, planned again
        )
        call_hook(self.pm, "mdm_register_jobs", scheduler=scheduler, host=self)
        housekeeping.register(scheduler, self)
        if self._scheduler is not None and self._scheduler is not scheduler:
            self._scheduler.shutdown(wait=True)
        self._scheduler = scheduler
        return scheduler

    def _live_hosts(self) -> tuple[str, ...] | None:
        """The live hosts of this database once this process has joined them (``mdm run``):
        who owns which account, so when each host plans its sync; ``None`` before."""
        if self.cluster.holder is None:
            return None
        return tuple(self.cluster.members())

    def _job_last_started(self, name: str) -> Any:
        """When job ``name`` last started on this database (by any process), or ``None``."""
        from mdm_core.models import JobRun

        with self.db.session() as session:
            row = session.get(JobRun, name)
            return row.last_started_at if row is not None else None

    def _record_job(self, state: JobState, error: BaseException | None) -> None:
        from mdm_core.job_lock import running_holder
        from mdm_core.models import JobRun, utcnow

        holder = running_holder()  # the job lock's holder (this process on this host), or one naming them

        def work(session: Any) -> None:
            row = session.get(JobRun, state.name) or JobRun(name=state.name, plugin=state.plugin)
            row.last_started_at = state.last_started_at or utcnow()
            row.last_finished_at = utcnow()
            row.last_error = state.last_error
            row.last_note = state.note()
            row.last_holder = holder
            row.runs = (row.runs or 0) + 1
            row.failures = (row.failures or 0) + (1 if error else 0)
            session.add(row)

        self.db.run_write(work)

    # ------------------------------------------------------------------ run

    def start(self) -> None:
        """Check the schema (upgrading it with ``[core] auto_upgrade``), deliver what a crash
        left in the outbox, deliver again the events of subscribers that failed and whose turn
        has come or that waited for a start (a plugin enabled again), and call ``mdm_startup``."""
        if self.config.core.auto_upgrade and "db" not in self.__dict__:
            self.upgrade_database(on_step=lambda step: log.warning("database upgraded: %s", step.describe()), notify=self._notify_database)
        _ = self.db
        self.deliver_events()
        self._retry_failed_deliveries(at_start=True)
        call_hook(self.pm, "mdm_startup", host=self)

    def _retry_failed_deliveries(self, *, at_start: bool = False) -> None:
        try:
            delivered, failed = self.events.retry_due(at_start=at_start)
        except Exception as exc:  # a busy or unreachable database must not stop the host
            self._retry_outage.failed(describe(exc))
            return
        self._retry_outage.succeeded()
        if delivered or failed:
            log.info("failed deliveries retried: %d delivered, %d failed again", delivered, failed)

    def shutdown(self) -> None:
        """Stop the scheduler after running jobs finish, then call ``mdm_shutdown``."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
        if "db" in self.__dict__:
            try:  # what the last jobs recorded is delivered now, not at the next start
                self.deliver_events()
            except Exception as exc:
                log.error("could not deliver pending events at shutdown: %s", describe(exc))
        call_isolated(
            self.pm,
            self.pm.hook.mdm_shutdown,
            {"host": self},
            on_error=lambda plugin, exc: log.error("plugin %s failed at shutdown: %s", plugin, describe(exc)),
        )

    def run(self, *, max_sleep: float = 1.0, install_signal_handlers: bool = True, on_start: Any = None) -> None:
        """Run the scheduler loop until SIGINT/SIGTERM or ``stop_event``; sleep until the next job.

        ``on_start()`` is called once the host has started and its jobs are planned (``mdm run``
        prints its banner there)."""
        previous: dict[signal.Signals, Any] = {}
        if install_signal_handlers:  # before start-up, so that an early SIGTERM also stops cleanly
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda *_: self.stop_event.set())
        # a backlog is delivered in slices between the scheduler's turns, all of it in the end
        self.delivery_budget = RUN_DELIVERY_SLICE
        # an outage fails every turn: told once, and when it ends (mdm_core.repeats)
        delivery_outage = Repeated(log, "event delivery failed", "event delivery works again")
        try:
            self.start()
            self.cluster.join()  # before the jobs are planned: they ask who owns what
            scheduler = self.scheduler
            log.info("host running with %d job(s)", len(scheduler.jobs))
            if on_start is not None:
                on_start()
            try:
                while not self.stop_event.is_set():
                    scheduler.run_pending()
                    try:
                        self.deliver_events()
                    except Exception as exc:  # a busy or unreachable database must not stop the host
                        delivery_outage.failed(describe(exc))
                    else:
                        delivery_outage.succeeded()
                    self._retry_failed_deliveries()
                    tell_counts()  # a burst of refusals followed by silence: its count once its window ends
                    idle = 0.0 if self.events.left_behind else scheduler.idle_seconds()
                    self.stop_event.wait(max_sleep if idle is None else min(max(idle, 0.05), max_sleep))
            finally:
                log.info("stopping: waiting for running jobs")
                self.shutdown()
                self.cluster.leave()
                tell_counts(every=True)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def close(self) -> None:
        """Stop the scheduler's workers (if any) and release the database connections."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
        if "unchecked_db" in self.__dict__:
            self.unchecked_db.dispose()


def create_host(
    config_path: str | os.PathLike[str] | None = None,
    *,
    config: Config | None = None,
    environ: Mapping[str, str] | None = None,
    database_url: str | None = None,
    plugins: Iterable[Any] | None = None,
    autoload: bool | None = None,
    tolerate_broken: bool = False,
) -> Host:
    """Load the configuration and the plugins, validate every plugin's section, configure them.

    ``tolerate_broken`` (the ``mdm`` command): a plugin that cannot be loaded is left out and
    listed in ``host.unloaded`` as broken instead of stopping here.
    """
    environ = os.environ if environ is None else environ
    config = config or load_config(config_path, environ)
    pm = get_plugin_manager()
    everything = load_plugins(pm, config, environ, given=plugins, autoload=autoload, tolerate_broken=tolerate_broken)
    records = [r for r in everything if r.state == "enabled"]
    known = {"core", "plugins"}
    for sections in call_hook(pm, "mdm_config_sections"):
        for name, schema in (sections or {}).items():
            config.section(name, schema)
            known.add(name)
    config.check_unknown_sections(known | {r.name for r in everything} | blocked_names(config, environ))
    host = Host(config, pm, records, database_url=database_url, unloaded=[r for r in everything if r.state != "enabled"])
    call_hook(pm, "mdm_configure", historic=True, host=host)
    return host
