"""The one CSV reader of the project: the inventory imports (devices, users) and every plugin
that takes a CSV file (``mdm apps install --devices-file``).

:func:`csv_rows` checks the file (UTF-8), its header (the columns in any order, extra ones
ignored) and each row's column count, naming the file and the line (quoted fields may span
lines: the line is where the row ends); :func:`read_csv` is the strict import on top of it:
every row parsed, duplicates refused, the first problem stops everything, so nothing of a bad
file is written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mdm_core.errors import UsageError
from mdm_core.files import IMPORT_FILE, FileTooLarge, read_bounded

UTF8_FIX = "save it as UTF-8 (Excel: CSV UTF-8; or `iconv -f WINDOWS-1252 -t UTF-8 FILE > NEW.csv`)"


def read_text(path: Path) -> str:
    """The file as text; a file that is not UTF-8 is an error naming its real line and the fix.
    At most ``IMPORT_FILE`` bytes are read: a wrong path (``/dev/zero``) is an error, not a
    process that fills memory."""
    try:
        data = read_bounded(path, IMPORT_FILE)
    except FileTooLarge as exc:
        raise UsageError(f"{path}: larger than {exc.size}: not an import file (split it into smaller files)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UsageError(f"{path}: line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} at column {column}): {UTF8_FIX}") from None


SEPARATORS = (",", ";", "\t")


def separator(text: str) -> str:
    """The header's separator: ``,``, or the ``;`` of Excel in a locale whose decimal mark is a
    comma, or a tab, whichever the header line (the first that is not blank or a comment) holds
    most; a header of one column is comma-separated."""
    header = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    return max(SEPARATORS, key=header.count)


def csv_rows(
    path: Path, columns: Sequence[str], required: Sequence[str], *, ignored: list[str] | None = None, comments: bool = False
) -> Iterator[tuple[int, dict[str, str] | str]]:
    """``(line, {column: value})`` for each row, or ``(line, problem)`` for a row whose column
    count does not match the header; blank rows are skipped.

    The header names the columns, in any order (case and spaces do not matter); ``required``
    ones must be there, unknown ones are left out (and listed in ``ignored``); each row gives
    every known column, ``""`` for an absent one or an empty cell. Cells are separated by ``,``,
    ``;`` or tabs (see :func:`separator`). ``comments``: rows whose first cell starts with ``#``
    are skipped, before the header too. A file that cannot be read, is not UTF-8 or not CSV, or
    a bad header raise ``UsageError`` naming the line.
    """
    text = read_text(path)
    sep = separator(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)

    def skipped(cells: list[str]) -> bool:
        return comments and (not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"))

    try:
        first = next(reader, None)
        while first is not None and skipped(first):
            first = next(reader, None)
        header = [c.strip().lower() for c in first or []]
        missing = [c for c in required if c not in header]
        if first is None or missing:
            optional = [c for c in columns if c not in required]
            raise UsageError(
                f"{path}: line {reader.line_num or 1}: the header lacks {', '.join(missing or required)}: it needs {','.join(required)}"
                + (f" (optional: {','.join(optional)})" if optional else "")
                + ", in any order"
            )
        doubled = sorted({c for c in header if c and header.count(c) > 1})
        if doubled:
            raise UsageError(f"{path}: line {reader.line_num}: column {', '.join(doubled)} appears twice in the header")
        where = {c: header.index(c) for c in columns if c in header}
        if ignored is not None:
            ignored.extend(c for c in header if c not in where)
        for cells in reader:
            number = reader.line_num  # the file line where this row ends (quoted fields span lines)
            if not any(c.strip() for c in cells) or skipped(cells):
                continue
            if len(cells) != len(header):
                yield number, f"expected {len(header)} columns, got {len(cells)}: {column_count_fix(len(cells) > len(header), sep)}"
                continue
            yield number, {c: cells[i].strip() if i is not None else "" for c, i in ((c, where.get(c)) for c in columns)}
    except csv.Error as exc:
        raise UsageError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None


SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def column_count_fix(more: bool, sep: str) -> str:
    """How to fix a row with more cells than the header (a value holding the separator, unquoted:
    ``iPad13,1``) or fewer."""
    name = SEPARATOR_NAMES[sep]
    if more:
        return f'put a value that holds a {name} in double quotes ("iPad13{sep}1")'
    return f"give each row every column of the header (an empty value: nothing between two {name}s)"


def duplicate(key: object, first_line: int) -> str:
    """The problem of a row whose key appeared on an earlier line."""
    return f"'{key}' already appears on line {first_line}"


def read_csv(
    path: Path, columns: Sequence[str], required: Sequence[str], parse: Any, key: Any, lines: list[int] | None = None, ignored: list[str] | None = None
) -> list[Any]:
    """Parse every row (see :func:`csv_rows`) or fail on the first bad one, naming the file and
    the line; ``key`` must be unique. ``parse`` receives every known column. ``lines``, when
    given, receives the file line of each returned row.
    """
    rows: list[Any] = []
    seen: dict[Any, int] = {}
    for number, values in csv_rows(path, columns, required, ignored=ignored):
        if isinstance(values, str):
            raise UsageError(f"{path}: line {number}: {values}")
        try:
            row = parse(values)
        except UsageError as exc:
            raise UsageError(f"{path}: line {number}: {exc}") from None
        if key(row) in seen:
            raise UsageError(f"{path}: line {number}: {duplicate(key(row), seen[key(row)])}")
        seen[key(row)] = number
        rows.append(row)
        if lines is not None:
            lines.append(number)
    return rows
