"""Fixtures and helpers of the reliability and security suites.

The mirror-versus-Apple comparison (``plugins.vpp.testing``) with no staged rows left
(``assert_converged``), one byte-level dump of the mirror
(``mirror_dump``) to prove a failed sync changed nothing, and small simulators so that faults
land on later pages (``page_size=5``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mdm_core.host import Host
from mdm_core.testing import EventRecorder
from plugins.vpp.testing import add_simulated_account, assert_mirror_equals_apple

from ..conftest import count_figure, database_param  # noqa: F401 - the tests import them from here

#: Small retry bounds: a persistent fault fails in a few seconds, a single one is absorbed.
RELIABLE_CONFIG = """
[vpp]
max_attempts = 3
max_total_wait = 4.0
request_timeout = 0.6
lock_ttl = 3.0
"""

SIM_KWARGS: dict[str, Any] = dict(assets=6, devices=15, users=14, page_size=5, async_delay=0)

MIRROR_TABLES = ("vpp_asset", "vpp_user", "vpp_license")
ACCOUNT_MIRROR_COLUMNS = ("assets_version_id", "users_version_id", "assignments_version_id", "last_full_sync_at", "token_expires_at", "invitation_template")


@pytest.fixture
def recorder() -> EventRecorder:
    return EventRecorder()


@pytest.fixture
def small_sim() -> Iterator[Any]:
    """A small simulator: 6 assets, 15 devices, 14 users, pages of 5."""
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=5, **SIM_KWARGS) as sim:
        yield sim


@pytest.fixture
def rhost(make_host: Callable[..., Host], recorder: EventRecorder) -> Host:
    """A host with the VPP plugin, a recorder and small retry bounds (no account yet)."""
    import plugins.vpp.plugin

    return make_host(plugins=[plugins.vpp.plugin, recorder], config=RELIABLE_CONFIG)


@pytest.fixture
def school(rhost: Host, small_sim: Any, project_dir: Path, recorder: EventRecorder) -> Host:
    """``rhost`` with the account ``school`` on ``small_sim`` (added, not synced)."""
    add_simulated_account(rhost, small_sim, project_dir)
    recorder.clear()
    return rhost


@pytest.fixture
def synced(school: Host, small_sim: Any, recorder: EventRecorder) -> Host:
    """``school`` after a first full sync that converged."""
    from plugins.vpp.sync.run import sync_account

    report = sync_account(school, "school")
    assert report["status"] == "ok", report
    assert_converged(school, small_sim)
    recorder.clear()
    return school


# ---------------------------------------------------------------------- comparisons


def assert_converged(host: Host, sim: Any, account: str = "school") -> None:
    """The mirror equals Apple's state, and no staged rows are left behind."""
    assert_mirror_equals_apple(host, sim, account)
    assert stage_rows(host) == 0


def mirror_dump(host: Host, account: str = "school") -> list[Any]:
    """Every row of the mirror tables (all columns, timestamps included) and the account's sync markers."""
    out: list[Any] = []
    with host.db.engine.connect() as conn:
        for table in MIRROR_TABLES:
            out.append((table, [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2, 3"))]))
        cols = ", ".join(ACCOUNT_MIRROR_COLUMNS)
        out.append(("account", [tuple(r) for r in conn.execute(text(f"SELECT {cols} FROM vpp_account WHERE name = :n"), {"n": account})]))
    return out


def stage_rows(host: Host) -> int:
    with host.db.engine.connect() as conn:
        return sum(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in ("vpp_stage_license", "vpp_stage_user"))


def runs(host: Host) -> list[dict[str, Any]]:
    """Every sync run, oldest first."""
    with host.db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM vpp_sync_run ORDER BY id"))]


def account_info(host: Host, name: str = "school") -> Mapping[str, Any]:
    from plugins.vpp.accounts import list_accounts

    return next(a for a in list_accounts(host) if a["name"] == name)


def inner_token(stoken: str) -> str:
    """The ``token`` field inside an sToken."""
    return json.loads(base64.b64decode(stoken))["token"]


def apple_changes(sim: Any, seed: int = 1) -> None:
    """Apple-side changes touching assets, assignments (spanning 2+ delta pages) and users."""
    sim.mutate_fraction(0.5, seed=seed)
    for _ in range(6):
        sim.create_user()
    sim.purchase(count=3)


class RequestCounter:
    """Counts every request to the simulator's API (a zero-second ``slow`` fault matches them all)."""

    def __init__(self, sim: Any) -> None:
        self.fault = sim.faults.add("slow", seconds=0)

    @property
    def count(self) -> int:
        return self.fault.seen


# ---------------------------------------------------------------------- an unwritable database


def make_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every database opened from now on refuses writes, as a read-only file or a PostgreSQL
    standby does: SQLite ``PRAGMA query_only`` (SQLITE_READONLY), PostgreSQL read-only
    transactions (SQLSTATE 25006). Reads still work."""
    from sqlalchemy import event

    from mdm_core.db import engine as engine_module

    original = engine_module.Database._create_engine

    def create(self: Any, echo: bool) -> Any:
        engine = original(self, echo)

        @event.listens_for(engine, "connect")
        def read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA query_only = ON" if self.is_sqlite else "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cursor.close()
            if not self.is_sqlite:
                dbapi_connection.commit()

        return engine

    monkeypatch.setattr(engine_module.Database, "_create_engine", create)
