"""The alerts tables come from the plugin's own migration history, ``alerts``: enabling the
plugin on a database that already holds data runs its first migration (the host says so),
every row stays, and the plugin works on what is there."""

from __future__ import annotations

import json

from sqlalchemy import inspect

from mdm_core.db import Database

from .conftest import FAST_VPP


def test_enabling_alerts_on_an_existing_database(make_host, simulator, project_dir, mdm, monkeypatch):
    from plugins.vpp.accounts import add_account

    scarce, _ = simulator.purchase(count=1)
    simulator.assign_in_portal(scarce, serial_number="PORTAL000001")
    config = FAST_VPP + "\n[alerts]\nlow_licenses = 1\n"
    host = make_host(config=config, environ={"MDM_DISABLED_PLUGINS": "alerts"})
    add_account(host, "school", str(simulator.write_token(project_dir / "t.vpptoken")), service_url=simulator.base_url)
    [report] = host.pm.hook.mdm_vpp_sync(host=host, account="school", full=True, trigger="test", wait=0)
    assert report["status"] == "ok"
    host.close()
    db = Database(f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    assert not [t for t in inspect(db.engine).get_table_names() if t.startswith("alerts")]
    db.dispose()

    mdm.conf.write_text(config)  # the plugin is enabled now
    code, out, err = mdm("db", "status", "--json")
    assert {r["plugin"]: r["current"] for r in json.loads(out)}["alerts"] is None
    code, out, err = mdm("alerts", "list")
    assert (code, out) == (0, "no alerts\n")
    assert err == "mdm: created the tables of alerts (first use on this database)\n"
    code, out, err = mdm("db", "history", "alerts")
    assert out.splitlines()[1] == "  [x] 0001  alerts tables: subjects (state per watched thing), messages, deliveries, seen events"

    code, out, err = mdm("vpp", "assets", "--json")
    assert code == 0 and any(a["adamId"] == scarce for a in json.loads(out))  # the mirror is all there
    code, out, err = mdm("alerts", "send")  # the check finds what the events told nobody about
    assert out.startswith("1 new alert(s)")
    code, out, err = mdm("alerts", "list", "--json")
    [alert] = json.loads(out)
    assert alert["title"] == f"No licenses left of adamId {scarce} (STDQ, App) in account 'school'"
