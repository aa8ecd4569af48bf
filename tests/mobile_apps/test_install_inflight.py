"""An install a request is asking Apple for (``associating``) and the installs job: the request's
mark (token, start) lets the job take over only an install still as it read it, and say whether
its request was interrupted or still under way."""

from __future__ import annotations

import json


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
