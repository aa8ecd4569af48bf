"""An install a request is asking Apple for (``associating``) and the installs job: the request's
mark (token, start) lets the job take over only an install still as it read it, and say whether
its request was interrupted or still under way."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from mdm_core.inventory import add_device
from mdm_core.models import utcnow
from plugins.mobile_apps.installs.commands import list_installs
from plugins.mobile_apps.installs.request import install
from plugins.mobile_apps.models import Install
from plugins.mobile_apps.vpp_port import VppPort

from .conftest import app_id, commands, fixed_assets, free_serials, holders, removed_while_licensed


def test_mobile_apps_0006_installs_keep_their_rows_with_no_request_mark(project_dir, monkeypatch, capsys, database_url):
    from ..test_apple_migrations import _database_at, _upgrade_then_query

    install = (
        "INSERT INTO mobile_apps_install (account, adam_id, pricing_param, kind, target, source, status, event_ids, command_uuids,"
        " attempts, created_at, updated_at) VALUES ('school', '111', 'STDQ', 'device', '{serial}', 'request', '{status}', '[]', '{uuids}',"
        " 0, '2026-12-01 10:00:00+00:00', '2026-12-01 10:00:00+00:00')"
    )
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"mobile_apps": "0005"},
        [install.format(serial="C02STUCK", status="associating", uuids="[]"), install.format(serial="C02DONE", status="queued", uuids='["u-1"]')],
        url=database_url,
    )
    [rows] = _upgrade_then_query(
        mdm,
        "mobile_apps: applied 0006 (install request mark",
        "SELECT target, status, command_uuids, request_token, request_started_at FROM mobile_apps_install ORDER BY target",
        url=database_url,
    )
    assert [(t, s, json.loads(u) if isinstance(u, str) else u, tok, at) for t, s, u, tok, at in rows] == [
        ("C02DONE", "queued", ["u-1"], None, None),
        ("C02STUCK", "associating", [], None, None),
    ]
    code, out, err = mdm("apps", "installs", "--json")
    assert code == 0, err
    assert {i["target"]: i["status"] for i in json.loads(out)} == {"C02DONE": "queued", "C02STUCK": "associating"}


def _the_job_paused_before_its_write(host, job):
    """Pause the installs job ``job`` (a thread) at its first write of an install, for as long as
    another writer can commit meanwhile: before its write transaction on SQLite (one writer at a
    time), before its ``UPDATE`` on PostgreSQL (the read before it locked nothing). Returns the
    events (the job paused, the other writer committed) and a function to stop listening."""
    from sqlalchemy import event

    paused, committed = threading.Event(), threading.Event()
    first = "BEGIN IMMEDIATE" if host.db.is_sqlite else "UPDATE mobile_apps_install"

    def before(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread() is job.get("thread") and not paused.is_set() and statement.startswith(first):
            paused.set()
            assert committed.wait(60), "the request never committed"

    event.listen(host.db.engine, "before_cursor_execute", before)
    return paused, committed, lambda: event.remove(host.db.engine, "before_cursor_execute", before)


@pytest.mark.slow
def test_a_request_that_records_its_outcome_while_the_job_takes_over_keeps_it(on_both, simulator, monkeypatch, caplog):
    """The admin runs the installs job (`mdm jobs run mobile_apps.installs`) while a request asks
    Apple: the job reads the install ``associating``, the request records it ``queued``, then the
    job writes. On PostgreSQL the job overwrote the outcome with ``pending``, asked Apple again and
    listed the command twice. Now its switch is a compare-and-set on the status and the request's
    mark: the request's outcome stays, Apple is asked once, the command listed once."""
    from plugins.mobile_apps.installs.pending import retry_pending

    host, _ = on_both
    a = fixed_assets(simulator)[0]
    [serial] = free_serials(simulator, a["adamId"])[:1]
    add_device(host, serial, "iOS")
    app = app_id(host, a["adamId"])
    job: dict[str, Any] = {}
    paused, committed, stop = _the_job_paused_before_its_write(host, job)
    real = VppPort.associate
    asked: list[str] = []

    def associate(port, *args, **kwargs):  # the admin runs the job while the request asks Apple
        asked.append(threading.current_thread().name)
        if "thread" not in job:
            job["thread"] = threading.Thread(target=lambda: job.update(counts=retry_pending(host, resume_all=True)), name="job")
            job["thread"].start()
            assert paused.wait(60), "the job never wrote"
        return real(port, *args, **kwargs)

    monkeypatch.setattr(VppPort, "associate", associate)
    caplog.set_level(logging.INFO, logger="plugins.mobile_apps")
    try:
        [line] = install(host, app, serials=[serial]).as_dicts()
    finally:
        committed.set()
        if "thread" in job:
            job["thread"].join(60)
        stop()
    assert line["status"] == "queued", line
    [(status, uuids, error)] = [(i["status"], i["command_uuids"], i["error"]) for i in list_installs(host)]
    assert (status, error) == ("queued", None) and len(uuids) == 1, (status, uuids, error)
    assert [c["uuid"] for c in commands(host, serial)] == uuids
    assert asked == [threading.main_thread().name] and job["counts"]["asked"] == 0, (asked, job)
    assert "1 install(s) left to their request: it recorded an outcome, or was asked again, after the job read them" in caplog.text


def test_the_job_says_whether_a_request_was_interrupted_or_is_still_under_way(on_both, simulator, caplog):
    """`mdm jobs run mobile_apps.installs` takes over every ``associating`` install: one whose
    request started moments ago (it may still be asking Apple, in another process) was logged
    and recorded "interrupted" like one left long ago. Each is now said for what it is."""
    from plugins.mobile_apps.installs.pending import retry_pending
    from plugins.mobile_apps.installs.request import resolve_asset
    from plugins.mobile_apps.installs.reserve import reserve

    host, _ = on_both
    a = fixed_assets(simulator)[0]
    old, young = free_serials(simulator, a["adamId"])[:2]
    for serial in (old, young):
        add_device(host, serial, "iOS")
    asset = resolve_asset(host, app_id(host, a["adamId"]))
    ids = reserve(host, asset, [old], []).devices
    past = utcnow() - timedelta(hours=1)  # long past interrupted_after: its process died
    host.db.run_write(lambda session: session.execute(update(Install).where(col(Install.id) == ids[old]).values(updated_at=past, request_started_at=past)))
    reserve(host, asset, [young], [])  # its request is asking Apple now
    caplog.set_level(logging.INFO, logger="plugins.mobile_apps")

    counts = retry_pending(host, resume_all=True)

    assert counts["asked"] == 2 and counts["queued"] == 2, counts
    assert "1 install(s) were interrupted while Apple was asked for their licenses; asking again" in caplog.text
    assert "1 install(s) still being asked for by their request (started less than 900s ago, maybe in another process)" in caplog.text
    assert {i["target"]: i["status"] for i in list_installs(host)} == {old: "queued", young: "queued"}


def test_a_device_removed_while_apple_licenses_it_gives_its_license_back(on_both, simulator, monkeypatch):
    """The admin removes a device while an install asks Apple for its device license: the
    removal's reclaim ran before Apple granted it, and the request only recorded the install
    failed, so the license stayed at Apple, held by a device this MDM no longer has, until
    someone reclaimed it by hand. The request now gives it back at once and says so."""
    from plugins.mobile_apps.reclaims import list_reclaims

    host, mdm = on_both
    a, serial = removed_while_licensed(host, simulator, monkeypatch)  # the admin unenrols the device as the request asks Apple
    [line] = install(host, app_id(host, a["adamId"]), serials=[serial]).as_dicts()

    assert (
        line["status"] == "refused"
        and line["message"] == "not enrolled any more: the device was removed from this MDM while Apple licensed it: its license is given back"
    ), line
    assert serial not in holders(simulator, a["adamId"])
    [reclaim] = [r for r in list_reclaims(host, everything=True) if r["adam_id"] == a["adamId"]]
    assert (reclaim["target"], reclaim["reason"], reclaim["status"]) == (serial, "device_removed", "done"), reclaim
    [row] = list_installs(host)
    assert row["status"] == "failed" and "its license is given back" in row["error"], row


def test_an_account_removed_as_the_job_takes_an_install_over_still_cancels_it(on_both, simulator):
    """The VPP account of an interrupted install is removed between the installs job's read of it
    and its write: the job's compare-and-set also compared the install's error, which the removal
    had just marked, so it left the install ``associating`` and logged it as kept by its request.
    It now ends ``canceled`` with the removal's reason, Apple not asked."""
    from sqlalchemy import event

    from plugins.mobile_apps.accounts import account_removed, removed_reason
    from plugins.mobile_apps.installs.pending import retry_pending
    from plugins.mobile_apps.installs.request import resolve_asset
    from plugins.mobile_apps.installs.reserve import reserve

    host, _ = on_both
    a = fixed_assets(simulator)[0]
    [serial] = free_serials(simulator, a["adamId"])[:1]
    add_device(host, serial, "iOS")
    reserve(host, resolve_asset(host, app_id(host, a["adamId"])), [serial], [])
    past = utcnow() - timedelta(hours=1)  # long past interrupted_after: its process died
    host.db.run_write(lambda session: session.execute(update(Install).values(updated_at=past, request_started_at=past)))
    first = "BEGIN IMMEDIATE" if host.db.is_sqlite else "UPDATE mobile_apps_install"
    removed: list[bool] = []

    def before(conn, cursor, statement, parameters, context, executemany):  # the job read it; the account goes now
        if not removed and statement.startswith(first):
            removed.append(True)
            host.db.run_write(lambda session: account_removed(host, session, "school"))

    event.listen(host.db.engine, "before_cursor_execute", before)
    try:
        counts = retry_pending(host)
    finally:
        event.remove(host.db.engine, "before_cursor_execute", before)

    assert removed and counts["asked"] == 0, counts
    assert [(i["status"], i["error"]) for i in list_installs(host)] == [("canceled", removed_reason("school"))]
    assert serial not in holders(simulator, a["adamId"])
