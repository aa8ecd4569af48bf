"""``mdm events``: deliveries to subscribers that failed, and delivering them again.

A subscriber (a plugin's ``mdm_<event>`` or ``mdm_event``) that raises does not lose the
event: ``mdm run`` delivers it again to that subscriber alone with back-off (after 1, 5, 15,
60, 180 and 360 minutes), then leaves it ``failed``; one that failed because what it needs is
not loaded (a disabled plugin) waits for the next start. ``mdm events redeliver`` delivers
them again by hand; ``mdm events discard`` drops them undelivered (a plugin removed for good).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from mdm_core.errors import NotFound, UsageError
from mdm_core.output import add_list_options, ask_first, output_format, print_rows, say
from mdm_core.text import shown

if TYPE_CHECKING:
    from mdm_core.host import Host


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``mdm events`` and its subcommands."""
    events = sub.add_parser(
        "events",
        help="failed deliveries to subscribers: list them, deliver them again, discard them",
        description="Deliveries of events to subscribers (plugins) that failed, and delivering them again.",
    )
    events_sub = events.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    failures = events_sub.add_parser(
        "failures",
        help="failed deliveries: retrying, waiting for a start, or failed",
        description="Each failed delivery: the event, the subscriber (plugin and hook), attempts, "
        "status (retrying at next_attempt_at, waiting for the host to start, failed) and the last error.",
    )
    failures.add_argument("--failed", action="store_true", help="only those whose retries are exhausted")
    add_list_options(failures)
    failures.set_defaults(func=cmd_failures)
    redeliver = events_sub.add_parser(
        "redeliver",
        help="deliver events again to the subscribers that failed",
        description="Deliver the event of each failed delivery again, to the subscriber that failed only. Exit 1 if any fails again (it stays listed, failed).",
    )
    redeliver.add_argument("ids", nargs="*", type=int, metavar="ID", help="failed deliveries (from `mdm events failures`)")
    redeliver.add_argument("--all", action="store_true", help="every failed delivery, whatever its status")
    redeliver.set_defaults(func=cmd_redeliver)
    discard = events_sub.add_parser(
        "discard",
        help="drop failed deliveries without delivering them (a plugin removed for good)",
        description="Delete the failed deliveries of one plugin (or all) without delivering them: their subscriber will never see those events "
        "(a plugin uninstalled for good, or events it need not see). Their events then go with core.housekeeping like delivered ones. "
        "On a terminal it asks first; without one it needs --yes.",
    )
    discard.add_argument("--plugin", metavar="NAME", help="the plugin whose failed deliveries to drop (`mdm events failures` names them)")
    discard.add_argument("--all", action="store_true", help="every failed delivery, whatever its plugin and status")
    discard.add_argument("--yes", action="store_true", help="do not ask for confirmation (needed without a terminal)")
    discard.add_argument("--dry-run", action="store_true", help="only say what it would discard")
    discard.set_defaults(func=cmd_discard)


def cmd_failures(host: Host, args: argparse.Namespace) -> int:
    """``mdm events failures``: streamed, oldest first."""
    rows = host.events.iter_failures(everything=not args.failed, offset=args.offset, limit=args.limit)
    return print_rows(
        rows,
        output_format(args),
        ["id", "event_name", "event_id", "plugin", "hook", "attempts", "status", "next_attempt_at", "error"],
        empty="no failed deliveries",
    )


def cmd_redeliver(host: Host, args: argparse.Namespace) -> int:
    """``mdm events redeliver ID... | --all``"""
    if args.all == bool(args.ids):
        raise UsageError("give the ids of failed deliveries (mdm events failures), or --all")
    ids = [r["id"] for r in host.events.failures()] if args.all else args.ids
    failed = 0
    for failure_id in ids:
        error = host.events.redeliver(failure_id)
        if error is None:
            say(f"{failure_id}: delivered")
        else:
            failed += 1
            print(f"{failure_id}: failed again: {error}")
    host.deliver_events()  # what the subscribers recorded meanwhile
    if args.all and not ids:
        say("no failed deliveries")
    return 1 if failed else 0


def cmd_discard(host: Host, args: argparse.Namespace) -> int:
    """``mdm events discard --plugin NAME | --all [--yes] [--dry-run]``"""
    from mdm_core.failed_deliveries import counts_by_plugin, discard, installed_plugins

    if args.all == (args.plugin is not None):
        raise UsageError("give --plugin NAME (the plugin column of `mdm events failures`) or --all")
    counts = counts_by_plugin(host.db, args.plugin)
    if not counts:
        if args.plugin is not None and args.plugin not in installed_plugins(host):
            having = ", ".join(counts_by_plugin(host.db)) or "none"
            raise NotFound(f"no plugin named {shown(args.plugin, 50)} has failed deliveries (plugins with some: {having}; see `mdm events failures`)")
        say(f"no failed deliveries{f' of {args.plugin}' if args.plugin else ''}: nothing to discard")
        return 0
    stop = ask_first(f"discard {_counted(counts)} without delivering them", yes=args.yes, dry_run=args.dry_run, declined="nothing discarded")
    if stop is not None:
        return stop
    done = discard(host.db, args.plugin)
    say(f"discarded {_counted(done)}; their events go with core.housekeeping" if done else "no failed deliveries: nothing to discard (redelivered meanwhile)")
    return 0


def _counted(counts: dict[str, int]) -> str:
    """``12 failed deliveries (ghost 10, vpp 2)``."""
    total = sum(counts.values())
    return f"{total} failed deliver{'y' if total == 1 else 'ies'} ({', '.join(f'{plugin} {n}' for plugin, n in counts.items())})"
