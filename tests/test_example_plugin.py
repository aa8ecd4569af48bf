"""The README's example plugins, enabled from the configuration: license_audit hears license
changes; device_notes brings its own table and migrations."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdm_core.host import Host


def test_license_audit_records_portal_changes_once(make_host: Callable[..., Host], simulator: Any, project_dir: Path) -> None:
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    host = make_host(config='[plugins]\nenabled = ["plugins.examples.license_audit"]\n\n[license_audit]\npath = "var/audit.jsonl"\n')
    assert any(p.name == "license_audit" and p.source == "conf" for p in host.plugins)
    add_simulated_account(host, simulator, project_dir)
    assert sync_account(host, "school")["status"] == "ok"
    audit = project_dir / "var" / "audit.jsonl"
    first = [json.loads(line) for line in audit.read_text().splitlines()]
    assert first and {line["change"] for line in first} == {"associated"}
    assert sum(len(e["devices"]) + len(e["users"]) for e in first) == len(simulator.snapshot()["assignments"])

    adam_id, pricing, kind, target = next(tuple(a) for a in simulator.snapshot()["assignments"] if a[2] == "serialNumber")
    simulator.remove_in_portal(adam_id, pricing, serial_number=target)
    assert sync_account(host, "school")["status"] == "ok"
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    removed = [e for e in lines[len(first) :] if e["change"] == "disassociated"]
    assert removed == [{**removed[0], "adamId": adam_id, "devices": [target], "users": [], "source": "sync"}]

    # Delivering the same event again (as after a crash) writes nothing new.
    from mdm_core.events import Event

    event = Event(
        name="vpp_licenses_disassociated",
        payload={
            "account": "school",
            "adamId": adam_id,
            "pricingParam": pricing,
            "source": "sync",
            "serialNumbers": [target],
            "clientUserIds": [],
            "enrolledSerialNumbers": [],
            "mdmUserIds": [],
        },
        id=removed[0]["event_id"],
    )
    host.events.dispatch(event)
    assert len(audit.read_text().splitlines()) == len(lines)


def test_device_notes_table_then_column_from_its_own_migrations(project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    """The README's plugin with its own migrations: a database where its history is at 0001
    (the table, holding a note) goes to 0002 (a new column) with `mdm db upgrade`."""
    from alembic import command
    from sqlalchemy import text

    from mdm_core.db import Database
    from mdm_core.db.migrate import alembic_config, upgrade
    from mdm_core.host import create_host
    from mdm_core.testing import MdmRunner

    config = '[plugins]\nenabled = ["plugins.examples.device_notes"]\n'
    mdm = MdmRunner(project_dir, monkeypatch, capsys, config=config, environ={"MDM_PLUGIN_AUTOLOAD": "0"})
    host = create_host(mdm.conf, autoload=False)
    sets = {s.name: s for s in host.migration_sets()}
    assert list(sets) == ["core", "device_notes", "web"]
    notes = sets["device_notes"]
    db = Database(f"sqlite:///{mdm.db}")
    try:
        upgrade(db, [sets["core"], sets["web"]])
        with db.migration_connection() as conn, conn.begin():
            command.upgrade(alembic_config(notes, connection=conn), "0001")
            conn.execute(text("INSERT INTO device_notes_note (serial_number, text, created_at) VALUES ('C02OLD', 'old note', '2026-01-02 03:04:05.000000')"))
    finally:
        db.dispose()
        host.close()

    code, out, err = mdm("notes", "list")
    assert code == 1
    assert err == "mdm: error: database schema is behind this release: run `mdm db upgrade` (pending: device_notes 0001 -> 0002)\n"
    code, out, err = mdm("db", "upgrade")
    assert code == 0, err
    assert out.splitlines()[0].startswith("device_notes: applied 0002 (note author) in ")
    assert mdm("notes", "add", "C02NEW", "cracked screen", "--author", "alice")[:2] == (0, "note 2 added to C02NEW\n")
    code, out, _ = mdm("notes", "list", "--json")
    old, new = json.loads(out)
    assert (old["serial_number"], old["text"], old["author"], old["created_at"]) == ("C02OLD", "old note", None, "2026-01-02T03:04:05+00:00")
    assert (new["serial_number"], new["text"], new["author"]) == ("C02NEW", "cracked screen", "alice")
    code, out, _ = mdm("db", "history", "device_notes")
    assert out.splitlines()[1:] == ["  [x] 0001  notes table", "  [x] 0002  note author"]
