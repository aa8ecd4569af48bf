"""Benchmark of a large inventory import on SQLite: how long the write lock is held.

    .venv/bin/python bench/import_bench.py              # 300,000 devices (the size issue 17 measured)
    .venv/bin/python bench/import_bench.py --rows 30000

Prints one line per figure: the import's wall time, the longest time the database's write
lock was held by it (the longest wait of a second process adding one user every 50 ms while
the import runs), and the events delivered by the command itself within ``[core]
delivery_budget`` (the rest is left to ``mdm run``).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "conf").mkdir()
        (work / "conf" / "mdm.toml").write_text("")
        csv = work / "devices.csv"
        with open(csv, "w") as handle:
            handle.write("serial_number,platform,model\n")
            handle.writelines(f"B{i:011d},iOS,iPad\n" for i in range(args.rows))
        db = work / "var" / "mdm.sqlite3"
        env = {**os.environ, "MDM_DATABASE_URL": f"sqlite:///{db}", "MDM_SECRET_KEY": "bench", "PYTHONPATH": str(ROOT)}
        env.pop("MDM_CONFIG", None)
        mdm = [sys.executable, "-m", "mdm_core.cli", "--config", str(work / "conf" / "mdm.toml")]
        subprocess.run([*mdm, "db", "upgrade"], env=env, check=True, capture_output=True)

        waits: list[float] = []
        done = threading.Event()

        def writer() -> None:  # a second process's small writes, each timed
            conn = sqlite3.connect(db, timeout=600, isolation_level=None)
            n = 0
            while not done.is_set():
                started = time.monotonic()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO core_user (id, created_at) VALUES (?, datetime('now'))", (f"probe-{n}",))
                conn.execute("COMMIT")
                waits.append(time.monotonic() - started)
                n += 1
                time.sleep(0.05)
            conn.close()

        probe = threading.Thread(target=writer)
        started = time.monotonic()
        probe.start()
        result = subprocess.run([*mdm, "devices", "import", str(csv)], env=env, capture_output=True, text=True)
        wall = time.monotonic() - started
        done.set()
        probe.join()
        if result.returncode != 0:
            sys.exit(f"import failed: {result.stderr}")
        conn = sqlite3.connect(db)
        pending = conn.execute("SELECT count(*) FROM core_event WHERE delivered_at IS NULL").fetchone()[0]
        conn.close()
        print(f"import of {args.rows:,} devices: {wall:.1f} s wall ({result.stdout.strip()})")
        print(f"longest wait of another writer during the import: {max(waits):.2f} s over {len(waits)} writes (the write lock held at most that long)")
        print(f"events delivered by the command: {args.rows - pending:,}; left to `mdm run`: {pending:,}")


if __name__ == "__main__":
    main()
