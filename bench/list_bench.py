"""A large district's admin at work: imports of users and devices from CSV, then every big list
(CLI, REST API, console) at 300,000 licenses / 100,000 users, on SQLite and PostgreSQL.

    .venv/bin/python bench/list_bench.py [--size full|quick] [--databases sqlite,postgres] [--postgres URL]

Prints a markdown table of every figure with its goal and PASS/MISS (progress on stderr).
Each ``mdm`` command runs in its own process under ``/usr/bin/time`` (its peak RSS alone).
The simulator (in this process) gives the users and devices the CSV files hold, then the
licenses of a sync. PostgreSQL: a new ``mdm_bench_<pid>_*`` database, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sync_bench import PgServer  # noqa: E402
from sync_workers import open_host, site_environ, write_site_config  # noqa: E402
from web_bench import last_api_page, last_console_page  # noqa: E402

# name: (assets, assignments, users, devices)
SIZES = {"full": (1_000, 300_000, 100_000, 100_000), "quick": (100, 20_000, 6_000, 6_000)}
GOALS = {"import_s": 60.0, "import_rss_mb": 400.0, "list_rss_mb": 100.0, "first_row_s": 5.0, "page_ms": 1000.0}
LISTS = [["devices", "list"], ["users", "list"], ["vpp", "licenses"], ["vpp", "users"], ["vpp", "assets"], ["apps", "list"]]
PASSWORD = "bench password 123"


@dataclass
class Figure:
    database: str
    what: str
    value: str
    goal: str
    ok: bool


def mdm(site: Path, url: str, *args: str, stdin_head: bool = False) -> tuple[int, float, float | None, float, str, int]:
    """Run ``mdm args`` under ``/usr/bin/time``: exit code, wall seconds, seconds to the first
    line of output, peak RSS (MB), stderr (without time's line) and the lines printed."""
    env = site_environ(site, url)
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "mdm_core.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    assert proc.stdout is not None and proc.stderr is not None
    first, lines = None, 0
    for _ in proc.stdout:
        first = first if first is not None else time.perf_counter() - started
        lines += 1
    err = proc.stderr.read().decode().strip().splitlines()
    proc.wait()
    rss = int(err[-1]) / 1024 if err and err[-1].isdigit() else float("nan")
    text = "\n".join(line for line in err[:-1] if not line.startswith("Command exited"))
    return proc.returncode, time.perf_counter() - started, first, rss, text, lines


def head_quiet(site: Path, url: str, *args: str) -> bool:
    """``mdm args | head -n 1``: the command exits 0 and says nothing on stderr."""
    quoted = " ".join(f"'{a}'" for a in args)
    shell = f"{sys.executable} -m mdm_core.cli {quoted} 2>/tmp/.mdm_head_err.$$ | head -n 1 >/dev/null; rc=${{PIPESTATUS[0]}}; "
    shell += "test -s /tmp/.mdm_head_err.$$ && rc=99; rm -f /tmp/.mdm_head_err.$$; exit $rc"
    return subprocess.run(["bash", "-c", shell], env=site_environ(site, url), cwd=ROOT).returncode == 0


def write_files(folder: Path, users: list[str], serials: list[str]) -> None:
    """The import files: good ones, and a bad row, a duplicate and Windows-1252 bytes halfway."""
    user_lines = [f"{u},{u}@example.org,,User {u}\n" for u in users]
    device_lines = [f'{s},iOS,,"iPad13,1",{users[i % len(users)]}\n' for i, s in enumerate(serials)]
    half = len(user_lines) // 2
    (folder / "users.csv").write_text("id,email,managed_apple_id,name\n" + "".join(user_lines))
    (folder / "devices.csv").write_text("serial_number,platform,udid,model,user\n" + "".join(device_lines))
    (folder / "users_bad.csv").write_text("id,email\n" + "".join(f"{u},{u}@example.org\n" for u in users[:half]) + "x1,not-an-address\n")
    (folder / "users_dup.csv").write_text("id,email\n" + "".join(f"{u},{u}@example.org\n" for u in users[:half]) + f"{users[0]},a@example.org\n")
    (folder / "users_1252.csv").write_bytes(("id,email,name\n" + "".join(f"{u},{u}@example.org,Jos\xe9\n" for u in users[:half])).encode("cp1252"))


def count_rows(site: Path, url: str, table: str) -> int:
    from sqlalchemy import text

    host = open_host(site, url)
    try:
        with host.db.session() as session:
            return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        host.close()


def imports(db: str, site: Path, url: str, figures: list[Figure], n_users: int, n_devices: int) -> None:
    folder = site
    for name in ("users_bad", "users_dup", "users_1252"):
        code, _, _, _, err, _ = mdm(site, url, "users", "import", str(folder / f"{name}.csv"))
        ok = code == 2 and " line " in err and len(err.splitlines()) == 1 and count_rows(site, url, "core_user") == 0
        said = err.replace(str(folder) + "/", "")[:110]
        figures.append(Figure(db, f"`users import {name}.csv`: refused, one line naming it, nothing written", f"exit {code}: {said}", "exit 2", ok))
    for kind, n in (("users", n_users), ("devices", n_devices)):
        for attempt in ("import", "re-import"):
            code, wall, _, rss, err, _ = mdm(site, url, kind, "import", str(folder / f"{kind}.csv"))
            what = f"`{kind} import` {n:,} rows ({attempt})"
            figures.append(Figure(db, f"{what}: time", f"{wall:.1f} s", f"< {GOALS['import_s']:.0f} s", code == 0 and wall < GOALS["import_s"]))
            figures.append(Figure(db, f"{what}: peak RSS", f"{rss:.0f} MB", f"< {GOALS['import_rss_mb']:.0f} MB", rss < GOALS["import_rss_mb"]))
        print(f"{db}: {kind} imported", file=sys.stderr, flush=True)


def listings(db: str, site: Path, url: str, figures: list[Figure], offset: int) -> None:
    for command in LISTS:
        for fmt in ([], ["--json"], ["--jsonl"]):
            code, wall, first, rss, err, lines = mdm(site, url, *command, *fmt)
            label = " ".join(["mdm", *command, *fmt])
            ok = code == 0 and not err and first is not None and first < GOALS["first_row_s"] and rss < GOALS["list_rss_mb"]
            value = f"{rss:.0f} MB, first row {first or 0:.1f} s, {lines:,} lines in {wall:.1f} s"
            figures.append(Figure(db, f"`{label}`: peak RSS, first row", value, f"< {GOALS['list_rss_mb']:.0f} MB, < {GOALS['first_row_s']:.0f} s", ok))
        quiet = head_quiet(site, url, *command, "--jsonl")
        piped = f"`mdm {' '.join(command)} --jsonl` piped into `head -n 1`"
        figures.append(Figure(db, piped, "exit 0, quiet" if quiet else "error", "exit 0, no stderr", quiet))
    code, wall, first, rss, err, lines = mdm(site, url, "vpp", "licenses", "--limit", "100", "--offset", str(offset))
    ok = code == 0 and wall < GOALS["first_row_s"]
    figures.append(Figure(db, f"`mdm vpp licenses --limit 100 --offset {offset:,}`", f"{wall:.1f} s, {lines} lines", f"< {GOALS['first_row_s']:.0f} s", ok))
    print(f"{db}: lists measured", file=sys.stderr, flush=True)


def pages(db: str, host: Any, figures: list[Figure]) -> None:
    from fastapi.testclient import TestClient

    from mdm_core.web.access import add_admin, create_token
    from mdm_core.web.app import create_app

    add_admin(host, "bench", PASSWORD)
    token = {"Authorization": "Bearer " + create_token(host, "bench", "viewer")["token"]}

    def median_ms(client: Any, path: str, headers: dict[str, str] | None = None) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            assert client.get(path, headers=headers or {}).status_code == 200, path
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    with TestClient(create_app(host)) as client:
        client.get("/login")
        client.post("/login", data={"name": "bench", "password": PASSWORD, "csrftoken": client.cookies.get("csrftoken")})
        for path in ("/api/v1/vpp/licenses?limit=1000", "/api/v1/vpp/users?limit=1000", "/api/v1/devices?limit=1000", "/api/v1/users?limit=1000"):
            last, count = last_api_page(client, path, token)
            first_ms, last_ms = median_ms(client, path, token), median_ms(client, last, token)
            ok = max(first_ms, last_ms) < GOALS["page_ms"]
            value = f"{first_ms:.0f} ms, {last_ms:.0f} ms"
            figures.append(Figure(db, f"GET {path} ({count:,} pages): first, last page", value, f"< {GOALS['page_ms']:.0f} ms", ok))
        for path in ("/devices", "/users", "/vpp/accounts/big/users", "/devices?q=00", "/vpp/accounts/big/users?q=user-0004"):
            last_path = last_console_page(client, path)
            first_ms, last_ms = median_ms(client, path), median_ms(client, last_path)
            ok = max(first_ms, last_ms) < GOALS["page_ms"]
            figures.append(Figure(db, f"console {path}: first, last page", f"{first_ms:.0f} ms, {last_ms:.0f} ms", f"< {GOALS['page_ms']:.0f} ms", ok))
    print(f"{db}: pages measured", file=sys.stderr, flush=True)


def run(db: str, url: str, size: str, figures: list[Figure]) -> None:
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    assets, assignments, n_users, n_devices = SIZES[size]
    with (
        tempfile.TemporaryDirectory(prefix="mdm-list-bench-") as folder,
        Simulator(seed=3, async_delay=0, assets=assets, assignments=assignments, users=n_users, devices=n_devices) as sim,
    ):
        site = Path(folder)
        write_site_config(site, "all")
        subprocess.run([sys.executable, "-m", "mdm_core.cli", "db", "upgrade"], env=site_environ(site, url), cwd=ROOT, check=True, capture_output=True)
        write_files(site, [u["clientUserId"] for u in sim.state.user_records()], sim.state.device_serials())
        imports(db, site, url, figures, n_users, n_devices)
        host = open_host(site, url)
        try:
            add_simulated_account(host, sim, site, "big")
            report = sync_account(host, "big")
            print(f"{db}: sync {report['status']}", file=sys.stderr, flush=True)
            listings(db, site, url, figures, assignments * 5 // 6)
            pages(db, host, figures)
        finally:
            host.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--postgres", default=os.environ.get("MDM_BENCH_POSTGRES_URL") or os.environ.get("MDM_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    figures: list[Figure] = []
    wanted = args.databases.split(",")
    with tempfile.TemporaryDirectory() as folder:
        if "sqlite" in wanted:
            run("SQLite", f"sqlite:///{Path(folder) / 'mdm.sqlite3'}", args.size, figures)
    if "postgres" in wanted and args.postgres:
        server = PgServer(args.postgres)
        try:
            _, url = server.create("list")
            run("PostgreSQL", url, args.size, figures)
        finally:
            server.drop_all()
    a, n, u, d = SIZES[args.size]
    print(f"{a:,} assets, {n:,} licenses, {u:,} users, {d:,} devices; load {os.getloadavg()[0]:.1f}\n")
    print("| database | figure | value | goal | |\n|---|---|---|---|---|")
    for f in figures:
        print(f"| {f.database} | {f.what} | {f.value} | {f.goal} | {'PASS' if f.ok else 'MISS'} |")
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
