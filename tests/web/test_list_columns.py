"""Every list command's text table names its columns with the keys its ``--json`` gives (and the
API, whose rows are the ``--json`` rows): `mdm vpp runs` said ``host`` where the JSON said
``holder``, `mdm alerts list` ``created``/``next_attempt``/``error`` where it said
``created_at``/``next_attempt_at``/``last_error``, `mdm vpp account list` ``expires`` for
``tokenExpirationDate``, `mdm apps list` ``licenses`` for ``availableCount``/``totalCount``:
a script written against one, or an admin comparing them, looked for a field that is not there."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import MdmRunner

from .conftest import make_web_host, token_for

#: every list command (each prints a table in text, an array with --json)
LISTS = [
    ["vpp", "account", "list"],
    ["vpp", "runs"],
    ["vpp", "assets"],
    ["vpp", "licenses"],
    ["vpp", "users"],
    ["apps", "list"],
    ["apps", "installs"],
    ["apps", "reclaims", "--all"],
    ["alerts", "list"],
    ["events", "failures"],
    ["jobs"],
    ["admins", "list"],
    ["api-tokens", "list"],
    ["devices", "list"],
    ["users", "list"],
    ["commands", "list"],
    ["plugins"],
]


@pytest.fixture
def web_host(make_host: Callable[..., Host], database_url: str) -> Host:
    """On SQLite and PostgreSQL: each list's rows are read (and their values typed) by each database."""
    return make_web_host(make_host, database_url)


def _seed(host: Host) -> None:
    """A row in each list that a synced account leaves empty."""
    from mdm_core.models import Command, Device, MdmUser, SubscriberFailure
    from plugins.alerts.models import AlertDelivery, AlertMessage
    from plugins.mobile_apps.models import Install, Reclaim

    with host.db.session() as session:
        session.add(Device(serial_number="SER1", platform="iOS"))
        session.add(MdmUser(id="u1", email="u1@example.com"))
        session.add(Command(device_serial="SER1", request_type="InstallApplication"))
        session.add(SubscriberFailure(event_id="e1", event_name="device_removed", plugin="p", hook="mdm_device_removed", error="boom"))
        common: Any = {"account": "school", "adam_id": "1", "pricing_param": "STDQ", "kind": "device", "target": "SER1"}
        session.add(Install(**common, source="request", status="failed", error="refused"))
        session.add(Reclaim(**common, reason="manual", status="failed", last_error="refused"))
        alert = AlertMessage(kind="sync", subject="s", state="failing", severity="warning", account="school", title="t", text="x", action="a")
        session.add(alert)
        session.flush()
        session.add(AlertDelivery(message_id=alert.id or 0, channel="email", status="failed", last_error="refused"))
        session.commit()


def _keys(rows: list[dict[str, Any]]) -> set[str]:
    """The keys of the rows, and of the deliveries of an alert (its text has a line per delivery)."""
    keys = {k for row in rows for k in row}
    return keys | {k for row in rows for d in row.get("deliveries") or [] for k in d}


@pytest.mark.slow
def test_every_list_names_its_text_columns_as_its_json_keys(school: Host, project_dir: Path, monkeypatch: Any, capsys: Any, database_url: str) -> None:
    token_for(school, "viewer")
    _seed(school)
    mdm = MdmRunner(project_dir, monkeypatch, capsys, database_url=database_url)
    for command in LISTS:
        code, text, err = mdm(*command)
        assert code == 0 and text, (command, err)
        header = text.splitlines()[0].split()
        code, out, err = mdm(*command, "--json")
        rows = json.loads(out)
        assert code == 0 and rows, (command, err)
        assert set(header) <= _keys(rows), (command, sorted(set(header) - _keys(rows)))
