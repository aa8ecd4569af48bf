"""Printing for people (aligned columns, one time format, messages ``-q`` silences) and for
programs (``--json``).

- Times: :func:`format_time` is the one format of every time shown to people,
  ``2026-11-28 04:37:29 UTC`` (tables, messages, log lines); JSON keeps ISO 8601 with its
  offset (``2026-11-28T04:37:29+00:00``).
- :func:`say` prints a success or progress message; ``mdm -q`` silences it. What a command
  was asked to show (a list, ``--json``) and errors are always printed.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence, TextIO

TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """``mdm -q``: :func:`say` prints nothing."""
    global _quiet
    _quiet = quiet


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
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime(TIME_FORMAT)


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


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], out: TextIO | None = None, empty: str = "(none)") -> None:
    """An aligned table of ``columns``; ``empty`` when there are no rows."""
    out = out or sys.stdout
    rendered = [[_cell(row.get(c)) for c in columns] for row in rows]
    if not rendered:
        out.write(empty + "\n")
        return
    widths = [max(len(c), *(len(r[i]) for r in rendered)) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    for r in rendered:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n")


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


def print_rows(rows: list[dict[str, Any]], as_json: bool, columns: Sequence[str], empty: str = "(none)") -> int:
    """``--json`` or an aligned table: the one way list commands print; returns exit code 0."""
    if as_json:
        print_json(rows)
    else:
        print_table(rows, columns, empty=empty)
    return 0
