"""Printing for people (aligned columns, one time format, messages ``-q`` silences) and for
programs (``--json``).

- Times: :func:`format_time` is the one format of every time shown to people,
  ``2026-11-28 04:37:29 UTC`` (tables, messages, log lines); JSON keeps ISO 8601 with its
  offset (``2026-11-28T04:37:29+00:00``). :func:`days_until` counts "expires in N days"
  (whole days left, rounded up) and :func:`days_text` writes it.
- :func:`say` prints a success or progress message; ``mdm -q`` silences it. What a command
  was asked to show (a list, ``--json``) and errors are always printed.
- Lists: :func:`print_rows` is the one printer of every list command. It streams: each row is
  written as it is read, so a listing of millions of rows starts at once and runs in constant
  memory. Text tables take their column widths from the header and the first
  :data:`WIDTH_SAMPLE` rows (a later, longer value widens its own line only, never cut);
  ``--json`` writes one JSON array, element by element; ``--jsonl`` one object a line.
  :func:`add_list_options` gives a command ``--json``, ``--jsonl``, ``--limit`` and ``--offset``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TextIO

TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """``mdm -q``: :func:`say` prints nothing."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    """Whether ``mdm -q`` is in force (for output that :func:`say` alone cannot carry)."""
    return _quiet


def say(message: str, out: TextIO | None = None) -> None:
    """Print a success or progress message (on stdout, unless ``-q``)."""
    if not _quiet:
        print(message, file=out or sys.stdout, flush=True)


def format_time(value: datetime | str | None) -> str:
    """A time for people, in UTC and labelled so: ``2026-11-28 04:37:29 UTC`` (``-`` for none).

    Accepts an aware datetime (a naive one is taken as UTC, as the database stores) or an
    ISO-8601 string with an offset."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def days_until(when: datetime, now: datetime | None = None) -> int:
    """The N of "expires in N days", as an admin reads it: the whole days left, rounded up, while
    ``when`` is ahead of ``now`` (default: the current time). 29 days 23 hours is 30 days, an
    hour is 1 day: never 0 before ``when``, and at most 7 exactly when at most 7 days are left
    (the 30/14/7-day token states). Once ``when`` has come: -1 during the first day after it,
    -2 during the second, and so on."""
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds > 0:
        return math.ceil(seconds / 86400)
    return min(-1, math.floor(seconds / 86400))


def days_text(days: int) -> str:
    """``1 day``, ``12 days``."""
    return f"{days} day{'' if days == 1 else 's'}"


def to_jsonable(value: Any) -> Any:
    """Datetimes as ISO-8601; everything else as JSON knows it."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    return value


def print_json(data: Any, out: TextIO | None = None) -> None:
    """Pretty JSON on stdout."""
    out = out or sys.stdout
    json.dump(to_jsonable(data), out, indent=2, sort_keys=False)
    out.write("\n")


WIDTH_SAMPLE = 100  # rows read before a text table's first line: its column widths come from them
FORMATS = ("text", "json", "jsonl")


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], out: TextIO | None = None, empty: str = "(none)") -> None:
    """An aligned table of ``columns``, streamed (widths from the header and the first
    :data:`WIDTH_SAMPLE` rows); ``empty`` when there are no rows."""
    out = out or sys.stdout
    rendered = ([_cell(row.get(c)) for c in columns] for row in rows)
    first = list(islice(rendered, WIDTH_SAMPLE))
    if not first:
        out.write(empty + "\n")
        return
    widths = [max(len(c), *(len(r[i]) for r in first)) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for r in first:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
    del first
    for r in rendered:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_TIME.match(value)):
        return format_time(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def print_json_rows(rows: Iterable[Any], out: TextIO | None = None) -> None:
    """A JSON array written element by element: the same text as :func:`print_json` of the list."""
    out = out or sys.stdout
    opened = False
    for row in rows:
        out.write(",\n  " if opened else "[\n  ")
        out.write(json.dumps(to_jsonable(row), indent=2).replace("\n", "\n  "))
        opened = True
    out.write("\n]\n" if opened else "[]\n")


def print_jsonl(rows: Iterable[Any], out: TextIO | None = None) -> None:
    """One JSON object a line (JSON Lines)."""
    out = out or sys.stdout
    for row in rows:
        out.write(json.dumps(to_jsonable(row)) + "\n")


def print_rows(rows: Iterable[dict[str, Any]], output: bool | str, columns: Sequence[str], empty: str = "(none)", out: TextIO | None = None) -> int:
    """The one way list commands print, streaming ``rows`` (any iterable: a generator is read
    as it is printed). ``output``: ``text``, ``json`` or ``jsonl`` (``True``/``False``: json or
    text; :func:`output_format` of the arguments, whose ``--offset`` words an empty page past
    the end instead of ``empty``). Returns exit code 0."""
    fmt = ("json" if output else "text") if isinstance(output, bool) else output
    if fmt == "json":
        print_json_rows(rows, out)
    elif fmt == "jsonl":
        print_jsonl(rows, out)
    else:
        offset = getattr(output, "offset", 0)
        print_table(rows, columns, out, empty=past_the_end(offset) if offset else empty)
    return 0


def past_the_end(offset: int) -> str:
    """The empty line of a page that starts past the last row: the list's own (``no assets: run
    `mdm vpp sync```) sent the admin to fix what was not wrong. It names no row count: the rows
    stream, and the list may hold any number up to ``offset`` (none at all, too)."""
    return f"nothing at --offset {offset}: the list ends before it; give a smaller --offset, or none"


def add_list_options(parser: argparse.ArgumentParser, *, limit: int | None = None, json_help: str = "print JSON (an array)") -> None:
    """``--json``, ``--jsonl``, ``--limit N`` (default ``limit``: all) and ``--offset N`` of a list command."""
    from mdm_core.argtypes import count

    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help=json_help)
    fmt.add_argument("--jsonl", action="store_true", help="print one JSON object a line (JSON Lines)")
    parser.add_argument("--limit", type=count(1), default=limit, metavar="N", help=f"at most N rows (default {limit if limit else 'all'})")
    parser.add_argument("--offset", type=count(0), default=0, metavar="N", help="skip the first N rows (with --limit: page through a long list)")


class ListFormat(str):
    """A list command's format (``text``, ``json`` or ``jsonl``) with its ``--offset``, for
    :func:`print_rows`."""

    offset: int = 0


def output_format(args: argparse.Namespace) -> str:
    """``text``, ``json`` or ``jsonl`` from a list command's arguments (a :class:`ListFormat`
    carrying its ``--offset``)."""
    fmt = ListFormat("jsonl" if getattr(args, "jsonl", False) else "json" if getattr(args, "json", False) else "text")
    fmt.offset = getattr(args, "offset", 0) or 0
    return fmt


def window(rows: Iterable[Any], offset: int = 0, limit: int | None = None) -> Iterator[Any]:
    """``rows`` after the first ``offset``, at most ``limit`` of them (for sources that cannot
    skip in SQL)."""
    return islice(rows, offset, None if limit is None else offset + limit)


def confirm(what: str, *, yes: bool, stdin: TextIO | None = None, out: TextIO | None = None) -> bool:
    """Ask before a destructive bulk action: ``what`` (e.g. "reclaim 12 licenses") is asked on a
    terminal (``[y/N]``, only ``y``/``yes`` proceeds); ``yes`` (``--yes``) skips the question.
    Without a terminal and without ``--yes`` it refuses with a one-line usage error, so that a
    script never does it by accident.
    """
    from mdm_core.errors import UsageError

    if yes:
        return True
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    if not (hasattr(stdin, "isatty") and stdin.isatty()):
        raise UsageError(f"this would {what}: add --yes to do it without asking, or --dry-run to list what it would do")
    out.write(f"This will {what}. Proceed? [y/N] ")
    out.flush()
    answer = stdin.readline().strip().lower()
    return answer in ("y", "yes")


def ask_first(what: str, *, yes: bool, dry_run: bool, declined: str) -> int | None:
    """The steps before a destructive command acts: ``--dry-run`` prints ``would WHAT`` (exit 0),
    else :func:`confirm` asks; declined, it prints ``declined`` (``nothing removed``, exit 1).
    ``None``: go on and do it."""
    if dry_run:
        print(f"would {what}")
        return 0
    if not confirm(what, yes=yes):
        print(declined)
        return 1
    return None
