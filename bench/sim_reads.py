"""The simulator's CPU for the pages of an incremental sync: served right after the change (as
the timed sync finds it) and served again (as the replay that is the sync's floor finds it).

    .venv/bin/python bench/sim_reads.py [--size full|tenth|quick] [--rounds 4]

In this process, without HTTP: each round changes 1% of assignments and users
(``mutate_fraction``, as ``sync_bench.py`` does), then answers the sync's requests (the users
and assignments written since the previous round, the asset listing, and every page of each
asset that lost assignments) through the simulator's API, encoded as its server sends
them, twice. Prints the thread CPU of each pass and of the cyclic collector within it; a full
collection is run before the first pass (it lands in whichever phase crosses its threshold).
Both passes answer the same pages: any difference is work a change left to its first reader.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sync_bench import SIZES  # noqa: E402

from plugins.vpp.simulator import Simulator  # noqa: E402

Request = tuple[str, dict[str, list[str]]]


class CollectorClock:
    """Thread CPU spent in the cyclic garbage collector since the last ``reset``."""

    def __init__(self) -> None:
        self.seconds, self._started = 0.0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._started

    def reset(self) -> None:
        self.seconds = 0.0


def sync_requests(sim: Simulator, before: set[tuple[str, ...]], versions: dict[str, str]) -> list[Request]:
    """The listings an incremental sync reads after a change, then the pages of each asset that lost
    assignments (its count no longer adds up with the additions listed: the sync re-reads it)."""
    changed = sorted({key[0] for key in before - set(sim.state.assignments.stamps)})
    requests: list[Request] = [
        ("users", {"sinceVersionId": [versions["users"]]}),
        ("assignments", {"sinceVersionId": [versions["assignments"]]}),
        ("assets", {}),
    ]
    requests += [("assignments", {"adamId": [adam_id]}) for adam_id in changed]
    return requests


def serve(sim: Simulator, requests: list[Request]) -> int:
    """Every page of every request, answered and encoded as the server sends it; returns the pages."""
    headers = {"Authorization": f"Bearer {sim.token}"}
    pages = 0
    for endpoint, query in requests:
        page_index: int | None = 0
        while page_index is not None:
            response = sim.api.handle("GET", f"/mdm/v2/{endpoint}", {**query, "pageIndex": [str(page_index)]}, headers, b"", "http://127.0.0.1")
            if response.status != 200:
                raise SystemExit(f"{endpoint} {query}: HTTP {response.status} {response.payload}")
            response.encode()
            pages += 1
            page_index = response.payload.get("nextPageIndex")
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["full", "tenth", "quick"], default="full")
    parser.add_argument("--rounds", type=int, default=4, help="changes in a row (the first one's figures are left out: a fresh process's first calls)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error(f"--rounds {args.rounds}: give 2 or more (the first round is left out)")
    assets, assignments, users, devices = SIZES[args.size]
    sim = Simulator(seed=args.seed, assets=assets, devices=devices, users=users, assignments=assignments, async_delay=0)
    clock = CollectorClock()
    rows: list[tuple[float, float, float, float, int]] = []
    for round_ in range(1, args.rounds + 1):
        before, versions = set(sim.state.assignments.stamps), sim.versions()
        sim.mutate_fraction(0.01, seed=round_)
        requests = sync_requests(sim, before, versions)
        del before
        gc.collect()
        figures: list[float] = []
        for _pass in ("after the change", "again"):
            clock.reset()
            started = time.thread_time()
            pages = serve(sim, requests)
            figures += [time.thread_time() - started, clock.seconds]
        rows.append((*figures, pages))  # type: ignore[arg-type]
        print(
            f"round {round_}: {len(requests) - 3} assets re-read, {pages} pages; after the change {figures[0] * 1000:.1f} ms "
            f"(collector {figures[1] * 1000:.1f} ms), again {figures[2] * 1000:.1f} ms (collector {figures[3] * 1000:.1f} ms)",
            file=sys.stderr,
        )
    kept = rows[1:]

    def spread(index: int) -> str:
        values = sorted(row[index] * 1000 for row in kept)
        return f"{values[len(values) // 2]:.1f} ms ({values[0]:.1f}-{values[-1]:.1f})"

    print(f"| {args.size}: simulator CPU, median round of {len(kept)} (range) | after the change | again |")
    print("|---|---|---|")
    print(f"| the sync's pages ({kept[0][4]:,} in round 2) | {spread(0)} | {spread(2)} |")
    print(f"| of which the cyclic collector | {spread(1)} | {spread(3)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
