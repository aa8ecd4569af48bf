"""Delivery: durable queue, each channel on its own, bounded exponential back-off under a
controlled clock (no sleeps), failures visible, and a sync never waiting for a channel."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from mdm_core.events import Event
from plugins.alerts.delivery import deliver_due

from .conftest import alerts, sync

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
FAILING = {"account": "school", "trigger": "schedule", "mode": "incremental", "status": "error", "error_type": "VppServerError", "error": "Apple answered 503"}


def raise_alert(host, n=1):
    """``n`` alerts (sync failing, once per account name)."""
    for i in range(n):
        host.events.dispatch(Event(name="vpp_sync_finished", payload={**FAILING, "account": f"school{i}"}))


def deliveries(host, channel):
    return [d for a in alerts(host) for d in a["deliveries"] if d["channel"] == channel]


def test_a_failing_webhook_is_retried_with_backoff_then_failed_while_email_goes_out(alerts_host, smtp_server, webhook_server, mdm):
    smtp = smtp_server("none")
    hook = webhook_server()
    hook.default = 500
    config = smtp.config() + 'sync_failures = 1\nmax_attempts = 4\nretry_delay = 60\nretry_max_delay = 100\nwebhooks = { ops = { env = "OPS_URL" } }\n'
    host = alerts_host(config, environ={"OPS_URL": hook.url}, account=False)
    _ = host.db  # tables (and their model classes) exist before the clock is frozen
    with freeze_time(T0) as clock:
        raise_alert(host)
        assert deliver_due(host) == {"sent": 1, "retrying": 1, "failed": 0}
        assert len(smtp.mailbox.messages) == 1 and len(hook.requests) == 1
        [webhook] = deliveries(host, "webhook:ops")
        assert webhook["status"] == "pending" and webhook["attempts"] == 1
        assert webhook["next_attempt_at"] == T0 + timedelta(seconds=60)
        assert webhook["last_error"].startswith("webhook ops (127.0.0.1) answered HTTP 500")

        attempts_at = [T0]
        for wait in (60, 100, 100):  # 60, then doubled to 120 but at most retry_max_delay
            clock.tick(wait - 1)
            assert deliver_due(host) == {"sent": 0, "retrying": 0, "failed": 0}  # not due yet: nothing is tried
            clock.tick(1)
            attempts_at.append(datetime.now(UTC))
            counts = deliver_due(host)
            assert counts["sent"] == 0 and counts["retrying"] + counts["failed"] == 1
        assert len(hook.requests) == 4 and counts["failed"] == 1
        [webhook] = deliveries(host, "webhook:ops")
        assert webhook["status"] == "failed" and webhook["attempts"] == 4 and webhook["next_attempt_at"] is None
        clock.tick(3600)
        assert deliver_due(host) == {"sent": 0, "retrying": 0, "failed": 0} and len(hook.requests) == 4  # bounded
        assert len(smtp.mailbox.messages) == 1  # the e-mail went once, whatever the webhook did
        assert [d["status"] for d in deliveries(host, "email")] == ["sent"]

    code, out, err = mdm("alerts", "list", "--status", "failed")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split()[:7] == ["id", "created_at", "severity", "channel", "status", "attempts", "next_attempt_at"]
    assert "webhook:ops" in row and "failed" in row and "answered HTTP 500" in row and "email" not in row

    failed_id = row.split()[0]
    code, out, err = mdm("alerts", "retry", failed_id, "999")  # a mistyped id: refused, nothing queued
    assert (code, out) == (2, "") and err.strip().endswith(
        "alert(s) 999 not found (deleted after [alerts] keep_days, or a mistyped id): nothing was queued again (see `mdm alerts list --status failed`)"
    )
    assert [d["status"] for d in deliveries(host, "webhook:ops")] == ["failed"]

    hook.default = 200
    code, out, err = mdm("alerts", "retry")
    assert code == 0 and out.startswith("1 failed delivery queued again")
    assert deliver_due(host)["sent"] == 1 and len(hook.requests) == 5
    assert [d["status"] for d in deliveries(host, "webhook:ops")] == ["sent"]
    # nothing left to retry is nothing to do (exit 0, one line), not a failure (it exited 1 for the id)
    assert mdm("alerts", "retry")[:2] == (0, "nothing to retry: no failed deliveries\n")
    assert mdm("alerts", "retry", failed_id)[:2] == (0, f"nothing to retry: no failed delivery of alert(s) {failed_id}\n")


def test_a_webhook_that_recovers_delivers_at_the_next_attempt(alerts_host, webhook_server):
    hook = webhook_server()
    hook.statuses = [503, 502]
    host = alerts_host('sync_failures = 1\nretry_delay = 30\nwebhooks = { ops = { env = "OPS_URL" } }\n', environ={"OPS_URL": hook.url}, account=False)
    _ = host.db
    with freeze_time(T0) as clock:
        raise_alert(host)
        assert deliver_due(host)["retrying"] == 1
        clock.tick(30)
        assert deliver_due(host)["retrying"] == 1
        clock.tick(59)
        assert deliver_due(host)["sent"] == 0
        clock.tick(1)
        assert deliver_due(host)["sent"] == 1
    [d] = deliveries(host, "webhook:ops")
    assert d["status"] == "sent" and d["attempts"] == 3 and d["last_error"] is None
    assert [r["json"]["title"] for r in hook.requests] == ["Sync of VPP account 'school0' failed 1 times in a row"] * 3


def test_a_refusal_for_good_is_not_retried(alerts_host, webhook_server):
    hook = webhook_server()
    hook.default = 404
    host = alerts_host('sync_failures = 1\nwebhooks = { gone = { env = "GONE_URL" } }\n', environ={"GONE_URL": hook.url}, account=False)
    raise_alert(host)
    assert deliver_due(host) == {"sent": 0, "retrying": 0, "failed": 1}
    [d] = deliveries(host, "webhook:gone")
    assert d["status"] == "failed" and d["attempts"] == 1 and "HTTP 404" in d["last_error"]


def test_a_channel_that_is_down_costs_one_attempt_per_run_and_others_go_on(alerts_host, webhook_server, closed_port):
    up = webhook_server()
    down = f"http://127.0.0.1:{closed_port}/hook"
    host = alerts_host('sync_failures = 1\nwebhooks = { up = { env = "UP" }, down = { env = "DOWN" } }\n', environ={"UP": up.url, "DOWN": down}, account=False)
    _ = host.db
    with freeze_time(T0) as clock:
        raise_alert(host, 3)
        assert deliver_due(host) == {"sent": 3, "retrying": 1, "failed": 0}
        assert len(up.requests) == 3
        assert [d["attempts"] for d in deliveries(host, "webhook:down")] == [1, 0, 0]  # the others wait for the next run
        clock.tick(1)
        assert deliver_due(host) == {"sent": 0, "retrying": 1, "failed": 0}
        assert sorted(d["attempts"] for d in deliveries(host, "webhook:down")) == [0, 1, 1]


def test_alerts_survive_a_restart_in_the_queue(alerts_host, webhook_server, make_host):
    hook = webhook_server()
    host = alerts_host('sync_failures = 1\nwebhooks = { ops = { env = "OPS_URL" } }\n', environ={"OPS_URL": hook.url}, account=False)
    raise_alert(host)
    host.close()
    again = make_host(config=host.config.path.read_text(), environ={"OPS_URL": hook.url})
    assert deliver_due(again)["sent"] == 1 and len(hook.requests) == 1


def test_a_channel_removed_from_the_configuration_fails_its_pending_deliveries(alerts_host, webhook_server, make_host):
    hook = webhook_server()
    host = alerts_host('sync_failures = 1\nwebhooks = { old = { env = "OLD" } }\n', environ={"OLD": hook.url}, account=False)
    raise_alert(host)
    again = make_host(config=host.config.path.read_text().replace('webhooks = { old = { env = "OLD" } }', ""))
    assert deliver_due(again) == {"sent": 0, "retrying": 0, "failed": 1}
    [d] = deliveries(again, "webhook:old")
    assert d["last_error"] == "channel webhook:old is no longer configured in [alerts]" and hook.requests == []


def test_a_channel_added_since_mdm_run_started_waits_for_its_restart(alerts_host, smtp_server):
    """The admin adds e-mail to [alerts] while `mdm run` runs: a command's alert queued for it is
    not failed for good by the `mdm run` started before (which said the channel was "no longer
    configured", though it had just been added); it stays queued, saying to restart `mdm run`,
    and goes out once a process with the new configuration delivers."""
    smtp = smtp_server("none")
    running = alerts_host("sync_failures = 1\n", account=False)  # `mdm run`, started before [alerts] had e-mail
    _ = running.db
    edited = alerts_host(smtp.config() + "sync_failures = 1\n", account=False)  # conf/mdm.toml edited; a command raises an alert
    raise_alert(edited)
    assert deliver_due(running) == {"sent": 0, "retrying": 1, "failed": 0}
    [d] = deliveries(running, "email")
    assert d["status"] == "pending" and d["attempts"] == 0 and smtp.mailbox.messages == []
    assert d["last_error"] == (
        f"channel email is in [alerts] of {edited.config.source} but this process read its configuration before: restart `mdm run` (the alert stays queued)"
    )
    restarted = alerts_host(smtp.config() + "sync_failures = 1\n", account=False)
    assert deliver_due(restarted) == {"sent": 1, "retrying": 0, "failed": 0} and len(smtp.mailbox.messages) == 1


def test_a_sync_never_waits_for_a_channel(alerts_host, webhook_server, simulator):
    """A webhook that accepts connections and never answers: the failing sync, its alert and the
    other subscribers go on at once; only the alerts.deliver job talks to the webhook."""
    hook = webhook_server()
    hook.hang = True
    host = alerts_host('sync_failures = 1\nwebhook_timeout = 30\nwebhooks = { slow = { env = "SLOW" } }\n', environ={"SLOW": hook.url})
    simulator.faults.add("server_error", endpoint="client/config", count=1, status=503)
    started = time.monotonic()
    assert sync(host)["status"] == "error"
    assert sync(host)["status"] == "ok"
    assert time.monotonic() - started < 20, "a sync waited for the webhook (which holds each request 30 s, timeout 30 s)"
    assert hook.requests == []
    assert [a["state"] for a in alerts(host)] == ["failing", "ok"]
    assert {d["status"] for a in alerts(host) for d in a["deliveries"]} == {"pending"}


def _install_failed(serial: str, number: int) -> Event:
    return Event(
        name="mobile_apps_install_failed",
        payload={
            "id": number,
            "account": "school",
            "adamId": "408709785",
            "pricingParam": "STDQ",
            "license": "device",
            "serialNumber": serial,
            "clientUserId": None,
            "source": "request",
            "error": "Apple refused the license",
            "errorNumber": 9709,
        },
    )


def told_while_sent(host, hook, monkeypatch):
    """A failure joining an alert while it is sent, on ``host``, whose webhook ``ops`` is ``hook``:
    an alert of its own."""
    from plugins.alerts.channels import WebhookChannel

    host.events.dispatch(_install_failed("SERIAL0001", 1))
    send = WebhookChannel.send

    def send_while_another_fails(self, message):
        if not hook.requests:
            host.events.dispatch(_install_failed("SERIAL0002", 2))  # the same asset, while the first alert goes out
        return send(self, message)

    monkeypatch.setattr(WebhookChannel, "send", send_while_another_fails)
    assert deliver_due(host)["sent"] == 1
    assert deliver_due(host)["sent"] == 1
    told = [r["json"]["text"] for r in hook.requests]
    assert len(told) == 2 and "SERIAL0001" in told[0] and "SERIAL0002" not in told[0] and "SERIAL0002" in told[1]
    assert [d["status"] for a in alerts(host) for d in a["deliveries"]] == ["sent", "sent"]


def told_with_it(host, hook, monkeypatch):
    """A failure joining an alert after alerts.deliver read it as due, before its attempt was
    counted, on ``host``, whose webhook ``ops`` is ``hook``: it is in what is sent (the alert is
    read again when its attempt is counted), and nothing is left for a second alert."""
    from plugins.alerts import delivery

    host.events.dispatch(_install_failed("SERIAL0001", 1))
    name_due = delivery.name_due

    def read_then_another_fails(*args, **kwargs):
        host.events.dispatch(_install_failed("SERIAL0002", 2))  # the same asset, once the due alerts were read
        return name_due(*args, **kwargs)

    monkeypatch.setattr(delivery, "name_due", read_then_another_fails)
    assert deliver_due(host)["sent"] == 1
    monkeypatch.setattr(delivery, "name_due", name_due)
    assert deliver_due(host)["sent"] == 0
    [told] = [r["json"]["text"] for r in hook.requests]
    assert "SERIAL0001" in told and "SERIAL0002" in told


@pytest.mark.parametrize("scenario", [told_while_sent, told_with_it], ids=lambda scenario: scenario.__name__)
def test_a_failure_joining_an_alert_being_sent_is_told(alerts_host, webhook_server, monkeypatch, scenario):
    """Install failures of one asset join its alert while no delivery of it was tried. One arriving
    while alerts.deliver was sending that alert (read as due, its attempt not yet recorded)
    joined it, and the alert was then recorded sent with the text sent before: that failure
    was never told. The attempt is now counted before the alert is sent (and the alert read
    again then): a failure arriving during the send makes an alert of its own, one arriving
    before the attempt is counted goes out with it."""
    hook = webhook_server()
    host = alerts_host('webhooks = { ops = { env = "OPS_URL" } }\n', environ={"OPS_URL": hook.url}, account=False)
    scenario(host, hook, monkeypatch)
