"""A scheduled job whose last run failed (``mdm jobs`` says ``failed: ...``) is alerted once by the
``alerts.check``, not again while it keeps failing (for the same cause or another: the alert says
so), and said to work again after a run that went
well; the accounts' sync jobs are the sync alert's (never a job alert too). SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdm_core.errors import MdmError
from mdm_core.host import Host
from mdm_core.jobs_cli import recorded_runs
from plugins.alerts.delivery import check, deliver_due

from .conftest import FAST_VPP, alerts, titles


class Flaky:
    """A job failing with ``error`` while it is set, fine otherwise."""

    def __init__(self) -> None:
        self.error: str | None = None

    def __call__(self) -> dict[str, int]:
        if self.error:
            raise MdmError(self.error)
        return {"done": 1}


def job_host(make_host: Callable[..., Host], database_url: str | None, alerts_config: str = "") -> tuple[Host, Any, Flaky]:
    """A host with the installed plugins and a scheduler running jobs inline, plus job ``demo.flaky``."""
    host = make_host(config=FAST_VPP + "\n[alerts]\n" + alerts_config, database_url=database_url)
    scheduler = host.build_scheduler(inline=True)
    flaky = Flaky()
    scheduler.add("demo.flaky", 3600, flaky, plugin="demo")
    return host, scheduler, flaky


def test_a_failing_job_is_alerted_once_then_works_again(make_host, database_url, smtp_server):
    smtp = smtp_server()
    host, scheduler, flaky = job_host(make_host, database_url, smtp.config())
    scheduler.run_now("demo.flaky")
    check(host)
    assert alerts(host) == []  # it went well: nothing to say

    flaky.error = "Apple's lookup is unreachable:\nconnection refused"
    scheduler.run_now("demo.flaky")
    assert check(host) == {"queued": 1}
    [failing] = alerts(host)
    assert failing["title"] == "Scheduled job 'demo.flaky' is failing"
    assert failing["severity"] == "critical" and failing["kind"] == "job"
    assert "failed: Apple's lookup is unreachable: connection refused." in failing["text"]  # on one line
    assert "`mdm jobs` shows the job's last result" in failing["action"] and "`mdm jobs run demo.flaky`" in failing["action"]
    assert deliver_due(host)["sent"] == 1
    [mail] = smtp.mailbox.messages
    assert mail["Subject"] == "[mdm] CRITICAL: Scheduled job 'demo.flaky' is failing"

    for _ in range(2):  # still failing, the same cause: read by the next checks, nothing new
        scheduler.run_now("demo.flaky")
        assert check(host) == {"queued": 0}
    check(host)  # no run since: nothing either
    flaky.error = "disk full"  # a new cause in the same streak: not alerted again (once per streak, as the alert says)
    scheduler.run_now("demo.flaky")
    assert check(host) == {"queued": 0} and len(alerts(host)) == 1
    assert "no other alert is sent for this job, even if it then fails for another reason" in failing["text"]
    assert "(its last result, after a fix, says whether it works)" in failing["text"]
    assert recorded_runs(host)["demo.flaky"].last_error == "disk full"  # what `mdm jobs` shows

    flaky.error = None
    scheduler.run_now("demo.flaky")
    check(host)
    assert titles(host)[1:] == ["Scheduled job 'demo.flaky' works again"]
    assert alerts(host)[1]["severity"] == "resolved"
    scheduler.run_now("demo.flaky")
    check(host)
    assert len(alerts(host)) == 2


def test_a_vpp_sync_job_failing_is_the_sync_alerts_not_a_job_alert(make_host, database_url, simulator, project_dir: Path):
    from plugins.vpp.testing import add_simulated_account

    host = make_host(config=FAST_VPP + "\n[alerts]\nsync_failures = 3\n", database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    scheduler = host.build_scheduler(inline=True)  # with the account's sync job
    flaky = Flaky()
    scheduler.add("demo.flaky", 3600, flaky, plugin="demo")
    flaky.error = "broken"
    simulator.faults.add("server_error", endpoint="client/config", count=10, status=503)
    scheduler.run_now("vpp.sync.school")
    scheduler.run_now("demo.flaky")
    runs = recorded_runs(host)
    assert runs["vpp.sync.school"].last_error and runs["demo.flaky"].last_error  # `mdm jobs`: both failed
    check(host)
    # the other job is alerted; the sync (1 failure of sync_failures = 3) is not yet, and never as a job
    assert titles(host) == ["Scheduled job 'demo.flaky' is failing"]


def test_job_failures_false_turns_the_alert_off(make_host, database_url):
    host, scheduler, flaky = job_host(make_host, database_url, "job_failures = false\n")
    flaky.error = "broken"
    scheduler.run_now("demo.flaky")
    check(host)
    assert alerts(host) == []
