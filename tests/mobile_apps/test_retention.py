"""Housekeeping deletes the installs and reclaims that ended more than ``[mobile_apps]
history_retention_days`` ago, and keeps what is under way or needs the admin; on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import SQLModel

from mdm_core.host import Host
from mdm_core.housekeeping import housekeeping
from plugins.mobile_apps.models import Install, Reclaim

NOW = datetime(2028, 12, 1, 12, 0, tzinfo=UTC)


def _add(host: Host, *rows: SQLModel) -> None:
    def work(session: Any) -> None:
        session.add_all(rows)

    host.db.run_write(work)


def _kept(host: Host, model: Any, rows: dict[str, Any]) -> set[str]:
    with host.db.session() as session:
        found = set(session.execute(select(model.id)).scalars())
    return {name for name, row in rows.items() if row.id in found}


def test_ended_installs_and_reclaims_go_after_their_retention_the_others_stay(make_host: Callable[..., Host], database_url: str | None) -> None:
    """Each install asked and each license taken back adds a row that `mdm apps installs` and
    `mdm apps reclaims --all` listed for ever: a host running for years kept every one."""
    host = make_host(config="[mobile_apps]\nhistory_retention_days = 100\n", database_url=database_url)

    def install(status: str, days: float) -> Install:
        at = NOW - timedelta(days=days)
        return Install(
            account="school", adam_id="111", pricing_param="STDQ", kind="device", target="S1", source="request", status=status, created_at=at, updated_at=at
        )

    def reclaim(status: str, days: float) -> Reclaim:
        at = NOW - timedelta(days=days)
        return Reclaim(
            account="school", adam_id="111", pricing_param="STDQ", kind="device", target="S1", reason="manual", status=status, created_at=at, updated_at=at
        )

    installs = {s: install(s, 400) for s in ("associating", "invited", "pending", "queued", "licensed", "failed", "canceled", "removed")}
    installs["recent-failed"] = install("failed", 90)
    installs["newest-removed"] = install("removed", 400)  # the highest id: goes too (it was kept, so that SQLite never gave it again)
    reclaims = {s: reclaim(s, 400) for s in ("pending", "failed", "irrevocable", "done", "canceled")}
    reclaims["recent-done"] = reclaim("done", 90)
    reclaims["superseded"] = reclaim("failed", 400)  # reclaimed again since: history, pruned like a done one
    reclaims["superseded"].superseded_by = 1
    reclaims["recent-superseded"] = reclaim("failed", 90)
    reclaims["recent-superseded"].superseded_by = 1
    reclaims["newest-done"] = reclaim("done", 400)
    for row in [*installs.values(), *reclaims.values()]:
        _add(host, row)  # one at a time: ids in this order

    deleted = housekeeping(host, NOW)

    assert (deleted["mobile_apps_install"], deleted["mobile_apps_reclaim"]) == (4, 4)
    assert _kept(host, Install, installs) == set(installs) - {"failed", "canceled", "removed", "newest-removed"}
    assert _kept(host, Reclaim, reclaims) == set(reclaims) - {"done", "canceled", "superseded", "newest-done"}
    assert housekeeping(host, NOW)["mobile_apps_install"] == 0
    pruned = housekeeping(host, NOW + timedelta(days=11))
    assert (pruned["mobile_apps_install"], pruned["mobile_apps_reclaim"]) == (1, 2)  # recent-failed's turn; recent-done's and recent-superseded's

    for model, newest in ((Install, installs["newest-removed"].id), (Reclaim, reclaims["newest-done"].id)):
        later = install("failed", 0) if model is Install else reclaim("done", 0)
        _add(host, later)
        assert newest is not None and later.id is not None and later.id > newest, f"{model.__tablename__}: the deleted id {newest} was given again"
