"""The child-process side of ``bench/sync_bench.py``: each figure is measured in a fresh process.

    python bench/sync_workers.py KIND --dir SITE_DIR [--db URL] --url SIM_URL --token-file PATH [...]

prints one JSON line. Kinds:

- ``setup``: create the site's host (its database migrated) and add the account;
- ``sync``: one sync (``--full`` or incremental) as ``mdm vpp sync`` runs it, with the wall time,
  CPU, peak RSS, the report, a digest of the mirror, and the page traversals it made
  (``--record PATH``: what the incremental floor replays);
- ``syncs``: syncs of one site in one process that stays up between them, as ``mdm run`` runs
  the scheduled ones: each sync's arguments a line of JSON on stdin, its figures a line on stdout;
- ``floor``: every page downloaded and parsed with the sync's own client (no database), then
  the same rows written to equivalent tables: ``sqlite3.executemany`` into a new SQLite file,
  and ``COPY`` with psycopg into a new schema of each PostgreSQL database given (``--pg URL``);
- ``replay``: the pages of a recorded sync downloaded and parsed again (the incremental floor);
- ``listing``: ``mdm vpp licenses --json`` (or any ``mdm`` command after ``--``) run in this
  process, its output written to a file: wall time, time to the first row, peak RSS, rows.

Peak RSS is ``VmHWM`` of the worker alone (a fresh ``exec``: nothing of the driver's memory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ACCOUNT = "bench"
# the plugins of a "vpp only" site; a site with every plugin loads what `mdm` loads by default
ONLY_VPP_DISABLED = ["mobile_apps", "alerts", "demo"]


# ------------------------------------------------------------------------------------ helpers


def peak_rss_mb() -> float:
    """Peak RSS of this process: VmHWM (ru_maxrss would keep the parent's size at exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of process ``pid`` from /proc, or None if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds of the PostgreSQL server processes serving an engine's connections from the
    moment each is first checked out (psycopg's ``info.backend_pid``), read from /proc: a
    server on this machine only; :meth:`seconds` is None otherwise."""

    def __init__(self, engine: Any):
        from sqlalchemy import event

        self.engine = engine
        self.start: dict[int, float | None] = {}
        self.last: dict[int, float | None] = {}
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "checkin", self._seen)
        event.listen(engine, "close", self._seen)

    @staticmethod
    def _pid(dbapi_connection: Any) -> int | None:
        info = getattr(dbapi_connection, "info", None)
        return getattr(info, "backend_pid", None)

    def _checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        pid = self._pid(dbapi_connection)
        if pid is not None and pid not in self.start:
            self.start[pid] = process_cpu(pid)

    def _seen(self, dbapi_connection: Any, _record: Any) -> None:
        pid = self._pid(dbapi_connection)
        if pid is not None and pid in self.start:
            self.last[pid] = process_cpu(pid)

    def close(self) -> None:
        """Stop following the engine's connections (a process that syncs again measures anew)."""
        from sqlalchemy import event

        event.remove(self.engine, "checkout", self._checkout)
        event.remove(self.engine, "checkin", self._seen)
        event.remove(self.engine, "close", self._seen)

    def seconds(self) -> float | None:
        """The server CPU so far of every connection seen (those still open read now)."""
        total = 0.0
        for pid, start in self.start.items():
            end = process_cpu(pid)
            end = self.last.get(pid) if end is None else end
            if start is None or end is None:
                return None
            total += end - start
        return total


def write_site_config(site: Path, plugins: str) -> Path:
    """The site's ``conf/mdm.toml``: every plugin (as `mdm` runs by default) or the VPP plugin alone."""
    conf = site / "conf" / "mdm.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    (site / "var").mkdir(exist_ok=True)
    disabled = f"\n[plugins]\ndisabled = {json.dumps(ONLY_VPP_DISABLED)}\n" if plugins == "vpp" else ""
    conf.write_text(f'[core]\nvar_dir = "{site / "var"}"\n{disabled}')
    from cryptography.fernet import Fernet

    from mdm_core.secrets import write_key_file

    # the secret key as `mdm` keeps it by default: a Fernet key in var/secret.key (a passphrase
    # in MDM_SECRET_KEY would add its scrypt derivation, ~0.3 s, to every measured process)
    write_key_file(site / "var" / "secret.key", [Fernet.generate_key().decode()], replace=False)
    return conf


def site_environ(site: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDM_")}
    env.update(MDM_CONFIG=str(site / "conf" / "mdm.toml"), MDM_DATABASE_URL=db_url)
    return env


def open_host(site: Path, db_url: str) -> Any:
    from mdm_core.host import create_host

    return create_host(site / "conf" / "mdm.toml", environ=site_environ(site, db_url), database_url=db_url)


# A multiset digest: the sum of a 64-bit hash of each row, modulo 2**64, with the row count.
# Order-free, so the mirror (read in any order) and the simulator's snapshot can be compared
# without sorting or holding millions of rows.


def row_hash(parts: Iterable[Any]) -> int:
    return int.from_bytes(hashlib.blake2b(json.dumps(list(parts), separators=(",", ":")).encode(), digest_size=8).digest(), "big")


class Digest:
    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, parts: Iterable[Any]) -> None:
        self.count += 1
        self.total = (self.total + row_hash(parts)) & 0xFFFFFFFFFFFFFFFF

    def value(self) -> list[int | str]:
        return [self.count, f"{self.total:016x}"]


def asset_parts(
    adam: str,
    pricing: str,
    product: str,
    assigned: int,
    available: int,
    retired: int,
    total: int,
    device_assignable: bool,
    revocable: bool,
    platforms: list[str],
) -> list[Any]:
    return [adam, pricing, product, assigned, available, retired, total, bool(device_assignable), bool(revocable), sorted(platforms or [])]


def user_parts(cid: str, email: str | None, status: str, id_hash: str | None, invite_code: str | None) -> list[Any]:
    # Apple sends inviteCode only while the user is Registered
    return [cid, email, status, id_hash, invite_code if status == "Registered" else None]


def apple_digest(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The digest of the simulator's snapshot (``GET /_sim/snapshot``)."""
    assets, users, licenses = Digest(), Digest(), Digest()
    for a in snapshot["assets"]:
        assets.add(
            asset_parts(
                a["adamId"],
                a["pricingParam"],
                a["productType"],
                a["assignedCount"],
                a["availableCount"],
                a["retiredCount"],
                a["totalCount"],
                a["deviceAssignable"],
                a["revocable"],
                a["supportedPlatforms"],
            )
        )
    for cid, u in snapshot["users"].items():
        users.add(user_parts(cid, u["email"], u["status"], u["idHash"], u["inviteCode"]))
    for adam, pricing, kind, target in snapshot["assignments"]:
        licenses.add([adam, pricing, kind, target])
    return {"assets": assets.value(), "users": users.value(), "licenses": licenses.value()}


def mirror_digest(host: Any) -> dict[str, Any]:
    """The digest of the account's mirror, read from the tables in batches (constant memory)."""
    from sqlalchemy import select

    from plugins.vpp.models import VppAccount, VppAsset, VppLicense, VppUser

    A, U, L = (m.__table__ for m in (VppAsset, VppUser, VppLicense))  # type: ignore[attr-defined]
    assets, users, licenses = Digest(), Digest(), Digest()
    kinds = {"device": "serialNumber", "user": "clientUserId"}
    with host.db.session() as session:
        acc = session.execute(select(VppAccount.id).where(VppAccount.name == ACCOUNT)).scalar_one()
        stream = {"yield_per": 10_000}
        for r in session.execute(
            select(
                A.c.adam_id,
                A.c.pricing_param,
                A.c.product_type,
                A.c.assigned_count,
                A.c.available_count,
                A.c.retired_count,
                A.c.total_count,
                A.c.device_assignable,
                A.c.revocable,
                A.c.supported_platforms,
            ).where(A.c.account_id == acc),
            execution_options=stream,
        ):
            assets.add(asset_parts(*r))
        for r in session.execute(
            select(U.c.client_user_id, U.c.email, U.c.status, U.c.id_hash, U.c.invite_code).where(U.c.account_id == acc), execution_options=stream
        ):
            users.add(user_parts(*r))
        for adam, pricing, kind, target in session.execute(
            select(L.c.adam_id, L.c.pricing_param, L.c.kind, L.c.target).where(L.c.account_id == acc), execution_options=stream
        ):
            licenses.add([adam, pricing, kinds[kind], target])
    return {"assets": assets.value(), "users": users.value(), "licenses": licenses.value()}


# ------------------------------------------------------------------------------------ workers


def worker_setup(args: argparse.Namespace) -> dict[str, Any]:
    """Add the account. Every site of a run claims the location with one ``mdmInfo`` id (they
    are one MDM to Apple, as the hosts of one deployment are), so their syncs do not see each
    other as another MDM taking the location over."""
    import uuid

    from plugins.vpp import accounts

    host = open_host(Path(args.dir), args.db)
    try:
        accounts.uuid.uuid4 = lambda: uuid.UUID(args.mdm_info_id)  # type: ignore[attr-defined]
        accounts.add_account(host, ACCOUNT, args.token_file, service_url=args.url, take_over=True)
        plugins = [r.name for r in host.plugins]
    finally:
        host.close()
    return {"plugins": plugins}


def record_traversals() -> list[dict[str, Any]]:
    """Record every paged traversal the client makes (url key, parameters, pages read)."""
    from plugins.vpp.apple.transport import Transport

    traversals: list[dict[str, Any]] = []
    original = Transport.iter_pages
    lock = threading.Lock()

    def recording(self: Any, url_key: str, params: Any = None) -> Iterator[dict[str, Any]]:
        entry = {"url_key": url_key, "params": dict(params or {}), "pages": 0}
        with lock:
            traversals.append(entry)
        inner = original(self, url_key, params)
        try:
            for page in inner:
                entry["pages"] += 1
                yield page
        finally:
            inner.close()

    Transport.iter_pages = recording  # type: ignore[method-assign]
    return traversals


class ThreadCpuProfile:
    """cProfile of every thread's CPU time (``time.thread_time``) while it runs: the threads
    started meanwhile (pages re-read, staging, the heartbeat) profiled each on its own, their
    statistics merged. pyinstrument sees the main thread alone; this gives call counts too."""

    def __init__(self) -> None:
        import cProfile

        self.make = lambda: cProfile.Profile(time.thread_time)
        self.profiles: list[Any] = []
        self.lock = threading.Lock()

    def _thread(self, *_: Any) -> None:
        sys.setprofile(None)  # the hook runs once per thread: its own profiler from here
        profile = self.make()
        with self.lock:
            self.profiles.append(profile)
        profile.enable()

    def start(self) -> None:
        threading.setprofile(self._thread)
        main = self.make()
        self.profiles.append(main)
        main.enable()

    def stop(self, path: str) -> None:
        import pstats

        threading.setprofile(None)
        self.profiles[0].disable()
        with self.lock:
            profiles = list(self.profiles)
        stats = pstats.Stats(profiles[0])
        for other in profiles[1:]:
            other.create_stats()  # a thread still running (none, after the sync) is read as it is
            stats.add(other)
        stats.dump_stats(path)


#: the phases of a sync whose CPU ``--phases`` measures: label, module, class (None: a function), attribute
PHASES: list[tuple[str, str, str | None, str]] = [
    ("download (HTTP, JSON)", "plugins.vpp.apple.transport", "Transport", "_request"),
    ("parse (Apple's records)", "plugins.vpp.apple.protocol", None, "page_assignments"),
    ("mirrored licenses read", "plugins.vpp.sync.read", "_MirrorPrefetch", "run"),
    ("staging writes", "plugins.vpp.sync.read", "StageBuffer", "_write"),
    ("reconcile (count checks)", "plugins.vpp.sync.read", "SyncReader", "mismatches"),
    ("apply: assets", "plugins.vpp.sync.apply", "MirrorUpdate", "_apply_assets"),
    ("apply: users", "plugins.vpp.sync.apply", "MirrorUpdate", "_apply_users"),
    ("apply: licenses", "plugins.vpp.sync.apply", "MirrorUpdate", "_apply_licenses"),
    ("apply (whole transaction)", "plugins.vpp.sync.run", None, "apply_read"),
    ("event delivery (plugins' hooks)", "mdm_core.host", "Host", "deliver_events"),
    ("sync on its own thread (lock, read, apply)", "plugins.vpp.sync.run", None, "_locked_sync"),
]


class PhaseMeter:
    """The CPU time (``time.thread_time``: the calling thread's) and calls of each of
    :data:`PHASES`, on whichever thread runs it; a phase called inside itself counts once.
    Unlike a profiler it costs two clock reads a call, so the figures are the sync's own
    (cProfile made the page parse twenty times slower, and the parse is the replay's too)."""

    def __init__(self) -> None:
        import importlib

        self.figures: dict[str, list[float]] = {label: [0, 0.0] for label, *_ in PHASES}
        self.lock = threading.Lock()
        self.local = threading.local()
        self.undo: list[tuple[Any, str, Any]] = []
        for label, module, owner, attr in PHASES:
            target = importlib.import_module(module)
            holder = getattr(target, owner) if owner else target
            original = getattr(holder, attr)
            self._wrap(holder, attr, label)
            if owner is None:  # the modules that imported the function by name call it through their own name
                for name, other in list(sys.modules.items()):
                    if name.startswith(("plugins.", "mdm_core.")) and other is not target and getattr(other, attr, None) is original:
                        self._wrap(other, attr, label)

    def _wrap(self, holder: Any, attr: str, label: str) -> None:
        import functools

        original = getattr(holder, attr)

        @functools.wraps(original)
        def timed(*a: Any, **k: Any) -> Any:
            active: set[str] = self.local.__dict__.setdefault("active", set())
            if label in active:
                return original(*a, **k)
            active.add(label)
            started = time.thread_time()
            try:
                return original(*a, **k)
            finally:
                spent = time.thread_time() - started
                active.discard(label)
                with self.lock:
                    self.figures[label][0] += 1
                    self.figures[label][1] += spent

        self.undo.append((holder, attr, original))
        setattr(holder, attr, timed)

    def stop(self) -> dict[str, list[float]]:
        for holder, attr, original in reversed(self.undo):
            setattr(holder, attr, original)
        return {label: [int(n), round(t, 4)] for label, (n, t) in self.figures.items()}


def thread_group(name: str) -> str:
    """A thread's name without its number (``vpp-page_3`` -> ``vpp-page``; ``Thread-7 (run)``
    -> ``Thread (run)``): the threads of one pool or one kind counted together."""
    return re.sub(r"[-_]\d+", "", name)


class ThreadMeter:
    """The CPU time (``time.thread_time``) of each thread, from its start to its end or to
    :meth:`stop`, the threads grouped by name (:func:`thread_group`): which of the main thread,
    the page readers, the staging writer, the heartbeat... spends what the phases leave out.
    The main thread's is counted from the meter's start; threads started before it (none in a
    sync worker) are not counted, and show in the process's CPU alone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spent: dict[str, list[float]] = {}  # group -> [threads, CPU seconds]
        self.live: dict[int, tuple[threading.Thread, float]] = {}  # ident -> (thread, its CPU at its start)
        self.main = time.thread_time()
        self.original = threading.Thread.run
        meter, original = self, self.original

        def run(thread: threading.Thread) -> None:
            started = time.thread_time()
            with meter.lock:
                meter.live[threading.get_ident()] = (thread, started)
            try:
                original(thread)
            finally:
                meter._add(thread.name, time.thread_time() - started, threading.get_ident())

        threading.Thread.run = run  # type: ignore[method-assign]

    def _add(self, name: str, seconds: float, ident: int | None) -> None:
        with self.lock:
            if ident is not None and self.live.pop(ident, None) is None:
                return  # counted by stop() already
            figure = self.spent.setdefault(thread_group(name), [0, 0.0])
            figure[0] += 1
            figure[1] += seconds

    def stop(self) -> dict[str, list[float]]:
        """Each group's threads and CPU seconds, ``main`` first; a thread still running is read
        through its CPU clock (Linux lets one thread read another's)."""
        main = time.thread_time() - self.main
        threading.Thread.run = self.original  # type: ignore[method-assign]
        with self.lock:
            live = list(self.live.items())
            self.live.clear()
        for _ident, (thread, started) in live:
            try:
                now = time.clock_gettime(time.pthread_getcpuclockid(thread.ident or 0))
            except (OSError, AttributeError):  # it ended meanwhile
                continue
            self._add(f"{thread.name} (still running)", now - started, None)
        return {"main": [1, round(main, 4)], **{group: [int(n), round(t, 4)] for group, (n, t) in sorted(self.spent.items(), key=lambda x: -x[1][1])}}


def worker_sync(args: argparse.Namespace) -> dict[str, Any]:
    """One sync in a process of its own (the full sync: as ``mdm vpp sync NAME --full`` runs it)."""
    traversals = record_traversals()
    host = open_host(Path(args.dir), args.db)
    try:
        before_the_clock(host)
        return measured_sync(host, args, traversals)
    finally:
        host.close()


def worker_syncs(args: argparse.Namespace) -> dict[str, Any]:
    """Syncs of one site in one process that stays up between them, as ``mdm run`` runs an
    account's scheduled syncs: one line of JSON on stdin per sync (its arguments, e.g.
    ``["--record", PATH, "--phases"]``), its result as one line of JSON on stdout; ends at the
    end of the input. A process's first sync also pays what a process pays once (statements
    compiled, its subscribers' modules imported on first use: 0.1 s here); the later ones do not."""
    traversals = record_traversals()
    host = open_host(Path(args.dir), args.db)
    try:
        before_the_clock(host)
        for line in sys.stdin:
            one = argument_parser().parse_args(["sync", "--dir", args.dir, "--db", args.db, *json.loads(line)])
            print(json.dumps(measured_sync(host, one, traversals), default=str), flush=True)
    finally:
        host.close()
    return {"syncs": "ended"}


def before_the_clock(host: Any) -> None:
    """What a sync worker does before its first clock starts: the account read once, as the
    floor's worker (worker_replay) reads it before its own. A process's first ORM query
    configures SQLAlchemy's mappers (0.1-0.15 s here), once per process (`mdm run` pays it at
    its first job), not a cost of the sync."""
    from plugins.vpp.accounts import get_account

    with host.db.session() as session:
        get_account(session, ACCOUNT)


def measured_sync(host: Any, args: argparse.Namespace, traversals: list[dict[str, Any]]) -> dict[str, Any]:
    """One sync of the site's account, measured (wall, CPU, the PostgreSQL server's CPU, the
    ``--phases`` meters and profiles), and the mirror's digest after it."""
    from plugins.vpp.sync.run import sync_account

    traversals.clear()
    server = ServerCpu(host.db.engine) if host.db.url.get_backend_name() == "postgresql" else None
    try:
        profiler = None
        if args.profile_out:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.005)
            profiler.start()
        meter = PhaseMeter() if args.phases else None
        threads = ThreadMeter() if args.phases else None
        cprofile = None
        if args.cprofile_out:
            cprofile = ThreadCpuProfile()
            cprofile.start()
        cpu0 = cpu_seconds()
        started = time.perf_counter()
        report = sync_account(host, ACCOUNT, full=args.full, trigger="manual")  # what `mdm vpp sync NAME` runs
        wall = time.perf_counter() - started
        cpu = cpu_seconds() - cpu0
        thread_cpu = threads.stop() if threads is not None else None
        server_cpu = server.seconds() if server is not None else None
        phases = meter.stop() if meter is not None else None
        if cprofile is not None:
            cprofile.stop(args.cprofile_out)
        if profiler is not None:
            profiler.stop()
            Path(args.profile_out).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        rss = peak_rss_mb()
        digest = mirror_digest(host)
    finally:
        if server is not None:
            server.close()
    if args.record:
        Path(args.record).write_text(json.dumps(traversals))
    # `sync` excludes the event delivery that follows the commit (run.py: deliver_events)
    return {
        "wall": wall,
        "sync": _sync_seconds(report),
        "cpu": cpu,
        "server_cpu": server_cpu,  # PostgreSQL on this machine: its processes serving the sync's connections
        "phases": phases,  # --phases: label -> [calls, CPU seconds]
        "threads": thread_cpu,  # --phases: thread group -> [threads, CPU seconds], "main" first
        "rss_mb": rss,  # the process's peak so far
        "report": report,
        "digest": digest,
        "traversals": len(traversals),
        "pages_read": sum(t["pages"] for t in traversals),
        "pid": os.getpid(),  # the process that synced (``syncs``: the same for every round of a site)
    }


def _sync_seconds(report: dict[str, Any]) -> float:
    from datetime import datetime

    if not report.get("started_at") or not report.get("finished_at"):
        return float(report.get("duration_s") or 0.0)
    return (datetime.fromisoformat(report["finished_at"]) - datetime.fromisoformat(report["started_at"])).total_seconds()


PARSERS = {"getAssets": "page_assets", "getUsers": "page_users", "getAssignments": "page_assignments"}


def _parser(url_key: str) -> Callable[[dict[str, Any]], Any]:
    from plugins.vpp.apple import protocol

    return getattr(protocol, PARSERS[url_key])


def worker_floor(args: argparse.Namespace) -> dict[str, Any]:
    """Download and parse every page with the sync's own client; then write the rows with each
    database's fastest bulk path into equivalent tables."""
    from plugins.vpp.accounts import client_for, get_account
    from plugins.vpp.apple.protocol import page_assets, page_assignments, page_users

    host = open_host(Path(args.dir), args.db)
    with host.db.session() as session:
        account = get_account(session, ACCOUNT)
    client = client_for(host, account)
    try:
        client.service_config()  # as the sync: read before the pages
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
    out: dict[str, Any] = {
        "fetch": fetch,
        "pages": pages,
        "rows": len(assets) + len(users) + len(licenses),
        "assets": len(assets),
        "users": len(users),
        "licenses": len(licenses),
        "insert": {},
    }
    if not args.no_sqlite:
        out["insert"]["sqlite"] = sqlite_floor(Path(args.dir) / "floor.sqlite3", assets, users, licenses)
    for url in args.pg or []:
        out["insert"].setdefault("postgres", postgres_floor(url, assets, users, licenses))
    out["rss_mb"] = peak_rss_mb()
    return out


FLOOR_SQLITE = """
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

# the same tables on PostgreSQL, in a schema of their own
FLOOR_POSTGRES = FLOOR_SQLITE.replace("DATETIME", "TIMESTAMP WITH TIME ZONE").replace(
    "CREATE INDEX ix_vpp_license_target ON vpp_license", "CREATE INDEX ix_vpp_license_target ON bench_floor.vpp_license"
)
FLOOR_POSTGRES = FLOOR_POSTGRES.replace("CREATE TABLE vpp_", "CREATE TABLE bench_floor.vpp_")

NOW = "2025-01-01 00:00:00.000000"


def _asset_row(a: dict[str, Any]) -> tuple[Any, ...]:
    """An asset's columns after the account id, as both floors write them."""
    return (
        a["adam_id"],
        a["pricing_param"],
        a["product_type"],
        a["assigned_count"],
        a["available_count"],
        a["retired_count"],
        a["total_count"],
        a["device_assignable"],
        a["revocable"],
        json.dumps(a["supported_platforms"]),
        NOW,
    )


def _kind(kind: str) -> str:
    return "device" if kind == "serialNumber" else "user" if kind == "clientUserId" else kind


def sqlite_floor(path: Path, assets: list[dict[str, Any]], users: list[dict[str, Any]], licenses: list[tuple[str, str, str, str]]) -> float:
    """``sqlite3.executemany`` of the rows into equivalent tables, one transaction (WAL)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(FLOOR_SQLITE)
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO vpp_asset VALUES (1,?,?,?,?,?,?,?,?,?,?,?)",
        [_asset_row(a) for a in assets],
    )
    db.executemany(
        "INSERT OR REPLACE INTO vpp_user VALUES (1,?,?,?,?,?,?)",
        [(u["client_user_id"], u["email"], u["status"], u["id_hash"], u["invite_code"], NOW) for u in users],
    )
    db.executemany("INSERT OR IGNORE INTO vpp_license VALUES (1,?,?,?,?)", ((a, p, _kind(k), t) for a, p, k, t in licenses))
    db.execute("COMMIT")
    db.close()
    elapsed = time.perf_counter() - started
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return elapsed


def psycopg_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as psycopg's conninfo."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_floor(url: str, assets: list[dict[str, Any]], users: list[dict[str, Any]], licenses: list[tuple[str, str, str, str]]) -> float:
    """psycopg ``COPY`` of the rows into equivalent tables (primary keys, the target index), one transaction."""
    import psycopg

    # users: Apple may list a clientUserId twice (retired records): keep the last, as executemany's REPLACE does
    latest = {u["client_user_id"]: u for u in users}
    unique_licenses = dict.fromkeys((a, p, _kind(k), t) for a, p, k, t in licenses)
    with psycopg.connect(psycopg_url(url)) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench_floor CASCADE")
        conn.commit()
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("CREATE SCHEMA bench_floor")
            for statement in FLOOR_POSTGRES.split(";"):
                if statement.strip():
                    conn.execute(statement)
            with conn.cursor() as cur:
                with cur.copy("COPY bench_floor.vpp_asset FROM STDIN") as copy:
                    for a in assets:
                        copy.write_row((1, *_asset_row(a)))
                with cur.copy("COPY bench_floor.vpp_user FROM STDIN") as copy:
                    for u in latest.values():
                        copy.write_row((1, u["client_user_id"], u["email"], u["status"], u["id_hash"], u["invite_code"], NOW))
                with cur.copy("COPY bench_floor.vpp_license FROM STDIN") as copy:
                    for row in unique_licenses:
                        copy.write_row((1, *row))
        elapsed = time.perf_counter() - started
        conn.execute("DROP SCHEMA bench_floor CASCADE")
        conn.commit()
    return elapsed


def worker_replay(args: argparse.Namespace) -> dict[str, Any]:
    """Download and parse the pages a recorded sync read, with the same client: at most
    ``max_parallel_pages`` requests in flight across every traversal."""
    from plugins.vpp.accounts import client_for, get_account

    traversals = json.loads(Path(args.record).read_text())
    host = open_host(Path(args.dir), args.db)
    with host.db.session() as session:
        account = get_account(session, ACCOUNT)
    client = client_for(host, account)
    pages = [0]
    lock = threading.Lock()

    def read(t: dict[str, Any]) -> int:
        parse, rows, count = _parser(t["url_key"]), 0, 0
        inner = client.iter_pages(t["url_key"], t["params"])
        try:
            for page in inner:
                rows += len(parse(page))
                count += 1
                if count >= t["pages"]:
                    break
        finally:
            inner.close()
        with lock:
            pages[0] += count
        return rows

    try:
        client.service_config()
        cpu0 = cpu_seconds()
        started = time.perf_counter()
        # the largest traversals first, so that the small ones fill the gaps
        ordered = sorted((t for t in traversals if t["pages"]), key=lambda t: -t["pages"])
        with ThreadPoolExecutor(max_workers=client.max_parallel_pages) as pool:
            rows = sum(pool.map(read, ordered))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds() - cpu0
    finally:
        client.close()
        host.close()
    return {"fetch": elapsed, "cpu": cpu, "pages": pages[0], "rows": rows, "traversals": len(traversals)}


class _FirstWrite:
    """A text file that notes when the first row was written."""

    def __init__(self, path: Path, started: float):
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115  # kept open while rows come; closed by close()
        self.started = started
        self.first: float | None = None

    def write(self, text: str) -> int:
        if self.first is None and text.strip():
            self.first = time.perf_counter() - self.started
        return self.file.write(text)

    def flush(self) -> None:
        self.file.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self.file.close()


def worker_listing(args: argparse.Namespace) -> dict[str, Any]:
    """Run an ``mdm`` command in this process with its output going to a file."""
    from mdm_core.cli import main as mdm_main

    site = Path(args.dir)
    command = args.command or ["vpp", "licenses", "--json"]
    os.environ.clear()
    os.environ.update(site_environ(site, args.db))
    out_path = site / "listing.out"
    started = time.perf_counter()
    sink = _FirstWrite(out_path, started)
    real_stdout = sys.stdout
    sys.stdout = sink  # type: ignore[assignment]
    try:
        code = mdm_main(command)
    finally:
        sys.stdout = real_stdout
        sink.close()
    wall = time.perf_counter() - started
    rss = peak_rss_mb()
    rows = 0
    with open(out_path, encoding="utf-8") as f:
        for line in f:
            rows += line.count('"adamId"')
    size = out_path.stat().st_size
    out_path.unlink()
    return {"exit": code, "wall": wall, "first_row": sink.first, "rss_mb": rss, "rows": rows, "bytes": size, "command": command}


WORKERS = {"setup": worker_setup, "sync": worker_sync, "syncs": worker_syncs, "floor": worker_floor, "replay": worker_replay, "listing": worker_listing}


def argument_parser() -> argparse.ArgumentParser:
    """The workers' arguments (``syncs`` reads each sync's from its input with it too)."""
    parser = argparse.ArgumentParser(description="one measurement of the sync benchmark, in its own process")
    parser.add_argument("kind", choices=sorted(WORKERS))
    parser.add_argument("--dir", required=True, help="the site's folder (conf/, var/)")
    parser.add_argument("--db", required=True, help="the site's database URL")
    parser.add_argument("--url", help="the simulator's base URL")
    parser.add_argument("--token-file")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--record", help="sync: write the traversals here; replay: read them")
    parser.add_argument("--pg", action="append", help="floor: also COPY into this PostgreSQL database")
    parser.add_argument("--no-sqlite", action="store_true", help="floor: no sqlite3.executemany (a run on PostgreSQL alone)")
    parser.add_argument("--profile-out")
    parser.add_argument("--cprofile-out", help="sync: every thread's CPU profile (cProfile, pstats file)")
    parser.add_argument("--phases", action="store_true", help="sync: the CPU time of each phase (PHASES), on every thread")
    parser.add_argument("--mdm-info-id", default="00000000-0000-4000-8000-0000000b3e7c", help="setup: the mdmInfo id every site claims with")
    parser.add_argument("command", nargs="*", help="listing: the mdm command (default: vpp licenses --json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    print(json.dumps(WORKERS[args.kind](args), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
