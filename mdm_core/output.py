"""Printing lists for people (aligned columns) and for programs (``--json``)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, Iterable, Sequence, TextIO


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
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
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
