"""The benchmark keeps working: `bench/sync_bench.py` on the smallest size prints its table with
every figure, and every mirror exact (timings are reported, never asserted: goals belong to the
benchmark, not to a test that could flake). PostgreSQL is included when the suite has a server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # the smallest benchmark in a subprocess, on SQLite and PostgreSQL
def test_smallest_benchmark_prints_every_figure_with_its_goal() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sync_bench.py"), "--size", "quick", "--only", "small"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    out = run.stdout
    assert out.startswith("Machine: ") and "Load average" in out
    header = next(line for line in out.splitlines() if line.startswith("| quick-tenth"))
    configurations = ["SQLite, every plugin", "SQLite, vpp only"]
    if os.environ.get("MDM_TEST_POSTGRES_URL"):
        configurations += ["PostgreSQL, every plugin", "PostgreSQL, vpp only"]
    assert _cells(header)[1:] == ["goal", *configurations]
    rows = {_cells(line)[0]: _cells(line)[1:] for line in out.splitlines() if line.startswith("| ") and "---" not in line}
    for figure, goal in (
        ("floor: download+parse of every page", "-"),
        ("full sync, events delivered", "-"),
        ("full sync / floor", "<= 2"),
        ("peak RSS of the full sync", "< 300 MB"),
        ("incremental sync after a 1% spread", "-"),
        ("incremental (spread) / download+parse of the pages it read", "<= 1.5"),
        ("incremental sync after a 1% clustered", "-"),
        ("mirror exact after every sync", "exact"),
        ("`mdm vpp licenses --json`: peak RSS", "< 100 MB"),
    ):
        found = [cells for name, cells in rows.items() if name.startswith(figure)]
        assert found, f"missing figure {figure!r}"
        assert found[0][0] == goal
    exact = next(cells for name, cells in rows.items() if name.startswith("mirror exact"))
    assert all(cell.startswith("yes/yes/yes PASS") for cell in exact[1:]), exact
    cpu = next(cells for name, cells in rows.items() if name.startswith("incremental (spread): CPU of the sync"))
    # "<sync> + <simulator> s (floor: <replay> + <simulator> s)": four figures read from /proc
    assert all(re.fullmatch(r"\d+\.\d\d \+ \d+\.\d\d s \(floor: \d+\.\d\d \+ \d+\.\d\d s\)", cell) for cell in cpu[1:]), cpu
    ratio = next(cells for name, cells in rows.items() if name == "full sync / floor")
    assert ratio[1].endswith(("PASS", "MISS")) and ratio[2].endswith("(reference)")


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row (``| a | b |`` -> ``["a", "b"]``)."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.mark.slow  # a tenth of the district in a subprocess
def test_quick_web_benchmark_prints_every_figure() -> None:
    """`bench/web_bench.py --quick` keeps working: every console page and REST list it times answers."""
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "web_bench.py"), "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    for figure in ("assets, last page by total:", "VPP users, last page:", "asset, next device page:", "licenses (", "VPP users (", "peak RSS"):
        assert figure in run.stdout, f"missing figure {figure!r}"
