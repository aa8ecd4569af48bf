"""``mdm status``: which database is in use, its schema, the plugins, each plugin's own rows
(accounts, ...) and the jobs; what needs attention (problems: exit 1; warnings: exit
unchanged); and the one-line banner ``mdm run`` prints when it starts.

Nothing here creates or upgrades a database: a missing SQLite file is reported as such (an
in-memory one, new in every process, is made as every command makes it, with a warning).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mdm_core.errors import MdmError, PluginError

if TYPE_CHECKING:
    from mdm_core.db.engine import Database
    from mdm_core.host import Host

log = logging.getLogger(__name__)


def collect_status(host: Host) -> dict[str, Any]:
    """Everything ``mdm status`` shows, as plain values."""
    from mdm_core.cli import plugin_rows
    from mdm_core.db.migrate import History, SchemaAhead, read_states, schema_refusal, uninitialised, uninitialised_message
    from mdm_core.plugins import core_version

    db = host.unchecked_db
    status: dict[str, Any] = {
        "version": core_version(),
        "config": str(host.config.path) if host.config.path else None,
        "database": {"url": db.describe(), "source": host.database_source, "exists": not db.is_missing_file, "schema": None, "pending": []},
        "plugins": [{k: r[k] for k in ("name", "version", "source", "state", "error")} for r in plugin_rows(host)],
        "sections": {},
        "jobs": [],
        "problems": [],
        "warnings": [],
        "notes": [],  # neither problem nor warning: a plugin's tables made at its first use
    }
    unknown = [p["name"] for p in status["plugins"] if p["source"] == "configuration"]  # disabled names no plugin has
    if unknown:
        installed = ", ".join(sorted(p["name"] for p in status["plugins"] if p["source"] != "configuration"))
        status["warnings"].append(
            f"[plugins] disabled or MDM_DISABLED_PLUGINS names {', '.join(repr(n) for n in unknown)}, which no installed plugin is "
            f"(installed: {installed}): a typo? the plugin meant is not disabled; correct the name"
        )
    try:
        exposure = host.key_file_exposure()
    except MdmError as exc:  # MDM_SECRET_KEY set but empty: every command that needs the key stops on it
        status["problems"].append(str(exc))
    else:
        if exposure:
            status["warnings"].append(exposure)
            host.key_file_warned = True  # said here: not again on stderr when a plugin's status reads the key
    if db.in_memory:  # new in every process: made as every command makes it (nothing lasts), its status an empty one's
        host.db  # noqa: B018 (the schema check makes the tables)
        status["warnings"].append(in_memory_warning(db))
    try:
        states = read_states(db, [History(s) for s in host.migration_sets()])  # a missing SQLite file: not created, all "new"
    except MdmError as exc:
        status["database"]["schema"] = "unreachable"
        status["problems"].append(str(exc))
        return status
    if uninitialised(db, states):  # no tables: the line every other command refuses it with, as `mdm db status` says
        status["database"]["schema"] = "new"
        status["problems"].append(uninitialised_message(db, host.database_source))
        return status
    refusal = schema_refusal(states)  # the rule of every command and `mdm db status`
    if refusal is not None:
        status["database"]["schema"] = "ahead" if isinstance(refusal, SchemaAhead) else "behind"
        status["database"]["pending"] = [f"{s.name} {p}" for s in states for p in s.pending]
        status["problems"].append(str(refusal))  # the next step, as every command says it
        return status
    status["database"]["schema"] = "current"
    first_use = {s.name for s in states if s.state == "new"}  # made by the next command that uses the database, not by this one
    status["notes"].extend(f"plugin {name}: its tables are made at its first use" for name in sorted(first_use))
    with host.database_as_it_is():  # a plugin's hook reading host.db creates no table
        _plugins_and_jobs(host, status, first_use)
    return status


def _plugins_and_jobs(host: Host, status: dict[str, Any], first_use: set[str]) -> None:
    """Add the plugins' sections, lines needing attention and the jobs to ``status``; the hooks of
    the plugins in ``first_use`` (no tables yet, so no rows) are left out."""
    from mdm_core.failed_deliveries import failed_subscribers, installed_plugins, uninstalled_subscribers
    from mdm_core.plugins import call_per_plugin

    db = host.unchecked_db
    here = installed_plugins(host)
    status["warnings"].extend(f.line() for f in failed_subscribers(db) if f.plugin in here)
    status["warnings"].extend(u.line() for u in uninstalled_subscribers(db, here))
    for name, result in call_per_plugin(host.pm, "mdm_status", isolate=True, skip=first_use, host=host).items():
        if isinstance(result, Exception):
            status["problems"].append(f"plugin '{name}' cannot tell its status: {_failure(result)}")
            continue
        for section, rows in (result or {}).items():
            status["sections"][section] = list(rows)
    for name, result in call_per_plugin(host.pm, "mdm_status_attention", isolate=True, skip=first_use, host=host).items():
        _add_attention(status, name, result)
    try:
        scheduler = host.build_scheduler(inline=True)
        status["jobs"] = [
            {"name": n, "plugin": j.plugin, "every_seconds": j.seconds, "next_run": scheduler.next_run(n)} for n, j in sorted(scheduler.jobs.items())
        ]
    except MdmError as exc:
        status["problems"].append(f"jobs cannot be planned: {exc}")


def in_memory_warning(db: Database) -> str:
    """The line saying that ``db`` is an in-memory database: every command starts with an empty one."""
    return (
        f"database {db.describe()} is in memory: every mdm command starts with an empty one, and what it writes is gone when it ends; "
        "set [core] database_url or MDM_DATABASE_URL to a file or a PostgreSQL database"
    )


def _failure(exc: Exception) -> str:
    """A plugin's failure without the ``plugin 'x' failed in hook:`` its message starts with."""
    return str(exc).split(": ", 1)[-1] if isinstance(exc, PluginError) else str(exc)


def _add_attention(status: dict[str, Any], plugin: str, result: Any) -> None:
    """Add one plugin's ``mdm_status_attention`` lines to ``status``; a failure, or a value of
    another shape, is one problem naming the plugin."""
    if isinstance(result, Exception):
        status["problems"].append(f"plugin '{plugin}' cannot tell what needs attention: {_failure(result)}")
        return
    if result is None:
        return
    if (
        not isinstance(result, dict)
        or not set(result) <= {"problems", "warnings"}
        or not all(isinstance(lines, list) and all(isinstance(line, str) for line in lines) for lines in result.values())
    ):
        status["problems"].append(
            f"plugin '{plugin}' returned an unexpected value from mdm_status_attention: "
            'expected {"problems": [lines], "warnings": [lines]} (a bug in the plugin: tell its authors)'
        )
        return
    for key in ("problems", "warnings"):
        status[key].extend(result.get(key, []))


def banner(host: Host) -> str:
    """The line ``mdm run`` prints when it starts: version, database, schema, plugins, jobs."""
    from mdm_core.plugins import core_version

    disabled = [r.name for r in host.unloaded]
    jobs = len(host.scheduler.jobs)
    return (
        f"mdm-host {core_version()} running on database {host.db.describe()} ({host.database_source}), "
        f"schema current, configuration {host.config.source}; {len(host.plugins)} plugins"
        + (f" ({len(disabled)} disabled: {', '.join(disabled)})" if disabled else "")
        + f", {jobs} jobs"
    )
