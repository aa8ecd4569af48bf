"""The alerts plugin on PostgreSQL (row locks, JSON columns, its queue), when
``MDM_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it); skipped otherwise, saying why."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from mdm_core.models import SubscriberFailure
from plugins.alerts.delivery import check, deliver_due

from ..conftest import PG_ADMIN_URL, PG_SKIP_REASON
from .conftest import FAST_VPP, alerts, sync
from .test_delivery import told_while_sent, told_with_it

pytestmark = pytest.mark.skipif(not PG_ADMIN_URL, reason=PG_SKIP_REASON)


def pg_alerts_host(make_host: Any, simulator: Any, project_dir: Any, pg_url: str) -> Any:
    """``make(alerts_config, environ=None)``: a host on PostgreSQL with account ``school`` on the simulator."""
    from plugins.vpp.testing import add_simulated_account

    def make(alerts_config: str, environ: dict[str, str] | None = None) -> Any:
        host = make_host(config=FAST_VPP + "\n[alerts]\n" + alerts_config, environ=environ, database_url=pg_url)
        add_simulated_account(host, simulator, project_dir)
        return host

    return make


@pytest.mark.slow  # syncs and deliveries on PostgreSQL
def test_alerts_on_postgres(make_host, simulator, webhook_server, project_dir, pg_url):
    """On the worker's own PostgreSQL database (``pg_url``), emptied for the test."""
    from plugins.vpp.accounts import add_account

    hook = webhook_server()
    scarce, _ = simulator.purchase(count=2)
    host = make_host(
        config=FAST_VPP + f"[alerts]\nsync_failures = 1\nlow_licenses = 0\nlow_licenses_per_asset = {{ {scarce} = 2 }}\n"
        'webhooks = { ops = { env = "OPS_URL" } }\n',
        environ={"OPS_URL": hook.url},
        database_url=pg_url,
    )
    assert host.db.url.get_backend_name() == "postgresql"
    add_account(host, "school", str(simulator.write_token(project_dir / "t.vpptoken")), service_url=simulator.base_url)
    simulator.assign_in_portal(scarce, serial_number="PORTAL000001")
    assert sync(host)["status"] == "ok"
    simulator.faults.add("server_error", endpoint="client/config", count=1, status=503)
    assert sync(host)["status"] == "error"
    assert sync(host)["status"] == "ok"
    assert check(host) == {"queued": 0}
    assert [a["state"] for a in alerts(host)] == ["low", "failing", "ok"]
    assert deliver_due(host)["sent"] == 3 and len(hook.requests) == 3
    with host.db.session() as session:
        assert list(session.execute(select(col(SubscriberFailure.plugin), col(SubscriberFailure.error))).all()) == []


@pytest.mark.slow
def test_an_alert_storm_folds_into_one_digest_on_postgres(make_host, simulator, smtp_server, project_dir, pg_url):
    """The unsent license alerts are read with row locks and replaced by a digest, on PostgreSQL."""
    from .test_alerts import storm_makes_one_digest

    storm_makes_one_digest(pg_alerts_host(make_host, simulator, project_dir, pg_url), simulator, smtp_server())


@pytest.mark.slow
def test_counts_swinging_around_thresholds_alert_once_on_postgres(make_host, simulator, project_dir, pg_url):
    """The recovery margin holds the stored levels through the events, the digest and the check, on PostgreSQL."""
    from .test_hysteresis import many_assets_swing

    many_assets_swing(pg_alerts_host(make_host, simulator, project_dir, pg_url), simulator)


@pytest.mark.slow
def test_alerts_name_the_apps_on_postgres(make_host, simulator, smtp_server, project_dir, pg_url):
    """The names mobile_apps looked up reach the mail, read from PostgreSQL (``mdm_app_names``)."""
    from .test_names import run_low

    smtp = smtp_server()
    scarce, host = run_low(pg_alerts_host(make_host, simulator, project_dir, pg_url), simulator, smtp, "Atlas Kids")
    assert host.db.url.get_backend_name() == "postgresql"
    assert smtp.mailbox.messages[0]["Subject"] == f"[mdm] WARNING: Only 1 of 4 licenses left of Atlas Kids (adamId {scarce}, STDQ, App) in account 'school'"


@pytest.mark.slow
@pytest.mark.parametrize("scenario", [told_while_sent, told_with_it], ids=lambda scenario: scenario.__name__)
def test_a_failure_joining_an_alert_being_sent_is_told_on_postgres(make_host, webhook_server, pg_url, monkeypatch, scenario):
    hook = webhook_server()
    host = make_host(config=FAST_VPP + '[alerts]\nwebhooks = { ops = { env = "OPS_URL" } }\n', environ={"OPS_URL": hook.url}, database_url=pg_url)
    assert host.db.url.get_backend_name() == "postgresql"
    scenario(host, hook, monkeypatch)


@pytest.mark.slow
def test_license_alerts_are_written_as_plain_rows_on_postgres(make_host, simulator, smtp_server, project_dir, pg_url):
    """The license alerts' Core inserts (RETURNING the alert's id) and locked read of the unsent ones, on PostgreSQL."""
    from .test_alerts import license_alerts_are_written_as_plain_rows

    license_alerts_are_written_as_plain_rows(pg_alerts_host(make_host, simulator, project_dir, pg_url), simulator, smtp_server())
