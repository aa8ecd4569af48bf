"""Fixtures and helpers of the reliability and security suites.

One comparison helper (``mirror_state`` vs ``apple_state``), one byte-level dump of the mirror
(``mirror_dump``) to prove a failed sync changed nothing, and small simulators so that faults
land on later pages (``page_size=5``).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import text

from mdm_core import hookimpl
from mdm_core.host import Host

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
ACCOUNT_MIRROR_COLUMNS = ("assets_version_id", "users_version_id", "assignments_version_id", "last_full_sync_at",
                          "token_expires_at", "invitation_template")


class Recorder:
    """A subscriber plugin object: every event lands in ``events`` as (name, id, payload)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    @hookimpl(optionalhook=True)
    def mdm_event(self, host: Host, event: Any) -> None:
        self.events.append((event.name, event.id, event.payload))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [p for n, _, p in self.events if n == name]

    def clear(self) -> None:
        self.events.clear()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``mdm_core.cli.main`` points the root logger at the (captured) stderr: undo it afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def small_sim() -> Iterator[Any]:
    """A small simulator: 6 assets, 15 devices, 14 users, pages of 5."""
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=5, **SIM_KWARGS) as sim:
        yield sim


@pytest.fixture
def rhost(make_host: Callable[..., Host], recorder: Recorder) -> Host:
    """A host with the VPP plugin, a recorder and small retry bounds (no account yet)."""
    import plugins.vpp.plugin

    return make_host(plugins=[plugins.vpp.plugin, recorder], config=RELIABLE_CONFIG)


@pytest.fixture
def school(rhost: Host, small_sim: Any, project_dir: Path, recorder: Recorder) -> Host:
    """``rhost`` with the account ``school`` on ``small_sim`` (added, not synced)."""
    from plugins.vpp.accounts import add_account

    token_file = small_sim.write_token(project_dir / "school.vpptoken")
    add_account(rhost, "school", str(token_file), service_url=small_sim.base_url)
    recorder.clear()
    return rhost


@pytest.fixture
def synced(school: Host, small_sim: Any, recorder: Recorder) -> Host:
    """``school`` after a first full sync that converged."""
    from plugins.vpp.sync.run import sync_account

    report = sync_account(school, "school")
    assert report["status"] == "ok", report
    assert_converged(school, small_sim)
    recorder.clear()
    return school


# ---------------------------------------------------------------------- comparisons


def apple_state(sim: Any) -> dict[str, Any]:
    """What Apple (the simulator) holds, in the shape of ``mirror_state``."""
    snap = sim.snapshot()
    assets = {key: {**a, "supportedPlatforms": sorted(a["supportedPlatforms"])} for key, a in snap["assets"].items()}
    users = {cid: {**u, "inviteCode": u["inviteCode"] if u["status"] == "Registered" else None} for cid, u in snap["users"].items()}
    return {"assets": assets, "assignments": set(snap["assignments"]), "users": users}


def mirror_state(host: Host, account: str = "school") -> dict[str, Any]:
    """The mirror through ``plugins.vpp.views`` (Apple's field names)."""
    from plugins.vpp.views import list_assets, list_licenses, list_users

    assets = {}
    for row in list_assets(host, account):
        row = dict(row)
        row.pop("account")
        row["supportedPlatforms"] = sorted(row["supportedPlatforms"])
        assets[(row["adamId"], row["pricingParam"])] = row
    assignments = set()
    for row in list_licenses(host, account):
        kind = "serialNumber" if "serialNumber" in row else "clientUserId"
        assignments.add((row["adamId"], row["pricingParam"], kind, row[kind]))
    users = {u["clientUserId"]: {"email": u["email"], "status": u["status"], "idHash": u["idHash"], "inviteCode": u["inviteCode"]}
             for u in list_users(host, account)}
    return {"assets": assets, "assignments": assignments, "users": users}


def assert_converged(host: Host, sim: Any, account: str = "school") -> None:
    """The mirror equals Apple's state, and no staged rows are left behind."""
    mirror, apple = mirror_state(host, account), apple_state(sim)
    assert mirror["assets"] == apple["assets"]
    assert mirror["assignments"] == apple["assignments"]
    assert mirror["users"] == apple["users"]
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


def account_info(host: Host, name: str = "school") -> dict[str, Any]:
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


#: Figures for the README "Reliability" section, filled by the tests and printed at the end.
FIGURES: dict[str, int] = {}


def count_figure(name: str, n: int = 1) -> None:
    FIGURES[name] = FIGURES.get(name, 0) + n


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        parts = ", ".join(f"{k}={v}" for k, v in sorted(FIGURES.items()))
        terminalreporter.write_line(f"reliability figures: {parts}")
