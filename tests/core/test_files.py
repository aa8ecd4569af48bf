"""``read_bounded``: a file's bytes up to a bound, without allocating the bound."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from mdm_core.files import IMPORT_FILE, FileTooLarge, read_bounded


def test_a_small_import_file_is_read_without_allocating_the_whole_bound(tmp_path: Path) -> None:
    """Every `mdm devices import` allocated IMPORT_FILE (256 MB) to read its file, whatever its size."""
    path = tmp_path / "devices.csv"
    path.write_bytes(b"serial_number,platform\n" + b"S1,iOS\n" * 100_000)
    tracemalloc.start()
    try:
        data = read_bounded(path, IMPORT_FILE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data == path.read_bytes()
    assert peak < 4 * len(data), peak


def test_more_than_the_bound_is_refused_from_a_pipe_too(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_bounded(path, 10) == b"x" * 10
    with pytest.raises(FileTooLarge):
        read_bounded(path, 9)
    with pytest.raises(FileTooLarge):
        read_bounded("/dev/zero", 3 * 1024 * 1024 + 5)  # no size to check first: read in pieces up to the bound
