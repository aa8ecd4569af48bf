"""License alerts with a recovery margin (``low_licenses_margin``): counts swinging around an
asset's threshold (a school assigning and freeing a license or two each sync) make one "low"
alert, not "low", "available again", "low" at every sync; a real drop still alerts at once;
the syncs' events, the digest and the check's complete recount agree on the stored state."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import col

from mdm_core.host import Host
from plugins.alerts.delivery import check
from plugins.alerts.models import AlertSubject

from .conftest import alerts, sync, titles


def take(simulator: Any, adam_id: str, serials: list[str]) -> None:
    for serial in serials:
        simulator.assign_in_portal(adam_id, serial_number=serial)


def free(simulator: Any, adam_id: str, serials: list[str]) -> None:
    for serial in serials:
        simulator.remove_in_portal(adam_id, serial_number=serial)


def stored(host: Host) -> dict[str, str]:
    """The license states the plugin keeps (an asset without a row is ok)."""
    with host.db.session() as session:
        rows = session.execute(select(col(AlertSubject.subject), col(AlertSubject.state)).where(col(AlertSubject.kind) == "licenses"))
        return {subject.split(":")[2]: state for subject, state in rows}


def test_counts_swinging_around_the_threshold_make_one_low_alert(alerts_host, simulator):
    adam, _ = simulator.purchase(count=10)
    host = alerts_host("low_licenses = 3\n")  # the default margin: back to normal at 3 + 2 available
    serials = [f"SWING000{n:04d}" for n in range(10)]
    take(simulator, adam, serials[:8])
    assert sync(host)["status"] == "ok"
    low = f"Only 2 of 10 licenses left of adamId {adam} (STDQ, App) in account 'school'"
    assert titles(host) == [low]
    said = alerts(host)[0]["text"]
    assert said == "Available licenses are below the threshold (3). The all-clear comes when 5 are available (the threshold plus a margin of 2)."
    assert alerts(host)[0]["fields"]["recoveryCount"] == 5

    # a license freed and taken again at each sync: 3, 2, 4, 3 available (was: an alert each time)
    for change in (lambda: free(simulator, adam, serials[7:8]), lambda: take(simulator, adam, serials[7:8])):
        change()
        assert sync(host)["status"] == "ok"
    free(simulator, adam, serials[6:8])
    assert sync(host)["status"] == "ok"
    take(simulator, adam, serials[7:8])
    assert sync(host)["status"] == "ok"
    assert check(host) == {"queued": 0}  # the complete recount keeps the level too
    assert titles(host) == [low] and stored(host) == {adam: "low"}

    # a real drop is told at once, and so is the way back past the margin
    take(simulator, adam, [serials[6], *serials[8:]])  # the last 3
    assert sync(host)["status"] == "ok"
    assert titles(host)[1:] == [f"No licenses left of adamId {adam} (STDQ, App) in account 'school'"]
    free(simulator, adam, serials[6:8])  # 2 available: not 1 + 2 yet, still "none"
    assert sync(host)["status"] == "ok" and check(host) == {"queued": 0} and len(alerts(host)) == 2
    free(simulator, adam, serials[3:6])  # 5 available: 3 + 2
    assert sync(host)["status"] == "ok"
    back = alerts(host)[2]
    assert back["title"] == f"Licenses of adamId {adam} (STDQ, App) in account 'school' are available again"
    assert back["severity"] == "resolved" and back["text"] == "5 of 10 licenses are available (threshold 3)."
    assert stored(host) == {} and check(host) == {"queued": 0}


def test_many_assets_swinging_make_one_digest_and_the_check_agrees(alerts_host, simulator):
    many_assets_swing(alerts_host, simulator)


def many_assets_swing(make: Any, simulator: Any) -> None:
    """Five assets low at once (one digest), then swinging around their threshold at each sync,
    each followed by the check: nothing more until every asset is past the margin (one digest)."""
    adams = [simulator.purchase(count=6)[0] for _ in range(5)]
    serials = [f"MANY0000{n:04d}" for n in range(6)]
    for adam in adams:
        take(simulator, adam, serials[:5])  # 1 of 6 left
    host = make("low_licenses = 2\n")
    assert sync(host)["status"] == "ok"
    assert titles(host) == ["Licenses of 5 assets in account 'school' changed: 5 low"]
    for _ in range(2):
        for adam in adams:
            free(simulator, adam, serials[4:5])  # 2 available: at the threshold, not past the margin
        assert sync(host)["status"] == "ok" and check(host) == {"queued": 0}
        for adam in adams:
            take(simulator, adam, serials[4:5])
        assert sync(host)["status"] == "ok" and check(host) == {"queued": 0}
    assert len(alerts(host)) == 1 and stored(host) == dict.fromkeys(adams, "low")
    for adam in adams:
        free(simulator, adam, serials[1:5])  # 5 available
    assert sync(host)["status"] == "ok"
    assert titles(host)[1:] == ["Licenses of 5 assets in account 'school' changed: 5 available again"]
    assert check(host) == {"queued": 0} and stored(host) == {}


def test_a_margin_of_zero_recovers_at_the_threshold(alerts_host, simulator, make_host):
    """0: the level follows the threshold alone, as before the margin; a host restarted with
    the margin removed recovers a low asset at its next check."""
    adam, _ = simulator.purchase(count=4)
    host = alerts_host("low_licenses = 2\n")
    take(simulator, adam, ["ZERO00000001", "ZERO00000002", "ZERO00000003"])
    assert sync(host)["status"] == "ok"
    free(simulator, adam, ["ZERO00000001"])
    assert sync(host)["status"] == "ok" and len(alerts(host)) == 1  # 2 of 4: within the default margin
    plain = make_host(config=host.config.path.read_text() + "low_licenses_margin = 0\n")
    assert check(plain) == {"queued": 1}
    assert titles(plain)[1:] == [f"Licenses of adamId {adam} (STDQ, App) in account 'school' are available again"]
