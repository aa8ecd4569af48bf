"""The CPU of one sync split by phase, from its per-thread profile (``sync_bench.py --cprofile``).

    .venv/bin/python bench/cpu_phases.py KEEP_DIR/profile-quick-sqlite-all-incr-spread1.pstats

Each phase is the cumulative CPU time of the functions named for it (every thread's, summed);
the phases do not overlap: a page's download and parse is counted once, under ``download``
and ``parse``, whether the sync read it to stage or to compare. cProfile slows Python code
more than C code: compare the shares and call counts of two profiles, not their seconds with
the benchmark's CPU figures.
"""

from __future__ import annotations

import argparse
import pstats
import sys
from typing import Any

#: phase: (file suffix, function) pairs, their cumulative times summed
PHASES: dict[str, list[tuple[str, str]]] = {
    "download (HTTP, JSON)": [("apple/transport.py", "_request")],
    "parse (Apple's records)": [("apple/protocol.py", "page_assignments"), ("apple/protocol.py", "page_users"), ("apple/protocol.py", "page_assets")],
    "compare with the mirror": [("sync/read.py", "compared"), ("sync/read.py", "run")],
    "staging writes": [("sync/read.py", "_write")],
    "reconcile (counts)": [("sync/read.py", "mismatches")],
    "apply (one transaction)": [("sync/apply.py", "apply_read")],
    "event delivery (plugins' hooks)": [("mdm_core/host.py", "deliver_events")],
    "whole sync, main thread": [("sync/run.py", "sync_account")],
}


def phase_times(stats: pstats.Stats) -> dict[str, tuple[float, int]]:
    """Per phase: its cumulative seconds and the calls of its functions."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    out: dict[str, tuple[float, int]] = {}
    for phase, functions in PHASES.items():
        seconds, calls = 0.0, 0
        for (path, _line, name), (_cc, nc, _tt, ct, _callers) in table.items():
            if any(path.endswith(suffix) and name == function for suffix, function in functions):
                seconds += ct
                calls += nc
        out[phase] = (seconds, calls)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a sync's CPU by phase, from sync_bench.py --cprofile")
    parser.add_argument("pstats", nargs="+", help="profile files (profile-*.pstats in the --keep folder)")
    args = parser.parse_args(argv)
    for path in args.pstats:
        try:
            stats = pstats.Stats(path)
        except (OSError, TypeError, ValueError, EOFError) as exc:
            print(f"{path}: not a profile written by sync_bench.py --cprofile ({exc})", file=sys.stderr)
            return 2
        total = stats.total_tt  # type: ignore[attr-defined]
        print(f"{path}: {total:.3f} s of CPU on every thread (profiled)")
        for phase, (seconds, calls) in phase_times(stats).items():
            print(f"  {phase:34s} {seconds:7.3f} s {100 * seconds / total if total else 0:5.1f}%  {calls:6d} calls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
