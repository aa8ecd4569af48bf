"""An example plugin with a table of its own and its own migrations: notes about devices.

Enable it in ``conf/mdm.toml`` and create its table::

    [plugins]
    enabled = ["plugins.examples.device_notes"]

    $ mdm db upgrade
    $ mdm notes add C02XK0AAJG5H "screen cracked" --author alice
    $ mdm notes list

Its history, ``device_notes``, shows how a plugin's schema grows: ``0001`` creates the table,
``0002`` adds the ``author`` column (both written by ``mdm db revision device_notes -m ...
--autogenerate`` after the model changed, then reviewed).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import col

from mdm_core import hookimpl
from mdm_core.output import print_rows

if TYPE_CHECKING:
    from mdm_core.db.migrate import MigrationSet
    from mdm_core.host import Host

PLUGIN_NAME = "device_notes"
__version__ = "1.1"


@hookimpl
def mdm_register_tables() -> list[type]:
    """The plugin's model: ``device_notes_note``."""
    from .models import Note

    return [Note]


@hookimpl
def mdm_register_migrations() -> MigrationSet:
    """Its migration history, in the ``migrations`` folder beside the models."""
    from mdm_core.db.migrate import MigrationSet

    return MigrationSet("device_notes", Path(__file__).with_name("migrations"))


@hookimpl
def mdm_register_cli(subparsers: argparse._SubParsersAction[Any], host: Host) -> None:
    """``mdm notes add|list``."""
    notes = subparsers.add_parser("notes", help="notes about devices (example plugin)")
    sub = notes.add_subparsers(dest="notes_cmd", required=True, metavar="COMMAND")
    add = sub.add_parser("add", help="add a note to a device")
    add.add_argument("serial", metavar="SERIAL")
    add.add_argument("text", metavar="TEXT")
    add.add_argument("--author", help="who wrote it")
    add.set_defaults(func=_add)
    lst = sub.add_parser("list", help="list notes")
    lst.add_argument("serial", metavar="SERIAL", nargs="?", help="only this device's notes")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)


def _add(host: Host, args: argparse.Namespace) -> int:
    from .models import Note

    note = host.db.run_write(lambda session: _insert(session, Note(serial_number=args.serial, text=args.text, author=args.author)))
    print(f"note {note.id} added to {note.serial_number}")
    return 0


def _insert(session: Any, note: Any) -> Any:
    session.add(note)
    session.flush()
    return note


def _list(host: Host, args: argparse.Namespace) -> int:
    from .models import Note

    query = select(Note).order_by(col(Note.id))
    if args.serial:
        query = query.where(Note.serial_number == args.serial)
    with host.db.session() as session:
        rows = [n.model_dump() for n in session.execute(query).scalars()]
    return print_rows(rows, args.json, ["id", "serial_number", "author", "created_at", "text"], empty="no notes")
