"""How fast the console's pages answer at school-district scale: 1,000 assets and 300,000
licenses (the simulator's large seed), on SQLite. Prints one line per page: median and worst
of a few requests. ``--quick`` uses a tenth of the data.

    .venv/bin/python bench/web_bench.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    from fastapi.testclient import TestClient

    from mdm_core.host import create_host
    from mdm_core.web.access import add_admin
    from mdm_core.web.app import create_app
    from plugins.vpp.accounts import add_account
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.sync.run import sync_account

    scale = 10 if "--quick" in sys.argv else 1
    folder = Path(tempfile.mkdtemp(prefix="mdm-web-bench-"))
    (folder / "conf").mkdir()
    conf = folder / "conf" / "mdm.toml"
    conf.write_text("")
    env = {"MDM_SECRET_KEY": "bench"}
    with Simulator(seed=3, assets=1000 // scale, devices=100_000 // scale, users=100_000 // scale, assignments=300_000 // scale, async_delay=0) as sim:
        host = create_host(conf, environ=env, database_url=f"sqlite:///{folder / 'mdm.sqlite3'}")
        add_admin(host, "bench", "bench password 123")
        sim.write_token(folder / "t.vpptoken")
        add_account(host, "big", str(folder / "t.vpptoken"), service_url=sim.base_url)
        started = time.monotonic()
        report = sync_account(host, "big")
        print(f"sync: {report['status']} in {time.monotonic() - started:.1f}s")
        snap = sim.snapshot()
        counts: dict[tuple[str, str], int] = {}
        for a in snap["assignments"]:
            counts[(a[0], a[1])] = counts.get((a[0], a[1]), 0) + 1
        adam, pricing = max(counts, key=lambda k: counts[k])
        with TestClient(create_app(host)) as client:
            client.get("/login")
            client.post("/login", data={"name": "bench", "password": "bench password 123", "csrftoken": client.cookies.get("csrftoken")})
            base = f"/vpp/accounts/big/assets/{adam}/{pricing}"
            first = client.get(base + "?tab=device").text
            import re

            after = re.search(r'after=([^"&]+)', first)
            pages = {
                "accounts": "/vpp", "assets page 1": "/vpp/accounts/big/assets", "assets page 20 sorted by total": "/vpp/accounts/big/assets?sort=total&dir=desc&page=20",
                "assets search": "/vpp/accounts/big/assets?q=pro", f"asset ({counts[(adam, pricing)]} licenses), device tab": base + "?tab=device",
                "asset, next device page": base + f"?tab=device&after={after.group(1) if after else ''}", "VPP users page 100": "/vpp/accounts/big/users?page=100",
                "API licenses, 1000": "/api/v1/vpp/licenses?account=big&limit=1000",
            }
            for label, path in pages.items():
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    response = client.get(path)
                    times.append(time.perf_counter() - t0)
                    assert response.status_code == 200, (path, response.status_code)
                print(f"{label}: median {statistics.median(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms")
        host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
