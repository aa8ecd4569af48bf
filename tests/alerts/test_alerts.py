"""What is alerted, and when: token states, failing syncs, low licenses and failed installs,
each once per change of state (not at every sync), each saying what to do."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from sqlmodel import col

from mdm_core.events import Event
from mdm_core.inventory import add_device, remove_device
from mdm_core.testing import recorded_statements
from plugins.alerts.delivery import check, deliver_due
from plugins.alerts.models import AlertSubject
from plugins.vpp.simulator import Simulator

from ..conftest import database_param
from .conftest import FAST_VPP, alerts, sync, titles

SIM: dict[str, Any] = {"seed": 5, "assets": 6, "devices": 20, "users": 10, "page_size": 7, "async_delay": 0}


def test_token_states_are_alerted_once_each_and_sent(alerts_host, webhook_server, project_dir):
    from plugins.vpp.accounts import set_account

    hook = webhook_server()
    now = datetime.now(UTC)
    with Simulator(token_expires_at=now + timedelta(days=25, hours=1), **SIM) as sim:
        host = alerts_host('webhooks = { ops = { env = "OPS_URL" } }\n', environ={"OPS_URL": hook.url}, sim=sim)
        assert titles(host) == [f"VPP token of account 'school' expires in 26 days, on {now + timedelta(days=25, hours=1):%Y-%m-%d}"]
        [first] = alerts(host)
        # 26 days left: "renew the token within 30 days" said more time than there was
        assert first["severity"] == "warning" and first["action"] == "renew the token before it expires: mdm vpp account set school --token-file NEW.vpptoken"
        assert sync(host)["status"] == "ok" and sync(host)["status"] == "ok"
        assert len(alerts(host)) == 1  # syncs in the same state say nothing new

        sim.revoke_token()
        assert sync(host)["status"] == "error"
        assert sync(host)["status"] == "error"  # a manual retry: still revoked, no second alert
        sim.restore_token()
        sim._token.expires_at = now + timedelta(days=300)
        set_account(host, "school", token_file=str(sim.write_token(project_dir / "school.vpptoken")))
        assert titles(host)[1:] == ["VPP token of account 'school' was revoked", "VPP token of account 'school' is valid again"]
        revoked = alerts(host)[1]
        assert revoked["severity"] == "critical" and "download a new one, then mdm vpp account set school --token-file" in revoked["action"]
        assert alerts(host)[2]["severity"] == "resolved"

        assert deliver_due(host) == {"sent": 3, "retrying": 0, "failed": 0}
        assert [r["json"]["state"] for r in hook.requests] == ["expiring_30", "revoked", "valid"]
        assert deliver_due(host) == {"sent": 0, "retrying": 0, "failed": 0} and len(hook.requests) == 3


def test_taken_over_names_the_other_mdm(alerts_host):
    with Simulator(**SIM) as sim:
        host = alerts_host(sim=sim)
        sim.claim_by_other_mdm(name="RivalMDM", metadata="rival.example.com")
        assert sync(host)["status"] == "error"
        [alert] = alerts(host)
        assert alert["title"] == "Another MDM took over the location of account 'school': RivalMDM (rival.example.com)"
        assert "--take-over" in alert["action"]


def test_a_token_apple_rejects_is_alerted_once(alerts_host):
    with Simulator(**SIM) as sim:
        host = alerts_host(sim=sim)
        sim.faults.add("error_200", endpoint="client/config", error_number=9622)  # Apple no longer knows the token
        assert sync(host)["status"] == "error" and sync(host)["status"] == "error"
        [alert] = alerts(host)
        assert (alert["title"], alert["severity"], alert["state"]) == ("Apple rejects the VPP token of account 'school'", "critical", "invalid")
        assert "download a new one, then mdm vpp account set school --token-file" in alert["action"]


def test_expiry_is_noticed_without_any_sync(alerts_host):
    """A paused or idle account's token still approaches its expiry: the check job sees it."""
    real_now = datetime.now(UTC).replace(microsecond=0)
    expires = real_now + timedelta(days=60)
    with Simulator(token_expires_at=expires, **SIM) as sim:
        host = alerts_host(sim=sim)
        assert alerts(host) == []
        steps = [
            (timedelta(days=-31), None),
            (timedelta(days=-30, minutes=-1), None),  # from 30 days left, not before
            (timedelta(days=-30, minutes=1), "expires in 30 days"),  # 29 days 23:59 left: rounded up
            (timedelta(days=-29, hours=-12), None),
            (timedelta(days=-20), None),
            (timedelta(days=-13, hours=-12), "expires in 14 days"),
            (timedelta(days=-6, hours=-12), "expires in 7 days"),
            (timedelta(days=-6), None),
            (timedelta(days=-1, minutes=-1), None),
            (timedelta(days=-1, minutes=1), "expires in 1 day"),  # the last day's reminder
            (timedelta(hours=-1), None),
            (timedelta(hours=12), "expired on"),
        ]
        for offset, expected in steps:
            with freeze_time(expires + offset):
                before = len(alerts(host))
                check(host)
                check(host)  # twice: once per change of state
                new = alerts(host)[before:]
                if expected is None:
                    assert new == [], offset
                else:
                    [alert] = new
                    assert expected in alert["title"], (offset, alert["title"])
        assert [a["state"] for a in alerts(host)] == ["expiring_30", "expiring_14", "expiring_7", "expiring_1", "expired"]
        assert [a["severity"] for a in alerts(host)] == ["warning", "warning", "critical", "critical", "critical"]
        last_day = alerts(host)[3]
        assert last_day["title"] == f"VPP token of account 'school' expires in 1 day, on {expires:%Y-%m-%d}"
        assert last_day["action"] == "renew the token today: mdm vpp account set school --token-file NEW.vpptoken"


def test_a_token_with_a_day_left_is_told_once_as_its_last_day(alerts_host):
    """The VPP plugin's expiring_7 covers the last week; the alerts add the last day (told by the
    event of an account added then, or by the check): once, not again by the check."""
    expires = datetime.now(UTC) + timedelta(hours=20)
    with Simulator(token_expires_at=expires, **SIM) as sim:
        host = alerts_host(sim=sim)
        [alert] = alerts(host)
        assert (alert["state"], alert["severity"]) == ("expiring_1", "critical")
        assert alert["title"] == f"VPP token of account 'school' expires in 1 day, on {expires:%Y-%m-%d}"
        assert check(host) == {"queued": 0} and sync(host)["status"] == "ok" and len(alerts(host)) == 1


def test_sync_failing_n_times_in_a_row_and_recovering(alerts_host, simulator):
    host = alerts_host("sync_failures = 3\n")
    assert sync(host)["status"] == "ok"
    for _ in range(2):
        simulator.faults.add("server_error", endpoint="client/config", count=1, status=503)
        assert sync(host)["status"] == "error"
    assert sync(host)["status"] == "ok"  # two failures, then fine: nothing to say
    assert alerts(host) == []
    for _ in range(5):
        simulator.faults.add("server_error", endpoint="client/config", count=1, status=503)
        assert sync(host)["status"] == "error"
    [failing] = alerts(host)  # alerted at the third failure in a row, not again at the fourth and fifth
    assert failing["title"] == "Sync of VPP account 'school' failed 3 times in a row"
    assert "Last error: " in failing["text"] and "503" in failing["text"]
    assert "`mdm vpp sync school` tries again now" in failing["action"]
    assert failing["severity"] == "critical" and failing["fields"]["failures"] == 3
    assert sync(host)["status"] == "ok"
    assert titles(host)[1:] == ["Sync of VPP account 'school' works again"]
    assert "after 5 failed attempt(s)" in alerts(host)[1]["text"]
    assert sync(host)["status"] == "ok" and len(alerts(host)) == 2


def test_a_redelivered_event_is_counted_once(alerts_host):
    host = alerts_host("sync_failures = 2\n", account=False)
    failed = {
        "account": "school",
        "trigger": "schedule",
        "mode": "incremental",
        "status": "error",
        "error_type": "VppServerError",
        "error": "Apple answered 503",
    }
    first = Event(name="vpp_sync_finished", payload=failed)
    host.events.dispatch(first)
    host.events.dispatch(first)  # the same event again, as after a crash
    assert alerts(host) == []
    host.events.dispatch(Event(name="vpp_sync_finished", payload=failed))
    assert titles(host) == ["Sync of VPP account 'school' failed 2 times in a row"]


def test_a_per_asset_threshold_with_a_lower_case_pricing_param_applies(alerts_host, simulator):
    """`"ADAMID:stdq" = 3` was accepted and matched no asset (Apple's pricingParam is STDQ): the
    asset fell to its last license with no alert, the default threshold (0: never) applying."""
    scarce, _ = simulator.purchase(count=4)
    host = alerts_host(f'low_licenses = 0\n\n[alerts.low_licenses_per_asset]\n"{scarce}:stdq" = 3\n')
    for serial in ("PORTAL000001", "PORTAL000002"):
        simulator.assign_in_portal(scarce, serial_number=serial)
    assert sync(host)["status"] == "ok"
    assert titles(host) == [f"Only 2 of 4 licenses left of adamId {scarce} (STDQ, App) in account 'school'"]


def test_licenses_below_a_count_or_a_percentage(alerts_host, simulator):
    scarce, _ = simulator.purchase(count=4)
    big, _ = simulator.purchase(count=20)
    host = alerts_host(f'low_licenses = 2\nlow_licenses_margin = 0\n\n[alerts.low_licenses_per_asset]\n{big} = "50%"\n')  # the bare threshold
    assert sync(host)["status"] == "ok"
    assert alerts(host) == []  # 4 of 4 and 20 of 20 available

    for serial in ("PORTAL000001", "PORTAL000002", "PORTAL000003"):
        simulator.assign_in_portal(scarce, serial_number=serial)
    assert sync(host)["status"] == "ok"
    assert sync(host)["status"] == "ok"
    [low] = alerts(host)
    assert low["title"] == f"Only 1 of 4 licenses left of adamId {scarce} (STDQ, App) in account 'school'"
    assert low["severity"] == "warning" and f"mdm apps reclaim {scarce} --unused" in low["action"]

    simulator.assign_in_portal(scarce, serial_number="PORTAL000004")
    for n in range(11):
        simulator.assign_in_portal(big, serial_number=f"PORTAL1000{n:02d}")
    assert sync(host)["status"] == "ok"
    assert set(titles(host)[1:]) == {
        f"No licenses left of adamId {scarce} (STDQ, App) in account 'school'",
        f"Only 9 of 20 licenses left of adamId {big} (STDQ, App) in account 'school'",
    }
    none = next(a for a in alerts(host) if a["state"] == "none")
    assert none["severity"] == "critical" and "9709" in none["text"]

    for serial in ("PORTAL000001", "PORTAL000002"):
        simulator.remove_in_portal(scarce, serial_number=serial)
    assert sync(host)["status"] == "ok"
    assert titles(host)[3:] == [f"Licenses of adamId {scarce} (STDQ, App) in account 'school' are available again"]
    assert alerts(host)[3]["severity"] == "resolved" and "2 of 4 licenses are available (threshold 2)" in alerts(host)[3]["text"]

    assert check(host) == {"queued": 0}  # the check job agrees with what the events said
    assert len(alerts(host)) == 4


def test_licenses_taken_and_freed_by_this_host_alert_at_once(alerts_host, simulator):
    """A license granted or taken back by this host's own request (an install, a reclaim; or
    Apple's notification of it) moves the counts as a sync would: the alert comes at once, not
    at the next sync or check, which then have nothing new to say."""
    scarce, pricing = simulator.purchase(count=2)
    host = alerts_host("low_licenses = 2\nlow_licenses_margin = 0\n")  # low below 2 available, back to normal at 2
    assert sync(host)["status"] == "ok" and alerts(host) == []
    hook = host.pm.hook
    result = hook.mdm_vpp_associate(
        host=host, account="school", adam_id=scarce, pricing_param=pricing, serial_numbers=["TAKEN0000001", "TAKEN0000002"], client_user_ids=[], wait=30
    )
    assert result["status"] == "COMPLETE"
    assert titles(host) == [f"No licenses left of adamId {scarce} (STDQ, App) in account 'school'"]
    result = hook.mdm_vpp_disassociate(
        host=host, account="school", adam_id=scarce, pricing_param=pricing, serial_numbers=["TAKEN0000001"], client_user_ids=[], wait=30
    )
    assert result["status"] == "COMPLETE"
    assert titles(host)[1:] == [f"Only 1 of 2 licenses left of adamId {scarce} (STDQ, App) in account 'school'"]
    assert sync(host)["status"] == "ok" and check(host) == {"queued": 0} and len(alerts(host)) == 2


def test_a_threshold_of_zero_never_alerts(alerts_host, simulator):
    scarce, _ = simulator.purchase(count=1)
    host = alerts_host("low_licenses = 0\n")
    simulator.assign_in_portal(scarce, serial_number="PORTAL000001")
    assert sync(host)["status"] == "ok"
    assert check(host) == {"queued": 0} and alerts(host) == []


def test_a_changed_threshold_is_applied_by_the_check(alerts_host, simulator, make_host):
    scarce, _ = simulator.purchase(count=10)
    host = alerts_host("low_licenses = 2\nlow_licenses_per_asset = {}\n")
    for n in range(6):
        simulator.assign_in_portal(scarce, serial_number=f"PORTAL0000{n:02d}")
    assert sync(host)["status"] == "ok"
    assert alerts(host) == []
    stricter = make_host(config=host.config.path.read_text().replace("low_licenses_per_asset = {}", f'low_licenses_per_asset = {{ {scarce} = "50%" }}'))
    assert check(stricter) == {"queued": 1}
    assert titles(stricter) == [f"Only 4 of 10 licenses left of adamId {scarce} (STDQ, App) in account 'school'"]


def test_removed_assets_and_accounts_are_forgotten(alerts_host, simulator):
    from plugins.vpp.accounts import remove_account

    scarce, _ = simulator.purchase(count=1)
    host = alerts_host("low_licenses = 1\n")
    simulator.assign_in_portal(scarce, serial_number="PORTAL000001")
    assert sync(host)["status"] == "ok"
    assert titles(host) == [f"No licenses left of adamId {scarce} (STDQ, App) in account 'school'"]
    remove_account(host, "school")
    assert check(host) == {"queued": 0}
    with host.db.session() as session:
        assert list(session.execute(select(AlertSubject)).scalars()) == []


def test_failed_installs_of_one_asset_make_one_alert(alerts_host, webhook_server, mdm):
    hook = webhook_server()
    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=7, async_delay=60) as slow:
        host = alerts_host('webhooks = { ops = { env = "OPS_URL" } }\nlow_licenses = 0\n', environ={"OPS_URL": hook.url}, sim=slow)
        adam, _ = slow.purchase(count=2)
        assert sync(host)["status"] == "ok"
        serials = [s for s in slow.state.device_serials()][:3]
        for serial in serials:
            add_device(host, serial, "iOS")
        code, out, err = mdm("apps", "install", adam, "--device", serials[0], "--device", serials[1], "--wait", "0")
        assert code == 0 and out.count(": pending") == 2, err
        slow.assign_in_portal(adam, serial_number="ELSEWHERE001")
        slow.assign_in_portal(adam, serial_number="ELSEWHERE002")  # every license went elsewhere meanwhile
        slow.state.process_due(now=time.monotonic() + 120)
        slow.state.async_delay = 0
        assert host.build_scheduler(inline=True).jobs["mobile_apps.installs"].func()["failed"] == 2  # the job asks Apple again
        [alert] = alerts(host)
        assert alert["title"] == f"Installs of adamId {adam} (STDQ) from account 'school' failed for 2 devices or users"
        assert f"device {serials[0]}: Apple refused the license" in alert["text"] and f"device {serials[1]}: " in alert["text"]
        assert "buy more" in alert["action"] and f"mdm apps reclaim {adam} --unused" in alert["action"]
        assert deliver_due(host)["sent"] == 1 and len(hook.requests) == 1

        # a later failure, once that alert went out, is a new alert
        later = {
            "id": 99,
            "account": "school",
            "adamId": adam,
            "pricingParam": "STDQ",
            "license": "device",
            "serialNumber": serials[2],
            "clientUserId": None,
            "source": "request",
            "error": "Apple refused the license",
            "errorNumber": 9709,
        }
        host.events.dispatch(Event(name="mobile_apps_install_failed", payload=later))
        assert titles(host)[1:] == [f"Install of adamId {adam} (STDQ) from account 'school' failed for device {serials[2]}"]


def test_refused_reclaims_of_one_asset_make_one_alert(alerts_host, simulator, mdm):
    """A reclaim Apple refused left the license with its holder, and only `mdm apps reclaims`
    said so: nobody was told, as they are of a failed install. Refusals of one app close
    together make one alert naming each device; a reclaim Apple accepted alerts nothing."""
    host = alerts_host("low_licenses = 0\n")
    assert sync(host)["status"] == "ok"
    snapshot = simulator.snapshot()
    devices = set(simulator.state.device_serials())
    adam, pricing = next(
        key
        for key, asset in snapshot["assets"].items()
        if asset["revocable"] and asset["deviceAssignable"] and len({t for a, p, k, t in snapshot["assignments"] if (a, p) == key and t in devices}) >= 3
    )
    serials = sorted({t for a, p, k, t in snapshot["assignments"] if (a, p) == (adam, pricing) and t in devices})[:3]
    for serial in serials:
        add_device(host, serial, "iOS")
    for serial in serials[:2]:
        simulator.fail_next_event("DISASSOCIATE", 9706)
        assert mdm("apps", "reclaim", adam, "--device", serial)[0] == 1
    assert mdm("apps", "reclaim", adam, "--device", serials[2])[0] == 0  # taken back: no alert
    [alert] = [a for a in alerts(host) if a["kind"] == "reclaim"]
    assert alert["title"].startswith("Reclaims of ") and f"adamId {adam}" in alert["title"]
    assert alert["title"].endswith("from account 'school' refused for 2 devices or users") and alert["severity"] == "warning"
    assert alert["text"].startswith("Apple kept these licenses assigned:") and all(f"device {s}: " in alert["text"] for s in serials[:2])
    assert f"device {serials[2]}" not in alert["text"]
    assert alert["action"].startswith(f"See `mdm apps reclaims`; fix what Apple said, then run `mdm apps reclaim {adam}` again")


def test_a_refused_revoke_of_licenses_the_mirror_does_not_know_makes_an_alert(alerts_host, simulator):
    """Removed devices hold a license assigned in Apple's portal since the last sync, and Apple
    refuses their revokes: no license of the mirror rode on them, so no reclaim alert told it
    (only `mdm apps reclaims` listed them). Refused revokes close together make one alert naming
    each device; a refused revoke of licenses the mirror held is told by their own alert alone."""
    host = alerts_host("low_licenses = 0\n")
    assert sync(host)["status"] == "ok"
    snapshot = simulator.snapshot()
    held = {t for _, _, _, t in snapshot["assignments"]}
    free = [s for s in sorted(simulator.state.device_serials()) if s not in held][:2]
    adam, pricing = next(key for key, asset in snapshot["assets"].items() if asset["revocable"] and asset["deviceAssignable"])
    for serial in free:
        assert simulator.assign_in_portal(adam, pricing, serial_number=serial)
        add_device(host, serial, "iOS")
        simulator.fail_next_event("REVOKE", 9602)
        remove_device(host, serial)
    [alert] = [a for a in alerts(host) if a["kind"] == "reclaim"]
    assert alert["title"] == "Revokes of the licenses of removed devices or users from account 'school' refused for 2 devices or users"
    assert alert["text"].startswith("Apple kept the licenses of these removed devices or users (none of them mirrored yet")
    assert all(f"device {s}: Invalid argument (Apple error 9602)" in alert["text"] for s in free)
    assert alert["action"].startswith(
        "See `mdm apps reclaims`; fix what Apple said: once a sync shows the licenses they hold, `mdm apps reclaim --all --unused` takes them back"
    )
    holder = sorted(t for a, p, _, t in snapshot["assignments"] if snapshot["assets"][(a, p)]["revocable"] and t in simulator.state.device_serials())[0]
    add_device(host, holder, "iOS")
    simulator.fail_next_event("REVOKE", 9602)
    remove_device(host, holder)
    told = [a for a in alerts(host) if a["kind"] == "reclaim" and f"device {holder}" in a["text"]]
    assert told and all(a["title"].startswith("Reclaim") for a in told)  # its licenses' alerts, no revoke alert
    assert [a["id"] for a in alerts(host) if a["title"].startswith("Revoke")] == [alert["id"]]


def test_many_assets_changing_at_once_make_one_digest(alerts_host, simulator):
    adams = [simulator.purchase(count=1)[0] for _ in range(5)]
    for i, adam in enumerate(adams):
        simulator.assign_in_portal(adam, serial_number=f"PORTAL00000{i}")
    host = alerts_host("low_licenses = 1\n")
    assert sync(host)["status"] == "ok"  # the first sync finds five assets with no license left
    [digest] = alerts(host)
    assert digest["title"] == "Licenses of 5 assets in account 'school' changed: 5 with no license left"
    assert digest["severity"] == "critical" and all(f"adamId {adam} " in digest["text"] for adam in adams)
    assert "mdm apps reclaim ADAMID --unused" in digest["action"] and len(digest["fields"]["assets"]) == 5
    assert sync(host)["status"] == "ok" and check(host) == {"queued": 0}  # each asset's state is kept
    simulator.remove_in_portal(adams[0], serial_number="PORTAL000000")
    assert sync(host)["status"] == "ok"
    assert titles(host)[1:] == [f"Licenses of adamId {adams[0]} (STDQ, App) in account 'school' are available again"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_alerts_of_one_event_are_queued_by_one_insert(make_host, simulator, webhook_server, project_dir, request, database):
    """An assets event that takes three assets below their threshold (an alert each: a digest
    takes more) queues its alerts with one statement on PostgreSQL (was one each, a round trip
    each), each with its delivery to each channel; all are sent."""
    from plugins.alerts.models import AlertDelivery, AlertMessage
    from plugins.vpp.testing import add_simulated_account

    hook = webhook_server()
    adams = [simulator.purchase(count=1)[0] for _ in range(3)]
    for i, adam in enumerate(adams):
        simulator.assign_in_portal(adam, serial_number=f"PORTAL00000{i}")
    config = FAST_VPP + '\n[alerts]\nlow_licenses = 1\nwebhooks = { ops = { env = "OPS_URL" }, audit = { env = "OPS_URL" } }\n'
    host = make_host(config=config, environ={"OPS_URL": hook.url}, database_url=database_param(request, project_dir, database))
    add_simulated_account(host, simulator, project_dir)
    with recorded_statements(host.db.engine) as statements:
        assert sync(host)["status"] == "ok"
    inserts = [s for s in statements if s.sql.upper().startswith("INSERT INTO ALERTS_MESSAGE")]
    assert len(inserts) == (1 if database == "postgresql" else 3)  # SQLite's driver takes them one by one, in process
    assert sorted(titles(host)) == sorted(f"No licenses left of adamId {adam} (STDQ, App) in account 'school'" for adam in adams)
    with host.db.session() as session:
        ids = list(session.execute(select(col(AlertMessage.id)).order_by(col(AlertMessage.id))).scalars())
        deliveries = sorted(session.execute(select(col(AlertDelivery.message_id), col(AlertDelivery.channel))).all())
    assert deliveries == sorted((i, channel) for i in ids for channel in ("webhook:audit", "webhook:ops"))
    assert deliver_due(host)["sent"] == 6 and len(hook.requests) == 6


def test_an_assets_event_reads_and_locks_the_states_of_its_own_assets_only(alerts_host, simulator):
    """An incremental sync's ``vpp_assets_changed`` names the assets whose counts moved: only
    their license states are read (and locked), not every asset's of the account (was: all of
    them, ~380 rows loaded for each of the benchmark's two events), as plain rows (no ORM
    object each); the alerts are the same."""
    from sqlalchemy import event

    adams = [simulator.purchase(count=1)[0] for _ in range(5)]
    for i, adam in enumerate(adams):
        simulator.assign_in_portal(adam, serial_number=f"PORTAL00000{i}")
    host = alerts_host("low_licenses = 1\n")
    assert sync(host)["status"] == "ok"
    simulator.remove_in_portal(adams[0], serial_number="PORTAL000000")
    reads: list[Any] = []

    def look(_conn, _cursor, statement, parameters, *_args):
        values = parameters.values() if isinstance(parameters, dict) else parameters or ()
        # the assets' states (not the names' question: the account's recorded ones)
        keyed = any(str(k).startswith("licenses:") for v in values for k in (v if isinstance(v, list) else [v]))
        if statement.lstrip().upper().startswith("SELECT") and "FROM alerts_subject" in statement and "alerts_subject.kind =" in statement and keyed:
            reads.append(parameters)

    loaded: list[str] = []

    def objects(target, _context):
        loaded.append(target.subject)

    event.listen(host.db.engine, "before_cursor_execute", look)
    event.listen(AlertSubject, "load", objects)
    try:
        assert sync(host)["status"] == "ok"
    finally:
        event.remove(host.db.engine, "before_cursor_execute", look)
        event.remove(AlertSubject, "load", objects)
    assert not [s for s in loaded if s.startswith("licenses:")]  # read as plain rows, written by Core statements
    assert titles(host)[1:] == [f"Licenses of adamId {adams[0]} (STDQ, App) in account 'school' are available again"]
    [bound] = reads
    named = {str(v) for v in (bound.values() if isinstance(bound, dict) else bound) if str(v).startswith("licenses:")}
    assert named == {f"licenses:school:{adams[0]}:STDQ"}
    with host.db.session() as session:
        kept = set(session.execute(select(col(AlertSubject.subject)).where(col(AlertSubject.kind) == "licenses")).scalars())
    assert kept == {f"licenses:school:{adam}:STDQ" for adam in adams[1:]}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_assets_event_computes_each_asset_s_level_once(make_host, simulator, project_dir, request, database, monkeypatch):
    """An assets event's license levels are computed once each, before the transaction (to ask
    the names of the apps that may alert), and taken as they are in it when the state it locks
    is the one they were computed from (was: every asset's level computed again in it); the
    alerts are the same."""
    from plugins.alerts import rules
    from plugins.vpp.testing import add_simulated_account

    adams = [simulator.purchase(count=2)[0] for _ in range(3)]
    host = make_host(config=FAST_VPP + "\n[alerts]\nlow_licenses = 1\n", database_url=database_param(request, project_dir, database))
    add_simulated_account(host, simulator, project_dir)
    assert sync(host)["status"] == "ok" and alerts(host) == []
    simulator.assign_in_portal(adams[0], serial_number="PORTAL000000")
    simulator.assign_in_portal(adams[0], serial_number="PORTAL000001")
    simulator.assign_in_portal(adams[1], serial_number="PORTAL000002")
    computed: list[str] = []
    level = rules.license_level

    def counted(asset: Any, *args: Any, **kwargs: Any) -> str:
        computed.append(str(asset.get("adamId")))
        return level(asset, *args, **kwargs)

    monkeypatch.setattr(rules, "license_level", counted)
    assert sync(host)["status"] == "ok"
    assert sorted(computed) == sorted(adams[:2])  # the two assets whose counts moved, once each
    assert titles(host) == [f"No licenses left of adamId {adams[0]} (STDQ, App) in account 'school'"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_level_found_before_its_state_changed_is_computed_again(make_host, project_dir, request, database):
    """A level found before the alert's transaction from a state that changed meanwhile (another
    delivery alerted it) is computed again from the state the transaction locks: the change is
    not alerted twice."""
    from plugins.alerts.names import license_levels
    from plugins.alerts.store import license_counts

    host = make_host(config="[alerts]\nlow_licenses = 1\n", database_url=database_param(request, project_dir, database))
    from plugins.vpp.payloads import Asset

    asset = Asset(
        account="school",
        adamId="361309726",
        pricingParam="STDQ",
        productType="App",
        assignedCount=2,
        availableCount=0,
        retiredCount=0,
        totalCount=2,
        deviceAssignable=True,
        revocable=True,
        supportedPlatforms=["iOS"],
    )
    levels = license_levels(host, {"school": [asset]})
    assert levels.found == {"licenses:school:361309726:STDQ": ("ok", "none")}
    first = host.db.run_write(lambda session: license_counts(host, session, "school", [asset]))  # meanwhile: alerted, state "none"
    assert [a.title for a in first] == ["No licenses left of adamId 361309726 (STDQ, App) in account 'school'"]
    assert host.db.run_write(lambda session: license_counts(host, session, "school", [asset], levels=levels)) == []
    asset = Asset(**{**asset, "availableCount": 2, "assignedCount": 0})
    levels = license_levels(host, {"school": [asset]})  # "none" to "ok": taken as found
    [back] = host.db.run_write(lambda session: license_counts(host, session, "school", [asset], levels=levels))
    assert back.title == "Licenses of adamId 361309726 (STDQ, App) in account 'school' are available again"


def test_a_removed_device_freeing_many_assets_makes_one_digest_not_a_mail_each(alerts_host, simulator, smtp_server):
    """A device removed with licenses of many assets: Apple's revoke changes each asset's counts
    in an event of its own, and each asset back above its threshold used to be a mail of its
    own (the digest only grouped the assets of one event)."""
    smtp = smtp_server()
    storm_makes_one_digest(lambda alerts_config: alerts_host(alerts_config), simulator, smtp)


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_an_assets_event_folds_its_alerts_with_none_already_sent(make_host, simulator, smtp_server, project_dir, request, database):
    """A sync whose event changes four assets' levels (a digest) minutes after a digest that was
    mailed: the mailed one stays as it was and the new digest tells the four; the recent alerts
    are locked by their ids and only unsent ones read (was: the mailed digest read with its
    fields, then its deliveries, then two DELETEs that deleted nothing)."""
    from plugins.vpp.testing import add_simulated_account

    smtp = smtp_server()
    serial = "FOLD00000001"
    adams = [simulator.purchase(count=2)[0] for _ in range(5)]
    for adam in adams:
        simulator.assign_in_portal(adam, serial_number=serial)
    host = make_host(config=FAST_VPP + "\n[alerts]\n" + smtp.config() + "low_licenses = 2\n", database_url=database_param(request, project_dir, database))
    add_simulated_account(host, simulator, project_dir)
    assert sync(host)["status"] == "ok" and deliver_due(host)["sent"] == 1  # the five low assets' digest, mailed
    for adam in adams[:4]:
        simulator.remove_in_portal(adam, serial_number=serial)
    with recorded_statements(host.db.engine) as statements:
        assert sync(host)["status"] == "ok"
    alerts_sql = [s.sql for s in statements if "alerts_message" in s.sql or "alerts_delivery" in s.sql]
    assert not [s for s in alerts_sql if s.upper().startswith("DELETE")]
    assert not [s for s in alerts_sql if s.upper().startswith("SELECT") and "FROM alerts_delivery" in s.split(" WHERE ")[0]]
    assert titles(host) == [
        "Licenses of 5 assets in account 'school' changed: 5 low",
        "Licenses of 4 assets in account 'school' changed: 4 available again",
    ]
    assert deliver_due(host)["sent"] == 1 and len(smtp.mailbox.messages) == 2


def five_low_assets_on_one_device(make: Any, simulator: Any, smtp: Any, serial: str) -> tuple[Any, list[str]]:
    """Five assets of two licenses, one of each held by the device ``serial`` (enrolled): the host
    (``make``, alerting by ``smtp``) synced and its digest of the five low assets mailed; and
    their adamIds."""
    adams = [simulator.purchase(count=2)[0] for _ in range(5)]
    for adam in adams:
        simulator.assign_in_portal(adam, serial_number=serial)
    host = make(smtp.config() + "low_licenses = 2\n")
    assert sync(host)["status"] == "ok"  # five assets with 1 of 2 licenses left: one digest
    assert deliver_due(host)["sent"] == 1 and len(smtp.mailbox.messages) == 1
    add_device(host, serial, "iOS")
    return host, adams


def storm_makes_one_digest(make: Any, simulator: Any, smtp: Any) -> None:
    """Five assets low, then a device holding a license of each removed: one digest mail each time."""
    from mdm_core.inventory import remove_device

    serial = "STORM0000001"
    host, adams = five_low_assets_on_one_device(make, simulator, smtp, serial)
    remove_device(host, serial)  # the revoke frees a license of each
    assert all(serial not in {t[3] for t in simulator.snapshot()["assignments"] if t[0] == adam} for adam in adams)
    [digest] = alerts(host)[1:]
    assert digest["title"] == "Licenses of 5 assets in account 'school' changed: 5 available again"
    assert all(f"adamId {adam} " in digest["text"] for adam in adams) and len(digest["fields"]["assets"]) == 5
    assert deliver_due(host)["sent"] == 1
    assert len(smtp.mailbox.messages) == 2  # one mail, not five


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def db_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    return database_param(request, project_dir)


def test_what_was_alerted_to_no_channel_is_told_once_a_channel_is_set(make_host, webhook_server, project_dir, db_url):
    """The alerts plugin records states with no channel configured ("(no channel configured)" in
    `mdm alerts list`, "sent to nobody" on the Alerts page). An admin then setting up e-mail or a
    webhook was never told of a token already expiring (or revoked), licenses already low or a
    sync already failing: each state was known, so the check said nothing until it changed. The
    check, with a channel configured, now tells each state still true, as it is now, once."""
    from plugins.vpp.testing import add_simulated_account

    hook = webhook_server()
    expires = datetime.now(UTC) + timedelta(days=19, hours=12)
    with Simulator(token_expires_at=expires, **SIM) as sim:
        scarce, _ = sim.purchase(count=4)
        for n in range(3):
            sim.assign_in_portal(scarce, serial_number=f"PORTAL0000{n:02d}")
        config = FAST_VPP + "\n[alerts]\nlow_licenses = 0\nsync_failures = 1\n" + f"low_licenses_per_asset = {{ {scarce} = 2 }}\n"
        silent = make_host(config=config, database_url=db_url)
        add_simulated_account(silent, sim, project_dir)
        assert sync(silent)["status"] == "ok"
        sim.faults.add("server_error", endpoint="client/config", count=1, status=503)
        assert sync(silent)["status"] == "error"
        assert check(silent) == {"queued": 0}
        assert [a["state"] for a in alerts(silent)] == ["expiring_30", "low", "failing"]
        assert all(a["deliveries"] == [] for a in alerts(silent))  # told to nobody

        told = make_host(config=config + 'webhooks = { ops = { env = "OPS_URL" } }\n', environ={"OPS_URL": hook.url}, database_url=db_url)
        assert check(told) == {"queued": 2}
        assert titles(told)[3:] == [
            f"VPP token of account 'school' expires in 20 days, on {expires:%Y-%m-%d}",
            f"Only 1 of 4 licenses left of adamId {scarce} (STDQ, App) in account 'school'",
        ]
        assert deliver_due(told)["sent"] == 2 and [r["json"]["state"] for r in hook.requests] == ["expiring_30", "low"]
        assert check(told) == {"queued": 0} and check(told) == {"queued": 0}  # told once
        sim.faults.add("server_error", endpoint="client/config", count=1, status=503)
        assert sync(told)["status"] == "error"  # still failing: told at this failure
        assert titles(told)[5:] == ["Sync of VPP account 'school' failed 2 times in a row"]
        assert sync(told)["status"] == "ok" and titles(told)[6:] == ["Sync of VPP account 'school' works again"]
        assert check(told) == {"queued": 0} and deliver_due(told)["sent"] == 2 and len(hook.requests) == 4


def license_alerts_are_written_as_plain_rows(make: Any, simulator: Any, smtp: Any) -> None:
    """Five assets low, then a device holding a license of each removed: each asset's event
    writes its alert and folds it with the account's unsent ones without an ORM object (the
    alerts and their deliveries inserted, the unsent ones read, by Core statements); the
    digest and its mail are the same."""
    from sqlalchemy import event

    from mdm_core.inventory import remove_device
    from plugins.alerts.models import AlertDelivery, AlertMessage

    serial = "PLAIN0000001"
    host, _ = five_low_assets_on_one_device(make, simulator, smtp, serial)
    built: list[str] = []

    def note(target: Any, *_args: Any) -> None:
        built.append(type(target).__name__)

    targets = [(model, kind) for model in (AlertMessage, AlertDelivery) for kind in ("init", "load")]
    for model, kind in targets:
        event.listen(model, kind, note)
    try:
        remove_device(host, serial)  # the revoke frees a license of each: five events, each folded with the unsent ones
    finally:
        for model, kind in targets:
            event.remove(model, kind, note)
    assert built == []
    [digest] = alerts(host)[1:]
    assert digest["title"] == "Licenses of 5 assets in account 'school' changed: 5 available again" and len(digest["fields"]["assets"]) == 5
    assert deliver_due(host)["sent"] == 1 and len(smtp.mailbox.messages) == 2  # one mail, not five


def test_license_alerts_are_written_as_plain_rows(alerts_host, simulator, smtp_server):
    license_alerts_are_written_as_plain_rows(lambda alerts_config: alerts_host(alerts_config), simulator, smtp_server())


def test_queuing_an_alert_loads_no_channel_code():
    """An event's subscriber queues an alert for each configured channel by its name: the
    channels' code (SMTP, TLS, HTTP clients: ~7 ms of CPU in a sync's process) is loaded by the
    ``alerts.deliver`` job that sends, not by a sync's event delivery."""
    import subprocess
    import sys

    code = "import sys, plugins.alerts.store; print(sorted({'plugins.alerts.channels', 'smtplib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_syncs_that_change_nothing_leave_the_sync_state_as_it_was(make_host, project_dir, request, database):
    """The state of an account's syncs is written when it changes (a failure counted, a
    recovery), not at every sync: after the first success, successful syncs leave its
    ``updated_at`` the time of that change (was: rewritten by each sync, a write a sync)."""
    host = make_host(config=FAST_VPP + "\n[alerts]\nsync_failures = 2\n", database_url=database_param(request, project_dir, database))
    report = {"account": "school", "trigger": "schedule", "mode": "incremental", "error_type": None, "error": None}
    assert alerts(host) == []  # the plugins loaded before the clock is frozen

    def finished(status: str, at: str) -> datetime:
        with freeze_time(at):
            host.events.dispatch(Event(name="vpp_sync_finished", payload={**report, "status": status}))
        with host.db.session() as session:
            row = session.get(AlertSubject, "sync:school")
            assert row is not None
            return row.updated_at

    first = datetime(2026, 5, 1, 8, tzinfo=UTC)
    assert finished("ok", "2026-05-01 08:00") == first
    assert finished("ok", "2026-05-01 09:00") == first  # nothing changed: nothing written
    assert finished("ok", "2026-05-01 10:00") == first
    assert finished("error", "2026-05-01 11:00") == datetime(2026, 5, 1, 11, tzinfo=UTC)  # a failure counted
    assert finished("ok", "2026-05-01 12:00") == datetime(2026, 5, 1, 12, tzinfo=UTC)  # back to no failure
    assert finished("ok", "2026-05-01 13:00") == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert alerts(host) == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_events_that_change_nothing_open_no_alerts_transaction(make_host, project_dir, request, database):
    """A sync that succeeds after a success, and an assets event whose assets all keep their
    license level, change no state and alert about nothing: alerts reads its states and opens
    no transaction (was: the event's guard row inserted and the states read again and locked, in
    a transaction of each event, a sync's three); a failure and a low asset are still alerted."""
    host = make_host(config=FAST_VPP + "\n[alerts]\nsync_failures = 1\nlow_licenses = 2\n", database_url=database_param(request, project_dir, database))
    report = {"account": "school", "trigger": "schedule", "mode": "incremental", "error_type": None, "error": None}
    asset = {
        "account": "school", "adamId": "1", "pricingParam": "STDQ", "productType": "App", "assignedCount": 5, "availableCount": 5,
        "retiredCount": 0, "totalCount": 10, "deviceAssignable": True, "revocable": True, "supportedPlatforms": ["iOS"],
    }  # fmt: skip
    assert alerts(host) == []  # the plugins loaded

    def alerts_sql(name: str, payload: dict[str, Any]) -> list[str]:
        """The statements of alerts' tables that delivering the event ran, each as its verb."""
        with recorded_statements(host.db.engine) as statements:
            host.events.dispatch(Event(name=name, payload=payload))
        return [s.sql.split()[0].upper() for s in statements if "alerts_" in s.sql]

    assert "INSERT" in alerts_sql("vpp_sync_finished", {**report, "status": "ok"})  # the account's first: its state written
    unchanged = [alerts_sql("vpp_sync_finished", {**report, "status": "ok"}), alerts_sql("vpp_assets_changed", {"account": "school", "assets": [asset]})]
    assert unchanged == [["SELECT"], ["SELECT"]]
    assert alerts(host) == []
    assert "INSERT" in alerts_sql("vpp_assets_changed", {"account": "school", "assets": [{**asset, "assignedCount": 9, "availableCount": 1}]})
    assert "INSERT" in alerts_sql("vpp_sync_finished", {**report, "status": "error", "error_type": "network", "error": "down"})
    assert len(titles(host)) == 2 and "low" in str(alerts(host)[0]).lower()
