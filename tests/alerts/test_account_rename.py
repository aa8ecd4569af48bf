"""A renamed VPP account keeps its alert states: what was already alerted (its token expiring,
its low licenses, its failing syncs) is not alerted again under the new name, and what follows
is alerted under it. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mdm_core.host import Host
from plugins.alerts.delivery import check
from plugins.alerts.models import AlertSubject
from plugins.vpp.rename import rename_account
from plugins.vpp.simulator import Simulator
from plugins.vpp.testing import add_simulated_account

from .conftest import FAST_VPP, alerts, titles

SIM: dict[str, Any] = {"seed": 5, "assets": 6, "devices": 20, "users": 10, "page_size": 7, "async_delay": 0}


def _sync(host: Host, name: str) -> str:
    [report] = host.pm.hook.mdm_vpp_sync(host=host, account=name, full=False, trigger="test", wait=0)
    return str(report["status"])


def test_a_renamed_account_is_not_alerted_again(make_host: Callable[..., Host], project_dir: Path, database_url: str | None) -> None:
    with Simulator(token_expires_at=datetime.now(UTC) + timedelta(days=25, hours=1), **SIM) as sim:
        host = make_host(config=FAST_VPP + "\n[alerts]\nsync_failures = 2\nlow_licenses = 1000000\n", database_url=database_url)
        add_simulated_account(host, sim, project_dir)
        assert _sync(host, "school") == "ok"
        for _ in range(2):
            sim.faults.add("server_error", endpoint="client/config", count=1, status=503)
            assert _sync(host, "school") == "error"
        before = titles(host)
        assert any("VPP token of account 'school' expires in" in t for t in before) and any("Licenses of" in t for t in before)
        assert before[-1] == "Sync of VPP account 'school' failed 2 times in a row"

        rename_account(host, "school", "district")
        assert check(host) == {"queued": 0}  # the token, the licenses: as they were, already alerted
        sim.faults.add("server_error", endpoint="client/config", count=1, status=503)
        assert _sync(host, "district") == "error" and titles(host) == before  # still failing: said once
        assert _sync(host, "district") == "ok"
        assert titles(host) == [*before, "Sync of VPP account 'district' works again"]
        assert "after 3 failed attempt(s)" in alerts(host)[-1]["text"]
        assert check(host) == {"queued": 0}
        with host.db.session() as session:
            subjects = list(session.execute(select(AlertSubject)).scalars())
        assert subjects and {s.account for s in subjects} == {"district"}
        assert all(s.subject.split(":")[1] == "district" for s in subjects)
