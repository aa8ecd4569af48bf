"""Alerts name the apps they are about ("Atlas Kids (adamId 123, ...)") with the names the
mobile_apps plugin looked up (``mdm_app_names``): in the mail's subject and text, in `mdm
alerts list`; by adamId alone when no name is known. A name never changes what counts as the
same alert, and a hostile name never breaks a mail header."""

from __future__ import annotations

from typing import Any

from plugins.alerts.delivery import check, deliver_due
from plugins.mobile_apps.catalog import refresh_metadata

from .conftest import alerts, sync


def name_asset(simulator: Any, adam_id: str, name: str) -> None:
    """What Apple's metadata lookup answers as the app's name."""
    with simulator.state.lock:
        simulator.state.assets[(adam_id, "STDQ")].name = name


def count_name_questions(host: Any) -> list[str]:
    """The adamIds the alerts ask ``mdm_app_names`` about from now on (a plugin registered on
    ``host`` that records each question and names nothing)."""
    from mdm_core import hookimpl

    asked: list[str] = []

    class Counting:
        @hookimpl
        def mdm_app_names(self, host: Any, adam_ids: list[str]) -> dict[str, str]:
            asked.extend(adam_ids)
            return {}

    host.pm.register(Counting(), name="counting_names")
    return asked


def run_low(make: Any, simulator: Any, smtp: Any, name: str | None, environ: dict[str, str] | None = None) -> tuple[str, Any]:
    """An asset of 4 licenses (named ``name`` by the lookup, when looked up), 3 then taken in
    Apple's portal: one low-licenses alert, sent by mail. Returns (adamId, the host)."""
    scarce, _ = simulator.purchase(count=4)
    if name is not None:
        name_asset(simulator, scarce, name)
    host = make(smtp.config() + "low_licenses = 2\n", environ=environ)
    assert sync(host)["status"] == "ok" and alerts(host) == []
    if name is not None:
        assert refresh_metadata(host)["found"] >= 1  # against the simulator's metadata service
    for serial in ("PORTAL000001", "PORTAL000002", "PORTAL000003"):
        simulator.assign_in_portal(scarce, serial_number=serial)
    assert sync(host)["status"] == "ok"
    assert deliver_due(host)["sent"] == 1 and len(smtp.mailbox.messages) == 1
    return scarce, host


def test_the_low_licenses_mail_names_the_app(alerts_host, simulator, smtp_server):
    smtp = smtp_server()
    scarce, host = run_low(alerts_host, simulator, smtp, "Atlas Kids")
    title = f"Only 1 of 4 licenses left of Atlas Kids (adamId {scarce}, STDQ, App) in account 'school'"
    [mail] = smtp.mailbox.messages
    assert mail["Subject"] == f"[mdm] WARNING: {title}"
    assert mail.get_content().splitlines()[0] == title
    [low] = alerts(host)
    assert low["title"] == title and low["fields"]["name"] == "Atlas Kids"
    assert low["subject"] == f"licenses:school:{scarce}:STDQ"  # the same alert as without a name

    name_asset(simulator, scarce, "Atlas Kids 2")  # a name changed at Apple: still the same alert
    assert refresh_metadata(host, everything=True)["found"] >= 1
    assert sync(host)["status"] == "ok" and check(host) == {"queued": 0} and len(alerts(host)) == 1
    for serial in ("PORTAL000001", "PORTAL000002", "PORTAL000003"):  # every license free: past the recovery margin
        simulator.remove_in_portal(scarce, serial_number=serial)
    assert sync(host)["status"] == "ok"
    assert alerts(host)[1]["title"] == f"Licenses of Atlas Kids 2 (adamId {scarce}, STDQ, App) in account 'school' are available again"


def test_without_mobile_apps_the_alert_names_the_adam_id(alerts_host, simulator, smtp_server):
    smtp = smtp_server()
    scarce, host = run_low(alerts_host, simulator, smtp, None, environ={"MDM_DISABLED_PLUGINS": "mobile_apps"})
    assert "mobile_apps" not in {p.name for p in host.plugins}
    title = f"Only 1 of 4 licenses left of adamId {scarce} (STDQ, App) in account 'school'"
    assert smtp.mailbox.messages[0]["Subject"] == f"[mdm] WARNING: {title}"
    assert [a["title"] for a in alerts(host)] == [title]


def test_a_hostile_or_foreign_name_stays_on_one_line(alerts_host, simulator, smtp_server):
    """A metadata answer with a line break and a header after it, a terminal escape and
    accented letters: the subject is one line (RFC 2047-encoded), no header is added."""
    smtp = smtp_server()
    scarce, host = run_low(alerts_host, simulator, smtp, "École été\r\nBcc: victim@evil.example\n\x1b[31mRouge")
    [mail] = smtp.mailbox.messages
    shown = "École été Bcc: victim@evil.example [31mRouge"
    assert mail["Subject"] == f"[mdm] WARNING: Only 1 of 4 licenses left of {shown} (adamId {scarce}, STDQ, App) in account 'school'"
    assert mail["Bcc"] is None and smtp.mailbox.envelopes[0]["to"] == ["it@school.example", "ops@school.example"]
    assert "\x1b" not in mail.get_content() and alerts(host)[0]["fields"]["name"] == shown


def test_install_failures_name_the_app_and_a_failing_lookup_falls_back(alerts_host, simulator, caplog):
    from mdm_core import hookimpl
    from mdm_core.events import Event

    named, _ = simulator.purchase(count=2)
    other, _ = simulator.purchase(count=2)
    name_asset(simulator, named, "Atlas Kids")
    host = alerts_host("low_licenses = 0\n")
    assert sync(host)["status"] == "ok" and refresh_metadata(host)["found"] >= 2

    def failed(n: int, adam_id: str) -> Event:
        payload = {"id": n, "account": "school", "adamId": adam_id, "pricingParam": "STDQ", "license": "device", "serialNumber": f"FAILED00000{n}"}
        return Event(name="mobile_apps_install_failed", payload={**payload, "clientUserId": None, "source": "request", "error": "refused", "errorNumber": 9709})

    host.events.dispatch(failed(1, named))
    assert [a["title"] for a in alerts(host)] == [f"Install of Atlas Kids (adamId {named}, STDQ) from account 'school' failed for device FAILED000001"]
    host.events.dispatch(failed(2, named))  # joins the alert not yet sent, still named
    assert [a["title"] for a in alerts(host)] == [f"Installs of Atlas Kids (adamId {named}, STDQ) from account 'school' failed for 2 devices or users"]

    class Broken:
        @hookimpl
        def mdm_app_names(self, host: Any, adam_ids: list[str]) -> dict[str, str]:
            raise RuntimeError("names are down")

    host.pm.register(Broken(), name="broken_names")
    host.events.dispatch(failed(3, other))  # the alert still goes out, by adamId
    assert alerts(host)[1]["title"] == f"Install of adamId {other} (STDQ) from account 'school' failed for device FAILED000003"
    assert "app names are not available for alerts (mdm_app_names failed): RuntimeError: names are down" in caplog.text


def test_the_first_sync_s_low_licenses_alert_names_the_app(alerts_host, simulator, smtp_server):
    """An account's first sync writes its low-licenses alert before mobile_apps looks up the
    names of the apps it publishes (after the sync): the alert was sent by adamId. It is named
    when it goes out, with what the lookup found by then."""
    smtp = smtp_server()
    scarce, _ = simulator.purchase(count=4)
    name_asset(simulator, scarce, "Atlas Kids")
    for serial in ("PORTAL000001", "PORTAL000002", "PORTAL000003"):
        simulator.assign_in_portal(scarce, serial_number=serial)
    host = alerts_host(smtp.config() + "low_licenses = 2\n")
    [report] = host.pm.hook.mdm_vpp_sync(host=host, account="school", full=False, trigger="manual", wait=0)  # as `mdm vpp sync` does
    assert report["status"] == "ok"
    assert deliver_due(host)["sent"] == 1
    title = f"Only 1 of 4 licenses left of Atlas Kids (adamId {scarce}, STDQ, App) in account 'school'"
    [mail] = smtp.mailbox.messages
    assert mail["Subject"] == f"[mdm] WARNING: {title}"
    [low] = [a for a in alerts(host) if a["subject"] == f"licenses:school:{scarce}:STDQ"]
    assert low["title"] == title and low["fields"]["name"] == "Atlas Kids"


def test_a_first_sync_with_many_low_assets_names_them_in_its_digest(alerts_host, simulator, smtp_server):
    """More low assets than a single alert each: the digest's lines name them at delivery."""
    smtp = smtp_server()
    scarce = [simulator.purchase(count=4)[0] for _ in range(4)]
    for n, adam_id in enumerate(scarce):
        name_asset(simulator, adam_id, f"Atlas Kids {n}")
        for serial in ("PORTAL000001", "PORTAL000002", "PORTAL000003"):
            simulator.assign_in_portal(adam_id, serial_number=serial)
    host = alerts_host(smtp.config() + "low_licenses = 2\n")
    [report] = host.pm.hook.mdm_vpp_sync(host=host, account="school", full=False, trigger="manual", wait=0)
    assert report["status"] == "ok" and deliver_due(host)["sent"] >= 1
    [digest] = [a for a in alerts(host) if a["subject"] == "licenses:school"]
    for n, adam_id in enumerate(scarce):
        assert f"Only 1 of 4 licenses left of Atlas Kids {n} (adamId {adam_id}, STDQ, App) in account 'school'" in digest["text"]
    assert all(a["name"] for a in digest["fields"]["assets"] if a["adamId"] in scarce)


def test_a_first_sync_whose_lookup_fails_sends_the_alert_by_adam_id(alerts_host, simulator, smtp_server):
    smtp = smtp_server()
    scarce, _ = simulator.purchase(count=4)
    name_asset(simulator, scarce, "Atlas Kids")
    for serial in ("PORTAL000001", "PORTAL000002", "PORTAL000003"):
        simulator.assign_in_portal(scarce, serial_number=serial)
    simulator.faults.add("server_error", endpoint="lookup")
    host = alerts_host(smtp.config() + "low_licenses = 2\n")
    [report] = host.pm.hook.mdm_vpp_sync(host=host, account="school", full=False, trigger="manual", wait=0)
    assert report["status"] == "ok" and deliver_due(host)["sent"] == 1
    title = f"Only 1 of 4 licenses left of adamId {scarce} (STDQ, App) in account 'school'"
    assert smtp.mailbox.messages[0]["Subject"] == f"[mdm] WARNING: {title}"
    assert [a["title"] for a in alerts(host)] == [title]


def test_an_incremental_sync_asks_the_names_of_the_assets_that_may_alert_alone(alerts_host, simulator):
    """An incremental sync's assets event names every asset whose counts moved; the alerts ask
    ``mdm_app_names`` for those below their threshold (or recorded below it) alone, and the
    alerts written still name their app, low and back to normal."""
    scarce, _ = simulator.purchase(count=4)
    plenty = [simulator.purchase(count=20)[0] for _ in range(3)]
    name_asset(simulator, scarce, "Atlas Kids")
    host = alerts_host("low_licenses = 2\n")
    assert sync(host)["status"] == "ok" and refresh_metadata(host)["found"] >= 1
    asked = count_name_questions(host)
    for n, adam_id in enumerate([scarce, scarce, scarce, *plenty]):
        simulator.assign_in_portal(adam_id, serial_number=f"PORTAL{n:06d}")
    assert sync(host)["status"] == "ok"
    assert asked == [scarce]  # not the three assets whose counts moved far above their threshold
    assert [a["title"] for a in alerts(host)] == [f"Only 1 of 4 licenses left of Atlas Kids (adamId {scarce}, STDQ, App) in account 'school'"]

    asked.clear()
    for n, adam_id in enumerate([scarce, scarce, scarce, *plenty]):
        simulator.remove_in_portal(adam_id, serial_number=f"PORTAL{n:06d}")
    assert sync(host)["status"] == "ok"
    assert asked == [scarce]  # recorded low, now back to normal: its all-clear names it too
    assert alerts(host)[1]["title"] == f"Licenses of Atlas Kids (adamId {scarce}, STDQ, App) in account 'school' are available again"


def test_an_asset_staying_low_is_not_named_again(alerts_host, simulator):
    """An asset already alerted low whose counts move but stay low alerts nothing: the alerts
    ask ``mdm_app_names`` for the assets whose level changes alone (an incremental sync's event
    names the ~80 low assets of a school whose counts moved; ~3 of them change level). The one
    that runs out is still named in its alert."""
    low, _ = simulator.purchase(count=10)
    running_out, _ = simulator.purchase(count=10)
    name_asset(simulator, running_out, "Atlas Kids")
    host = alerts_host(f"low_licenses = 0\n\n[alerts.low_licenses_per_asset]\n{low} = 5\n{running_out} = 5\n")  # the others: never low
    assert sync(host)["status"] == "ok" and refresh_metadata(host)["found"] >= 1
    for n in range(6):  # both low: 4 of 10 left
        simulator.assign_in_portal(low, serial_number=f"PORTAL{n:06d}")
        simulator.assign_in_portal(running_out, serial_number=f"PORTAL{n + 10:06d}")
    assert sync(host)["status"] == "ok" and len(alerts(host)) == 2  # one alert each
    asked = count_name_questions(host)
    simulator.assign_in_portal(low, serial_number="PORTAL000020")  # 3 of 10 left: still low
    for n in range(21, 25):  # none left
        simulator.assign_in_portal(running_out, serial_number=f"PORTAL{n:06d}")
    assert sync(host)["status"] == "ok"
    assert asked == [running_out]
    assert alerts(host)[-1]["title"].startswith("No licenses left of Atlas Kids")
