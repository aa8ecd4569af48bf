"""The benchmark keeps working: `bench/sync_bench.py` on the smallest size prints its table with
every figure, and every mirror exact (timings are reported, never asserted: goals belong to the
benchmark, not to a test that could flake). PostgreSQL is included when the suite has a server.
Its floor is the median of several runs, every run's figure beside it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """``bench/sync_bench.py`` imported as a module (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("sync_bench", ROOT / "bench" / "sync_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sync_bench", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_median_of_runs_is_a_measured_run_and_names_every_run(bench: ModuleType) -> None:
    assert bench.median_run([5.95, 3.73, 4.38]) == 4.38
    assert bench.median_run([5.95, 3.73]) == 3.73  # an even count: the lower middle run, not an average
    assert bench.median_run([2.5]) == 2.5
    assert bench.runs_note([5.95, 3.73, 4.38]) == "median of 5.95, 3.73, 4.38"  # in the order they ran
    assert bench.runs_note([5.95]) == ""


def _floor_run(fetch: float, sqlite: float, postgres: float) -> dict[str, Any]:
    return {"fetch": fetch, "pages": 919, "rows": 401_000, "insert": {"sqlite": sqlite, "postgres": postgres}, "rss_mb": 120.0}


def test_full_sync_ratio_is_against_the_median_floor(bench: ModuleType) -> None:
    """The two end-of-day runs of issue 15: the same pages took 3.73 s and 5.95 s to download and
    parse, so one floor run read the same 18 s full sync as a MISS or a PASS. The floor now takes
    the median download+parse and, on its own, each database's median insert, and shows every run."""
    floor = bench.median_floor([_floor_run(3.73, 4.67, 5.66), _floor_run(5.95, 7.07, 4.93), _floor_run(4.38, 6.38, 5.21)])
    assert (floor["fetch"], floor["insert"]) == (4.38, {"sqlite": 6.38, "postgres": 5.21})
    full = {"wall": 18.0, "sync": 17.0, "rss_mb": 134.0}
    sites = [{"database": db, "plugins": "all", "full": full, "full_walls": [18.0], "exact": {"full": True}} for db in ("sqlite", "postgres")]
    (_, confs, rows), *_ = bench.figures([{"label": "full", "size": (1_000, 300_000, 100_000, 50_000), "rows": 401_000, "floor": floor, "sites": sites}])
    table = {figure: dict(zip(confs, cells.values(), strict=True)) for figure, _, cells in rows}
    floor_row = next(cells for figure, cells in table.items() if figure.startswith("floor:"))
    assert floor_row["SQLite, every plugin"] == "4.38 + 6.38 = 10.76 s (download+parse median of 3.73, 5.95, 4.38; insert median of 4.67, 7.07, 6.38)"
    assert floor_row["PostgreSQL, every plugin"] == "4.38 + 5.21 = 9.59 s (download+parse median of 3.73, 5.95, 4.38; insert median of 5.66, 4.93, 5.21)"
    assert table["full sync / floor"] == {"SQLite, every plugin": "1.67 PASS", "PostgreSQL, every plugin": "1.88 PASS"}
    assert table["full sync, events delivered (before delivery)"]["SQLite, every plugin"] == "18.00 s (17.00 s), 22,278 rows/s"  # one full run: no note


def test_floor_runs_of_zero_is_refused_with_one_line(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--floor-runs", "0", "--databases", "sqlite"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("error: --floor-runs 0: give a count of 1 or more")


@pytest.mark.slow  # the smallest benchmark in a subprocess, on SQLite and PostgreSQL
def test_smallest_benchmark_prints_every_figure_with_its_goal(tmp_path: Path) -> None:
    measured = tmp_path / "bench.json"
    command = [sys.executable, str(ROOT / "bench" / "sync_bench.py"), "--size", "quick", "--only", "small", "--floor-runs", "3", "--full-runs", "2"]
    command += ["--json", str(measured)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
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
        ("incremental sync after a 1% spread (mutate_fraction) change, the sync process's first", "-"),
        ("incremental (first) / download+parse of the pages it read", "<= 1.5 (reference)"),
        ("incremental sync after a 1% spread (mutate_fraction) change, in a process that synced before", "-"),
        ("incremental (spread) / download+parse of the pages it read", "<= 1.5"),
        ("incremental sync after a 1% clustered", "-"),
        ("mirror exact after every sync", "exact"),
        ("`mdm vpp licenses --json`: peak RSS", "< 100 MB"),
    ):
        found = [cells for name, cells in rows.items() if name.startswith(figure)]
        assert found, f"missing figure {figure!r}"
        assert found[0][0] == goal
    exact = next(cells for name, cells in rows.items() if name.startswith("mirror exact"))
    assert all(cell.startswith("yes/yes/yes/yes PASS") for cell in exact[1:]), exact
    # a site's incremental syncs ran in one process, as `mdm run` runs them: the first (reference) and the rounds after it
    for site in json.loads(measured.read_text())["results"][0]["sites"]:
        pids = [r["incr"]["pid"] for name in ("first", "spread", "clustered") for r in site[f"rounds_{name}"]]
        assert len(pids) == 5 and len(set(pids)) == 1, (site["database"], site["plugins"], pids)
        assert site["full"]["pid"] != pids[0]  # the full sync: a process of its own
    cpu = next(cells for name, cells in rows.items() if name.startswith("incremental (spread): CPU of the sync"))
    # "<sync> + <simulator> s (floor: <replay> + <simulator> s)": four figures read from /proc
    assert all(re.fullmatch(r"\d+\.\d\d \+ \d+\.\d\d s \(floor: \d+\.\d\d \+ \d+\.\d\d s\)", cell) for cell in cpu[1:]), cpu
    ratio = next(cells for name, cells in rows.items() if name == "full sync / floor")
    assert ratio[1].endswith(("PASS", "MISS")) and ratio[2].endswith("(reference)")
    # the floor and the full sync: their median run, every run's figure beside it (table and progress)
    num = r"\d+\.\d\d"
    floor = next(cells for name, cells in rows.items() if name.startswith("floor: download+parse"))
    three = rf"median of {num}, {num}, {num}"
    assert all(re.fullmatch(rf"{num} \+ {num} = {num} s \(download\+parse {three}; insert {three}\)", cell) for cell in floor[1:]), floor
    full = next(cells for name, cells in rows.items() if name.startswith("full sync, events delivered"))
    assert all(re.fullmatch(rf"{num} s \({num} s\), [\d,]+ rows/s \(median of {num}, {num}\)", cell) for cell in full[1:]), full
    progress = next(line for line in run.stderr.splitlines() if "] floor: download+parse" in line)
    assert re.search(rf"download\+parse {num} s \({three}\)", progress) and re.search(rf"sqlite3.executemany {num} s \({three}\)", progress), progress


def _cells(line: str) -> list[str]:
    """The cells of a markdown table row (``| a | b |`` -> ``["a", "b"]``)."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.mark.slow  # a tenth of the district in a subprocess
def test_quick_web_benchmark_prints_every_figure() -> None:
    """`bench/web_bench.py --quick` keeps working: every console page and REST list it times answers."""
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "web_bench.py"), "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-2000:]
    for figure in ("assets, last page by total:", "VPP users, last page:", "asset, next device page:", "licenses (", "VPP users (", "peak RSS"):
        assert figure in run.stdout, f"missing figure {figure!r}"


@pytest.mark.slow  # a simulator of 20,000 assignments changed twice, in a subprocess
def test_simulator_reads_benchmark_serves_the_sync_pages_twice() -> None:
    """`bench/sim_reads.py` re-reads the assets a sync re-reads after each change (every one that
    lost assignments) and prints the simulator's CPU for the pages after the change and again."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sim_reads.py"), "--size", "quick", "--rounds", "2"], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    assert run.returncode == 0, run.stderr[-2000:]
    num = r"\d+\.\d ms \(\d+\.\d-\d+\.\d\)"
    rows = {_cells(line)[0]: _cells(line)[1:] for line in run.stdout.splitlines() if line.startswith("| ") and "---" not in line}
    pages = next(cells for name, cells in rows.items() if name.startswith("the sync's pages"))
    assert all(re.fullmatch(num, cell) for cell in pages) and len(pages) == 2, pages
    assert re.search(r"round 2: \d+ assets re-read, \d+ pages; after the change", run.stderr), run.stderr


def test_simulator_reads_benchmark_refuses_a_single_round(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("sim_reads", ROOT / "bench" / "sim_reads.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--rounds", "1"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("error: --rounds 1: give 2 or more (the first round is left out)")


def _load(name: str) -> ModuleType:
    """A script of ``bench/`` imported as a module (its folder on the path, as when it runs)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _busy(rounds: int) -> int:
    return sum(i * i for i in range(rounds))


def test_cpu_profile_of_a_sync_counts_the_threads_it_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--cprofile`: the work of the threads a sync starts (its pages re-read on threads of their
    own) is in the profile with the main thread's, and `cpu_phases.py` splits it by phase."""
    import threading

    workers, phases = _load("sync_workers"), _load("cpu_phases")
    profile = workers.ThreadCpuProfile()
    profile.start()
    try:
        threads = [threading.Thread(target=_busy, args=(20_000,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _busy(10)
    finally:
        profile.stop(str(tmp_path / "sync.pstats"))
    import pstats

    stats = pstats.Stats(str(tmp_path / "sync.pstats"))
    calls = {name: nc for (_, _, name), (_, nc, *_rest) in stats.stats.items()}  # type: ignore[attr-defined]
    assert calls["_busy"] == 4  # three threads and the main one
    assert phases.main([str(tmp_path / "sync.pstats")]) == 0
    out = capsys.readouterr().out
    assert "s of CPU on every thread" in out and "event delivery (plugins' hooks)" in out
    assert phases.main([str(tmp_path / "missing.pstats")]) == 2
    assert capsys.readouterr().err.startswith(f"{tmp_path / 'missing.pstats'}: not a profile written by sync_bench.py --cprofile")


def test_phases_of_a_sync_count_each_thread_and_leave_nothing_behind() -> None:
    """`--phases`: a phase's calls on every thread are counted (the pages parsed on the
    re-reading threads too, through the name the sync imported), and the functions are the
    original ones again afterwards."""
    import threading

    from plugins.vpp.apple import protocol
    from plugins.vpp.sync import read

    workers = _load("sync_workers")
    meter = workers.PhaseMeter()
    try:
        threads = [threading.Thread(target=read.page_assignments, args=({"assignments": []},)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        protocol.page_assignments({"assignments": []})
    finally:
        figures = meter.stop()
    calls, seconds = figures["parse (Apple's records)"]
    assert calls == 3 and seconds >= 0
    assert figures["event delivery (plugins' hooks)"] == [0, 0.0]
    assert read.page_assignments is protocol.page_assignments and not hasattr(protocol.page_assignments, "__wrapped__")


def _burn(seconds: float) -> None:
    """``seconds`` of this thread's CPU time, spent."""
    import time

    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_cpu_of_a_sync_by_thread_names_each_pool_and_the_main_thread(bench: ModuleType) -> None:
    """`--phases`: each thread's CPU, grouped by name without its number (the pool's threads
    together), the main thread's on its own and a thread still running read through its clock;
    the printed line says what no thread accounts for. Thread.run is the original afterwards."""
    import threading

    workers = _load("sync_workers")
    original = threading.Thread.run
    meter = workers.ThreadMeter()
    release = threading.Event()
    try:
        pool = [threading.Thread(target=_burn, args=(0.05,), name=f"vpp-page_{i}") for i in range(2)]

        def heartbeat() -> None:
            _burn(0.03)
            release.wait()

        waiting = threading.Thread(target=heartbeat, name="heartbeat-vpp.sync.1")
        for thread in (*pool, waiting):
            thread.start()
        for thread in pool:
            thread.join()
        _burn(0.04)
    finally:
        figures = meter.stop()
        release.set()
    assert threading.Thread.run is original
    assert list(figures)[0] == "main" and figures["main"][1] >= 0.04
    assert figures["vpp-page"][0] == 2 and 0.1 <= figures["vpp-page"][1] < 0.2, figures
    assert figures["heartbeat-vpp.sync.1 (still running)"][0] == 1 and figures["heartbeat-vpp.sync.1 (still running)"][1] >= 0.03, figures
    line = bench.thread_line(figures, 1.0)
    assert line.startswith("CPU by thread: main ") and "vpp-page " in line and "(2 threads)" in line and line.endswith("of the process's 1.000 s")
