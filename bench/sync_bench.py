"""Benchmark of the VPP sync against the simulator on loopback: one line per figure.

    .venv/bin/python bench/sync_bench.py            # full size (1,000 assets, 300k assignments, 100k users) and a tenth
    .venv/bin/python bench/sync_bench.py --quick    # small sizes, under a minute (CI, development)

The simulator runs in its own process (``python -m plugins.vpp.simulator``) and every sync,
and the floor, runs in a fresh child process (``--worker``) so that the peak RSS printed is
that of the syncing process alone. Figures per size:

- full sync: wall time of ``sync_account(full=True)`` (events delivered included), rows/s, peak RSS;
- incremental sync after 1% of assignments and users changed, twice: the simulator's
  ``mutate_fraction`` (removals spread over most assets: every touched asset's assignments are
  read again) and a clustered change (removals on ~1% of the assets, additions anywhere);
- the floor on the same data: every page downloaded and parsed with the same client and
  parallelism, no database; plus ``sqlite3.executemany`` of the same rows into equivalent tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "bench"
SECRET = "bench-secret-key"

# name: (assets, assignments, users, devices)
SIZES = {
    "full": (1_000, 300_000, 100_000, 50_000),
    "tenth": (100, 30_000, 10_000, 5_000),
    "quick": (100, 20_000, 6_000, 3_000),
    "quick-tenth": (10, 2_000, 600, 300),
}

ALL_PLUGINS = False
TARGETS = {"floor": 2.0, "incremental": 0.10, "rss_mb": 300.0, "rss_growth": 1.5, "per_row_growth": 1.3}


# ---------------------------------------------------------------------------------- worker side

def _host(workdir: Path, all_plugins: bool = False) -> Any:
    from mdm_core.host import create_host

    conf = workdir / "conf" / "mdm.toml"
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        (workdir / "var").mkdir(exist_ok=True)
        # by default only the VPP plugin: other plugins' event subscribers are their own cost
        disabled = "" if all_plugins else '\n[plugins]\ndisabled = ["mobile_apps"]\n'
        conf.write_text(f'[core]\nvar_dir = "{workdir / "var"}"\n{disabled}')
    env = {**os.environ, "MDM_SECRET_KEY": SECRET}
    env.pop("MDM_DATABASE_URL", None)
    env.pop("MDM_CONFIG", None)
    return create_host(conf, environ=env, database_url=f"sqlite:///{workdir / 'var' / 'mdm.sqlite3'}")


def _rss_mb() -> float:
    """Peak RSS of this process. VmHWM (Linux), not ru_maxrss: the latter keeps the RSS of the
    parent at fork/exec time, so a child of a big driver would report the driver's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def worker_setup(args: argparse.Namespace) -> dict[str, Any]:
    from plugins.vpp.accounts import add_account

    host = _host(Path(args.dir), args.all_plugins)
    try:
        add_account(host, ACCOUNT, args.token_file, service_url=args.url)
    finally:
        host.close()
    return {"ok": True, "plugins": [r.name for r in host.plugins]}


def worker_sync(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select

    from plugins.vpp.models import VppAsset, VppLicense, VppUser
    from plugins.vpp.sync.run import sync_account

    host = _host(Path(args.dir))
    try:
        _ = host.db  # tables exist before the clock starts
        profiler = None
        if args.profile_out:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.005)
            profiler.start()
        started = time.perf_counter()
        report = sync_account(host, ACCOUNT, full=args.full, trigger="manual")
        wall = time.perf_counter() - started
        if profiler is not None:
            profiler.stop()
            Path(args.profile_out).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        rss = _rss_mb()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        with host.db.session() as session:
            mirror = {name: session.execute(select(func.count()).select_from(model)).scalar_one()
                      for name, model in (("assets", VppAsset), ("licenses", VppLicense), ("users", VppUser))}
    finally:
        host.close()
    return {"wall": wall, "sync": report["duration_s"], "cpu": cpu, "rss_mb": rss, "report": report, "mirror": mirror}


FLOOR_SCHEMA = """
CREATE TABLE vpp_asset (account_id INTEGER NOT NULL, adam_id VARCHAR(32) NOT NULL, pricing_param VARCHAR(8) NOT NULL,
  product_type VARCHAR(16) NOT NULL, assigned_count INTEGER NOT NULL, available_count INTEGER NOT NULL,
  retired_count INTEGER NOT NULL, total_count INTEGER NOT NULL, device_assignable BOOLEAN NOT NULL,
  revocable BOOLEAN NOT NULL, supported_platforms JSON NOT NULL, updated_at DATETIME NOT NULL,
  PRIMARY KEY (account_id, adam_id, pricing_param));
CREATE TABLE vpp_user (account_id INTEGER NOT NULL, client_user_id VARCHAR(255) NOT NULL, email VARCHAR(255),
  status VARCHAR(16) NOT NULL, id_hash VARCHAR(255), invite_code VARCHAR(255), updated_at DATETIME NOT NULL,
  PRIMARY KEY (account_id, client_user_id));
CREATE TABLE vpp_license (account_id INTEGER NOT NULL, adam_id VARCHAR(32) NOT NULL, pricing_param VARCHAR(8) NOT NULL,
  kind VARCHAR(8) NOT NULL, target VARCHAR(255) NOT NULL, PRIMARY KEY (account_id, adam_id, pricing_param, kind, target));
CREATE INDEX ix_vpp_license_target ON vpp_license (account_id, kind, target);
"""


def worker_floor(args: argparse.Namespace) -> dict[str, Any]:
    """Download and parse every page with the sync's own client; then sqlite3.executemany the rows."""
    from plugins.vpp.accounts import client_for, get_account
    from plugins.vpp.apple.protocol import page_assets, page_assignments, page_users

    host = _host(Path(args.dir))
    with host.db.session() as session:
        account = get_account(session, ACCOUNT)
    client = client_for(host, account)
    try:
        started = time.perf_counter()
        assets: list[dict[str, Any]] = []
        users: list[dict[str, Any]] = []
        licenses: list[tuple[str, str, str, str]] = []
        pages = 0
        for page in client.iter_assets():
            assets.extend(page_assets(page))
            pages += 1
        for page in client.iter_users():
            users.extend(page_users(page))
            pages += 1
        for page in client.iter_assignments():
            licenses.extend(page_assignments(page))
            pages += 1
        fetch = time.perf_counter() - started
    finally:
        client.close()
        host.close()

    path = Path(args.dir) / "floor.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    now = "2025-01-01 00:00:00.000000"
    started = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(FLOOR_SCHEMA)
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO vpp_asset VALUES (1,?,?,?,?,?,?,?,?,?,?,?)", [
        (a["adam_id"], a["pricing_param"], a["product_type"], a["assigned_count"], a["available_count"], a["retired_count"],
         a["total_count"], a["device_assignable"], a["revocable"], json.dumps(a["supported_platforms"]), now) for a in assets])
    db.executemany("INSERT OR REPLACE INTO vpp_user VALUES (1,?,?,?,?,?,?)", [
        (u["client_user_id"], u["email"], u["status"], u["id_hash"], u["invite_code"], now) for u in users])
    db.executemany("INSERT INTO vpp_license VALUES (1,?,?,?,?)", licenses)
    db.execute("COMMIT")
    db.close()
    insert = time.perf_counter() - started
    return {"fetch": fetch, "insert": insert, "pages": pages, "rows": len(assets) + len(users) + len(licenses),
            "assets": len(assets), "users": len(users), "licenses": len(licenses), "rss_mb": _rss_mb()}


WORKERS = {"setup": worker_setup, "sync": worker_sync, "floor": worker_floor}


# ---------------------------------------------------------------------------------- driver side

class Sim:
    """The simulator in its own process, and its control API."""

    def __init__(self, workdir: Path, seed: int, assets: int, assignments: int, users: int, devices: int, page_size: int | None):
        import requests

        self.token_file = workdir / "sim.vpptoken"
        cmd = [sys.executable, "-m", "plugins.vpp.simulator", "--port", "0", "--seed", str(seed), "--assets", str(assets),
               "--devices", str(devices), "--users", str(users), "--assignments", str(assignments),
               "--async-delay", "0", "--token-file", str(self.token_file)]
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
        response = self.http.get(f"{self.root}/_sim/snapshot", timeout=600)
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


def run_worker(kind: str, workdir: Path, sim: Sim, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--dir", str(workdir), "--url", sim.base_url,
           "--token-file", str(sim.token_file), *extra]
    if kind == "setup" and ALL_PLUGINS:
        cmd.append("--all-plugins")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"worker {kind} failed (exit {done.returncode})")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if kind == "sync" and result["report"]["status"] != "ok":
        raise SystemExit(f"sync failed: {result['report']}")
    return result


def clustered_change(sim: Sim, fraction: float, seed: int) -> dict[str, int]:
    """1% of assignments and users changed the way a school does it: an app withdrawn from a
    few classes (the removals on ~1% of the assets), as many licenses assigned anywhere, and
    user changes that release no license (invitations accepted, unused invitations retired,
    new users)."""
    snap = sim.snapshot()
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
    for cid in registered[n_accept:n_accept + n_retire]:
        sim.change("retire_user", client_user_id=cid)
    for i in range(n_retire):
        cid = f"user-cl{seed}-{i:06d}"
        sim.change("create_user", client_user_id=cid, managed_apple_id=f"{cid}@appleid.example.org")
    return {"assignments_removed": len(removed), "removal_assets": len(chosen), "assignments_added": len(adds),
            "users_accepted": n_accept, "users_retired": n_retire, "users_created": n_retire}


def check_mirror(sim: Sim, result: dict[str, Any], what: str) -> None:
    snap = sim.snapshot()
    want = {"assets": len(snap["assets"]), "licenses": len(snap["assignments"]), "users": len(snap["users"])}
    if result["mirror"] != want:
        raise SystemExit(f"{what}: the mirror {result['mirror']} does not match the simulator {want}")


def run_size(label: str, size: tuple[int, int, int, int], args: argparse.Namespace, root: Path, say: Any) -> dict[str, Any]:
    assets, assignments, users, devices = size
    workdir = root / label
    workdir.mkdir()
    started = time.perf_counter()
    sim = Sim(workdir, args.seed, assets, assignments, users, devices, args.page_size)
    try:
        say(f"[{label}] simulator up in {time.perf_counter() - started:.1f} s at {sim.base_url}; "
            f"{assets:,} assets, {assignments:,} assignments, {users:,} users, {devices:,} devices")
        plugins = run_worker("setup", workdir, sim)["plugins"]
        say(f"[{label}] host plugins: {', '.join(plugins)}")
        floor = run_worker("floor", workdir, sim)
        prof = lambda phase: ["--profile-out", str(root / f"profile-{label}-{phase}.txt")] if args.profile else []  # noqa: E731
        full = run_worker("sync", workdir, sim, "--full", *prof("full"))
        check_mirror(sim, full, f"{label} full sync")
        out: dict[str, Any] = {"label": label, "size": size, "floor": floor, "full": full, "rows": floor["rows"]}
        spread = sim.change("mutate_fraction", fraction=args.fraction, seed=1)
        out["spread_change"] = spread
        out["incr_spread"] = run_worker("sync", workdir, sim, *prof("incr-spread"))
        check_mirror(sim, out["incr_spread"], f"{label} incremental (spread)")
        if args.clustered:
            out["clustered_change"] = clustered_change(sim, args.fraction, 2)
            out["incr_clustered"] = run_worker("sync", workdir, sim, *prof("incr-clustered"))
            check_mirror(sim, out["incr_clustered"], f"{label} incremental (clustered)")
        return out
    finally:
        sim.stop()


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fraction", type=float, default=0.01, help="share of assignments and users changed before the incremental sync")
    parser.add_argument("--page-size", type=int, default=None, help="simulator page size (default: the simulator's, 437)")
    parser.add_argument("--no-clustered", dest="clustered", action="store_false", help="skip the clustered-change incremental sync")
    parser.add_argument("--only", choices=["big", "small"], help="run one size only (no growth ratios)")
    parser.add_argument("--profile", action="store_true", help="profile each sync child with pyinstrument (slower; texts left in --keep dir)")
    parser.add_argument("--all-plugins", action="store_true", help="load every installed plugin (default: only vpp; mobile_apps is disabled)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (databases, profiles)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the figures as a markdown table")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token-file", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", dest="profile_out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args), default=str))
        return 0

    global ALL_PLUGINS
    ALL_PLUGINS = args.all_plugins
    sys.path.insert(0, str(ROOT))
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)

    def figure(text: str) -> None:
        lines.append(text)
        say(text)

    big_label, small_label = ("quick", "quick-tenth") if args.quick else ("full", "tenth")
    labels = [big_label, small_label] if args.only is None else [big_label if args.only == "big" else small_label]
    figure(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.2f}")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vpp-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    try:
        for label in labels:
            results[label] = r = run_size(label, SIZES[label], args, root, say)
            a, n, u, d = r["size"]
            fl, full = r["floor"], r["full"]
            rows = r["rows"]
            pages = full["report"]["pages"]
            floor_s = fl["fetch"] + fl["insert"]
            tag = f"[{label}: {a:,} assets, {n:,} assignments, {u:,} users]"
            figure(f"{tag} full sync: {full['wall']:.2f} s wall ({full['sync']:.2f} s sync + {full['wall'] - full['sync']:.2f} s event delivery; "
                   f"{full['cpu']:.1f} s CPU), {rows:,} rows, {rows / full['wall']:,.0f} rows/s, peak RSS {full['rss_mb']:.0f} MB, {pages} pages")
            figure(f"{tag} floor: {floor_s:.2f} s = download+parse {fl['fetch']:.2f} s ({fl['pages']} pages, same client, 5 in flight) + sqlite3.executemany {fl['insert']:.2f} s ({fl['rows']:,} rows, WAL)")
            sc = r["spread_change"]
            inc = r["incr_spread"]
            lc = inc["report"]["counts"]["licenses"]
            figure(f"{tag} incremental after a 1% spread change (mutate_fraction: -{sc['assignments_removed']:,}/+{sc['assignments_added']:,} licenses, "
                   f"{sc['users_updated'] + sc['users_retired'] + sc['users_created']:,} users): {inc['wall']:.2f} s wall ({inc['sync']:.2f} s sync), "
                   f"{lc['reread_assets']:,} of {a:,} assets re-read, {inc['report']['pages']} pages, peak RSS {inc['rss_mb']:.0f} MB")
            if "incr_clustered" in r:
                cc, inc2 = r["clustered_change"], r["incr_clustered"]
                lc2 = inc2["report"]["counts"]["licenses"]
                figure(f"{tag} incremental after a 1% clustered change (-{cc['assignments_removed']:,} licenses on {cc['removal_assets']} asset(s), "
                       f"+{cc['assignments_added']:,} anywhere, {cc['users_accepted'] + cc['users_retired'] + cc['users_created']:,} users): "
                       f"{inc2['wall']:.2f} s wall ({inc2['sync']:.2f} s sync), {lc2['reread_assets']:,} of {a:,} assets re-read, {inc2['report']['pages']} pages")
            figure(f"{tag} ratio full sync / floor: {full['wall'] / floor_s:.2f} (target <= {TARGETS['floor']:g}) {mark(full['wall'] / floor_s <= TARGETS['floor'])}"
                   f" [without event delivery: {full['sync'] / floor_s:.2f}]")
            ratio = inc["wall"] / full["wall"]
            figure(f"{tag} ratio incremental (spread) / full: {ratio:.3f} (target <= {TARGETS['incremental']:g}) {mark(ratio <= TARGETS['incremental'])}"
                   f" [without event delivery: {inc['sync'] / full['sync']:.3f}]")
            if "incr_clustered" in r:
                inc2 = r["incr_clustered"]
                ratio = inc2["wall"] / full["wall"]
                figure(f"{tag} ratio incremental (clustered) / full: {ratio:.3f} (target <= {TARGETS['incremental']:g}) {mark(ratio <= TARGETS['incremental'])}"
                       f" [without event delivery: {inc2['sync'] / full['sync']:.3f}]")
        if len(results) == 2:
            big, small = results[big_label], results[small_label]
            rss = big["full"]["rss_mb"]
            figure(f"peak RSS of the full sync at {big_label} size: {rss:.0f} MB (target < {TARGETS['rss_mb']:g} MB) {mark(rss < TARGETS['rss_mb'])}")
            growth = rss / small["full"]["rss_mb"]
            figure(f"peak RSS {big_label} / {small_label}: {growth:.2f} ({rss:.0f} / {small['full']['rss_mb']:.0f} MB, target <= {TARGETS['rss_growth']:g}) {mark(growth <= TARGETS['rss_growth'])}")
            per_big = big["full"]["wall"] / big["rows"]
            per_small = small["full"]["wall"] / small["rows"]
            growth = per_big / per_small
            figure(f"time per row {big_label} / {small_label}: {growth:.2f} ({per_big * 1e6:.1f} / {per_small * 1e6:.1f} us per row, target <= {TARGETS['per_row_growth']:g}) {mark(growth <= TARGETS['per_row_growth'])}")
        if args.clustered:
            figure("note: Apple's deltas omit removals, so the sync re-reads every asset whose assignedCount disagrees; "
                   "mutate_fraction spreads removals over most assets (a near-full assignment read), a real change clusters them")
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    say(f"(bench took {time.perf_counter() - t0:.0f} s; load average at end {os.getloadavg()[0]:.2f}; wall times include the "
        f"simulator's CPU on the same cores; 'sync' is the report's duration_s, without delivering the events)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": results, "lines": lines}, indent=1, default=str))
    if args.markdown:
        Path(args.markdown).write_text(markdown(machine(), results, big_label, small_label))
    return 0


def markdown(machine_line: str, results: dict[str, dict[str, Any]], big_label: str, small_label: str) -> str:
    out = [f"Machine: {machine_line}", "", "| figure | " + " | ".join(f"{lbl} ({r['size'][0]:,} assets, {r['size'][1]:,} assignments, {r['size'][2]:,} users)" for lbl, r in results.items()) + " |",
           "|---|" + "---|" * len(results)]

    def row(name: str, fn: Any) -> None:
        out.append(f"| {name} | " + " | ".join(fn(r) for r in results.values()) + " |")

    row("full sync wall (incl. event delivery)", lambda r: f"{r['full']['wall']:.2f} s")
    row("full sync without event delivery", lambda r: f"{r['full']['sync']:.2f} s")
    row("full sync rows/s", lambda r: f"{r['rows'] / r['full']['wall']:,.0f}")
    row("full sync peak RSS", lambda r: f"{r['full']['rss_mb']:.0f} MB")
    row("floor: download+parse", lambda r: f"{r['floor']['fetch']:.2f} s")
    row("floor: sqlite3.executemany", lambda r: f"{r['floor']['insert']:.2f} s")
    row("incremental, 1% spread change (mutate_fraction)", lambda r: f"{r['incr_spread']['wall']:.2f} s ({r['incr_spread']['report']['counts']['licenses']['reread_assets']} asset(s) re-read)")
    row("incremental, 1% clustered change", lambda r: f"{r['incr_clustered']['wall']:.2f} s ({r['incr_clustered']['report']['counts']['licenses']['reread_assets']} asset(s) re-read)" if "incr_clustered" in r else "-")

    def ratio(value: float, target: float, le: bool = True) -> str:
        return f"{value:.2f} {mark(value <= target if le else value < target)}"

    row(f"full / floor (target <= {TARGETS['floor']:g})", lambda r: ratio(r["full"]["wall"] / (r["floor"]["fetch"] + r["floor"]["insert"]), TARGETS["floor"]))
    row(f"incremental spread / full (target <= {TARGETS['incremental']:g})", lambda r: ratio(r["incr_spread"]["wall"] / r["full"]["wall"], TARGETS["incremental"]))
    row(f"incremental clustered / full (target <= {TARGETS['incremental']:g})", lambda r: ratio(r["incr_clustered"]["wall"] / r["full"]["wall"], TARGETS["incremental"]) if "incr_clustered" in r else "-")
    if big_label in results and small_label in results:
        big, small = results[big_label], results[small_label]
        out.append("")
        out.append(f"- peak RSS at {big_label} size: {big['full']['rss_mb']:.0f} MB (target < {TARGETS['rss_mb']:g} MB) {mark(big['full']['rss_mb'] < TARGETS['rss_mb'])}")
        g = big["full"]["rss_mb"] / small["full"]["rss_mb"]
        out.append(f"- peak RSS {big_label} / {small_label}: {g:.2f} (target <= {TARGETS['rss_growth']:g}) {mark(g <= TARGETS['rss_growth'])}")
        g = (big["full"]["wall"] / big["rows"]) / (small["full"]["wall"] / small["rows"])
        out.append(f"- time per row {big_label} / {small_label}: {g:.2f} (target <= {TARGETS['per_row_growth']:g}) {mark(g <= TARGETS['per_row_growth'])}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
