"""The benchmark keeps working: `bench/sync_bench.py --quick` prints every figure (timings are
reported, never asserted: targets belong to the benchmark, not to a test that could flake)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_prints_every_figure() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "sync_bench.py"), "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout
    for figure in ("machine:", "full sync:", "floor:", "incremental after a 1% spread change", "incremental after a 1% clustered change",
                   "ratio full sync / floor", "ratio incremental (spread) / full", "peak RSS", "time per row"):
        assert figure in out, f"missing figure {figure!r}"
    assert "Traceback" not in run.stderr
