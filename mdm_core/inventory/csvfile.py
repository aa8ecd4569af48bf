"""The CSV reader of the inventory imports: a header naming the columns (any order, extra
columns ignored), every row checked, nothing partial."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from mdm_core.errors import UsageError

UTF8_FIX = "save it as UTF-8 (Excel: CSV UTF-8; or `iconv -f WINDOWS-1252 -t UTF-8 FILE > NEW.csv`)"


def read_text(path: Path) -> str:
    """The file as text; a file that is not UTF-8 is an error naming its real line and the fix."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UsageError(f"{path}: line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} at column {column}): {UTF8_FIX}") from None


def read_csv(path: Path, columns: Sequence[str], required: Sequence[str], parse: Any, key: Any,
             lines: list[int] | None = None, ignored: list[str] | None = None) -> list[Any]:
    """Parse every row or fail on the first bad one, naming the file and the line.

    The header names the columns, in any order (case and spaces do not matter); ``required``
    ones must be there, unknown ones are left out (and listed in ``ignored``). ``parse``
    receives every known column, ``""`` for an absent one or an empty cell. ``lines``, when
    given, receives the file line of each returned row.
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    try:
        first = next(reader, None)
        header = [c.strip().lower() for c in first or []]
        missing = [c for c in required if c not in header]
        if first is None or missing:
            optional = [c for c in columns if c not in required]
            raise UsageError(f"{path}: line 1: the header lacks {', '.join(missing or required)}: it needs {','.join(required)}"
                             + (f" (optional: {','.join(optional)})" if optional else "") + ", in any order")
        doubled = sorted({c for c in header if c and header.count(c) > 1})
        if doubled:
            raise UsageError(f"{path}: line 1: column {', '.join(doubled)} appears twice in the header")
        where = {c: header.index(c) for c in columns if c in header}
        if ignored is not None:
            ignored.extend(c for c in header if c not in where)
        rows, seen = [], {}
        for cells in reader:
            number = reader.line_num  # the file line where this row ends (quoted fields span lines)
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise UsageError(f"{path}: line {number}: expected {len(header)} columns, got {len(cells)}")
            try:
                row = parse({c: cells[i].strip() if i is not None else "" for c, i in ((c, where.get(c)) for c in columns)})
            except UsageError as exc:
                raise UsageError(f"{path}: line {number}: {exc}") from None
            if key(row) in seen:
                raise UsageError(f"{path}: line {number}: '{key(row)}' already appears on line {seen[key(row)]}")
            seen[key(row)] = number
            rows.append(row)
            if lines is not None:
                lines.append(number)
    except csv.Error as exc:
        raise UsageError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    return rows
