"""vpp migration 0014: on PostgreSQL autovacuum passes over ``vpp_license`` after 1% of its
rows changed (not 20%), so that an incremental sync's index-only reads of the mirrored licenses
read the index alone; the licenses recorded before kept; a downgrade resets the thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_apple_migrations import _database_at, _downgrade, _upgrade_then_query

from .test_sync_run_progress_migration import ACCOUNT

LICENSE = "INSERT INTO vpp_license (account_id, adam_id, pricing_param, kind, target) VALUES (1, '{adam}', 'STDQ', 'device', 'SERIAL{n}')"
OPTIONS = "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class WHERE oid = 'vpp_license'::regclass"


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_vpp_0014_license_autovacuum_thresholds(project_dir: Path, monkeypatch: Any, capsys: Any, request: pytest.FixtureRequest, dialect: str) -> None:
    url = str(request.getfixturevalue("pg_url")) if dialect == "postgresql" else None
    mdm = _database_at(project_dir, monkeypatch, capsys, {"vpp": "0013"}, [ACCOUNT, *(LICENSE.format(adam=f"10{n % 3}", n=n) for n in range(30))], url=url)
    queries = ["SELECT count(*) FROM vpp_license"] + ([OPTIONS] if url else [])
    licenses, *options = _upgrade_then_query(mdm, "vpp: applied 0014 (license autovacuum thresholds", *queries, url=url)
    assert licenses == [(30,)]
    code, out, err = mdm("vpp", "licenses", "--json")
    assert code == 0, err
    assert out.count('"serialNumber"') == 30
    if url is None:
        return
    assert options == [[("autovacuum_vacuum_scale_factor=0.01,autovacuum_vacuum_insert_scale_factor=0.01",)]]
    _downgrade(mdm, "vpp", "0013", url=url)
    assert _options(url) == ("",)  # back to the server's thresholds
    again, count = _upgrade_then_query(mdm, "vpp: applied 0014", OPTIONS, "SELECT count(*) FROM vpp_license", url=url)
    assert again == options[0] and count == [(30,)]


def _options(url: str) -> tuple[str]:
    """``vpp_license``'s storage options on the database at ``url``, joined by commas."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return (str(conn.execute(text(OPTIONS)).scalar_one()),)
    finally:
        engine.dispose()
