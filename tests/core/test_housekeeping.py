"""``core.housekeeping``: history past its retention is deleted (delivered events, finished
commands, sync runs, Apple's notifications, mobile_apps' and the alerts' guards of applied
events, old alerts), what is still needed stays, in short transactions; on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text
from sqlmodel import SQLModel, col

from mdm_core.db.typed import stored_id
from mdm_core.host import Host
from mdm_core.housekeeping import housekeeping
from mdm_core.models import Command, JobRun, OutboxEvent, SubscriberFailure
from plugins.mobile_apps.models import SeenEvent
from plugins.vpp.models import VppAssetCount, VppNotification, VppSyncRun

from ..test_apple_migrations import _database_at, _upgrade_then_query

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TABLES = (
    "core_subscriber_failure",
    "core_event",
    "core_command",
    "vpp_sync_run",
    "core_job_run",
    "vpp_asset_count",
    "vpp_notification",
    "mobile_apps_seen_event",
    "mobile_apps_install",
    "mobile_apps_reclaim",
    "alerts_message",
    "alerts_seen_event",
)
NOTHING = dict.fromkeys(TABLES, 0)  # what a run deletes from each table with the installed plugins, when nothing is due


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
def school(make_host: Callable[..., Host], simulator: Any, project_dir: Path, database_url: str | None) -> Host:
    """A host with the installed plugins and the account ``school`` (not synced)."""
    from plugins.vpp.testing import add_simulated_account

    host = make_host(database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    return host


def add(host: Host, *rows: SQLModel) -> None:
    def work(session: Any) -> None:
        session.add_all(rows)

    host.db.run_write(work)


def event(delivered: datetime | None, *, claimed: bool = False) -> OutboxEvent:
    return OutboxEvent(
        id=str(uuid.uuid4()), name="device_enrolled", payload={}, created_at=days_ago(400), delivered_at=delivered, claimed_by="p1" if claimed else None
    )


def ids(host: Host, column: Any) -> set[Any]:
    with host.db.session() as session:
        return set(session.execute(select(column)).scalars())


def test_old_history_goes_what_is_still_needed_stays_and_a_second_run_deletes_nothing(school: Host) -> None:
    old, recent = days_ago(40), days_ago(10)
    gone, failed, unclaimed, claimed, fresh = event(old), event(old), event(None), event(None, claimed=True), event(recent)
    add(school, gone, failed, unclaimed, claimed, fresh)
    # (of an installed plugin: one no longer installed goes after the retention, see test_discard_deliveries)
    add(school, SubscriberFailure(event_id=failed.id, event_name=failed.name, plugin="vpp", error="RuntimeError: x", status="failed"))
    # guards, all old: whether one goes depends on its event alone
    add(school, *(SeenEvent(event_id=e.id, name=e.name, at=days_ago(400)) for e in (gone, failed, unclaimed, fresh)))

    def command(status: str, updated: datetime, request_type: str = "Settings") -> Command:
        return Command(device_serial="S1", request_type=request_type, status=status, created_at=updated, updated_at=updated)

    commands = {
        "acknowledged": command("acknowledged", days_ago(100)),
        "error": command("error", days_ago(100)),
        "canceled": command("canceled", days_ago(100)),
        "queued": command("queued", days_ago(100)),
        "sent": command("sent", days_ago(100)),
        "installed": command("acknowledged", days_ago(100), "InstallApplication"),
        "book": command("acknowledged", days_ago(100), "InstallMedia"),
        "install-failed": command("error", days_ago(100), "InstallApplication"),
        "recent": command("acknowledged", days_ago(80)),
    }
    add(school, *commands.values())

    from plugins.vpp.views import get_account

    with school.db.session() as session:
        account_id = get_account(session, "school").id
    assert account_id is not None

    def run(mode: str, status: str, started: datetime) -> VppSyncRun:
        return VppSyncRun(account_id=account_id, trigger="schedule", mode=mode, status=status, started_at=started, finished_at=started)

    runs = {"recent": run("incremental", "error", days_ago(89))}  # the lowest id: not the latest, kept for its age
    add(school, runs["recent"])
    for name, r in {
        "old": run("full", "ok", days_ago(100)),
        "latest-full": run("full", "error", days_ago(98)),
        "latest-ok": run("incremental", "ok", days_ago(97)),
        "superseded": run("incremental", "error", days_ago(96)),
        "running": run("incremental", "running", days_ago(95)),
        "latest": run("incremental", "error", days_ago(94)),
    }.items():
        runs[name] = r
        add(school, r)  # one at a time: ids in this order
    with school.db.session() as session:
        run_ids = {name: session.execute(select(col(VppSyncRun.id)).where(col(VppSyncRun.started_at) == r.started_at)).scalar_one() for name, r in runs.items()}

    def job(name: str, finished: datetime) -> JobRun:
        return JobRun(name=name, plugin="vpp", last_started_at=finished, last_finished_at=finished, runs=1)

    # [vpp] sync_run_retention_days: 90; an account's job stays while the account does, whatever its age
    add(school, job("vpp.sync.gone", days_ago(91)), job("vpp.sync.left", days_ago(89)), job("vpp.sync.school", days_ago(400)), job("demo.old", days_ago(400)))

    def notification(name: str, status: str, processed: datetime | None) -> VppNotification:
        return VppNotification(
            account_id=account_id, notification_id=name, notification_type="ASSET_COUNT", status=status, received_at=days_ago(400), processed_at=processed
        )

    # [vpp] notification_retention: 30 days; one still waiting to be acted on stays, however old
    add(
        school,
        *(
            notification(n, s, p)
            for n, s, p in [("done", "done", days_ago(31)), ("failed", "failed", days_ago(40)), ("recent", "done", days_ago(29)), ("waiting", "received", None)]
        ),
    )

    deleted = housekeeping(school, NOW)
    assert deleted == {
        **NOTHING,
        "core_event": 1,
        "core_command": 4,
        "vpp_sync_run": 2,
        "core_job_run": 1,
        "vpp_notification": 2,
        "mobile_apps_seen_event": 1,
    }

    mine = {gone.id, failed.id, unclaimed.id, claimed.id, fresh.id}
    assert ids(school, OutboxEvent.id) & mine == {failed.id, unclaimed.id, claimed.id, fresh.id}
    # a guard goes with its event, not by its age: the others' events can still be delivered again
    assert ids(school, SeenEvent.event_id) == {failed.id, unclaimed.id, fresh.id}
    kept = {name for name, c in commands.items() if c.uuid in ids(school, Command.uuid)}
    assert kept == {"queued", "sent", "installed", "book", "recent"}
    kept_runs = {name for name, i in run_ids.items() if i in ids(school, VppSyncRun.id)}
    assert kept_runs == {"recent", "latest-full", "latest-ok", "running", "latest"}
    # a removed account's sync job went past the retention (one row an account added and removed, for ever)
    assert ids(school, JobRun.name) == {"vpp.sync.left", "vpp.sync.school", "demo.old"}

    # what the account's pages show is still there
    from plugins.vpp.sync.run import latest_runs

    assert latest_runs(school)["school"]["id"] == run_ids["latest"]
    assert ids(school, VppNotification.notification_id) == {"recent", "waiting"}

    assert housekeeping(school, NOW) == NOTHING
    # and a day later the recent ones' turn has come
    assert housekeeping(school, NOW + timedelta(days=21))["core_event"] == 1


def test_an_asset_history_keeps_its_last_year_and_the_counts_it_starts_from(school: Host, simulator: Any) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import delete

    from mdm_core.web.access import create_token
    from mdm_core.web.app import create_app
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.views import get_account

    assert sync_account(school, "school")["status"] == "ok"  # the assets, each with the count the sync recorded (today: kept)
    (busy, busy_pricing), (quiet, quiet_pricing) = list(simulator.state.assets)[:2]
    with school.db.session() as session:
        account_id = get_account(session, "school").id
    assert account_id is not None

    def counts(adam: str, pricing: str, *days: int) -> list[VppAssetCount]:
        return [VppAssetCount(account_id=account_id, adam_id=adam, pricing_param=pricing, at=days_ago(d), assigned_count=d, total_count=900) for d in days]

    school.db.run_write(lambda session: session.execute(delete(VppAssetCount).where(col(VppAssetCount.adam_id).in_([busy, quiet]))))
    synced = ids(school, VppAssetCount.id)
    assert synced
    for row in counts(busy, busy_pricing, 400, 380, 100, 10) + counts(quiet, quiet_pricing, 500, 450, 370):
        add(school, row)  # one at a time: ids in time order

    with freeze_time(NOW):
        assert housekeeping(school)["vpp_asset_count"] == 3
        assert housekeeping(school)["vpp_asset_count"] == 0  # a second run deletes nothing

    token = {"Authorization": "Bearer " + create_token(school, "t-viewer", "viewer")["token"]}
    with TestClient(create_app(school)) as client:

        def history(adam: str, pricing: str) -> list[int]:
            response = client.get(f"/api/v1/vpp/assets/{adam}/history", params={"account": "school", "pricing": pricing}, headers=token)
            assert response.status_code == 200, response.text
            return [item["assignedCount"] for item in response.json()["items"]]

        # the last year, from the counts that held when it began (recorded 380 days ago)
        assert history(busy, busy_pricing) == [380, 100, 10]
        # an asset unchanged for over a year keeps its latest counts: the chart's current point
        assert history(quiet, quiet_pricing) == [370]
    assert ids(school, VppAssetCount.id) >= synced  # the other assets' counts, recorded today, stay


def test_an_account_that_never_synced_ok_nor_in_full_keeps_only_its_latest_run(school: Host) -> None:
    """The runs to keep are asked by the DELETE itself: an account without an ok (or a full) run
    has none of that kind to keep, and its other old runs still go."""
    from plugins.vpp.views import get_account

    with school.db.session() as session:
        account_id = stored_id(get_account(session, "school"))
    for d in (100, 99, 98):  # one at a time: ids in this order
        add(school, VppSyncRun(account_id=account_id, trigger="schedule", mode="incremental", status="error", started_at=days_ago(d), finished_at=days_ago(d)))
    latest = max(ids(school, VppSyncRun.id))
    assert housekeeping(school, NOW)["vpp_sync_run"] == 2
    assert ids(school, VppSyncRun.id) == {latest}


def test_deletes_go_a_chunk_per_transaction(make_host: Callable[..., Host], database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_host(database_url=database_url, config="[core]\nhousekeeping_chunk = 2\n")
    add(host, *(event(days_ago(40)) for _ in range(5)))
    add(host, *(SeenEvent(event_id=str(uuid.uuid4()), name="x", at=days_ago(1)) for _ in range(3)))
    writes: list[int] = []
    real = host.db.run_write

    def counted(work: Any, **kw: Any) -> Any:
        result = real(work, **kw)
        writes.append(result[1] if isinstance(result, tuple) else -1)
        return result

    monkeypatch.setattr(host.db, "run_write", counted)
    assert housekeeping(host, NOW) == {**NOTHING, "core_event": 5, "mobile_apps_seen_event": 3}
    # deliveries waiting for an uninstalled plugin: none; events: 2, 2, 1 (the last chunk short:
    # done); commands: none; Apple's notifications: none;
    # removed accounts' sync jobs: none; mobile_apps' guards: 2, 1; its ended installs and
    # reclaims, alerts, and their guards: none
    assert writes == [0, 2, 2, 1, 0, 0, 0, 2, 1, 0, 0, 0, 0]
    with host.db.session() as session:
        assert session.execute(select(func.count()).select_from(OutboxEvent)).scalar_one() == 0


def test_events_recorded_after_every_event_was_deleted_come_after_a_cursor_held_from_before(make_host: Callable[..., Host], database_url: str | None) -> None:
    """An API client paging ``GET /api/v1/events`` (newest first) holds the cursor after the
    newest event; housekeeping deletes every event; the events recorded then are newer: they are
    the first page's, never the held cursor's next page (SQLite gave their seqs again: the client
    was answered new events as older ones and missed them at the top)."""
    from mdm_core.web.core_routes import events_page

    host = make_host(database_url=database_url)
    old = [event(days_ago(40)) for _ in range(2)]
    for row in old:
        add(host, row)
    held = events_page(host, "device_enrolled", 1, None)
    assert [e["id"] for e in held.items] == [old[1].id]
    assert housekeeping(host, NOW)["core_event"] == 2
    new = [event(None) for _ in range(3)]
    for row in new:
        add(host, row)
    assert events_page(host, "device_enrolled", 10, held.next_cursor).items == [], "events recorded after the cursor was given were answered as older ones"
    assert [e["id"] for e in events_page(host, "device_enrolled", 10, None).items] == [e.id for e in reversed(new)]
    assert min(ids(host, OutboxEvent.seq)) > max(e.seq or 0 for e in old), "a deleted event's seq was given again"


def test_mdm_jobs_run_says_what_it_deleted_and_the_next_run_is_a_day_later(mdm: Any, project_dir: Path) -> None:
    with freeze_time(NOW) as frozen:
        code, out, err = mdm("jobs", "run", "core.housekeeping")
        assert code == 0, err
        assert out.startswith("core.housekeeping: ok in ") and "core_event 0, core_command 0" in out
        frozen.tick(timedelta(seconds=5))
        code, out, err = mdm("jobs", "--json")
        [job] = [j for j in json.loads(out) if j["name"] == "core.housekeeping"]
        assert job["every_seconds"] == 86400
        assert job["next_run"].startswith("2026-06-02T12:00:00")  # planned from its recorded run
        assert job["last_finished_at"].startswith("2026-06-01T12:00:0")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[core]\nevent_retention_days = 0\n", "[core] event_retention_days must be from 1 to 3650, got 0"),
        ("[core]\ncommand_retention_days = -5\n", "[core] command_retention_days must be from 1 to 3650, got -5"),
        ("[core]\nhousekeeping_chunk = 0\n", "[core] housekeeping_chunk must be from 1 to 100000, got 0"),
        ("[core]\nhousekeeping_interval = 0\n", "[core] housekeeping_interval must be from 60 to 31536000, got 0"),
        ('[plugins]\nenabled = ["plugins.vpp.plugin"]\n[vpp]\nsync_run_retention_days = 0\n', "[vpp] sync_run_retention_days must be from 1 to 3650, got 0"),
        (
            '[plugins]\nenabled = ["plugins.vpp.plugin"]\n[vpp]\nasset_count_retention_days = 0\n',
            "[vpp] asset_count_retention_days must be from 1 to 3650, got 0",
        ),
        (
            '[plugins]\nenabled = ["plugins.vpp.plugin", "plugins.mobile_apps.plugin"]\n[mobile_apps]\nhistory_retention_days = 0\n',
            "[mobile_apps] history_retention_days must be from 1 to 3650, got 0",
        ),
    ],
)
def test_a_retention_of_zero_or_less_is_a_one_line_error(mdm: Any, text: str, expected: str) -> None:
    code, _, err = mdm("jobs", config=text)
    assert code == 2 and expected in err and err.count("\n") == 1, err


def _indexes(url: str, table: str) -> dict[str, list[str]]:
    """The indexes of ``table`` on the database at ``url``: name to columns."""
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        return {str(i["name"]): [str(c) for c in i["column_names"]] for i in inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def test_core_0006_indexes_finished_commands_and_keeps_them(project_dir: Path, monkeypatch: Any, capsys: Any, database_url: str | None) -> None:
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"core": "0005"},
        [
            "INSERT INTO core_command (uuid, device_serial, request_type, payload, status, created_at, updated_at)"
            " VALUES ('C1', 'S1', 'Settings', '{}', 'acknowledged', '2026-01-02 03:04:05+00', '2026-01-02 03:04:05+00')",
        ],
        url=database_url,
    )
    [rows] = _upgrade_then_query(mdm, "core: applied 0006 (index core_command", "SELECT uuid, status FROM core_command", url=database_url)
    assert rows == [("C1", "acknowledged")]
    indexes = _indexes(database_url or f"sqlite:///{mdm.db}", "core_command")
    assert indexes["ix_core_command_finished"] == ["status", "updated_at"]


def test_core_0011_indexes_subscriber_failures_by_status_and_keeps_them(project_dir: Path, monkeypatch: Any, capsys: Any, database_url: str | None) -> None:
    """`mdm run` looks the failed deliveries up by status at every turn, and `mdm status` too:
    without an index each read every failure (about 1,400 a sync for a subscriber that keeps failing)."""
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"core": "0010"},
        [
            "INSERT INTO core_subscriber_failure (event_id, event_name, plugin, error, at, attempts, status)"
            " VALUES ('e1', 'device_removed', 'p', 'boom', '2026-01-02 03:04:05+00', 1, 'failed')"
        ],
        url=database_url,
    )
    [rows] = _upgrade_then_query(
        mdm, "core: applied 0011 (index core_subscriber_failure", "SELECT event_id, plugin, status FROM core_subscriber_failure", url=database_url
    )
    assert rows == [("e1", "p", "failed")]
    indexes = _indexes(database_url or f"sqlite:///{mdm.db}", "core_subscriber_failure")
    assert indexes["ix_core_subscriber_failure_status"] == ["status", "plugin"]


def test_housekeeping_deletes_old_alerts_unless_a_delivery_or_a_redelivery_needs_them(make_host: Callable[..., Host], database_url: str | None) -> None:
    """[alerts] keep_days (90): an old alert goes with its deliveries, one still pending stays;
    a guard of an applied event goes after 90 days once its event is gone from the outbox. The
    plugin's own jobs no longer delete anything."""
    from plugins.alerts.delivery import check, deliver_job
    from plugins.alerts.models import AlertDelivery, AlertMessage
    from plugins.alerts.models import SeenEvent as AlertsSeen

    host = make_host(database_url=database_url)
    pinned, gone, young = event(days_ago(400)), event(days_ago(400)), event(days_ago(400))
    add(
        host,
        pinned,
        AlertsSeen(event_id=pinned.id, at=days_ago(400)),
        AlertsSeen(event_id=gone.id, at=days_ago(400)),
        AlertsSeen(event_id=young.id, at=days_ago(80)),
    )
    add(host, SubscriberFailure(event_id=pinned.id, event_name=pinned.name, plugin="alerts", error="RuntimeError: x", status="failed"))

    # name: (created days ago, its deliveries' statuses); the ids are the database's (a new alert
    # below takes the next one: ids given by hand would leave PostgreSQL's sequence behind them)
    alerts = {1: (100, ["sent", "failed"]), 2: (100, ["failed", "pending"]), 3: (100, []), 4: (80, ["sent"]), 5: (91, ["failed"])}
    add(
        host,
        *(
            AlertMessage(created_at=days_ago(d), kind="sync", subject="sync:school", state="failing", severity="critical", title=str(k), text="x", action="a")
            for k, (d, _) in alerts.items()
        ),
    )
    with host.db.session() as session:
        id_of = {int(title): i for i, title in session.execute(select(col(AlertMessage.id), col(AlertMessage.title)))}
    later = datetime(2100, 1, 1, tzinfo=UTC)  # never due here: the delivery job sends nothing
    add(
        host,
        *(
            AlertDelivery(message_id=id_of[k], channel=f"webhook:w{n}", status=s, next_attempt_at=later)
            for k, (_, statuses) in alerts.items()
            for n, s in enumerate(statuses)
        ),
    )
    assert check(host) == {"queued": 1}  # the delivery to alerts that failed for good is told (a new alert, today's)
    [told] = ids(host, AlertMessage.id) - set(id_of.values())
    every = (ids(host, AlertMessage.id), ids(host, AlertDelivery.id), ids(host, AlertsSeen.event_id))
    assert deliver_job(host) == {"sent": 0, "retrying": 0, "failed": 0} and check(host) == {"queued": 0}
    assert (ids(host, AlertMessage.id), ids(host, AlertDelivery.id), ids(host, AlertsSeen.event_id)) == every  # the alerts' jobs delete nothing

    assert housekeeping(host, NOW) == {**NOTHING, "alerts_message": 3, "alerts_seen_event": 1}
    assert ids(host, AlertMessage.id) == {id_of[2], id_of[4], told}  # a delivery still pending; younger than keep_days
    assert ids(host, AlertDelivery.message_id) == {id_of[2], id_of[4]}  # the others' deliveries went with them
    # the event a failed delivery keeps can be redelivered: its guard stays, or its alerts would be queued again
    assert ids(host, AlertsSeen.event_id) == {pinned.id, young.id}
    assert housekeeping(host, NOW) == NOTHING


@contextmanager
def committed_before_delete_from(host: Host, table: str, change: Callable[[dict[str, Any]], Any]) -> Iterator[list[str]]:
    """Runs ``change(parameters)`` (its own transaction, committed) just before the first DELETE
    from ``table``: what another process commits between a chunk's SELECT and its DELETE. Yields
    the DELETEs it came before (one, once it has). PostgreSQL only: on SQLite the chunk's
    transaction holds the write lock (BEGIN IMMEDIATE), so no other writer commits inside it."""
    fired: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: dict[str, Any], *args: Any) -> None:
        if not fired and statement.lstrip().startswith(f"DELETE FROM {table} "):
            fired.append(statement)
            change(parameters)

    sa_event.listen(host.db.write_engine, "before_cursor_execute", before)
    try:
        yield fired
    finally:
        sa_event.remove(host.db.write_engine, "before_cursor_execute", before)


def test_an_old_failed_install_acknowledged_while_it_is_pruned_stays(make_host: Callable[..., Host], pg_url: str) -> None:
    """The device reports an old InstallApplication installed after all (error, then acknowledged)
    between the prune's SELECT of finished commands and its DELETE: an acknowledged install is
    kept whatever its age (what the device has installed), and it stays."""
    from mdm_core.inventory import set_command_status

    host = make_host(database_url=pg_url)
    install, settings = (
        Command(device_serial="S1", request_type=t, status="error", created_at=days_ago(100), updated_at=days_ago(100))
        for t in ("InstallApplication", "Settings")
    )
    add(host, install, settings)

    with committed_before_delete_from(host, "core_command", lambda _: set_command_status(host, install.uuid, "acknowledged")) as fired:
        deleted = housekeeping(host, NOW)
    assert fired and deleted["core_command"] == 1
    with host.db.session() as session:
        assert list(session.execute(select(col(Command.uuid), col(Command.status)))) == [(install.uuid, "acknowledged")]


@contextmanager
def paused(host: Host, thread: str, when: Callable[[str], bool]) -> Iterator[tuple[threading.Event, threading.Event, list[int]]]:
    """Holds thread ``thread``'s transaction on the write engine (PostgreSQL) where ``when``
    (the statement about to run, ``"COMMIT"`` for its commit) first says so: yields (``there``,
    set once it waits; ``go``, to set to let it on; the pid of its backend, once there)."""
    there, go, pid = threading.Event(), threading.Event(), []

    def hold(conn: Any, statement: str) -> None:
        if threading.current_thread().name == thread and not there.is_set() and when(statement):
            pid.append(conn.connection.dbapi_connection.info.backend_pid)
            there.set()
            assert go.wait(30), f"{thread} held for 30 s"

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        hold(conn, statement)

    def commit(conn: Any) -> None:
        hold(conn, "COMMIT")

    sa_event.listen(host.db.write_engine, "before_cursor_execute", before)
    sa_event.listen(host.db.write_engine, "commit", commit)
    try:
        yield there, go, pid
    finally:
        go.set()
        sa_event.remove(host.db.write_engine, "before_cursor_execute", before)
        sa_event.remove(host.db.write_engine, "commit", commit)


def blocked_by(host: Host, pid: int, thread: threading.Thread) -> bool:
    """Whether a backend waits for a lock that backend ``pid`` holds, polled until one does or
    ``thread`` (the one that would wait) has ended without waiting (at most 30 s)."""
    deadline = time.monotonic() + 30
    with host.db.engine.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"), {"pid": pid}).scalar_one():
                return True
            if not thread.is_alive():
                return False
            conn.rollback()  # a new snapshot of pg_stat_activity
    raise AssertionError(f"nothing waited for backend {pid} within 30 s")


def old_failed_alerts(host: Host, *ids_: int) -> None:
    from plugins.alerts.models import AlertDelivery, AlertMessage

    add(
        host,
        *(
            AlertMessage(id=i, created_at=days_ago(100), kind="sync", subject="s", state="failing", severity="critical", title="t", text="x", action="a")
            for i in ids_
        ),
    )
    add(host, *(AlertDelivery(message_id=i, channel="webhook:w0", status="failed", next_attempt_at=days_ago(99)) for i in ids_))


def in_thread(name: str, work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """``work()`` started in a thread named ``name``; the list gets what it returned or raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(work())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread, out


def test_a_retry_committed_while_the_prune_deletes_keeps_its_alert(make_host: Callable[..., Host], pg_url: str) -> None:
    """``mdm alerts retry 1`` commits while the prune's DELETE of old alert 1 runs (it waited for
    the retry's lock): the DELETE's snapshot did not show the delivery pending, yet the alert
    stays with its delivery queued again. A chunk of one: the chunk that deleted nothing does
    not end the prune, old alert 2, not retried, goes."""
    from plugins.alerts.delivery import retry_failed
    from plugins.alerts.models import AlertDelivery, AlertMessage

    host = make_host(database_url=pg_url, config="[core]\nhousekeeping_chunk = 1\n")
    old_failed_alerts(host, 1, 2)
    with paused(host, "retry", lambda statement: statement == "COMMIT") as (there, go, pid):
        retry, retried = in_thread("retry", lambda: retry_failed(host, [1]))
        assert there.wait(30)  # the delivery is pending in the retry's transaction, not committed
        prune, deleted = in_thread("prune", lambda: housekeeping(host, NOW))
        assert blocked_by(host, pid[0], prune)  # the prune waits for the retry's transaction
        go.set()
        retry.join(30)
        prune.join(30)
    assert retried == [1] and deleted[0]["alerts_message"] == 1
    with host.db.session() as session:
        assert list(session.execute(select(col(AlertMessage.id)))) == [(1,)]
        assert list(session.execute(select(col(AlertDelivery.message_id), col(AlertDelivery.status)))) == [(1, "pending")]


def test_a_retry_of_an_alert_the_prune_is_deleting_says_it_is_gone(make_host: Callable[..., Host], pg_url: str) -> None:
    """The prune holds old alert 1 (about to delete it) when ``mdm alerts retry 1`` starts: the
    retry waits, then refuses in one line, the alert gone; nothing is queued."""
    from mdm_core.errors import MdmError
    from plugins.alerts.delivery import retry_failed
    from plugins.alerts.models import AlertMessage

    host = make_host(database_url=pg_url)
    old_failed_alerts(host, 1)
    with paused(host, "prune", lambda statement: statement.startswith("DELETE FROM alerts_message ")) as (there, go, pid):
        prune, deleted = in_thread("prune", lambda: housekeeping(host, NOW))
        assert there.wait(30)
        retry, retried = in_thread("retry", lambda: retry_failed(host, [1]))
        assert blocked_by(host, pid[0], retry)  # the retry waits for the prune's transaction
        go.set()
        retry.join(30)
        prune.join(30)
    assert deleted[0]["alerts_message"] == 1 and ids(host, AlertMessage.id) == set()
    [refused] = retried
    assert isinstance(refused, MdmError) and str(refused) == (
        "alert(s) 1 not found (deleted after [alerts] keep_days, or a mistyped id): nothing was queued again (see `mdm alerts list --status failed`)"
    )


def test_an_app_updated_on_a_device_keeps_its_latest_acknowledged_install(make_host: Callable[..., Host], database_url: str | None) -> None:
    """Each update of an app queues InstallApplication again where it was installed: kept all,
    a device's acknowledged installs grew by one per update for as long as the host ran (weekly
    updates of 20 apps on 100 devices: 100,000 rows a year). The latest of each app on each
    device is the record of what it has installed (updates and RemoveApplication find it there):
    it stays, whatever its age; those before it go once past ``[core] command_retention_days``."""
    host = make_host(database_url=database_url)

    def install(serial: str, days: float, app: int | None = 111, request_type: str = "InstallApplication") -> Command:
        payload = {"RequestType": request_type, "iTunesStoreID": app} if app is not None else {"RequestType": request_type, "ManifestURL": "https://x/m.plist"}
        at = days_ago(days)
        return Command(device_serial=serial, request_type=request_type, payload=payload, status="acknowledged", created_at=at, updated_at=at)

    commands = {
        "first": install("S1", 400),
        "update1": install("S1", 300),
        "update2": install("S1", 200),  # the latest of app 111 on S1: stays, however old
        "other-app": install("S1", 400, 222),
        "other-device": install("S2", 400),
        "book": install("S1", 400, request_type="InstallMedia"),
        "manifest": install("S1", 400, None),
        "manifest-again": install("S1", 300, None),
        "superseded-recently": install("S3", 400),
        "recent": install("S3", 10),
        "within-retention": install("S4", 20),
        "latest-s4": install("S4", 5),
    }
    add(host, *commands.values())

    assert housekeeping(host, NOW)["core_command"] == 3

    kept = {name for name, c in commands.items() if c.uuid in ids(host, Command.uuid)}
    assert kept == set(commands) - {"first", "update1", "superseded-recently"}
    assert housekeeping(host, NOW)["core_command"] == 0
    assert housekeeping(host, NOW + timedelta(days=100))["core_command"] == 1  # within-retention's turn


def test_the_latest_alert_of_a_state_still_not_ok_stays_until_it_is_resolved(make_host: Callable[..., Host], database_url: str | None) -> None:
    """A token expired 150 days ago and never renewed: its alert was deleted after [alerts]
    keep_days (90), so `mdm alerts list` no longer said why the account stopped syncing, and the
    same state is not alerted again. The latest alert of each thing still not ok stays (an
    asset's low licenses told in its account's digest: the digest), the older ones and those
    of things resolved go; once resolved, it goes too."""
    from plugins.alerts.models import AlertMessage, AlertSubject

    host = make_host(database_url=database_url)
    add(
        host,
        AlertSubject(subject="token:school", kind="token", account="school", state="expired", since=days_ago(150)),
        AlertSubject(subject="sync:school", kind="sync", account="school", state="ok", since=days_ago(120)),
        AlertSubject(subject="licenses:school:111:STDQ", kind="licenses", account="school", state="low", since=days_ago(150)),
        AlertSubject(subject="job:vpp.sync.school", kind="job", account="", state="failing", since=days_ago(200)),
    )
    # id: (subject, created days ago)
    alerts = {
        1: ("token:school", 200),  # expiring: an expired one came after it
        2: ("token:school", 150),  # expired, still: stays
        3: ("sync:school", 150),  # failing, then resolved
        4: ("sync:school", 120),
        5: ("licenses:school", 150),  # the digest that told the low asset: stays
        6: ("job:vpp.sync.school", 200),  # failing, still: stays
        7: ("licenses:other", 150),  # an account without low licenses now
    }
    add(
        host,
        *(
            AlertMessage(id=i, created_at=days_ago(d), kind=s.split(":")[0], subject=s, state="x", severity="critical", title="t", text="x", action="a")
            for i, (s, d) in alerts.items()
        ),
    )

    assert housekeeping(host, NOW)["alerts_message"] == 4
    assert ids(host, AlertMessage.id) == {2, 5, 6}
    assert housekeeping(host, NOW)["alerts_message"] == 0

    def renewed(session: Any) -> None:
        session.get(AlertSubject, "token:school").state = "valid"

    host.db.run_write(renewed)
    assert housekeeping(host, NOW)["alerts_message"] == 1
    assert ids(host, AlertMessage.id) == {5, 6}
