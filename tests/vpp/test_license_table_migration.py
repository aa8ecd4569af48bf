"""vpp migration 0009: on SQLite the license table is rebuilt without its rowid, from a database
holding licenses: the rows are kept, and the account references (vpp migration 0008's triggers)
still hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from tests.test_apple_migrations import _database_at, _upgrade_then_query

ACCOUNT = (
    "INSERT INTO vpp_account (id, name, uid, service_url, token_ciphertext, token_fingerprint, token_expires_at, mdm_info_id,"
    " interval_seconds, token_state, paused, created_at) VALUES ({id}, '{name}', 'u{id}', 'https://x.test/mdm/v2', 'c', 'f',"
    " '2030-01-01 00:00:00.000000', 'm', 3600, 'valid', 0, '2026-01-02 03:04:05.000000')"
)
LICENSE = "INSERT INTO vpp_license (account_id, adam_id, pricing_param, kind, target) VALUES ({id}, '{adam}', 'STDQ', '{kind}', '{target}')"


def test_vpp_0009_licenses_kept_in_a_table_without_rowid(project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    rows = [(1, "111", "STDQ", "device", "C01"), (1, "111", "STDQ", "user", "u1"), (1, "222", "STDQ", "device", "C01"), (2, "111", "STDQ", "device", "C09")]
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"vpp": "0008"},
        [ACCOUNT.format(id=1, name="school"), ACCOUNT.format(id=2, name="office")]
        + [LICENSE.format(id=a, adam=adam, kind=kind, target=target) for a, adam, _, kind, target in rows],
    )
    licenses, [[ddl]], indexes = _upgrade_then_query(
        mdm,
        "vpp: applied 0009 (license table without rowid: SQLite keeps each license once",
        "SELECT account_id, adam_id, pricing_param, kind, target FROM vpp_license ORDER BY 1, 2, 3, 4, 5",
        "SELECT sql FROM sqlite_master WHERE name = 'vpp_license'",
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'vpp_license' ORDER BY name",
    )
    assert licenses == rows
    assert ddl.endswith("WITHOUT ROWID")
    assert [name for (name,) in indexes] == ["ix_vpp_license_target"]
    engine = create_engine(f"sqlite:///{mdm.db}")
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:  # a license of a missing account: refused
            conn.execute(text(LICENSE.format(id=9, adam="111", kind="device", target="C03")))
        with pytest.raises(IntegrityError), engine.begin() as conn:  # renumbering an account that holds licenses: refused
            conn.execute(text("UPDATE vpp_account SET id = 7 WHERE id = 2"))
        with engine.begin() as conn:  # deleting an account deletes its licenses
            conn.execute(text("DELETE FROM vpp_account WHERE id = 1"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT account_id, target FROM vpp_license")).all() == [(2, "C09")]
    finally:
        engine.dispose()
