"""An account's and a sync run's id is never given again (vpp migration 0011): on SQLite a plain
INTEGER PRIMARY KEY gave the newest account removed's id to the next one added, the accountId
its ``vpp_account_removed`` event had carried, and its runs' ids (a bookmarked /vpp/runs/N) to
the new account's runs. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from mdm_core.host import Host, create_host
from tests.test_apple_migrations import _database_at, _upgrade_then_query

ACCOUNT = (
    "INSERT INTO vpp_account (id, name, uid, service_url, token_ciphertext, token_fingerprint, token_expires_at, mdm_info_id,"
    " interval_seconds, token_state, paused, created_at, notifications) VALUES ({id}, '{name}', 'u{id}', 'https://x.test/mdm/v2', 'c', 'f',"
    " '2030-01-01 00:00:00+00:00', 'm', 3600, 'valid', false, '2026-01-02 03:04:05+00:00', 'off')"
)
RUN = (
    "INSERT INTO vpp_sync_run (id, account_id, trigger, mode, status, started_at, pages, counts)"
    " VALUES ({id}, {account}, 'manual', 'full', 'ok', '2026-01-02 03:04:05+00:00', 1, '{{}}')"
)
ASSET = (
    "INSERT INTO vpp_asset (account_id, adam_id, pricing_param, product_type, device_assignable, revocable, supported_platforms,"
    " assigned_count, available_count, retired_count, total_count, updated_at) VALUES ({account}, '111', 'STDQ', 'App', true, true, '[]', 1, 9, 0, 10,"
    " '2026-01-02 03:04:05+00:00')"
)
LICENSE = "INSERT INTO vpp_license (account_id, adam_id, pricing_param, kind, target) VALUES ({account}, '111', 'STDQ', 'device', 'C0{account}')"


def _ids(host: Host, query: str) -> list[Any]:
    with host.db.engine.connect() as conn:
        return list(conn.execute(text(query)).scalars())


def test_a_removed_accounts_ids_are_never_given_again(make_host: Callable[..., Host], simulator: Any, project_dir: Path, database_url: str | None) -> None:
    """The newest account removed, the next one added gets a new id, and so do its runs."""
    from plugins.vpp.accounts import remove_account
    from plugins.vpp.sync.run import sync_account
    from plugins.vpp.testing import add_simulated_account

    host = make_host(database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    sync_account(host, "school")
    [old_account] = _ids(host, "SELECT id FROM vpp_account")
    old_runs = _ids(host, "SELECT id FROM vpp_sync_run")
    remove_account(host, "school")
    removed = _ids(host, "SELECT payload FROM core_event WHERE name = 'vpp_account_removed'")
    assert [(json.loads(p) if isinstance(p, str) else p)["accountId"] for p in removed] == [old_account]
    add_simulated_account(host, simulator, project_dir)
    sync_account(host, "school")
    [new_account] = _ids(host, "SELECT id FROM vpp_account")
    new_runs = _ids(host, "SELECT id FROM vpp_sync_run")
    assert new_account > old_account, "the new account got the removed account's id, which its vpp_account_removed event named"
    assert min(new_runs) > max(old_runs), f"the removed account's runs {old_runs} were given again: {new_runs}"


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_vpp_0011_keeps_rows_ids_and_references_and_never_reuses_after(
    project_dir: Path, monkeypatch: Any, capsys: Any, request: pytest.FixtureRequest, dialect: str
) -> None:
    """A database at 0010 with two accounts (assets, licenses, runs): upgraded, every row keeps
    its id and references; the newest account removed, its id and its runs' are not given again;
    its mirror's references still cascade and refuse a missing account."""
    url = str(request.getfixturevalue("pg_url")) if dialect == "postgresql" else None
    rows = [ACCOUNT.format(id=1, name="school"), ACCOUNT.format(id=2, name="office")]
    rows += [q.format(account=a) for a in (1, 2) for q in (ASSET, LICENSE)]
    rows += [RUN.format(id=run, account=a) for run, a in ((1, 1), (2, 2), (3, 2))]
    if url:  # the rows' ids were given, not drawn: the sequences as the rows drawn would leave them
        rows += [f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), {n})" for t, n in (("vpp_account", 2), ("vpp_sync_run", 3))]
    mdm = _database_at(project_dir, monkeypatch, capsys, {"vpp": "0010"}, rows, url=url)
    kept = _upgrade_then_query(
        mdm,
        "vpp: applied 0011 (ids never reused",
        "SELECT id, name FROM vpp_account ORDER BY id",
        "SELECT id, account_id FROM vpp_sync_run ORDER BY id",
        "SELECT account_id, adam_id FROM vpp_asset ORDER BY account_id",
        "SELECT account_id, target FROM vpp_license ORDER BY account_id",
        url=url,
    )
    assert kept == [[(1, "school"), (2, "office")], [(1, 1), (2, 2), (3, 2)], [(1, "111"), (2, "111")], [(1, "C01"), (2, "C02")]]
    host = create_host(mdm.conf)
    try:
        with host.db.engine.begin() as conn:
            conn.execute(text("DELETE FROM vpp_account WHERE id = 2"))  # its runs, assets and licenses go with it
        assert _ids(host, "SELECT account_id FROM vpp_sync_run") == [1]
        assert _ids(host, "SELECT account_id FROM vpp_asset") == [1] and _ids(host, "SELECT account_id FROM vpp_license") == [1]
        with host.db.engine.begin() as conn:
            conn.execute(text(ACCOUNT.replace("(id, ", "(").replace("VALUES ({id}, ", "VALUES (").format(id=3, name="library")))
            conn.execute(text(RUN.replace("(id, ", "(").replace("VALUES ({id}, ", "VALUES (").format(account=1)))
        assert _ids(host, "SELECT id FROM vpp_account WHERE name = 'library'") == [3]
        assert _ids(host, "SELECT max(id) FROM vpp_sync_run") == [4]
        with pytest.raises(IntegrityError), host.db.engine.begin() as conn:
            conn.execute(text(LICENSE.format(account=9)))
    finally:
        host.close()
