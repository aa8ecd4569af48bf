"""How fast the console's pages and the REST API's lists answer at school-district scale:
1,000 assets, 300,000 licenses, 100,000 VPP users, 100,000 enrolled devices and 100,000 MDM
users (the simulator's large seed), on SQLite. Every list is paged by the database, so the
first and the last page should cost about the same; this prints both, as the median and the
worst of 5 requests, and the peak memory of the process. ``--quick`` uses a tenth of the data.

    .venv/bin/python bench/web_bench.py [--quick]
"""

from __future__ import annotations

import html
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSWORD = "bench password 123"


def timed(client: Any, path: str, **kwargs: Any) -> tuple[float, float, Any]:
    """Median and worst of 5 GETs (ms), and the last response."""
    times = []
    response = None
    for _ in range(5):
        started = time.perf_counter()
        response = client.get(path, **kwargs)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return statistics.median(times), max(times), response


def last_api_page(client: Any, path: str, headers: dict[str, str]) -> tuple[str, int]:
    """Follow ``next_cursor`` to the last page; returns its URL and how many pages there were."""
    url, pages = path, 1
    while True:
        body = client.get(url, headers=headers).json()
        if not body["next_cursor"]:
            return url, pages
        url = f"{path}{'&' if '?' in path else '?'}cursor={body['next_cursor']}"
        pages += 1


def last_console_page(client: Any, path: str) -> str:
    """The URL of the last numbered page of a console table."""
    found = re.search(r"page \d+ of (\d+)", client.get(path).text)
    return f"{path}{'&' if '?' in path else '?'}page={found.group(1) if found else 1}"


def enrol(host: Any, sim: Any) -> None:
    """The inventory written straight into its tables, in one transaction (its commands would
    announce each device and user as an event, which is not what is measured here)."""
    from sqlalchemy import insert

    from mdm_core.models import Device, MdmUser, utcnow

    now = utcnow()
    users = [{"id": u["clientUserId"], "email": u.get("email"), "name": None, "managed_apple_id": None, "created_at": now} for u in sim.state.user_records()]
    devices = [
        {"serial_number": s, "platform": "iOS", "model": "iPhone15,2", "udid": None, "owner": None, "enrolled_at": now} for s in sim.state.device_serials()
    ]

    def work(session: Any) -> None:
        session.execute(insert(MdmUser), users)
        session.execute(insert(Device), devices)

    host.db.run_write(work)


def main() -> int:
    from fastapi.testclient import TestClient

    from mdm_core.host import create_host
    from mdm_core.web.access import add_admin, create_token
    from mdm_core.web.app import create_app
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    scale = 10 if "--quick" in sys.argv else 1
    folder = Path(tempfile.mkdtemp(prefix="mdm-web-bench-"))
    (folder / "conf").mkdir()
    conf = folder / "conf" / "mdm.toml"
    conf.write_text("")
    sizes = {"assets": 1000 // scale, "devices": 100_000 // scale, "users": 100_000 // scale, "assignments": 300_000 // scale}
    print(
        f"data: {sizes['assets']:,} assets, {sizes['assignments']:,} licenses, {sizes['users']:,} VPP users, "
        f"{sizes['devices']:,} devices, {sizes['users']:,} MDM users (SQLite)"
    )
    with Simulator(seed=3, async_delay=0, **sizes) as sim:
        host = create_host(conf, environ={"MDM_SECRET_KEY": "bench"}, database_url=f"sqlite:///{folder / 'mdm.sqlite3'}")
        add_admin(host, "bench", PASSWORD)
        token = {"Authorization": "Bearer " + create_token(host, "bench", "viewer")["token"]}
        enrol(host, sim)  # the MDM side: every VPP user an MDM user, every licensed device enrolled
        add_simulated_account(host, sim, folder, "big")
        started = time.monotonic()
        report = sync_account(host, "big")
        print(f"sync: {report['status']} in {time.monotonic() - started:.1f}s")
        counts: dict[tuple[str, str], int] = {}
        for a in sim.snapshot()["assignments"]:
            counts[(a[0], a[1])] = counts.get((a[0], a[1]), 0) + 1
    adam, pricing = max(counts, key=lambda k: counts[k])
    with TestClient(create_app(host)) as client:
        client.get("/login")
        client.post("/login", data={"name": "bench", "password": PASSWORD, "csrftoken": client.cookies.get("csrftoken")})
        asset = f"/vpp/accounts/big/assets/{adam}/{pricing}?tab=device"
        first = client.get(asset).text
        after = re.search(r'rel="next" href="([^"]+)"', first)
        console = {
            "accounts": "/vpp",
            "assets, page 1 by name": "/vpp/accounts/big/assets",
            "assets, last page by total": last_console_page(client, "/vpp/accounts/big/assets?sort=total&dir=desc"),
            "assets, search": "/vpp/accounts/big/assets?q=pro",
            f"asset ({counts[(adam, pricing)]:,} licenses), device tab": asset,
            "asset, next device page": html.unescape(after.group(1)) if after else asset,
            "VPP users, page 1": "/vpp/accounts/big/users",
            "VPP users, last page": last_console_page(client, "/vpp/accounts/big/users"),
            "VPP users, search": "/vpp/accounts/big/users?q=user-00042",
            "devices, last page": last_console_page(client, "/devices"),
            "MDM users, last page": last_console_page(client, "/users"),
            "mobile applications, last page": last_console_page(client, "/apps"),
            "events, first page": "/events",
            "sync runs": "/vpp/accounts/big/runs",
        }
        print("console pages (50 rows):")
        for label, path in console.items():
            median, worst, _ = timed(client, path)
            print(f"  {label}: median {median:.0f} ms, worst {worst:.0f} ms")
        print("REST lists (limit=1000), first and last page:")
        for label, path in {
            "licenses": "/api/v1/vpp/licenses?account=big&limit=1000",
            "VPP users": "/api/v1/vpp/users?account=big&limit=1000",
            "assets": "/api/v1/vpp/assets?account=big&limit=1000",
            "devices": "/api/v1/devices?limit=1000",
            "MDM users": "/api/v1/users?limit=1000",
            "events": "/api/v1/events?limit=1000",
            "apps": "/api/v1/apps?limit=1000",
        }.items():
            last, pages = last_api_page(client, path, token)
            first_median, first_worst, _ = timed(client, path, headers=token)
            last_median, last_worst, _ = timed(client, last, headers=token)
            print(
                f"  {label} ({pages:,} pages): first median {first_median:.0f} ms (worst {first_worst:.0f}), "
                f"last median {last_median:.0f} ms (worst {last_worst:.0f})"
            )
    host.close()
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
