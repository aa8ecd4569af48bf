"""The alerts plugin on PostgreSQL (row locks, JSON columns, its queue), when
``MDM_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it); skipped otherwise, saying why."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import col

from mdm_core.models import SubscriberFailure
from plugins.alerts.delivery import check, deliver_due

from ..conftest import PG_ADMIN_URL, PG_SKIP_REASON
from .conftest import FAST_VPP, alerts, sync

pytestmark = pytest.mark.skipif(not PG_ADMIN_URL, reason=PG_SKIP_REASON)


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
    from plugins.vpp.testing import add_simulated_account

    from .test_alerts import storm_makes_one_digest

    def make(alerts_config: str):
        host = make_host(config=FAST_VPP + "\n[alerts]\n" + alerts_config, database_url=pg_url)
        add_simulated_account(host, simulator, project_dir)
        return host

    storm_makes_one_digest(make, simulator, smtp_server())
