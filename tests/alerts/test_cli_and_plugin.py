"""``mdm alerts test|list|send``, the ``[alerts]`` checks, secrets kept out of every output,
the plugin's jobs, and the host working as before when the plugin is disabled."""

from __future__ import annotations

import json
import logging

import pytest
from sqlmodel import col

from mdm_core.errors import MdmError
from mdm_core.events import Event
from plugins.alerts.cli import NO_CHANNEL

from .conftest import SMTP_PASSWORD, SMTP_USER, WEBHOOK_SECRET, sync


def configure(mdm, text: str) -> None:
    mdm.conf.write_text(text)


def test_alerts_test_reports_each_channel(mdm, smtp_server, webhook_server, certificate, monkeypatch):
    smtp = smtp_server("starttls", login=True)
    good, bad = webhook_server(), webhook_server()
    bad.default = 403
    bad.body = f"invalid token in {bad.url}".encode()
    monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("SLACK_URL", good.url)
    monkeypatch.setenv("TEAMS_URL", bad.url)
    configure(
        mdm,
        "[alerts]\n"
        + smtp.config(ca_file=certificate[0], smtp_username=f'"{SMTP_USER}"', smtp_password='{ env = "SMTP_PASSWORD" }')
        + 'webhooks = { slack = { env = "SLACK_URL" }, teams = { env = "TEAMS_URL" } }\n',
    )
    assert mdm("db", "upgrade")[0] == 0  # the webhooks' signing secrets are the database's: `alerts test` needs it
    code, out, err = mdm("alerts", "test")
    assert code == 1
    assert out.splitlines() == [f"email to 2 recipients via 127.0.0.1:{smtp.port} (starttls): sent", "webhook slack (127.0.0.1): sent"]
    [failed] = err.splitlines()
    assert failed == "webhook teams (127.0.0.1): failed: webhook teams (127.0.0.1) answered HTTP 403: invalid token in ***"
    [mail] = smtp.mailbox.messages
    assert mail["Subject"].startswith("[mdm] INFO: Test alert from mdm-host on ")
    assert good.requests[0]["json"]["kind"] == "test" and "Test alert" in good.requests[0]["json"]["text"]
    for secret in (SMTP_PASSWORD, WEBHOOK_SECRET, good.url, bad.url):
        assert secret not in out + err

    bad.default = 200
    code, out, err = mdm("alerts", "test")
    assert code == 0 and len(out.splitlines()) == 3 and err == ""
    assert mdm("-q", "alerts", "test") == (0, "", "")  # -q silences successes
    assert len(good.requests) == 3 and len(smtp.mailbox.messages) == 3  # ... and still sends
    code, out, _ = mdm("alerts", "list")
    assert out == "no alerts\n"  # a test is not an alert, and an empty list says so as the other lists do
    assert mdm("alerts", "list", "--status", "failed") == (0, "no alerts with a failed delivery\n", "")


def test_alerts_test_through_a_relay_without_auth_names_the_fix(mdm, smtp_server, monkeypatch):
    smtp = smtp_server("none")
    monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
    configure(mdm, "[alerts]\n" + smtp.config(smtp_username=f'"{SMTP_USER}"', smtp_password='{ env = "SMTP_PASSWORD" }'))
    assert mdm("db", "upgrade")[0] == 0  # `alerts test` refuses a database file that does not exist
    code, out, err = mdm("alerts", "test")
    where = f"SMTP server 127.0.0.1:{smtp.port}"
    assert (code, out) == (1, "")
    assert err == (
        f"email to 2 recipients via 127.0.0.1:{smtp.port} (none): failed: {where} offers no login (AUTH): "
        "remove [alerts] smtp_username and smtp_password (a relay taking mail without a login), or enable AUTH on it\n"
    )
    assert SMTP_PASSWORD not in err and smtp.mailbox.messages == []


def test_alerts_test_without_a_channel(mdm):
    configure(mdm, "")
    assert mdm("db", "upgrade")[0] == 0  # `alerts test` refuses a database file that does not exist
    code, out, err = mdm("alerts", "test")
    assert code == 1 and out == ""
    assert err.startswith("mdm: error: no alert channel is configured: set [alerts] email_to and email_from") and err.count("\n") == 1


def test_quiet_alerts_send_and_retry_print_nothing_when_all_went_well(mdm):
    configure(mdm, "")  # no channel: `send` said "0 sent, 0 to retry, 0 failed" as if all were told, and nothing of the fix
    assert mdm("alerts", "send")[:2] == (0, f"0 new alert(s), sent to nobody: {NO_CHANNEL}\n")
    assert mdm("-q", "alerts", "send") == (0, "", "")
    assert mdm("-q", "alerts", "retry") == (0, "", "")


def test_alerts_test_with_every_channel_down(mdm, closed_port):
    configure(mdm, f'[alerts]\nemail_to = ["it@school.example"]\nemail_from = "mdm@school.example"\nsmtp_host = "127.0.0.1"\nsmtp_port = {closed_port}\n')
    assert mdm("db", "upgrade")[0] == 0  # `alerts test` refuses a database file that does not exist
    code, out, err = mdm("alerts", "test")
    assert code == 1 and out == "" and "connection refused" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "text, message",
    [
        (
            'webhooks = { slack = "https://hooks.slack.com/services/T0/B0/SECRET" }',
            '[alerts] webhooks.slack must be a secret reference like { env = "VAR" } or { file = "path" }, never the secret itself',
        ),
        ('smtp_password = "hunter2-secret"', "[alerts] smtp_password must be a secret reference"),
        ('email_to = ["it@school.example"]', "[alerts] email_from must be the sender's address"),
        ('email_to = ["not an address"]\nemail_from = "mdm@school.example"', "[alerts] email_to: 'not an address' is not an e-mail address"),
        ('smtp_security = "tls"', "[alerts] smtp_security must be one of starttls, ssl, none, got 'tls'"),
        ('low_licenses = "ten percent"', "[alerts] low_licenses must be a count like 5 or a percentage like \"10%\", got 'ten percent'"),
        ("low_licenses = -1", "[alerts] low_licenses must be 0 or more, got -1"),
        (
            "low_licenses_margin = -2",
            "[alerts] low_licenses_margin must be 0 or more (licenses above the threshold before a low asset is back to normal; "
            "0: at the threshold itself), got -2",
        ),
        ('low_licenses_margin = "10%"', "[alerts] low_licenses_margin must be an integer, got a string"),
        ('low_licenses_per_asset = { "app" = 3 }', "[alerts.low_licenses_per_asset] key 'app' must be an adamId"),
        ('low_licenses_per_asset = { "1029705796:" = 3 }', "[alerts.low_licenses_per_asset] key '1029705796:' must be an adamId, or adamId:pricingParam"),
        ("sync_failures = 0", "[alerts] sync_failures must be at least 1, got 0"),
        ('smtp_username = "mdm"\nsmtp_password = { env = "X" }\nretry_delay = nan', "[alerts] retry_delay must be a finite number, got nan"),
        ('colour = "red"', "[alerts] unknown key 'colour'"),
        (
            "retry_delay = 7200\nretry_max_delay = 600",
            "[alerts] retry_delay (7200) is larger than retry_max_delay (600), so every retry would wait retry_max_delay: "
            "lower retry_delay or raise retry_max_delay",
        ),
    ],
)
def test_bad_settings_are_one_line_errors(mdm, text, message):
    configure(mdm, f"[alerts]\n{text}\n")
    code, out, err = mdm("alerts", "list")
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1
    assert "mdm.toml: [alerts" in err, "the file is named, as for every setting"
    assert "hunter2-secret" not in err and "SECRET" not in err


def test_secrets_never_appear_in_output_logs_or_the_database(
    alerts_host, webhook_server, smtp_server, certificate, mdm, project_dir, caplog, monkeypatch, simulator
):
    hook = webhook_server()
    hook.default = 500
    hook.body = f"echo {hook.url} {SMTP_PASSWORD}".encode()
    smtp = smtp_server("starttls", login=True)
    env = {"SMTP_PASSWORD": SMTP_PASSWORD, "OPS_URL": hook.url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = (
        smtp.config(ca_file=certificate[0], smtp_username=f'"{SMTP_USER}"', smtp_password='{ env = "SMTP_PASSWORD" }')
        + 'sync_failures = 1\nlow_licenses = 0\nwebhooks = { ops = { env = "OPS_URL" } }\n'
    )
    caplog.set_level(logging.DEBUG)
    host = alerts_host(config, environ=env)
    simulator.faults.add("server_error", endpoint="client/config", count=1, status=503)
    assert sync(host)["status"] == "error"
    outputs = {}
    for args in (("alerts", "send"), ("alerts", "list"), ("alerts", "list", "--json"), ("alerts", "test"), ("jobs",), ("plugins",)):
        outputs[args] = mdm("-vv", *args)
    assert outputs[("alerts", "send")][:2] == (1, "0 new alert(s); 1 sent, 1 to retry, 0 failed\n")
    [listed] = json.loads(outputs[("alerts", "list", "--json")][1])
    assert {d["channel"]: d["status"] for d in listed["deliveries"]} == {"email": "sent", "webhook:ops": "pending"}
    assert "answered HTTP 500: echo *** ***" in outputs[("alerts", "list")][1]
    assert outputs[("alerts", "test")][0] == 1
    seen = "\n".join(out + err for _, out, err in outputs.values()) + caplog.text
    seen += "".join(m.as_string() for m in smtp.mailbox.messages) + json.dumps([r["json"] for r in hook.requests])
    database = b"".join(p.read_bytes() for p in (project_dir / "var").glob("mdm.sqlite3*"))
    for secret in (SMTP_PASSWORD, WEBHOOK_SECRET, hook.url, "B0SECRET"):
        assert secret not in seen
        assert secret.encode() not in database


def test_the_plugin_registers_its_jobs_and_runs_them(alerts_host, webhook_server, mdm):
    hook = webhook_server()
    host = alerts_host(
        'sync_failures = 1\nlow_licenses = 0\ndeliver_interval = 15\ncheck_interval = 7200\nwebhooks = { ops = { env = "OPS_URL" } }\n',
        environ={"OPS_URL": hook.url},
    )
    jobs = host.build_scheduler(inline=True).jobs
    assert jobs["alerts.deliver"].seconds == 15 and jobs["alerts.check"].seconds == 7200
    assert jobs["alerts.deliver"].plugin == jobs["alerts.check"].plugin == "alerts"
    host.events.dispatch(
        Event(
            name="vpp_sync_finished",
            payload={"account": "school", "trigger": "schedule", "mode": "full", "status": "error", "error_type": "VppServerError", "error": "boom"},
        )
    )
    jobs["alerts.check"].func()
    jobs["alerts.deliver"].func()
    assert len(hook.requests) == 1
    code, out, _ = mdm("jobs")
    assert code == 0 and "alerts.deliver" in out and "alerts.check" in out

    hook.default = 503  # a run where a channel fails is a failed run of the job, saying where to look
    host.events.dispatch(
        Event(
            name="vpp_sync_finished",
            payload={"account": "other", "trigger": "schedule", "mode": "full", "status": "error", "error_type": "VppServerError", "error": "boom"},
        )
    )
    with pytest.raises(MdmError, match=r"^1 alert delivery\(ies\) failed \(0 sent\): see `mdm alerts list --status pending`"):
        jobs["alerts.deliver"].func()


def test_everything_else_works_with_the_plugin_disabled(make_host, simulator, project_dir, mdm, monkeypatch):
    from sqlalchemy import inspect

    from plugins.vpp.accounts import add_account

    config = '[alerts]\nemail_to = ["it@school.example"]\nemail_from = "mdm@school.example"\nlow_licenses = 1000\n'
    host = make_host(config=config, environ={"MDM_DISABLED_PLUGINS": "alerts"})
    assert "alerts" not in {p.name for p in host.plugins}
    token_file = simulator.write_token(project_dir / "school.vpptoken")
    add_account(host, "school", str(token_file), service_url=simulator.base_url)
    assert sync(host)["status"] == "ok"
    assert host.build_scheduler(inline=True).jobs.keys().isdisjoint({"alerts.deliver", "alerts.check"})
    assert not [t for t in inspect(host.db.engine).get_table_names() if t.startswith("alerts_")]
    monkeypatch.setenv("MDM_DISABLED_PLUGINS", "alerts")
    code, out, err = mdm("apps", "list")
    assert code == 0 and "published" in out
    code, out, err = mdm("alerts", "list")
    assert code == 2 and "invalid choice: 'alerts'" in err
    code, out, err = mdm("vpp", "sync", "school")
    assert code == 0, err


def test_other_subscribers_run_when_the_plugin_fails(alerts_host, simulator, monkeypatch):
    """A broken alerts plugin (here: its queue cannot be written) is one recorded subscriber failure:
    the sync and the other plugins go on."""
    from sqlalchemy import select

    from mdm_core.models import SubscriberFailure
    from plugins.alerts import store

    host = alerts_host("low_licenses = 1000\n")

    def broken(*args, **kwargs):
        raise RuntimeError("alerts queue unavailable")

    monkeypatch.setattr(store, "on_event", broken)
    assert sync(host)["status"] == "ok"
    code = host.pm.hook.mdm_vpp_assets(host=host, account="school")
    assert code  # the mirror is there
    from plugins.mobile_apps.catalog import list_apps

    assert list_apps(host)  # mobile_apps published the apps from the same events
    with host.db.session() as session:
        failures = list(session.execute(select(col(SubscriberFailure.plugin), col(SubscriberFailure.error))).all())
    assert failures and {p for p, _ in failures} == {"alerts"}


def test_the_readme_configuration_example_is_valid(make_host):
    from pathlib import Path

    from plugins.alerts.settings import AlertsSettings, settings, thresholds

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Alerts") :]
    example = section[section.index("```toml\n") + 8 : section.index("```\n", section.index("```toml\n") + 8)]
    host = make_host(config=example)
    s = settings(host)
    assert s.port == 587 and s.smtp_password.env == "MDM_SMTP_PASSWORD" and set(s.webhooks) == {"slack", "teams"}
    limits = thresholds(s)
    assert str(limits.for_asset("1422705769", "STDQ")) == "5" and str(limits.for_asset("1029705796", "STDQ")) == "25%"
    assert str(limits.for_asset("1029705796", "PLUS")) == "10%"
    assert limits.margin == AlertsSettings().low_licenses_margin == 2  # the default, shown in the example as it is
