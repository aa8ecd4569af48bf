"""The migrations of issue 12 (Apple contract fidelity), each from a database holding rows of
the previous revision: the rows are kept and get the new columns' values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import text

from mdm_core.testing import MdmRunner


def _database_at(project_dir: Path, monkeypatch: Any, capsys: Any, revisions: dict[str, str], rows: list[str], url: str | None = None) -> MdmRunner:
    """A database whose histories are at ``revisions`` (the others at their head), holding
    ``rows``: the project's SQLite file, or the database at ``url`` (the runner's then)."""
    from alembic import command

    from mdm_core.db import Database
    from mdm_core.db.migrate import alembic_config
    from mdm_core.host import create_host

    mdm = MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": url} if url else None)
    host = create_host(mdm.conf)
    sets = host.migration_sets()
    db = Database(url or f"sqlite:///{mdm.db}")
    try:
        for migration_set in sets:
            with db.migration_connection() as conn, conn.begin():
                command.upgrade(alembic_config(migration_set, connection=conn), revisions.get(migration_set.name, "heads"))
        with db.migration_connection() as conn, conn.begin():
            for row in rows:
                conn.execute(text(row))
    finally:
        db.dispose()
        host.close()
    return mdm


def _upgrade_then_query(mdm: MdmRunner, applied: str, *queries: str, url: str | None = None) -> list[list[Any]]:
    """``mdm db upgrade`` (it must say ``applied``), then the rows of each query on the file
    (or on the database at ``url``)."""
    from sqlalchemy import create_engine

    code, out, err = mdm("db", "upgrade")
    assert code == 0, err
    assert applied in out
    engine = create_engine(url or f"sqlite:///{mdm.db}")
    try:
        with engine.connect() as conn:
            return [list(conn.execute(text(query)).all()) for query in queries]
    finally:
        engine.dispose()


def _indexes(url: str, table: str) -> dict[str, list[str]]:
    """The indexes of ``table`` in the database at ``url``: name -> its columns."""
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {str(ix["name"]): [str(c) for c in ix["column_names"]] for ix in inspect(conn).get_indexes(table)}
    finally:
        engine.dispose()


def _downgrade(mdm: MdmRunner, history: str, revision: str, url: str | None = None) -> None:
    """Take ``history`` down to ``revision`` on the runner's database (the project's SQLite file,
    or the database at ``url``): as an admin going back to the previous release would."""
    from alembic import command

    from mdm_core.db import Database
    from mdm_core.db.migrate import alembic_config
    from mdm_core.host import create_host

    host = create_host(mdm.conf)
    db = Database(url or f"sqlite:///{mdm.db}")
    try:
        [migration_set] = [s for s in host.migration_sets() if s.name == history]
        with db.migration_connection() as conn, conn.begin():
            command.downgrade(alembic_config(migration_set, connection=conn), revision)
    finally:
        db.dispose()
        host.close()


def test_core_0002_devices_enrolled_before_are_device_enrollment(project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"core": "0003"},
        [
            "INSERT INTO core_device (serial_number, platform, enrolled_at) VALUES ('C02OLD', 'iOS', '2026-01-02 03:04:05.000000')",
        ],
    )
    code, out, err = mdm("db", "upgrade")
    assert code == 0, err
    assert "core: applied 0004 (device enrollment type" in out
    code, out, _ = mdm("devices", "list", "--json")
    [device] = json.loads(out)
    assert (device["serial_number"], device["platform"], device["enrollment_type"]) == ("C02OLD", "iOS", "device")


def test_vpp_0002_accounts_get_no_back_off(project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"vpp": "0004"},
        [
            "INSERT INTO vpp_account (id, name, uid, service_url, token_ciphertext, token_fingerprint, token_expires_at, mdm_info_id,"
            " interval_seconds, token_state, paused, created_at) VALUES (1, 'school', 'u1', 'https://x.test/mdm/v2', 'c', 'f',"
            " '2030-01-01 00:00:00.000000', 'm', 3600, 'valid', 0, '2026-01-02 03:04:05.000000')",
        ],
    )
    [accounts] = _upgrade_then_query(mdm, "vpp: applied 0005 (account backoff until", "SELECT name, backoff_until FROM vpp_account")
    assert accounts == [("school", None)]


def test_mobile_apps_0002_metadata_becomes_per_platform(project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    app = (
        "INSERT INTO mobile_apps_app (id, account, adam_id, pricing_param, platform, kind, state, product_type, device_assignable, revocable,"
        " supported_platforms, assigned_count, available_count, retired_count, total_count, published_at, updated_at)"
        " VALUES ({id}, 'school', '{adam}', 'STDQ', '{platform}', 'app', 'published', 'App', 1, 1, '[]', 0, 1, 0, 1,"
        " '2026-01-02 03:04:05.000000', '2026-01-02 03:04:05.000000')"
    )
    meta = (
        "INSERT INTO mobile_apps_metadata (adam_id, account, status, name, bundle_id, version, device_families, fetched_at, attempts)"
        " VALUES ('{adam}', 'school', 'ok', 'Words', 'com.example.words', '6.2', '[]', '2026-01-02 03:04:05.000000', 0)"
    )
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"mobile_apps": "0001"},
        [
            app.format(id=1, adam="111", platform="iOS"),
            app.format(id=2, adam="111", platform="macOS"),  # a universal app
            app.format(id=3, adam="222", platform="macOS"),  # a Mac-only app: its entry was the Mac one already
            meta.format(adam="111"),
            meta.format(adam="222"),
            "INSERT INTO mobile_apps_reclaim (account, adam_id, pricing_param, kind, target, reason, status, attempts, event_ids, created_at, updated_at)"
            " VALUES ('school', '111', 'STDQ', 'device', 'C02OLD', 'manual', 'done', 1, '[]', '2026-01-02 03:04:05.000000', '2026-01-02 03:04:05.000000')",
        ],
    )
    rows, reclaims = _upgrade_then_query(
        mdm,
        "mobile_apps: applied 0002 (metadata per platform and reclaim cause",
        "SELECT adam_id, platform, status, bundle_id FROM mobile_apps_metadata ORDER BY adam_id, platform",
        "SELECT target, status, cause FROM mobile_apps_reclaim",
    )
    assert rows == [("111", "iOS", "ok", "com.example.words"), ("111", "macOS", "pending", None), ("222", "macOS", "ok", "com.example.words")]
    assert reclaims == [("C02OLD", "done", None)]


def test_vpp_0006_assets_get_the_count_of_their_mirrored_licenses(project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    """The stored per-asset license count an incremental sync compares with Apple's
    assignedCount (instead of counting the whole mirror) starts as the licenses mirrored."""
    account = (
        "INSERT INTO vpp_account (id, name, uid, service_url, token_ciphertext, token_fingerprint, token_expires_at, mdm_info_id,"
        " interval_seconds, token_state, paused, created_at) VALUES ({id}, '{name}', 'u{id}', 'https://x.test/mdm/v2', 'c', 'f',"
        " '2030-01-01 00:00:00.000000', 'm', 3600, 'valid', 0, '2026-01-02 03:04:05.000000')"
    )
    asset = (
        "INSERT INTO vpp_asset (account_id, adam_id, pricing_param, product_type, assigned_count, available_count, retired_count,"
        " total_count, device_assignable, revocable, supported_platforms, updated_at) VALUES ({id}, '{adam}', '{pricing}', 'App', 2, 3, 0, 5,"
        " 1, 1, '[\"iOS\"]', '2026-01-02 03:04:05.000000')"
    )
    license = "INSERT INTO vpp_license (account_id, adam_id, pricing_param, kind, target) VALUES ({id}, '{adam}', '{pricing}', '{kind}', '{target}')"
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"vpp": "0005"},
        [
            account.format(id=1, name="school"),
            account.format(id=2, name="office"),
            asset.format(id=1, adam="111", pricing="STDQ"),
            asset.format(id=1, adam="111", pricing="PLUS"),
            asset.format(id=1, adam="222", pricing="STDQ"),
            asset.format(id=2, adam="111", pricing="STDQ"),
            license.format(id=1, adam="111", pricing="STDQ", kind="device", target="C01"),
            license.format(id=1, adam="111", pricing="STDQ", kind="user", target="u1"),
            license.format(id=1, adam="111", pricing="PLUS", kind="device", target="C01"),
            license.format(id=1, adam="999", pricing="STDQ", kind="device", target="C02"),  # an asset Apple does not list
            license.format(id=2, adam="111", pricing="STDQ", kind="device", target="C09"),
        ],
    )
    [rows] = _upgrade_then_query(
        mdm, "vpp: applied 0006 (asset license count", "SELECT account_id, adam_id, pricing_param, license_count FROM vpp_asset ORDER BY 1, 2, 3"
    )
    assert rows == [(1, "111", "PLUS", 1), (1, "111", "STDQ", 2), (1, "222", "STDQ", 0), (2, "111", "STDQ", 1)]
