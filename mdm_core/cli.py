"""The ``mdm`` command. Plugins add subcommands through ``mdm_register_cli``.

Exit codes: 0 success, 1 failure, 2 usage error. Errors are one line on stderr; ``-v`` adds
the traceback of unexpected ones.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import thread as futures_thread
from typing import Any

from mdm_core import interrupts
from mdm_core.db.errors import database_error, is_database_error
from mdm_core.errors import MdmError, PluginError
from mdm_core.host import Host, create_host
from mdm_core.output import TIME_FORMAT, print_json, print_table, say, set_quiet
from mdm_core.plugins import PerPluginSet, PluginRecord, call_hook, core_version, hooks_of
from mdm_core.text import bad_character, shown

log = logging.getLogger("mdm")
#: what still works while a plugin is broken (``--help`` too): enough to see and fix it
USABLE_WITH_BROKEN_PLUGINS = ("plugins", "hooks")


#: the namespace attribute naming the (sub)command parser that was given unknown arguments
_UNKNOWN_OWNER = "_mdm_unknown_arguments_of"


class _Parser(argparse.ArgumentParser):
    """argparse with our error format (one line, exit 2). Options are never abbreviated
    (`--devices SERIAL` is not taken for `--devices-file`), and unknown arguments are reported
    by the command they were given to, with the option meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """argparse's, noting the innermost command that left arguments unknown."""
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and not hasattr(namespace, _UNKNOWN_OWNER):
            setattr(namespace, _UNKNOWN_OWNER, self)
        return namespace, extras

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """argparse's, with unknown arguments reported by their command: `mdm users list:
        error: unrecognized arguments: --jsn: did you mean --json? (see mdm users list --help)`."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = getattr(namespace, _UNKNOWN_OWNER, self)
            owner.error(f"unrecognized arguments: {' '.join(extras)}{owner.meant(extras)}")
        return namespace

    def meant(self, extras: list[str]) -> str:
        """``: did you mean --json?`` for the first unknown option close to one of ours."""
        import difflib

        given = next((a.split("=", 1)[0] for a in extras if a.startswith("--")), None)
        ours = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        close = difflib.get_close_matches(given, ours, n=2, cutoff=0.75) if given else []
        return f": did you mean {' or '.join(close)}?" if close else ""


def _global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="configuration file (default: MDM_CONFIG or conf/mdm.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors: successes print nothing")
    parser.add_argument("--version", action="version", version=f"mdm-host {core_version()}", help="print the version and exit")


def build_parser(host: Host) -> argparse.ArgumentParser:
    """The full parser: global options, core commands, then every plugin's."""
    parser = _Parser(
        prog="mdm",
        description="A small pluggable MDM host with Apple Apps and Books (VPP) support.",
        epilog="Try `mdm demo` (everything against a local simulator). Each command has --help. Exit codes: 0 success, 1 failure, 2 usage error.",
    )
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    plugins = sub.add_parser(
        "plugins",
        help="list plugins: enabled, disabled and broken",
        description="Each plugin's name, version, source, state (enabled, disabled, broken) and hooks; a broken plugin's error.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(func=cmd_plugins)

    hooks = sub.add_parser("hooks", help="list every hook with its documentation")
    hooks.add_argument("--json", action="store_true", help="print JSON")
    hooks.set_defaults(func=cmd_hooks)

    run = sub.add_parser("run", help="run the host: start-up hooks, the scheduler and the web console until SIGINT/SIGTERM")
    run.add_argument("--listen", metavar="HOST:PORT", help="where the web console listens (default [web] listen, 127.0.0.1:8080; port 0 picks a free one)")
    run.add_argument("--no-web", action="store_true", help="run the scheduler only, without the web console")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser(
        "status",
        help="the database in use, its schema, plugins, accounts and jobs",
        description="What this host would run on: the configuration and database in use (and where its URL comes from), "
        "the schema state, every plugin (disabled and broken ones too), each plugin's status rows (VPP accounts) and the jobs "
        "with their next runs. Creates nothing. Exit 1 when something needs attention.",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)

    from mdm_core import events_cli, jobs_cli, secrets_cli
    from mdm_core.db import cli as db_cli

    jobs_cli.register(sub)
    db_cli.register(sub)
    events_cli.register(sub)
    secrets_cli.register(sub)

    call_hook(host.pm, "mdm_register_cli", subparsers=sub, host=host)
    return parser


#: the parser of a host's plugins, built once per process for the same plugins: building it
#: costs ~10 ms, paid by each in-process command otherwise; parsing leaves it unchanged
parser_for = PerPluginSet(build_parser)


def _plugin_row(record: PluginRecord, hooks: list[str], error: str | None) -> dict[str, Any]:
    return {
        "name": record.name,
        "version": record.version,
        "source": record.source,
        "state": record.state,
        "module": record.module,
        "hooks": hooks,
        "error": error,
    }


def plugin_rows(host: Host) -> list[dict[str, Any]]:
    """Every plugin: the loaded ones, then the disabled and broken ones."""
    rows = []
    for record in host.plugins:
        rows.append(_plugin_row(record, hooks_of(host.pm, host.pm.get_plugin(record.name)), None))
    for record in host.unloaded:
        rows.append(_plugin_row(record, [], record.error))
    return rows


def cmd_plugins(host: Host, args: argparse.Namespace) -> int:
    """``mdm plugins``"""
    rows = plugin_rows(host)
    if args.json:
        print_json(rows)
        return 0
    print_table(rows, ["name", "version", "source", "state", "module", "hooks"])
    for row in rows:
        if row["error"]:
            print(f"{row['name']}: {row['error']}")
    return 0


def hook_docs(host: Host) -> list[dict[str, Any]]:
    """Every declared hook with its docstring and the plugins implementing it."""
    rows = []
    for name in sorted(n for n in dir(host.pm.hook) if n.startswith("mdm_")):
        caller = getattr(host.pm.hook, name)
        if caller.spec is None:
            continue
        doc = inspect.cleandoc(caller.spec.function.__doc__ or "")
        opts = caller.spec.opts
        rows.append(
            {
                "name": name,
                "args": list(caller.spec.argnames),
                "historic": bool(opts.get("historic")),
                "firstresult": bool(opts.get("firstresult")),
                "doc": doc,
                "implemented_by": [host.pm.get_name(i.plugin) for i in caller.get_hookimpls()],
            }
        )
    return rows


def cmd_hooks(host: Host, args: argparse.Namespace) -> int:
    """``mdm hooks``"""
    rows = hook_docs(host)
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        flags = [f for f in ("historic", "firstresult") if row[f]]
        print(f"{row['name']}({', '.join(row['args'])})" + (f"  [{', '.join(flags)}]" if flags else ""))
        for line in row["doc"].splitlines():
            print(f"    {line}")
        print(f"    implemented by: {', '.join(row['implemented_by']) or '(none)'}\n")
    return 0


def cmd_run(host: Host, args: argparse.Namespace) -> int:
    """``mdm run``: the scheduler, and the web console beside it unless ``--no-web``."""
    from mdm_core.status import banner

    servers: list[Any] = []
    web = not args.no_web and host.pm.has_plugin("web")
    if web:
        from mdm_core.web.access import web_settings
        from mdm_core.web.settings import parse_listen

        listen = args.listen or web_settings(host).listen
        parse_listen(listen)  # a bad address stops here, before anything starts

    def on_start() -> None:
        say(banner(host), out=sys.stderr)
        if web:  # once the schema is checked (or upgraded) and the jobs are planned
            from mdm_core.web.server import WebServer

            servers.append(WebServer(host, listen).start())
            print(f"web console at {servers[0].url} (sign in as an admin: `mdm admins add NAME`)", file=sys.stderr, flush=True)

    host.warn_key_file_exposure()  # (an empty MDM_SECRET_KEY stops here, before anything starts)
    try:
        host.run(on_start=on_start)
    finally:
        for server in servers:
            server.stop()
    return 0


def cmd_status(host: Host, args: argparse.Namespace) -> int:
    """``mdm status``"""
    from mdm_core.status import collect_status

    status = collect_status(host)
    if args.json:
        print_json(status)
        return 1 if status["problems"] else 0
    db = status["database"]
    print(f"mdm-host {status['version']}")
    print(f"configuration: {status['config'] or 'none (built-in defaults)'}")
    print(f"database:      {db['url']} ({db['source']})")
    print(f"schema:        {db['schema']}" + (f" (pending: {', '.join(db['pending'])})" if db["pending"] else ""))
    print("\nplugins:")
    print_table(status["plugins"], ["name", "version", "source", "state"])
    for name, rows in status["sections"].items():
        print(f"\n{name}:")
        print_table(rows, list(rows[0]) if rows else [], empty="(none)")
    if status["jobs"]:
        print("\njobs:")
        print_table(status["jobs"], ["name", "plugin", "every_seconds", "next_run"])
    for plugin in status["plugins"]:
        if plugin["error"] and plugin["state"] == "broken":
            print(f"\n{plugin['name']}: {plugin['error']}")
    for note in status["notes"]:
        print(f"\nnote: {note}")
    for warning in status["warnings"]:
        print(f"\nwarning: {warning}")
    for problem in status["problems"]:
        print(f"\nattention: {problem}")
    return 1 if status["problems"] else 0


def setup_logging(verbose: int, quiet: bool, default: str = "WARNING") -> None:
    """-q: errors; -v: info; -vv: debug; otherwise ``default`` (``[core] log_level``)."""
    level = logging.ERROR if quiet else logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.getLevelName(default.upper())
    root = logging.getLogger()
    root.setLevel(level)
    handler = next((h for h in root.handlers if getattr(h, "mdm_cli", False)), None)
    if handler is None:  # keep other handlers (pytest's caplog, an embedding application's)
        handler = logging.StreamHandler(sys.stderr)
        handler.mdm_cli = True  # type: ignore[attr-defined]  # our mark on the handler, found again by getattr above
        handler.setFormatter(utc_log_formatter())
        root.addHandler(handler)
    handler.stream = sys.stderr  # type: ignore[attr-defined]  # (setStream would flush a closed one)
    handler.setLevel(level)
    for chatty in ("urllib3", "alembic"):  # connection and set-up chatter (our own lines say what ran): -vv only
        logging.getLogger(chatty).setLevel(logging.WARNING if level > logging.DEBUG else logging.NOTSET)


def utc_log_formatter() -> logging.Formatter:
    """Log lines stamped like every other time shown: ``2026-11-28 04:37:29 UTC``."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt=TIME_FORMAT)
    formatter.converter = time.gmtime
    return formatter


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mdm`` console script.

    SIGINT and SIGTERM stop a command cleanly (:mod:`mdm_core.interrupts`): what it was
    writing is rolled back, its locks released, and it exits with 130. Run as the console
    script (``argv`` None), it then exits at once, without waiting for requests still in
    flight in worker threads; so does a command that ended otherwise (a sync that failed while
    a page was being fetched), once it has closed: nothing reads those answers any more."""
    if argv is not None:
        return _main(list(argv))
    # the console script: the signals stay handled until the process ends, so that one that
    # comes before the command began or while it closes (a second Ctrl-C) ends it with 130 at
    # once too, not with a traceback and an interpreter that waits for requests in flight
    with interrupts.handled():
        said = len(_said)
        try:
            code = _main(sys.argv[1:])
        except KeyboardInterrupt as exc:  # as mdm closed (a second Ctrl-C): the first one's line stays the last
            code = 130 if len(_said) > said else _interrupted(exc)
        if code == 130 or _left_running():
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(BaseException):
                    stream.flush()
            with contextlib.suppress(BaseException):
                logging.shutdown()
            os._exit(code)
    return code


def _left_running() -> bool:
    """Whether threads the command started still run once it has ended that the interpreter's
    exit would wait for (each up to its request's timeout, for answers nobody reads): a thread
    that is not a daemon, or a thread pool's worker (joined at exit even when a daemon thread
    started its pool, and so a daemon itself). Daemon threads that exit never waits for (the
    signal watcher of :mod:`mdm_core.interrupts`) do not count: a command that ended with them
    alone exits as Python does, running its ``atexit`` handlers."""
    workers = set(getattr(futures_thread, "_threads_queues", {}))  # (CPython's registry of them)
    return any(t.is_alive() and (not t.daemon or t in workers) for t in threading.enumerate() if t is not threading.main_thread())


#: the lines :func:`_interrupted` printed: one that came while mdm closed after a command it
#: stopped says nothing more (its generic "rolled back" line ended the output, not what stopped)
_said: list[str] = []


def _interrupted(exc: KeyboardInterrupt) -> int:
    """Say what the interruption ``exc`` stopped; the exit code, 130."""
    name = getattr(exc, "args", None) and exc.args[0] or "SIGINT"
    _said.append(f"mdm: interrupted ({name}): {interrupts.stopped(exc)}")
    print(_said[-1], file=sys.stderr)
    return 130


def _main(argv: list[str]) -> int:
    for place, arg in enumerate(argv, 1):
        what = bad_character(arg)
        if what is not None:  # bytes that are not UTF-8 (Python made surrogates of them): never stored, never sent
            print(f"mdm: error: argument {place} {shown(arg)} holds {what}: give it as UTF-8 text", file=sys.stderr)
            return 2
    pre = _Parser(prog="mdm", add_help=False)
    _global_options(pre)
    try:
        early, _ = pre.parse_known_args(argv)
    except SystemExit as exc:  # `--config` without a value: one line, exit 2
        return _exit_code(exc)
    setup_logging(early.verbose, early.quiet)
    set_quiet(early.quiet)
    host = None
    try:
        with interrupts.handled():
            host = create_host(early.config, tolerate_broken=True)
            setup_logging(early.verbose, early.quiet, host.config.core.log_level)
            parser = parser_for(host)
            args = parser.parse_args(argv)
            broken = [r for r in host.unloaded if r.state == "broken"]
            if broken and args.command not in USABLE_WITH_BROKEN_PLUGINS:
                raise PluginError(broken[0].error or f"plugin '{broken[0].name}' is broken")
            host.creates_database = bool(getattr(args, "creates_database", False))  # `mdm db upgrade`'s parser sets it
            code = int(args.func(host, args) or 0)
            _undelivered_notice(host)
            return code
    except MdmError as exc:
        print(f"mdm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # --help, or argparse's one-line usage error (exit 2)
        return _exit_code(exc)
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except BrokenPipeError:  # `mdm ... | head`
        sys.stderr.close()
        return 0
    except Exception as exc:
        if is_database_error(exc):  # one line naming the database and what to check: never SQL or its values
            if early.verbose >= 2:
                log.debug("database error", exc_info=True)
            db = host.__dict__.get("unchecked_db") if host is not None else None
            print(f"mdm: error: {database_error(exc, db)}", file=sys.stderr)
            return 1
        if early.verbose:
            log.exception("unexpected error")
        print(f"mdm: error: {type(exc).__name__}: {' '.join(str(exc).split())} (run with -v for details)", file=sys.stderr)
        return 1
    finally:
        if host is not None:
            host.close()


def _undelivered_notice(host: Host) -> None:
    """A command delivers events for ``[core] delivery_budget`` seconds at most: say what is left."""
    bus = host.__dict__.get("events")
    if bus is None or not bus.left_behind:
        return
    waiting = bus.pending_count()
    if waiting:
        print(f"mdm: {waiting} event(s) wait for delivery to plugins: `mdm run` delivers them ([core] delivery_budget)", file=sys.stderr)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
