"""How long the fast test subset (``pytest -m "not slow"``, the development loop) takes: wall
time and CPU seconds (user + system of pytest and every process it started, pytest-xdist
workers included), the goal being under a minute of wall time on 2 idle cores. The machine
load before and after is printed too: wall time means little on a busy machine, CPU seconds
less so.

    .venv/bin/python bench/suite_bench.py [--runs N] [-- PYTEST ARGS...]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_WALL = 60.0


def one_run(extra: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of one fast-subset run in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider", *extra], cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs to make (the median is printed)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    walls, cpus = [], []
    for n in range(args.runs):
        load = os.getloadavg()[0]
        wall, cpu, code = one_run(args.pytest_args)
        print(f"run {n + 1}: {wall:.1f} s wall, {cpu:.1f} CPU s, load {load:.1f} -> {os.getloadavg()[0]:.1f}, exit {code}", file=sys.stderr)
        if code != 0:
            print(f"the fast subset failed (exit {code}): run it to see why", file=sys.stderr)
            return 1
        walls.append(wall)
        cpus.append(cpu)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print("| figure | value | goal |")
    print("|---|---|---|")
    print(f"| fast subset, wall (median of {args.runs}) | {wall:.1f} s | < {GOAL_WALL:.0f} s on 2 idle cores: {'PASS' if wall < GOAL_WALL else 'MISS'} |")
    print(f"| fast subset, CPU user + system | {cpu:.1f} s | |")
    print(f"| cores, load average at the end | {os.cpu_count()}, {os.getloadavg()[0]:.1f} | load about 0-1 for a fair figure |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
