"""The ``alerts.deliver`` job whose cross-host lock was lost mid-run (paused past the lock's
expiry, another host took it) sends nothing more: the deliveries left stay pending for the
lock's next holder, and the turn is a failed one; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from mdm_core.events import Event
from mdm_core.models import JobRun
from plugins.alerts.channels import WebhookChannel
from plugins.alerts.models import AlertDelivery
from tests.job_fence import LOST_END, lose_lock_after_first, lost_message

from .conftest import FAST_VPP


def test_a_deliver_job_that_lost_its_lock_sends_nothing_more(
    make_host: Any, webhook_server: Any, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = webhook_server()
    config = FAST_VPP + '\n[alerts]\nsync_failures = 1\nwebhooks = { ops = { env = "OPS_URL" } }\n'
    host = make_host(config=config, environ={"OPS_URL": hook.url}, database_url=database_url)
    for account in ("school", "other"):  # two alerts: two deliveries through the webhook
        payload = {"account": account, "trigger": "schedule", "mode": "full", "status": "error", "error_type": "VppServerError", "error": "boom"}
        host.events.dispatch(Event(name="vpp_sync_finished", payload=payload))
    with host.db.session() as session:
        assert [d.status for d in session.execute(select(AlertDelivery)).scalars()] == ["pending", "pending"]
    taken = lose_lock_after_first(host.db, monkeypatch, WebhookChannel, "send", "alerts.deliver")

    state = host.build_scheduler(inline=True).run_now("alerts.deliver")
    assert state.last_error is not None and state.last_error.startswith(lost_message("alerts.deliver")) and state.last_error.endswith(LOST_END)
    assert len(hook.requests) == 1  # the second alert was not sent
    with host.db.session() as session:
        rows = list(session.execute(select(AlertDelivery).order_by(AlertDelivery.id)).scalars())  # type: ignore[arg-type]
        run = session.get(JobRun, "alerts.deliver")
    assert [(d.status, d.attempts) for d in rows] == [("sent", 1), ("pending", 0)]
    assert run is not None and run.last_error == state.last_error and run.failures == 1

    taken[0].release()  # that host's run ended: the next holder sends what was left
    assert host.build_scheduler(inline=True).run_now("alerts.deliver").last_error is None
    assert len(hook.requests) == 2
