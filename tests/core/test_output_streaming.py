"""The one list printer streams: rows are written as they are read, JSON is one array written
element by element (the same text as before), ``--jsonl`` one object a line, and text widths
come from the first rows only."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

from mdm_core.output import WIDTH_SAMPLE, print_json, print_rows


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"n{i}", "tags": ["a", "b"], "ok": i % 2 == 0, "none": None} for i in range(n)]


def test_json_is_the_same_array_as_printing_the_whole_list() -> None:
    for n in (0, 1, 3):
        whole, streamed = io.StringIO(), io.StringIO()
        print_json(_rows(n), whole)
        print_rows(iter(_rows(n)), "json", ["id"], out=streamed)
        assert streamed.getvalue() == whole.getvalue()
        assert json.loads(streamed.getvalue()) == _rows(n)


def test_jsonl_is_one_object_a_line() -> None:
    out = io.StringIO()
    print_rows(iter(_rows(3)), "jsonl", ["id"], out=out)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == _rows(3)
    empty = io.StringIO()
    print_rows(iter([]), "jsonl", ["id"], out=empty)
    assert empty.getvalue() == ""


def test_rows_are_printed_while_they_are_read() -> None:
    """The first rows are out before the source has produced the rest (nothing is collected)."""
    for fmt in ("text", "json", "jsonl"):
        out = io.StringIO()
        seen_at: list[str] = []

        def source(out: io.StringIO = out, seen_at: list[str] = seen_at) -> Iterator[dict[str, Any]]:
            for i in range(WIDTH_SAMPLE * 3):
                if i == WIDTH_SAMPLE * 2:
                    seen_at.append(out.getvalue())
                yield {"id": i, "name": f"n{i}"}

        print_rows(source(), fmt, ["id", "name"], out=out)
        assert "n0" in seen_at[0] and f"n{WIDTH_SAMPLE + 1}" in seen_at[0], fmt
        assert f"n{WIDTH_SAMPLE * 2}" not in seen_at[0]


def test_text_widths_come_from_the_first_rows_and_nothing_is_cut() -> None:
    rows = [{"id": i, "name": "x"} for i in range(WIDTH_SAMPLE)] + [{"id": 999, "name": "a-much-longer-name"}, {"id": 1000, "name": "y"}]
    out = io.StringIO()
    print_rows(iter(rows), "text", ["id", "name"], out=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "id  name"  # ids 0-99 in the first rows: two characters wide
    assert lines[1] == "0   x"
    assert lines[-2] == "999  a-much-longer-name"  # wider values widen their own line only
    assert lines[-1] == "1000  y"
    assert len(lines) == 1 + len(rows)
    empty = io.StringIO()
    print_rows(iter([]), "text", ["id"], out=empty, empty="nothing here")
    assert empty.getvalue() == "nothing here\n"
