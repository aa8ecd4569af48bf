"""Shared fixtures (from ``mdm_core.testing``), the simulator, and two suite-wide checks:

- every event delivered during a test carries the payload its ``TypedDict`` declares
  (``mdm_core.payloads``, ``plugins.vpp.payloads``, ``plugins.mobile_apps.payloads``);
- when the whole suite runs, every declared hook was called with at least one implementation
  (real calls, recorded by ``HookCallLog``, checked by ``HookCoverage``); a hook nobody exercises
  fails the run, naming it.

Both hold under pytest-xdist: the payload check runs in each worker, and each worker sends the
hooks it saw (and the reliability figures, ``count_figure``) to the controller.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("mdm_core.testing", "plugins.vpp.testing")
pytest_plugins = ["mdm_core.testing", "pytester"]

from mdm_core import collector as collector_module  # noqa: E402
from mdm_core.host import Host  # noqa: E402
from mdm_core.testing import HookCallLog, HookCoverage, RunTally, declared_hooks, payload_problems  # noqa: E402

from .children import no_child_left  # noqa: E402

TESTS = Path(__file__).resolve().parent
HOOK_CALLS = HookCallLog()
PAYLOAD_PROBLEMS: list[str] = []
#: Figures for the README "Reliability" section, counted by the tests and printed at the end.
FIGURES = RunTally("reliability figures")


def count_figure(name: str, n: int = 1) -> None:
    """Count ``n`` more of a figure printed at the end of the run (summed over xdist workers)."""
    FIGURES.add(name, n)


def all_hookspecs() -> set[str]:
    """Every hook the host and the in-repo plugins declare."""
    from mdm_core import hookspecs as core
    from plugins.mobile_apps import hookspecs as mobile_apps
    from plugins.vpp import hookspecs as vpp

    return declared_hooks(core, vpp, mobile_apps)


def head_revision(history: str) -> str:
    """The newest migration of a built-in history (``core``, ``web``, ``vpp``, ...), as the
    tests expect the database to end at it whatever migrations later branches add."""
    root = Path(__file__).resolve().parents[1]
    folder = {"core": root / "mdm_core" / "migrations", "web": root / "mdm_core" / "web" / "migrations"}.get(history, root / "plugins" / history / "migrations")
    return max(p.name[:4] for p in folder.glob("[0-9][0-9][0-9][0-9]_*.py"))


def _payload_types() -> dict[str, type]:
    from mdm_core.payloads import EVENT_PAYLOADS as core
    from plugins.mobile_apps.payloads import EVENT_PAYLOADS as mobile_apps
    from plugins.vpp.payloads import EVENT_PAYLOADS as vpp

    return {**core, **vpp, **mobile_apps}


def pytest_configure(config: pytest.Config) -> None:
    types = _payload_types()

    def check(name: str, kwargs: Mapping[str, Any]) -> None:
        event = kwargs.get("event")
        if event is None or name != f"mdm_{getattr(event, 'name', '')}" or event.name not in types:
            return
        PAYLOAD_PROBLEMS.extend(payload_problems(event.name, event.payload, types[event.name]))

    HOOK_CALLS.on_call = check
    HOOK_CALLS.install()
    config.pluginmanager.register(HookCoverage(HOOK_CALLS, all_hookspecs, TESTS), "mdm-hook-coverage")
    config.pluginmanager.register(FIGURES, "mdm-reliability-figures")


#: The test processes' garbage collector runs its oldest generation after 100 collections of
#: the middle one rather than 10 (Python's default): after collection a worker holds about
#: 190,000 long-lived objects (the test items, the imported modules), and each full collection
#: walked them all for the few cycles it freed (29 per worker in the fast subset: 5 CPU seconds
#: of each worker's 35). Young cycles are still collected as often as ever.
GC_THRESHOLDS = (700, 10, 100)
# ... and nothing of the suite's process is frozen: a host freezes what is alive after its first
# plugin load (mdm_core.collector), but hypothesis's register_random looks for a generator's
# referrers with gc.get_referrers, which does not see frozen objects; tests/core/test_plugins.py
# checks the freeze itself
collector_module._frozen = True


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.set_threshold(*GC_THRESHOLDS)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """In the pytest-xdist controller, once a worker has collected the tests and starts running
    them: import hypothesis on a thread of its own. Hypothesis's pytest plugin imports it in the
    controller's terminal summary otherwise, a second at the very end of the run that nothing
    overlapped (the workers import it while collecting)."""
    global _HYPOTHESIS_IMPORT
    if _HYPOTHESIS_IMPORT is None:
        _HYPOTHESIS_IMPORT = threading.Thread(target=importlib.import_module, args=("hypothesis",), name="import-hypothesis", daemon=True)
        _HYPOTHESIS_IMPORT.start()


_HYPOTHESIS_IMPORT: threading.Thread | None = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL variant of a test run on both databases is ``slow`` (a real server, each
    test's schema made by the migrations there): the fast subset runs the SQLite variant, the
    whole suite both."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgresql" in params.values() or any(str(v).startswith("postgresql") for v in params.values()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _event_payloads_follow_their_types(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test during which an event was delivered with keys its TypedDict does not declare
    (tests of the event machinery itself record hand-made payloads: ``arbitrary_payloads``)."""
    PAYLOAD_PROBLEMS.clear()
    yield
    problems, PAYLOAD_PROBLEMS[:] = list(PAYLOAD_PROBLEMS), []
    if request.node.get_closest_marker("arbitrary_payloads"):
        return
    assert not problems, "event payloads that break their declared types: " + "; ".join(sorted(set(problems)))


@pytest.fixture(autouse=True)
def _no_child_left() -> Iterator[None]:
    """Every process the test started is killed, if it still runs, and waited for when it ends
    (:mod:`tests.children`): a hung child fails its own test, never the next one on the worker."""
    with no_child_left():
        yield


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashes() -> Iterator[None]:
    """In-process password hashes use Argon2id with its smallest cost (1 pass, 1 MiB) instead of
    the library's recommended one (3 passes, 64 MiB: a fifth of a second of CPU per sign-in and
    per admin added): the same algorithm, code and stored format, at a cost a test can afford.
    ``mdm`` processes started by the tests keep the real parameters."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    from mdm_core.web import access

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(access, "_hasher", lambda: PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),)))
        yield


@pytest.fixture
def simulator() -> Iterator[Any]:
    """A small Apple-compatible service on a free loopback port (events complete at once)."""
    from plugins.vpp.simulator import Simulator

    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=7, async_delay=0) as sim:
        yield sim


@pytest.fixture
def vpp_host(make_host: Callable[..., Host], simulator: Any, project_dir: Path) -> Host:
    """A host with the installed plugins and an account ``school`` on the simulator (not yet synced)."""
    from plugins.vpp.testing import add_simulated_account

    host = make_host()
    add_simulated_account(host, simulator, project_dir)
    return host


# ---------------------------------------------------------------------- PostgreSQL

PG_ADMIN_URL = os.environ.get("MDM_TEST_POSTGRES_URL")
PG_SKIP_REASON = "set MDM_TEST_POSTGRES_URL to run the PostgreSQL tests (.ci/run does)"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test session (or pytest-xdist worker) alone: created with a
    unique name through ``MDM_TEST_POSTGRES_URL`` (whose role needs CREATEDB) and dropped at the
    end, so that several checkouts and workers never share tables. Skipped without that URL."""
    if not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    machine = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"mdm_t_{machine}_{os.getpid()}_{worker}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # databases left by killed sessions of this machine (their process is gone)
            for (old,) in conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": f"mdm\\_t\\_{machine}\\_%"}):
                pid = old.split("_")[3]
                if pid.isdigit() and not _process_alive(int(pid)):
                    _drop_database(conn, old)
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            _drop_database(conn, name)
        admin.dispose()


def _drop_database(conn: Any, name: str, attempts: int = 20) -> None:
    """``DROP DATABASE ... WITH (FORCE)`` (a test's leftover sessions are ended). FORCE cannot
    end an autovacuum worker for a role without superuser (PostgreSQL 15: "must be a member of
    the role whose process is being terminated"; it failed one CI run's teardown), where a plain
    DROP cancels autovacuum by itself: that one then, again while sessions are still closing."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege: an autovacuum worker
                raise
        try:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)  # the server's own workers, not a clock the test controls


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session's PostgreSQL database, emptied for this test."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return pg_database


def database_param(request: pytest.FixtureRequest, project_dir: Path, kind: str | None = None) -> str:
    """The URL of the database a test runs on: ``sqlite`` (a file of the project) or
    ``postgresql`` (this session's, skipped without MDM_TEST_POSTGRES_URL); ``kind`` defaults
    to the fixture's parameter."""
    if (kind or request.param) == "sqlite":
        return f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"
    if not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> Iterator[str | None]:
    """Each test on the project's SQLite file (None) and on an empty PostgreSQL database;
    test folders with their own ``database_url`` (always a URL) override it."""
    if request.param == "sqlite":
        yield None
        return
    if not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    yield request.getfixturevalue("pg_url")
