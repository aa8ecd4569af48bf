"""Benchmark of the VPP sync against the simulator on loopback; prints a markdown table of
every figure with its goal and PASS/MISS.

    .venv/bin/python bench/sync_bench.py                # full size (1,000 assets, 300k assignments, 100k users) and a tenth
    .venv/bin/python bench/sync_bench.py --size 10x     # ten times the full size, and the full size to compare with
    .venv/bin/python bench/sync_bench.py --size quick   # small sizes, about a minute (development)

Each size runs one simulator (its own process) and, for each database (SQLite, and PostgreSQL
when a server is given with ``--postgres URL`` or ``MDM_TEST_POSTGRES_URL``) and each plugin
set (every plugin, as ``mdm`` loads them by default; the VPP plugin alone, for reference), a
site of its own: its configuration and a new database (``mdm_bench_*`` on PostgreSQL, dropped
at the end). Every measurement runs in a fresh child process (``bench/sync_workers.py``), so
that a peak RSS is that process's alone. Per size:

1. the floor, ``--floor-runs`` times (3), each run in a fresh worker: every page downloaded and
   parsed with the sync's client (no database), and the same rows written to equivalent tables
   by ``sqlite3.executemany`` and by psycopg ``COPY``. The figure is the median download+parse
   plus each database's median insert, with every run's figures beside them (one run's
   download+parse of the same pages took 3.73 s, another's 5.95 s, on a shared machine);
2. per site: the full sync (as ``mdm vpp sync NAME --full`` runs it, events delivered), the
   mirror checked exact against the simulator (an order-free digest of every row), and
   ``mdm vpp licenses --json`` (peak RSS, time to the first row). With ``--full-runs N`` (1),
   the full sync runs N times, each further run on a new site of its own (a new database) that
   is dropped after it; the figure is the median run's, every run's time beside it;
3. on PostgreSQL, ``VACUUM (ANALYZE)`` of the sites' databases (what autovacuum does after the
   full sync's bulk writes, before a scheduled sync comes: left to autovacuum, it ran during
   the timed syncs of every site on the same two cores); then ``--rounds`` + 1 times: 1% of
   assignments and users changed, spread over the assets (the simulator's ``mutate_fraction``,
   another seed each round), then per site: the incremental sync, the mirror checked, and its
   floor: the pages that sync read, downloaded and parsed again by the same client (in a fresh
   worker whose client made its first request before the clock). Each site's incremental syncs
   run in one worker that stays up between the rounds, as ``mdm run`` runs an account's
   scheduled syncs: the first round (``first``, for reference) is also what ``mdm vpp sync``
   pays in a new process, the statements it compiles and the subscribers' modules it imports
   on first use (about 0.1 s); the figure is the median of the ``--rounds`` (3) after it, with
   every round's ratio beside it (one run on a shared machine moved by 0.3 either way);
4. the same after a clustered 1% change (removals on ~1% of the assets, additions anywhere).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKERS = Path(__file__).resolve().with_name("sync_workers.py")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sync_workers import apple_digest, process_cpu, psycopg_url, write_site_config  # noqa: E402

# name: (assets, assignments, users, devices)
SIZES = {
    "10x": (10_000, 3_000_000, 1_000_000, 500_000),
    "full": (1_000, 300_000, 100_000, 50_000),
    "tenth": (100, 30_000, 10_000, 5_000),
    "third": (334, 100_000, 33_000, 16_000),
    "quick": (100, 20_000, 6_000, 3_000),
    "quick-tenth": (10, 2_000, 600, 300),
}
# --size: the sizes run, the big one first; growth figures compare the first with the second
RUNS = {"default": ["full", "tenth"], "third": ["third", "tenth"], "10x": ["10x", "full"], "quick": ["quick", "quick-tenth"]}

GOALS = {
    "full_floor": 2.0,  # full sync / (download+parse + the database's bulk insert)
    "incremental_floor": 1.5,  # incremental sync / download+parse of the pages it read
    "rss_mb": 300.0,  # peak RSS of a sync
    "rss_growth": 1.5,  # peak RSS big / small size
    "per_row_growth": 1.3,  # time per row big / small size
    "listing_rss_mb": 100.0,  # peak RSS of `mdm vpp licenses --json`
}
DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
PLUGIN_SETS = {"all": "every plugin", "vpp": "vpp only"}
INSERT_FLOOR = {"sqlite": "sqlite3.executemany", "postgres": "psycopg COPY"}


# ---------------------------------------------------------------------------------- simulator


class Sim:
    """The simulator in its own process, and its control API."""

    def __init__(self, workdir: Path, seed: int, assets: int, assignments: int, users: int, devices: int, page_size: int | None):
        import requests

        self.token_file = workdir / "sim.vpptoken"
        cmd = [
            sys.executable,
            "-m",
            "plugins.vpp.simulator",
            "--port",
            "0",
            "--seed",
            str(seed),
            "--assets",
            str(assets),
            "--devices",
            str(devices),
            "--users",
            str(users),
            "--assignments",
            str(assignments),
            "--async-delay",
            "0",
            "--token-file",
            str(self.token_file),
        ]
        if page_size:
            cmd += ["--page-size", str(page_size)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"(http://\S+?)(/mdm/v2)", line)
        if not found:
            self.stop()
            raise SystemExit(f"the simulator did not start: {line!r}")
        self.root, self.base_url = found.group(1), found.group(1) + found.group(2)
        self.http = requests.Session()

    def change(self, action: str, **kwargs: Any) -> Any:
        response = self.http.post(f"{self.root}/_sim/change", json={"action": action, **kwargs}, timeout=600)
        if response.status_code != 200:
            raise RuntimeError(f"simulator change {action} {kwargs}: HTTP {response.status_code} {response.text[:200]}")
        return response.json()["result"]

    def snapshot(self) -> dict[str, Any]:
        response = self.http.get(f"{self.root}/_sim/snapshot", timeout=1800)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def clustered_change(sim: Sim, snap: dict[str, Any], fraction: float, seed: int) -> dict[str, int]:
    """1% of assignments and users changed the way a school does it: an app withdrawn from a
    few classes (the removals on ~1% of the assets), as many licenses assigned anywhere, and
    user changes that release no license (invitations accepted, unused invitations retired,
    new users)."""
    rng = random.Random(f"clustered/{seed}")
    assets = {(a["adamId"], a["pricingParam"]): a for a in snap["assets"]}
    keys = [tuple(k) for k in snap["assignments"]]
    held = set(keys)
    n_changes = round(len(keys) * fraction)
    n_remove, n_add = n_changes // 2 + n_changes % 2, n_changes // 2
    by_asset: dict[tuple[str, str], list[tuple[str, ...]]] = {}
    for key in keys:
        by_asset.setdefault((key[0], key[1]), []).append(key)
    k = max(1, round(len(assets) * fraction))
    revocable = sorted(a for a in by_asset if assets[a]["revocable"])
    rng.shuffle(revocable)
    big = [a for a in revocable if len(by_asset[a]) >= n_remove / k] or sorted(revocable, key=lambda a: -len(by_asset[a]))
    chosen = big[:k]
    while sum(len(by_asset[a]) for a in chosen) < n_remove and len(chosen) < len(revocable):
        chosen.append(next(a for a in revocable if a not in chosen))
    pool = sorted(key for a in chosen for key in by_asset[a])
    removed = rng.sample(pool, min(n_remove, len(pool)))
    for adam, pricing, kind, value in removed:
        target = {"serial_number": value} if kind == "serialNumber" else {"client_user_id": value}
        sim.change("remove", adam_id=adam, pricing_param=pricing, **target)
    # additions anywhere: device licenses of device-assignable assets (more bought where needed)
    device_assets = sorted(a for a, row in assets.items() if row["deviceAssignable"])
    serials = sorted({k[3] for k in keys if k[2] == "serialNumber"})
    gone = set(removed)
    adds: list[tuple[str, str, str, str]] = []
    picked: set[tuple[str, str, str, str]] = set()
    while len(adds) < n_add and device_assets and serials:
        a = device_assets[int(rng.random() * len(device_assets))]
        key = (a[0], a[1], "serialNumber", serials[int(rng.random() * len(serials))])
        if key not in held and key not in gone and key not in picked:
            picked.add(key)
            adds.append(key)
    need: dict[tuple[str, str], int] = {}
    for key in adds:
        need[key[:2]] = need.get(key[:2], 0) + 1
    for (adam, pricing), count in sorted(need.items()):
        sim.change("purchase", adam_id=adam, pricing_param=pricing, count=count)
    for adam, pricing, _, serial in adds:
        sim.change("assign", adam_id=adam, pricing_param=pricing, serial_number=serial)
    # users: as many as mutate_fraction changes, none of them holding a license
    users = snap["users"]
    active = [cid for cid, u in users.items() if u["status"] != "Retired"]
    n_users = round(len(active) * fraction)
    n_retire = max(1, n_users // 5) if n_users else 0
    registered = sorted(cid for cid, u in users.items() if u["status"] == "Registered")
    rng.shuffle(registered)
    n_accept = max(0, min(n_users - 2 * n_retire, len(registered) - n_retire))
    for cid in registered[:n_accept]:
        sim.change("accept_invite", client_user_id=cid)
    for cid in registered[n_accept : n_accept + n_retire]:
        sim.change("retire_user", client_user_id=cid)
    for i in range(n_retire):
        cid = f"user-cl{seed}-{i:06d}"
        sim.change("create_user", client_user_id=cid, managed_apple_id=f"{cid}@appleid.example.org")
    return {
        "assignments_removed": len(removed),
        "removal_assets": len(chosen),
        "assignments_added": len(adds),
        "users_accepted": n_accept,
        "users_retired": n_retire,
        "users_created": n_retire,
    }


# ---------------------------------------------------------------------------------- sites and databases


@dataclass
class Site:
    """One configuration under test: a database and a plugin set, with its own folder."""

    database: str  # sqlite | postgres
    plugins: str  # all | vpp
    dir: Path
    url: str  # the SQLAlchemy URL of its database
    pg_name: str | None = None
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{DATABASES[self.database]}, {PLUGIN_SETS[self.plugins]}"


def drop_database(conn: Any, name: str) -> None:
    """Drop a benchmark database, ending the sessions left on it. ``WITH (FORCE)`` may not end
    an autovacuum worker (after millions of rows it often runs: "must be a member of the role
    whose process is being terminated" for a role without pg_signal_backend); a plain DROP
    cancels autovacuum by itself."""
    import psycopg

    try:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.errors.InsufficientPrivilege:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


class PgServer:
    """Creates the benchmark's PostgreSQL databases (``mdm_bench_<pid>_...``) and drops them."""

    def __init__(self, url: str):
        self.url = url
        self.created: list[str] = []
        self._drop_stale()

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(psycopg_url(self.url), autocommit=True)

    def _drop_stale(self) -> None:
        """Databases left by a benchmark that was killed (its process is gone)."""
        with self._admin() as conn:
            names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'mdm\\_bench\\_%'")]
            for name in names:
                found = re.match(r"mdm_bench_(\d+)_", name)
                if found and not Path(f"/proc/{found.group(1)}").exists():
                    drop_database(conn, name)

    def create(self, suffix: str) -> tuple[str, str]:
        from sqlalchemy.engine import make_url

        name = re.sub(r"[^a-z0-9_]", "_", f"mdm_bench_{os.getpid()}_{suffix}".lower())
        with self._admin() as conn:
            drop_database(conn, name)
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return name, make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        with self._admin() as conn:
            drop_database(conn, name)
        self.created.remove(name)

    def drop_all(self) -> None:
        with self._admin() as conn:
            for name in self.created:
                drop_database(conn, name)
        self.created.clear()

    def vacuum(self, names: list[str]) -> float:
        """``VACUUM (ANALYZE)`` of these databases (what autovacuum does after a bulk write, by
        the time a scheduled sync comes); returns the seconds it took."""
        import psycopg
        from sqlalchemy.engine import make_url

        started = time.perf_counter()
        for name in names:
            with psycopg.connect(psycopg_url(make_url(self.url).set(database=name).render_as_string(hide_password=False)), autocommit=True) as conn:
                conn.execute("VACUUM (ANALYZE)")
        return time.perf_counter() - started

    def version(self) -> str:
        with self._admin() as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])


def median_run(values: Sequence[float]) -> float:
    """The median of several runs' figures: the middle one (of an even count, the lower of the
    two middle ones), a figure that was measured rather than an average of two."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def runs_note(values: Sequence[float]) -> str:
    """``median of a, b, c``: every run's figure in the order they ran; empty for one run."""
    return f"median of {', '.join(f'{v:.2f}' for v in values)}" if len(values) > 1 else ""


def median_floor(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The floor of several floor workers' results: the median download+parse and, on its own,
    each database's median insert; every run's figures kept (``fetch_runs``, ``insert_runs``)."""
    if any(r["rows"] != runs[0]["rows"] for r in runs):
        raise SystemExit(f"the floor's runs read different rows: {', '.join(str(r['rows']) for r in runs)} (the simulator changed between them)")
    floor = {**runs[0], "fetch_runs": [r["fetch"] for r in runs], "insert_runs": {db: [r["insert"][db] for r in runs] for db in runs[0]["insert"]}}
    floor["fetch"] = median_run(floor["fetch_runs"])
    floor["insert"] = {db: median_run(times) for db, times in floor["insert_runs"].items()}
    floor["rss_mb"] = max(r["rss_mb"] for r in runs)
    return floor


def round_ratio(one: dict[str, Any]) -> float:
    """An incremental sync's time over the download+parse of the pages it read."""
    return float(one["incr"]["wall"] / one["floor"]["fetch"]) if one["floor"]["fetch"] else float("inf")


def cpu_of_server(result: dict[str, Any]) -> str:
    """`` + server N s`` when the PostgreSQL server's CPU for the sync's connections was read."""
    server = result.get("server_cpu")
    return f" + server {server:.2f} s" if server is not None else ""


def phase_line(phases: dict[str, list[float]], replay_cpu: float) -> str:
    """A sync's CPU by phase (``--phases``), beside its replay's CPU (download+parse alone)."""
    parts = [f"{label} {seconds:.3f} s ({int(calls)})" for label, (calls, seconds) in phases.items()]
    return f"CPU by phase (calls): {'; '.join(parts)}; the replay's CPU {replay_cpu:.3f} s"


def thread_line(threads: dict[str, list[float]], cpu: float) -> str:
    """A sync's CPU by thread (``--phases``): the main thread's, each group's (threads of one
    pool or kind), and what neither accounts for of the process's CPU."""
    parts = [f"{group} {seconds:.3f} s" + (f" ({int(n)} threads)" if n > 1 else "") for group, (n, seconds) in threads.items()]
    rest = cpu - sum(seconds for _, seconds in threads.values())
    return f"CPU by thread: {'; '.join(parts)}; unaccounted {rest:.3f} s of the process's {cpu:.3f} s"


def with_simulator_cpu(sim: Sim, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()``'s result with ``sim_cpu``: the simulator's CPU seconds meanwhile (None where
    /proc cannot tell). The simulator shares the machine's cores with the sync: on 2 cores, a
    sync whose CPU, the simulator's and the database server's add up to twice its wall time had
    no idle core to go faster on."""
    before = process_cpu(sim.proc.pid)
    result = measure()
    after = process_cpu(sim.proc.pid)
    result["sim_cpu"] = None if before is None or after is None else after - before
    return result


#: the workers' environment: a deployed host runs from compiled modules (pip writes their
#: bytecode at install), so a PYTHONDONTWRITEBYTECODE set here is dropped: with it every worker
#: compiled every module from source again, inside the timed sync for those a sync imports on
#: first use (its event subscribers': 12 modules, about 0.04 s a sync)
WORKER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_worker(kind: str, site: Site, sim: Sim, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, str(WORKERS), kind, "--dir", str(site.dir), "--db", site.url, "--url", sim.base_url, "--token-file", str(sim.token_file), *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=WORKER_ENV)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"worker {kind} ({site.label}) failed (exit {done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return checked_sync(site, result) if kind == "sync" else result


def checked_sync(site: Site, result: dict[str, Any]) -> dict[str, Any]:
    """A sync worker's result, or the benchmark stopped on a sync that did not succeed."""
    if result["report"]["status"] != "ok":
        raise SystemExit(f"sync failed ({site.label}): {result['report']}")
    return result


class SyncProcess:
    """A site's ``syncs`` worker: its incremental syncs in one process that stays up between the
    rounds, as ``mdm run`` runs an account's scheduled syncs (a process pays once what its first
    sync compiles and imports; ``mdm vpp sync`` pays it at every run: the ``first`` change's figure)."""

    def __init__(self, site: Site):
        self.site = site
        self.errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (open while the worker lives: closed by close())
        cmd = [sys.executable, str(WORKERS), "syncs", "--dir", str(site.dir), "--db", site.url]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True, env=WORKER_ENV)

    def sync(self, *extra: str) -> dict[str, Any]:
        """One incremental sync (``extra``: its worker arguments) and its figures."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(list(extra)) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.proc.wait()
            self.errors.seek(0)
            sys.stderr.write(self.errors.read())
            raise SystemExit(f"worker syncs ({self.site.label}) failed (exit {self.proc.returncode})")
        return checked_sync(self.site, json.loads(line))

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):  # the worker ended already (its error is told by sync())
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.errors.close()


# ---------------------------------------------------------------------------------- one size


def run_size(label: str, args: argparse.Namespace, root: Path, pg: PgServer | None, say: Any) -> dict[str, Any]:
    assets, assignments, users, devices = SIZES[label]
    workdir = root / label
    workdir.mkdir()
    started = time.perf_counter()
    sim = Sim(workdir, args.seed, assets, assignments, users, devices, args.page_size)
    out: dict[str, Any] = {"label": label, "size": SIZES[label], "sites": []}
    try:
        say(
            f"[{label}] simulator up in {time.perf_counter() - started:.1f} s; "
            f"{assets:,} assets, {assignments:,} assignments, {users:,} users, {devices:,} devices"
        )

        def new_site(database: str, plugins: str, suffix: str = "") -> Site:
            """A site of its own: its folder, configuration and new database, the account added."""
            folder = workdir / f"{database}-{plugins}{suffix}"
            folder.mkdir()
            write_site_config(folder, plugins)
            if database == "sqlite":
                url = f"sqlite:///{folder / 'var' / 'mdm.sqlite3'}"
                name = None
            else:
                assert pg is not None
                name, url = pg.create(f"{label}_{plugins}{suffix}")
            site = Site(database, plugins, folder, url, name)
            site.results["loaded"] = run_worker("setup", site, sim)["plugins"]
            return site

        sites = [new_site(database, plugins) for database in args.databases for plugins in args.plugins]
        for site in sites:
            say(f"[{label}] {site.label}: plugins {', '.join(site.results['loaded'])}")

        floor_extra: list[str] = []
        if pg is not None and "postgres" in args.databases:
            floor_extra = ["--pg", pg.create(f"{label}_floor")[1]]
        if "sqlite" not in args.databases:
            floor_extra.append("--no-sqlite")  # 13 minutes of sqlite3.executemany at 10x, for no figure
        # the floor's median run: one run's download+parse of the same pages moved by 60% on a shared machine
        out["floor"] = floor = median_floor([run_worker("floor", sites[0], sim, *floor_extra) for _ in range(args.floor_runs)])
        out["rows"] = floor["rows"]

        def with_runs(value: float, runs: Sequence[float]) -> str:
            note = runs_note(runs)
            return f"{value:.2f} s ({note})" if note else f"{value:.2f} s"

        say(
            f"[{label}] floor: download+parse {with_runs(floor['fetch'], floor['fetch_runs'])} ({floor['pages']} pages, {floor['rows']:,} rows); "
            + "; ".join(f"{INSERT_FLOOR[db]} {with_runs(t, floor['insert_runs'][db])}" for db, t in floor["insert"].items())
        )

        def prof(site: Any, phase: str) -> list[str]:
            name = f"profile-{label}-{site.database}-{site.plugins}-{phase}"
            flags = ["--profile-out", str(root / f"{name}.txt")] if args.profile else []
            return flags + (["--cprofile-out", str(root / f"{name}.pstats")] if args.cprofile else [])

        want = apple_digest(sim.snapshot())
        for site in sites:
            runs = []
            for run in range(1, args.full_runs + 1):
                # a further run syncs a new site of its own: a full sync into an empty mirror, as the first
                into = site if run == 1 else new_site(site.database, site.plugins, f"_full{run}")
                r = run_worker("sync", into, sim, "--full", *prof(site, "full" if run == 1 else f"full{run}"))
                runs.append(r)
                say(
                    f"[{label}] {site.label}: full sync{f' (run {run})' if args.full_runs > 1 else ''} {r['wall']:.2f} s "
                    f"({r['sync']:.2f} s before event delivery), peak RSS {r['rss_mb']:.0f} MB, "
                    f"CPU {r['cpu']:.2f} s{cpu_of_server(r)}, mirror {'exact' if r['digest'] == want else 'DIFFERS'}"
                )
                if into is not site:
                    if into.pg_name and pg is not None:
                        pg.drop(into.pg_name)
                    shutil.rmtree(into.dir, ignore_errors=True)
            site.results["full_walls"] = [r["wall"] for r in runs]
            site.results["full"] = next(r for r in runs if r["wall"] == median_run(site.results["full_walls"]))
            site.results["exact"] = {"full": all(r["digest"] == want for r in runs)}
            if len(runs) > 1:
                say(f"[{label}] {site.label}: full sync {with_runs(site.results['full']['wall'], site.results['full_walls'])}")
            if args.listing and site.plugins == args.plugins[0]:
                lst = site.results["listing"] = run_worker("listing", site, sim)
                say(
                    f"[{label}] {site.label}: mdm vpp licenses --json: {lst['wall']:.2f} s, first row after {lst['first_row'] or 0:.2f} s, "
                    f"peak RSS {lst['rss_mb']:.0f} MB, {lst['rows']:,} licenses"
                )

        if pg is not None and args.incremental:
            settled = pg.vacuum([s.pg_name for s in sites if s.pg_name])
            say(f"[{label}] PostgreSQL: VACUUM (ANALYZE) of the sites' databases after the full syncs, {settled:.2f} s (autovacuum's work, done before)")
        # the spread change ``rounds`` times (another 1% each, seeds 1, 2, ...): its figure is the median round
        changes: list[tuple[str, Callable[[dict[str, Any]], Any]]] = []
        if args.incremental:  # first: the sync process's first (what `mdm vpp sync` pays at every run), for reference
            changes.append(("first", lambda snap: sim.change("mutate_fraction", fraction=args.fraction, seed=0)))
            spread = [lambda snap, seed=seed: sim.change("mutate_fraction", fraction=args.fraction, seed=seed) for seed in range(1, args.rounds + 1)]
            changes += [("spread", change) for change in spread]
        if args.clustered and args.incremental:
            changes.append(("clustered", lambda snap: clustered_change(sim, snap, args.fraction, 2)))
        snap: dict[str, Any] | None = None
        procs = {site.label: SyncProcess(site) for site in sites} if changes else {}  # as `mdm run`: one process each
        try:
            for index, (name, change) in enumerate(changes):
                out[f"{name}_change"] = change(snap if snap is not None else sim.snapshot())
                snap = sim.snapshot()
                want = apple_digest(snap)
                if index == len(changes) - 1:
                    snap = None
                for site in sites:
                    record = site.dir / f"traversals-{name}.json"
                    sync_args = ("--record", str(record), *prof(site, f"incr-{name}{index + 1}"), *(["--phases"] if args.phases else []))
                    r = with_simulator_cpu(sim, lambda: procs[site.label].sync(*sync_args))
                    site.results["exact"][name] = site.results["exact"].get(name, True) and r["digest"] == want
                    fl = with_simulator_cpu(sim, lambda: run_worker("replay", site, sim, "--record", str(record)))
                    site.results.setdefault(f"rounds_{name}", []).append({"incr": r, "floor": fl})
                    lc = r["report"]["counts"]["licenses"]
                    say(
                        f"[{label}] {site.label}: incremental after the {name} change {r['wall']:.2f} s ({lc['reread_assets']:,} assets re-read, "
                        f"{r['pages_read']} pages; their download+parse {fl['fetch']:.2f} s, CPU {fl['cpu']:.2f} s), CPU {r['cpu']:.2f} s{cpu_of_server(r)}, "
                        f"mirror {'exact' if r['digest'] == want else 'DIFFERS'}"
                    )
                    if r.get("phases"):
                        say(f"[{label}] {site.label}: {phase_line(r['phases'], fl['cpu'])}")
                    if r.get("threads"):
                        say(f"[{label}] {site.label}: {thread_line(r['threads'], r['cpu'])}")
        finally:
            for proc in procs.values():
                proc.close()
        for site in sites:  # each change's figures: its median round (by the ratio to its floor)
            for name in {n for n, _ in changes}:
                rounds = sorted(site.results[f"rounds_{name}"], key=lambda x: round_ratio(x))
                middle = rounds[(len(rounds) - 1) // 2]
                site.results[f"incr_{name}"], site.results[f"floor_{name}"] = middle["incr"], middle["floor"]
                site.results[f"ratios_{name}"] = [round_ratio(x) for x in site.results[f"rounds_{name}"]]
        out["sites"] = [{"database": s.database, "plugins": s.plugins, **s.results} for s in sites]
        return out
    finally:
        sim.stop()


# ---------------------------------------------------------------------------------- the table


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def figures(results: list[dict[str, Any]]) -> list[tuple[str, list[str], list[tuple[str, str, dict[str, str]]]]]:
    """Per size: the configurations and rows of (figure, goal, cell per configuration). A cell
    holds the value and PASS/MISS where a goal applies: the sync's goals hold for every plugin
    enabled (the real configuration); the VPP plugin alone is for reference."""
    tables = []

    def conf_of(site: dict[str, Any]) -> str:
        return f"{DATABASES[site['database']]}, {PLUGIN_SETS[site['plugins']]}"

    def cell(value: str, ok: bool | None, applies: bool = True) -> str:
        return value if ok is None else f"{value} {mark(ok)}" if applies else f"{value} (reference)"

    for size in results:
        a, n, u, _ = size["size"]
        fl = size["floor"]
        confs = [conf_of(s) for s in size["sites"]]
        rows: list[tuple[str, str, dict[str, str]]] = []

        def add(figure: str, goal: str, fn: Any) -> None:
            cells = {conf_of(s): fn(s) for s in size["sites"]}
            if any(v is not None for v in cells.values()):
                rows.append((figure, goal, {k: v or "-" for k, v in cells.items()}))

        def floor_s(s: dict[str, Any]) -> float:
            return float(fl["fetch"] + fl["insert"][s["database"]])

        def floor_cell(s: dict[str, Any]) -> str:
            db = s["database"]
            runs = [f"{what} {note}" for what, note in (("download+parse", runs_note(fl["fetch_runs"])), ("insert", runs_note(fl["insert_runs"][db]))) if note]
            return f"{fl['fetch']:.2f} + {fl['insert'][db]:.2f} = {floor_s(s):.2f} s" + (f" ({'; '.join(runs)})" if runs else "")

        def full_cell(s: dict[str, Any]) -> str:
            note = runs_note(s["full_walls"])
            return f"{s['full']['wall']:.2f} s ({s['full']['sync']:.2f} s), {size['rows'] / s['full']['wall']:,.0f} rows/s" + (f" ({note})" if note else "")

        add(
            f"floor: download+parse of every page ({fl['pages']:,} pages, {fl['rows']:,} rows) + the same rows bulk-inserted "
            "(sqlite3.executemany / psycopg COPY)",
            "-",
            floor_cell,
        )
        add("full sync, events delivered (before delivery)", "-", full_cell)
        add(
            "full sync / floor",
            f"<= {GOALS['full_floor']:g}",
            lambda s: cell(f"{s['full']['wall'] / floor_s(s):.2f}", s["full"]["wall"] / floor_s(s) <= GOALS["full_floor"], s["plugins"] == "all"),
        )
        add("peak RSS of the full sync", f"< {GOALS['rss_mb']:g} MB", lambda s: cell(f"{s['full']['rss_mb']:.0f} MB", s["full"]["rss_mb"] < GOALS["rss_mb"]))
        for name, what in (
            ("first", "spread (mutate_fraction) change, the sync process's first (as `mdm vpp sync` runs it; reference)"),
            ("spread", "spread (mutate_fraction) change, in a process that synced before (as `mdm run` runs it)"),
            ("clustered", "clustered change"),
        ):

            def incr(s: dict[str, Any], name: str = name) -> str | None:
                if f"incr_{name}" not in s:
                    return None
                inc, lc = s[f"incr_{name}"], s[f"incr_{name}"]["report"]["counts"]["licenses"]
                return f"{inc['wall']:.2f} s ({lc['reread_assets']:,} of {a:,} assets re-read, {inc['pages_read']:,} pages)"

            def ratio(s: dict[str, Any], name: str = name) -> str | None:
                if f"incr_{name}" not in s:
                    return None
                ifl = s[f"floor_{name}"]
                value = round_ratio({"incr": s[f"incr_{name}"], "floor": ifl})
                ratios = s.get(f"ratios_{name}") or [value]
                rounds = f"{runs_note(ratios)}; " if len(ratios) > 1 else ""
                applies = s["plugins"] == "all" and name == "spread"
                return cell(f"{value:.2f} ({rounds}pages: {ifl['fetch']:.2f} s)", value <= GOALS["incremental_floor"], applies)

            def cpu(s: dict[str, Any], name: str = name) -> str | None:
                if f"incr_{name}" not in s:
                    return None
                inc, ifl = s[f"incr_{name}"], s[f"floor_{name}"]
                if inc.get("sim_cpu") is None or ifl.get("cpu") is None:
                    return "-"
                sync = inc["cpu"] + (inc.get("server_cpu") or 0.0)
                return f"{sync:.2f} + {inc['sim_cpu']:.2f} s (floor: {ifl['cpu']:.2f} + {ifl['sim_cpu']:.2f} s)"

            add(f"incremental sync after a 1% {what}", "-", incr)
            add(f"incremental ({name}): CPU of the sync (with the database server's) + of the simulator", "-", cpu)
            add(
                f"incremental ({name}) / download+parse of the pages it read",
                f"<= {GOALS['incremental_floor']:g}" + ("" if name == "spread" else " (reference)"),
                ratio,
            )
        add(
            "mirror exact after every sync (full, first, spread, clustered)",
            "exact",
            lambda s: cell("/".join("yes" if v else "NO" for v in s["exact"].values()), all(s["exact"].values())),
        )
        add(
            "`mdm vpp licenses --json`: peak RSS (time, first row after)",
            f"< {GOALS['listing_rss_mb']:g} MB",
            lambda s: (
                cell(
                    f"{s['listing']['rss_mb']:.0f} MB ({s['listing']['wall']:.2f} s, {s['listing']['first_row'] or 0:.2f} s; {s['listing']['rows']:,} rows)",
                    s["listing"]["rss_mb"] < GOALS["listing_rss_mb"] and s["listing"]["exit"] == 0,
                )
                if "listing" in s
                else None
            ),
        )
        tables.append((f"{size['label']}: {a:,} assets, {n:,} assignments, {u:,} users", confs, rows))
    if len(results) == 2:
        big, small = results
        pairs = [(b, s) for b in big["sites"] for s in small["sites"] if (b["database"], b["plugins"]) == (s["database"], s["plugins"])]
        confs = [conf_of(b) for b, _ in pairs]

        def per_row(b: dict[str, Any], s: dict[str, Any]) -> str:
            pb, ps = b["full"]["wall"] / big["rows"], s["full"]["wall"] / small["rows"]
            return cell(f"{pb / ps:.2f} ({pb * 1e6:.1f} / {ps * 1e6:.1f} us)", pb / ps <= GOALS["per_row_growth"])

        def rss(b: dict[str, Any], s: dict[str, Any]) -> str:
            g = b["full"]["rss_mb"] / s["full"]["rss_mb"]
            return cell(f"{g:.2f} ({b['full']['rss_mb']:.0f} / {s['full']['rss_mb']:.0f} MB)", g <= GOALS["rss_growth"])

        rows = [
            ("time per row of the full sync", f"<= {GOALS['per_row_growth']:g}", {conf_of(b): per_row(b, s) for b, s in pairs}),
            ("peak RSS of the full sync", f"<= {GOALS['rss_growth']:g}", {conf_of(b): rss(b, s) for b, s in pairs}),
        ]
        tables.append((f"{big['label']} / {small['label']}", confs, rows))
    return tables


def markdown(tables: list[tuple[str, list[str], list[tuple[str, str, dict[str, str]]]]], header: list[str]) -> str:
    out = list(header)
    for title, confs, rows in tables:
        out += ["", f"| {title} | goal | " + " | ".join(confs) + " |", "|---|---|" + "---|" * len(confs)]
        out += [f"| {figure} | {goal} | " + " | ".join(cells.get(c, "-") for c in confs) + " |" for figure, goal, cells in rows]
    return "\n".join(out) + "\n"


def machine(pg: PgServer | None) -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")).split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    postgres = f", PostgreSQL {pg.version()}" if pg is not None else ""
    return (
        f"{model}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}{postgres}, "
        f"{platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", choices=sorted(RUNS), default="default", help="default: full and a tenth; 10x: ten times the full size and the full size; quick: small sizes"
    )
    parser.add_argument("--quick", action="store_const", const="quick", dest="size", help="the same as --size quick")
    parser.add_argument("--only", choices=["big", "small"], help="run one size only (no growth figures)")
    parser.add_argument("--databases", default=None, help="comma-separated: sqlite,postgres (default: both when a PostgreSQL server is known)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("MDM_BENCH_POSTGRES_URL") or os.environ.get("MDM_TEST_POSTGRES_URL"),
        help="a PostgreSQL server (SQLAlchemy URL; the role needs CREATEDB) where mdm_bench_* databases are created and dropped "
        "(default: $MDM_BENCH_POSTGRES_URL or $MDM_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--plugins", default="all,vpp", help="comma-separated plugin sets: all (as mdm runs by default), vpp (the VPP plugin alone)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fraction", type=float, default=0.01, help="share of assignments and users changed before the incremental sync")
    parser.add_argument("--page-size", type=int, default=None, help="simulator page size (default: the simulator's, 437)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="spread changes in a row, each followed by its incremental sync and its floor: the figure is the median round"
    )
    parser.add_argument(
        "--floor-runs",
        type=int,
        default=3,
        help="floor runs per size, each in a fresh worker: the figure is the median download+parse and each database's median insert",
    )
    parser.add_argument("--full-runs", type=int, default=1, help="full syncs per site, each further one on a new site of its own: the figure is the median run")
    parser.add_argument("--no-clustered", dest="clustered", action="store_false", help="skip the clustered-change incremental sync")
    parser.add_argument("--no-listing", dest="listing", action="store_false", help="skip `mdm vpp licenses --json`")
    parser.add_argument(
        "--no-incremental",
        dest="incremental",
        action="store_false",
        help="the full sync alone (its time per row, peak RSS and exact mirror): the quickest --size 10x",
    )
    parser.add_argument("--profile", action="store_true", help="profile each sync with pyinstrument (slower; texts left in the --keep folder)")
    parser.add_argument(
        "--cprofile", action="store_true", help="profile each sync's CPU time on every thread with cProfile (pstats files left in the --keep folder)"
    )
    parser.add_argument(
        "--phases", action="store_true", help="each incremental sync's CPU by phase (download, parse, apply, event delivery...), on stderr and in --json"
    )
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (databases, profiles)")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table to PATH")
    args = parser.parse_args(argv)

    for option, value in (("--floor-runs", args.floor_runs), ("--full-runs", args.full_runs)):
        if value < 1:
            parser.error(f"{option} {value}: give a count of 1 or more")
    args.plugins = [p.strip() for p in args.plugins.split(",") if p.strip()]
    if not args.plugins or any(p not in PLUGIN_SETS for p in args.plugins):
        parser.error(f"--plugins: give one or more of {', '.join(PLUGIN_SETS)}")
    if args.databases is None:
        args.databases = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    else:
        args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
        if not args.databases or any(d not in DATABASES for d in args.databases):
            parser.error(f"--databases: give one or more of {', '.join(DATABASES)}")
    if "postgres" in args.databases and not args.postgres:
        parser.error("--databases postgres needs a server: --postgres postgresql+psycopg://USER:PASS@HOST/DB (or MDM_TEST_POSTGRES_URL)")

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    labels = RUNS[args.size]
    if args.only:
        labels = labels[:1] if args.only == "big" else labels[1:]
    pg = PgServer(args.postgres) if "postgres" in args.databases else None
    load_start = os.getloadavg()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vpp-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        for label in labels:
            results.append(run_size(label, args, root, pg, say))
    finally:
        if pg is not None:
            pg.drop_all()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    load_end = os.getloadavg()
    header = [
        f"Machine: {machine(pg)}.",
        f"Load average (1, 5, 15 min) at the start {', '.join(f'{x:.2f}' for x in load_start)}; at the end {', '.join(f'{x:.2f}' for x in load_end)}; "
        f"the benchmark took {time.perf_counter() - t0:.0f} s.",
        f"Command: `{' '.join(['bench/sync_bench.py', *(argv if argv is not None else sys.argv[1:])])}`; simulator seed {args.seed}, "
        f"page size {args.page_size or 437}; wall times include the simulator's CPU on the same cores. Goals of the sync hold for every "
        "plugin enabled (as `mdm` runs by default); the VPP plugin alone is for reference.",
    ]
    table = markdown(figures(results), header)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
