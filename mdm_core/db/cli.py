"""``mdm db``: upgrade, status, history, backup, revision.

These commands open the database without the start-up schema check that every other command
makes, so that they work on a database behind or ahead of this release.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from mdm_core.output import print_json, print_table, say

if TYPE_CHECKING:
    from mdm_core.host import Host


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``mdm db`` and its subcommands."""
    db = sub.add_parser(
        "db",
        help="the database: upgrade, status, history, backup",
        description="Schema migrations (Alembic), one history per plugin, the core's first; backups of an SQLite database.",
    )
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")

    upgrade = db_sub.add_parser(
        "upgrade",
        help="apply every pending migration (a new database is created)",
        description="Apply pending migrations, each in its own transaction, under the database's write lock. "
        "A database made by release 0.1.0 is recognised and kept.",
    )
    upgrade.set_defaults(func=cmd_upgrade, creates_database=True)  # the command that creates a site's database

    status = db_sub.add_parser(
        "status",
        help="each plugin's current and latest revision",
        description="Each plugin's current revision, the latest this release has, its state and what is pending; "
        "histories of plugins that are not loaded are listed as 'not loaded'. "
        "Exit 1 when other commands refuse the database (no tables yet, or a plugin behind, unstamped or ahead: "
        "`mdm db upgrade` is due, or a newer release upgraded it), with that line on stderr; 0 when it is current "
        "or only a plugin's tables are new.",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)

    history = db_sub.add_parser("history", help="every migration of each plugin, applied or not")
    history.add_argument("plugin", nargs="?", help="only this plugin's history")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(func=cmd_history)

    backup = db_sub.add_parser(
        "backup",
        help="a consistent copy of the SQLite database, while mdm run keeps working",
        description="Copy the SQLite database to FILE with SQLite's online backup (one snapshot, checked, owner-only), "
        "e.g. before `mdm db upgrade`. FILE must not exist. The secret key is not in it: keep a copy of it apart. "
        "PostgreSQL: use pg_dump.",
    )
    backup.add_argument("file", metavar="FILE", help="the new backup file, e.g. /srv/backups/mdm-2026-12-01.sqlite3")
    backup.set_defaults(func=cmd_backup)

    revision = db_sub.add_parser(
        "revision",
        help="(developers) write the next migration of a plugin",
        description="Write PLUGIN's next revision file (NNNN_slug.py) in its migrations folder. With --autogenerate "
        "its operations are the difference between the models and the migrations, found on a scratch SQLite database; "
        "review it before committing.",
    )
    revision.add_argument("plugin", help="the history: core, vpp, mobile_apps or a plugin's")
    revision.add_argument("-m", "--message", required=True, help="what the migration does, e.g. 'add device notes'")
    revision.add_argument("--autogenerate", action="store_true", help="fill it from the models")
    revision.set_defaults(func=cmd_revision)


def cmd_upgrade(host: Host, args: argparse.Namespace) -> int:
    """``mdm db upgrade``"""
    db = host.unchecked_db
    new_file = db.is_new_file
    steps = host.upgrade_database(on_step=lambda step: say(step.describe()))
    if new_file and steps:
        say(f"created new database at {db.url.database}")
    say(f"database {db.describe()} is up to date" + ("" if steps else " (nothing to do)"))
    return 0


def cmd_status(host: Host, args: argparse.Namespace) -> int:
    """``mdm db status``: exit 1 when the other commands refuse the database (no tables yet,
    behind, unstamped or ahead: the line they print, on stderr), so that a script knows an
    upgrade is due (``mdm db status || mdm db upgrade``)."""
    from mdm_core.db.migrate import History, read_states, schema_refusal, uninitialised, uninitialised_message

    db = host.unchecked_db
    states = read_states(db, [History(s) for s in host.migration_sets()], unloaded=True)
    # the line every other command refuses it with, if any: no tables yet, or behind, unstamped or ahead
    refusal = uninitialised_message(db, host.database_source) if uninitialised(db, states) else schema_refusal(states)
    rows = [s.as_dict() for s in states]
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            row["pending"] = " ".join(row["pending"]) or "-"
            row["current"] = row["current"] or "-"
            row["head"] = row["head"] or "-"
        print_table(rows, ["plugin", "current", "head", "state", "pending"])
    if refusal is not None:  # said on stderr, as every other command says it: --json stays JSON; -q too
        print(f"mdm: {refusal}", file=sys.stderr, flush=True)
        return 1
    return 0


def cmd_history(host: Host, args: argparse.Namespace) -> int:
    """``mdm db history``"""
    from mdm_core.db.migrate import History, read_states
    from mdm_core.errors import UsageError

    histories = [History(s) for s in host.migration_sets()]
    if args.plugin is not None:
        histories = [h for h in histories if h.name == args.plugin]
        if not histories:
            raise UsageError(f"no migration history named {args.plugin!r}: see `mdm db status`")
    states = {s.name: s for s in read_states(host.unchecked_db, histories)}
    rows = []
    for history in histories:
        state = states[history.name]
        applied = set(history.ids) - set(state.pending) if state.state in ("current", "behind") else set()
        for script in history.revisions:
            rows.append(
                {
                    "plugin": history.name,
                    "revision": script.revision,
                    "applied": script.revision in applied,
                    "message": history.message(script.revision),
                    "file": script.path,
                }
            )
    if args.json:
        print_json(rows)
        return 0
    for history in histories:
        print(f"{history.name} ({history.set.directory})")
        for row in (r for r in rows if r["plugin"] == history.name):
            print(f"  [{'x' if row['applied'] else ' '}] {row['revision']}  {row['message']}")
    return 0


def cmd_backup(host: Host, args: argparse.Namespace) -> int:
    """``mdm db backup FILE``"""
    from pathlib import Path

    from mdm_core.db.backup import backup_sqlite
    from mdm_core.db.migrate import History, read_states
    from mdm_core.secrets import KEY_FILE_NAME

    source = host.secret_key_source()  # before the backup: an empty MDM_SECRET_KEY stops here, nothing written
    db = host.unchecked_db  # a database behind this release is backed up before its upgrade
    made = backup_sqlite(db, Path(args.file))
    states = read_states(db, [History(s) for s in host.migration_sets()])
    # release 0.1.0's tables carry no revision: they are named so, not left out (was: "schema: none")
    schema = ", ".join(f"{s.name} {s.current}" if s.current else f"{s.name} release 0.1.0 tables" for s in states if s.current or s.state == "unstamped")
    key_file = host.config.var_dir / KEY_FILE_NAME
    key = f"the key file {key_file}" if source == "key file" else f"the key in {source}"
    say(f"backed up {made.source} to {made.target} ({made.size / 2**20:.1f} MiB; schema: {schema or 'none'})")
    if source == "key file" and not key_file.exists():
        say(_no_key_file(host, key_file))
    else:
        say(f"the secret key is not in the backup: keep a copy of {key} apart, or the tokens in it cannot be read")
    return 0


def _no_key_file(host: Host, key_file: Any) -> str:
    """What ``mdm db backup`` says of the key when there is no key file (was: keep a copy of it)."""
    try:
        stored = host.stored_secrets(unchecked=True)
    except Exception:  # a schema too old for the count: say what holds either way
        stored = None
    if stored == 0:
        return (
            f"the secret key is not in the backup: the key file {key_file} does not exist yet (no secret stored); "
            "keep a copy of it apart once the first token creates it"
        )
    held = "secrets" if stored is None else f"{stored} secret(s)"
    return (
        f"the secret key is not in the backup, and the key file {key_file} is missing: the {held} in the backup can be read "
        "only with the key they were stored with; restore that file (see `mdm secrets status`) and keep a copy of it apart"
    )


def cmd_revision(host: Host, args: argparse.Namespace) -> int:
    """``mdm db revision``"""
    from mdm_core.db.migrate import new_revision

    path, rev_id = new_revision(host.migration_sets(), args.plugin, args.message, autogenerate=args.autogenerate)
    say(f"{args.plugin}: wrote {rev_id} at {path}")
    return 0
