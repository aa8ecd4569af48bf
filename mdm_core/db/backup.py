"""``mdm db backup FILE``: a consistent copy of an SQLite database, taken while ``mdm run``
keeps working.

Copying ``mdm.sqlite3`` with ``cp`` while the host writes can miss the transactions still in
its write-ahead log (``mdm.sqlite3-wal``) or catch a page half-written. SQLite's online backup
API copies every page in one step under one read transaction: a snapshot as of one commit,
which writers do not wait for (WAL mode). The copy is written next to ``FILE`` under a
temporary name, checked (``PRAGMA integrity_check``), flushed to disk and only then renamed to
``FILE``, owner-only (it holds the encrypted tokens, the admins' password hashes and the
mirror): an interrupted backup leaves no ``FILE``, and an existing ``FILE`` is never replaced.

PostgreSQL has its own tools (``pg_dump``), which the command names instead of copying.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mdm_core.errors import MdmError

if TYPE_CHECKING:
    from mdm_core.db.engine import Database


@dataclass(frozen=True)
class Backup:
    """A backup made: where from, where to, and its size in bytes."""

    source: Path
    target: Path
    size: int


def backup_sqlite(db: Database, target: Path) -> Backup:
    """Copy the SQLite database of ``db`` to ``target`` (see the module docstring); a one-line
    :class:`MdmError` naming the fix when it cannot be done, with nothing left at ``target``."""
    if not db.is_sqlite or db.in_memory:
        raise MdmError(
            f"mdm db backup copies SQLite databases; this one is {db.describe()}: "
            "back PostgreSQL up with its own tools, e.g. `pg_dump --format=custom --file FILE DATABASE_URL`"
        )
    source = Path(db.url.database or "")
    if db.is_missing_file:
        raise MdmError(f"database file {source} does not exist: there is nothing to back up (check [core] database_url or MDM_DATABASE_URL)")
    if db.is_new_file:  # 0 bytes (`touch mdm.db`): a database without tables
        raise MdmError(
            f"database file {source} is empty, it has no tables: there is nothing to back up (create them with `mdm db upgrade`, "
            "or check [core] database_url or MDM_DATABASE_URL)"
        )
    target = target.expanduser().absolute()
    if target.exists():
        raise MdmError(f"{target} exists: give a new file name (a backup never replaces a file)")
    if not target.parent.is_dir():
        raise MdmError(f"folder {target.parent} does not exist: create it first, or give a file in an existing folder")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        _copy(source, partial)
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise MdmError(f"could not back up {source}: {exc} (nothing was written to {target})") from None
    except OSError as exc:
        raise MdmError(f"could not write {target}: {exc.strerror or exc}: check the folder's free space and permissions") from None
    finally:
        partial.unlink(missing_ok=True)
    return Backup(source, target, target.stat().st_size)


def _copy(source: Path, partial: Path) -> None:
    """Copy ``source`` page by page into ``partial`` (created owner-only), check it, and flush it."""
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    src = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # every page in one step: one snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # one file, whatever the source's mode: no -wal beside it to forget
            problems = [row[0] for row in dst.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError(f"the copy fails SQLite's integrity check ({problems[0]})")
        finally:
            dst.close()
    finally:
        src.close()
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
