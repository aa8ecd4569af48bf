"""A VPP event whose delivery failed is delivered again later, on its own (``mdm run``'s retries,
``mdm events redeliver``), with its payload as recorded. When the account was renamed meanwhile,
mobile_apps filed its applications and alerts its states under the old name, which no account
has (or another account takes next). They now apply it under the account's name now, and not at
all when the account was removed since. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from mdm_core.host import Host
from mdm_core.models import OutboxEvent, utcnow
from plugins.alerts.models import AlertSubject
from plugins.mobile_apps.models import MOBILE_APPS_TABLES, SeenEvent
from plugins.vpp.accounts import remove_account
from plugins.vpp.payloads import ACCOUNT_EVENTS
from plugins.vpp.rename import rename_account
from plugins.vpp.simulator import Simulator
from plugins.vpp.testing import add_simulated_account

SIM: dict[str, Any] = {"seed": 5, "assets": 6, "devices": 20, "users": 10, "page_size": 7, "async_delay": 0}
CONFIG = "[vpp]\nmax_attempts = 1\nmax_total_wait = 1.0\n\n[alerts]\nlow_licenses = 1000000\n"


def _filed_under(host: Host) -> set[str]:
    """Every account name mobile_apps' tables and alerts' states file rows under."""
    with host.db.session() as session:
        names = {a for model in MOBILE_APPS_TABLES if model is not SeenEvent for a in session.execute(select(model.account)).scalars()}  # type: ignore[attr-defined]
        return names | {a for a in session.execute(select(col(AlertSubject.account))).scalars() if a}


def _sync_with_subscribers_failing(host: Host, sim: Simulator, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Account ``school`` added and synced while mobile_apps' and alerts' subscribers raise:
    every event of the sync waits for a retry."""
    import plugins.alerts.store
    import plugins.mobile_apps.catalog

    def down(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database of the subscriber unavailable")

    with monkeypatch.context() as m:
        m.setattr(plugins.mobile_apps.catalog, "once", down)
        m.setattr(plugins.alerts.store, "on_event", down)
        add_simulated_account(host, sim, project_dir)
        [report] = host.pm.hook.mdm_vpp_sync(host=host, account="school", full=False, trigger="test", wait=0)
        assert report["status"] == "ok"
    failed = {(f["plugin"], f["event_name"]) for f in host.events.failures()}
    assert {("mobile_apps", "vpp_assets_added"), ("alerts", "vpp_assets_added")} <= failed, failed
    assert _filed_under(host) == set()


def _pruned(host: Host, _: Any) -> None:
    """Housekeeping past ``[core] event_retention_days``: the rename's (or removal's) event is
    gone, the failed events stay (their retries need them)."""
    from mdm_core.housekeeping import housekeeping

    host.events.deliver_pending()
    days = host.config.core.event_retention_days + 1
    assert housekeeping(host, now=utcnow() + timedelta(days=days))["core_event"] > 0
    with host.db.session() as session:
        assert not session.execute(select(col(OutboxEvent.name)).where(col(OutboxEvent.name).in_(ACCOUNT_EVENTS))).all()


def _renamed_after_events_without_account_id(host: Host) -> None:
    """The events recorded so far made as a release before ``accountId`` recorded them, then
    ``school`` renamed ``district``: a retry finds the name now by the rename's event kept."""

    def strip(session: Any) -> None:
        for event in session.execute(select(OutboxEvent)).scalars():
            if "accountId" in event.payload:
                event.payload = {k: v for k, v in event.payload.items() if k != "accountId"}

    host.db.run_write(strip)
    rename_account(host, "school", "district")


def _retry(host: Host) -> None:
    later = utcnow().replace(year=utcnow().year + 1)
    assert host.events.retry_due(now=later, limit=10_000)[1] == 0
    assert host.events.failures() == []


@pytest.mark.parametrize(
    "change, filed",
    [
        (lambda host: rename_account(host, "school", "district"), {"district"}),  # the applications, their metadata, the low-license states
        (lambda host: remove_account(host, "school"), set()),  # nothing to file
        (lambda host: _pruned(host, rename_account(host, "school", "district")), {"district"}),  # filed under "school", no account's name
        (lambda host: _pruned(host, remove_account(host, "school")), set()),
        (_renamed_after_events_without_account_id, {"district"}),
    ],
    ids=["renamed", "removed", "renamed-event-pruned", "removed-event-pruned", "renamed-recorded-without-accountId"],
)
def test_a_failed_event_retried_after_a_rename_is_filed_under_the_new_name_and_after_a_removal_nowhere(
    make_host: Callable[..., Host],
    project_dir: Path,
    database_url: str | None,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[Host], Any],
    filed: set[str],
) -> None:
    with Simulator(**SIM) as sim:
        host = make_host(config=CONFIG, database_url=database_url)
        _sync_with_subscribers_failing(host, sim, project_dir, monkeypatch)
        change(host)
        _retry(host)
        assert _filed_under(host) == filed
