"""A bulk reclaim (a school year's end: thousands of licenses) settles Apple's answer in as many
statements for 20 licenses as for 60: a read, an update and an insert of events a chunk, where it
made three statements a license (a read, an update, an event); each reclaim ends as it did, and
each one that ends is announced finished, in order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from mdm_core.testing import EventRecorder
from plugins.mobile_apps import reclaims
from plugins.mobile_apps.models import Reclaim
from plugins.mobile_apps.reclaims import ALREADY, NOT_CONFIRMED, list_reclaims, process
from plugins.mobile_apps.vpp_port import VppPort


def _pending(host: Any, tag: str, n: int) -> list[int]:
    """``n`` pending reclaims of one asset's licenses, held by devices ``{tag}-000``..."""
    rows = [Reclaim(account="school", adam_id="4242", pricing_param="STDQ", kind="device", target=f"{tag}-{i:03d}", reason="manual") for i in range(n)]

    def add(session: Any) -> list[int]:
        session.add_all(rows)
        session.flush()
        return [int(row.id or 0) for row in rows]

    return host.db.run_write(add)


def _answer(targets: list[str]) -> dict[str, Any]:
    """Apple's answer: a quarter not confirmed yet, a quarter refused, a quarter released already."""
    return {
        "failed": [
            {"serialNumber": t, "errorNumber": 9616 if i % 4 == 1 else 9610, "errorMessage": "License not associated" if i % 4 == 1 else "released"}
            for i, t in enumerate(targets)
            if i % 4 in (1, 2)
        ],
        "pending": {"serialNumbers": [t for i, t in enumerate(targets) if i % 4 == 0], "clientUserIds": []},
        "event_ids": ["apple-event-1"],
    }


def _expected(ids: list[int]) -> tuple[dict[int, tuple[str, str | None, int, list[str]]], list[tuple[int, str, str | None]]]:
    """Each reclaim's (status, last_error, attempts, event_ids), and the finished events in order."""
    outcome = {
        0: ("pending", NOT_CONFIRMED),
        1: ("failed", "License not associated (Apple error 9616)"),
        2: ("done", ALREADY.format(number=9610)),
        3: ("done", None),
    }
    rows = {i: (*outcome[n % 4], 1, ["apple-event-1"]) for n, i in enumerate(ids)}
    return rows, [(i, *outcome[n % 4]) for n, i in enumerate(ids) if n % 4]


def test_a_bulk_reclaim_settles_in_as_many_statements_for_20_or_60_licenses(on_both, monkeypatch, apps_events: EventRecorder):
    host, mdm = on_both
    monkeypatch.setattr(VppPort, "disassociate", lambda self, account, adam_id, pricing, serial_numbers, client_user_ids, wait: _answer(serial_numbers))
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    real = reclaims._settle

    def counted(*args: Any, **kwargs: Any) -> Any:  # the step that applies Apple's answer
        engines = {id(e): e for e in (host.db.engine, host.db.write_engine)}.values()
        for engine in engines:
            event.listen(engine, "before_cursor_execute", count)
        try:
            return real(*args, **kwargs)
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", count)

    monkeypatch.setattr(reclaims, "_settle", counted)
    counts: list[int] = []
    for tag, n in (("FEW", 20), ("MANY", 60)):
        ids = _pending(host, tag, n)
        apps_events.clear()
        statements.clear()
        assert process(host, ids) == {"done": n // 2, "failed": n // 4, "pending": n // 4, "irrevocable": 0}
        counts.append(len(statements))
        rows, finished = _expected(ids)
        shown = {r["id"]: (r["status"], r["last_error"], r["attempts"], r["event_ids"]) for r in list_reclaims(host, everything=True) if r["id"] in rows}
        assert shown == rows
        told = [(p["id"], p["status"], p["error"]) for p in apps_events.named("mobile_apps_reclaim_finished")]
        assert told == finished
        assert all(
            p["serialNumber"].startswith(tag) and p["reason"] == "manual" and p["adamId"] == "4242" for p in apps_events.named("mobile_apps_reclaim_finished")
        )
    assert counts[0] == counts[1], counts
    code, out, _ = mdm("apps", "reclaims")
    assert code == 0 and "MANY-000" in out and "MANY-003" not in out, out
