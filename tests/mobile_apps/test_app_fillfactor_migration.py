"""mobile_apps migration 0011: on PostgreSQL the applications' pages are kept half full, so that a
sync's new license counts update them in place (heap-only tuples: no index written); the
applications stored before are kept with their ids, and a downgrade to 0010 resets the storage
parameter (an upgrade sets it again). SQLite: nothing changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mdm_core.host import Host
from tests.test_apple_migrations import _downgrade, _upgrade_then_query

from .test_app_published_index import apps_at

APPLIED = "mobile_apps: applied 0011 (application pages kept half full"
APPS = "SELECT id, adam_id FROM mobile_apps_app ORDER BY id"
OPTIONS = "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class WHERE oid = 'mobile_apps_app'::regclass"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_mobile_apps_0011_keeps_the_applications_pages_half_full(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest, kind: str
) -> None:
    mdm, url = apps_at(project_dir, monkeypatch, capsys, request, kind, "0010")
    kept = [(1, "100"), (2, "200"), (3, "300")]
    assert _upgrade_then_query(mdm, APPLIED, APPS, url=url) == [kept]
    if url is None:
        return
    assert _options(url) == "fillfactor=50"
    _downgrade(mdm, "mobile_apps", "0010", url)
    assert _options(url) == ""  # the server's default: full pages
    assert _upgrade_then_query(mdm, APPLIED, APPS, OPTIONS, url=url) == [kept, [("fillfactor=50",)]]


def test_a_sync_s_new_counts_update_the_applications_in_place_on_postgres(make_host: Any, pg_url: str) -> None:
    """An assets event that moves the counts of every application (400 of them, pages full on the
    server's default) updates each in its own page: no row moved, no index entry written."""
    from plugins.mobile_apps.catalog import upsert_assets

    host: Host = make_host(database_url=pg_url)
    assets: list[Any] = [
        {"adamId": str(500000 + n), "pricingParam": "STDQ", "productType": "App", "supportedPlatforms": ["iOS"], "deviceAssignable": True, "revocable": True}
        | {"assignedCount": 1, "availableCount": 9, "retiredCount": 0, "totalCount": 10}
        for n in range(400)
    ]
    host.db.run_write(lambda session: upsert_assets(host, session, "school", assets))
    moved: list[Any] = [{**asset, "assignedCount": 2, "availableCount": 8} for asset in assets]

    def counted(session: Any) -> tuple[int, int]:
        upsert_assets(host, session, "school", moved)
        hot = "SELECT pg_stat_get_xact_tuples_updated(oid), pg_stat_get_xact_tuples_hot_updated(oid) FROM pg_class WHERE oid = 'mobile_apps_app'::regclass"
        updated, in_place = session.execute(text(hot)).one()
        return int(updated), int(in_place)

    assert host.db.run_write(counted) == (400, 400)


def _options(url: str) -> str:
    """``mobile_apps_app``'s storage options on the database at ``url``, joined by commas."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text(OPTIONS)).scalar_one())
    finally:
        engine.dispose()
