"""The CSV reader of the inventory imports: strict header, every row checked, nothing partial."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from mdm_core.errors import UsageError


def read_csv(path: Path, header: list[str], parse: Any, key: Any, lines: list[int] | None = None) -> list[Any]:
    """Parse every row or fail on the first bad one, naming the file and the line.

    ``lines``, when given, receives the file line of each returned row.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            first = next(reader, None)
            if first is None or [c.strip() for c in first] != header:
                raise UsageError(f"{path}: line 1: the header must be exactly {','.join(header)}")
            rows, seen = [], {}
            for cells in reader:
                number = reader.line_num  # the file line where this row ends (quoted fields span lines)
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise UsageError(f"{path}: line {number}: expected {len(header)} columns, got {len(cells)}")
                try:
                    row = parse({h: c.strip() for h, c in zip(header, cells)})
                except UsageError as exc:
                    raise UsageError(f"{path}: line {number}: {exc}") from None
                if key(row) in seen:
                    raise UsageError(f"{path}: line {number}: '{key(row)}' already appears on line {seen[key(row)]}")
                seen[key(row)] = number
                rows.append(row)
                if lines is not None:
                    lines.append(number)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    return rows
