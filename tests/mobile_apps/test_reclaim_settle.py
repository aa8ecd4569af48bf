"""A bulk reclaim (a school year's end: thousands of licenses) settles Apple's answer in as many
statements for 20 licenses as for 60: a read, an update and an insert of events a chunk, where it
made three statements a license (a read, an update, an event); each reclaim ends as it did, and
each one that ends is announced finished, in order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select
from sqlmodel import Session, col

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


def _while_settling(host: Any, monkeypatch: Any, name: str, listener: Any) -> None:
    """Call ``listener`` on the engines' event ``name`` while Apple's answer is settled (``_settle``)."""
    real = reclaims._settle

    def settle(*args: Any, **kwargs: Any) -> Any:
        engines = {id(e): e for e in (host.db.engine, host.db.write_engine)}.values()
        for engine in engines:
            event.listen(engine, name, listener)
        try:
            return real(*args, **kwargs)
        finally:
            for engine in engines:
                event.remove(engine, name, listener)

    monkeypatch.setattr(reclaims, "_settle", settle)


def _on_reclaims(clause: Any) -> bool:
    """Whether a statement reads or writes the reclaims' table."""
    tables = [clause.table] if getattr(clause, "is_dml", False) else getattr(clause, "get_final_froms", list)()
    return any(getattr(table, "name", None) == "mobile_apps_reclaim" for table in tables)


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

    _while_settling(host, monkeypatch, "before_cursor_execute", count)
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


def test_a_reclaim_another_process_settles_meanwhile_keeps_its_outcome_and_one_finished_event(on_both, monkeypatch, apps_events: EventRecorder):
    """Two processes settle the same reclaim (a second `mdm run` host, `mdm apps reclaim` by hand):
    the other one settles it after this one read its reclaims, before this one locks them to write. The other's
    outcome stays (not overwritten by this one's), and it is announced finished once, by the other;
    the rest of the batch settles and is announced as usual, in order. On SQLite the other's write
    goes through this transaction's connection (it holds the write lock from its first statement,
    so no other process writes there meanwhile); on PostgreSQL it commits on a connection of its
    own, as another host's would."""
    host, mdm = on_both
    ids = _pending(host, "RACE", 3)
    monkeypatch.setattr(
        VppPort,
        "disassociate",
        lambda self, account, adam_id, pricing, serial_numbers, client_user_ids, wait: {"failed": [], "pending": {}, "event_ids": ["apple-event-2"]},
    )
    other: list[int] = []

    def settled_elsewhere(session: Any) -> None:  # the other process's settle of ids[1]: Apple refused it there
        [row] = session.execute(select(Reclaim).where(col(Reclaim.id) == ids[1])).scalars()
        reclaims._update(host, session, [row], "failed", "refused (Apple error 9616)", ["apple-event-other"], 60)

    def meanwhile(conn: Any, clause: Any, *args: Any) -> None:  # before this settle's first statement on its reclaims (their lock)
        if other or not _on_reclaims(clause):
            return
        other.append(ids[1])
        if host.db.is_sqlite:
            with Session(bind=conn) as session:
                settled_elsewhere(session)
        else:
            host.db.run_write(settled_elsewhere)

    _while_settling(host, monkeypatch, "before_execute", meanwhile)
    apps_events.clear()
    process(host, ids)
    assert other == [ids[1]]
    shown = {r["id"]: (r["status"], r["last_error"], r["attempts"], r["event_ids"]) for r in list_reclaims(host, everything=True) if r["id"] in ids}
    assert shown == {
        ids[0]: ("done", None, 1, ["apple-event-2"]),
        ids[1]: ("failed", "refused (Apple error 9616)", 1, ["apple-event-other"]),
        ids[2]: ("done", None, 1, ["apple-event-2"]),
    }
    told = sorted((p["id"], p["status"]) for p in apps_events.named("mobile_apps_reclaim_finished"))
    assert told == sorted([(ids[1], "failed"), (ids[0], "done"), (ids[2], "done")])
    code, out, _ = mdm("apps", "reclaims")
    assert code == 0 and "RACE-001" in out and "refused (Apple error 9616)" in out, out
