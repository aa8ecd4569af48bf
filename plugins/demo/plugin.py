"""The demo plugin's hook implementations: the ``mdm demo`` command."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from mdm_core import hookimpl
from mdm_core.errors import MdmError

if TYPE_CHECKING:
    from mdm_core.host import Host

PLUGIN_NAME = "demo"


@hookimpl
def mdm_register_cli(subparsers: argparse._SubParsersAction[Any], host: Host) -> None:
    """``mdm demo``."""
    demo = subparsers.add_parser(
        "demo",
        help="the whole flow against the local simulator, on a database of its own",
        description="Start the simulator, enrol devices and users, add the account, sync, show, change Apple's side, sync again, "
        "show what changed. Everything goes to the demo's own folder, var/demo/ (database demo.sqlite3, token, key): "
        "the configured database is never touched. Delete var/demo/ to start afresh.",
    )
    demo.add_argument("--seed", type=int, default=7, help="simulator seed")
    demo.add_argument(
        "--database-url",
        metavar="URL",
        help="run on this database instead (e.g. an empty PostgreSQL database); an account named 'demo' that the demo did not create is never replaced",
    )
    demo.set_defaults(func=_demo)


def _demo(host: Host, args: argparse.Namespace) -> int:
    if not host.pm.has_plugin("vpp"):
        raise MdmError("mdm demo needs the vpp plugin, which is disabled (see `mdm plugins`)")
    from plugins.demo.run import run_demo

    return run_demo(host, seed=args.seed, database_url=args.database_url)
