"""The thresholds and state rules on their own: boundaries, unlimited and empty assets, and
which token changes are news."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from mdm_core.errors import ConfigError
from plugins.alerts.rules import license_alert, license_level, recovery_count, token_alert
from plugins.alerts.settings import Threshold, parse_threshold
from plugins.vpp.payloads import Asset

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def asset(available: int, total: int) -> Asset:
    return cast(
        "Asset",
        {
            "adamId": "1",
            "pricingParam": "STDQ",
            "productType": "App",
            "availableCount": available,
            "totalCount": total,
            "assignedCount": total - available,
            "retiredCount": 0,
        },
    )  # only what the rules read


@pytest.mark.parametrize(
    "threshold, available, total, level",
    [
        ("5", 5, 50, "ok"),
        ("5", 4, 50, "low"),
        ("5", 0, 50, "none"),
        ("5", 0, 0, "ok"),  # an asset with no license at all is not watched
        ("10%", 10, 100, "ok"),
        ("10%", 9, 100, "low"),
        ("10%", 1, 3, "ok"),
        ("10%", 0, 3, "none"),
        ("10%", 2147483000, 2147483647, "ok"),  # Apple's "unlimited" total
        ("0", 0, 10, "ok"),
        ("0%", 0, 10, "ok"),  # 0: never
        ("100%", 9, 10, "low"),
    ],
)
def test_license_levels(threshold, available, total, level):
    parsed = parse_threshold("t", int(threshold) if threshold.isdigit() else threshold)
    assert license_level(asset(available, total), parsed) == level


@pytest.mark.parametrize(
    "threshold, previous, available, total, level",
    [
        ("5", "low", 5, 50, "low"),  # at the threshold: not yet back to normal
        ("5", "low", 6, 50, "low"),
        ("5", "low", 7, 50, "ok"),  # the threshold plus the margin (2)
        ("5", "ok", 4, 50, "low"),  # getting worse is immediate
        ("5", "low", 0, 50, "none"),
        ("5", "none", 2, 50, "none"),  # "none" holds until 1 + 2
        ("5", "none", 3, 50, "low"),
        ("5", "none", 7, 50, "ok"),
        ("5", "low", 4, 4, "low"),  # a threshold above the total: low whatever the margin, as without it
        ("2", "none", 3, 3, "ok"),  # every license free: back to normal, the margin asks no more than the total
        ("10%", "low", 11, 100, "low"),
        ("10%", "low", 12, 100, "ok"),
        ("10%", "none", 2, 3, "none"),
        ("10%", "none", 3, 3, "ok"),
        ("0", "low", 0, 10, "ok"),  # a threshold set to 0 since: never low
        ("5", "digest", 5, 50, "ok"),  # an unknown stored state counts as ok
    ],
)
def test_license_levels_with_a_recovery_margin(threshold, previous, available, total, level):
    parsed = parse_threshold("t", int(threshold) if threshold.isdigit() else threshold)
    assert license_level(asset(available, total), parsed, previous, margin=2) == level
    assert license_level(asset(available, total), parsed, previous, margin=0) == license_level(asset(available, total), parsed)


@pytest.mark.parametrize(
    "threshold, total, margin, count",
    [("5", 50, 2, 7), ("10%", 100, 2, 12), ("12.5%", 8, 2, 3), ("10%", 3, 2, 3), ("2", 3, 5, 3), ("5", 4, 2, 5), ("5", 50, 0, 5)],
)
def test_recovery_counts(threshold, total, margin, count):
    """What a low alert says the all-clear waits for agrees with the level rule."""
    parsed = parse_threshold("t", int(threshold) if threshold.isdigit() else threshold)
    assert recovery_count(total, parsed, margin) == count
    if count <= total:
        assert license_level(asset(count, total), parsed, "low", margin) == "ok"
        assert license_level(asset(count - 1, total), parsed, "low", margin) != "ok"


def test_a_low_alert_says_when_the_all_clear_comes():
    five = Threshold(count=5)
    low = license_alert("a", asset(3, 10), "ok", "low", five, margin=2)
    assert low.text == "Available licenses are below the threshold (5). The all-clear comes when 7 are available (the threshold plus a margin of 2)."
    assert low.fields["recoveryCount"] == 7
    small = license_alert("a", asset(0, 6), "ok", "none", five, margin=2)
    assert small.text.endswith("The all-clear comes when 6 are available (every license).")
    assert license_alert("a", asset(3, 10), "ok", "low", five).text == "Available licenses are below the threshold (5)."


@pytest.mark.parametrize("value", ["ten", "101%", "-5%", "5 licenses", -1])
def test_bad_thresholds(value):
    with pytest.raises(ConfigError):
        parse_threshold("[alerts] low_licenses", value)


def test_a_low_asset_with_every_license_free_says_so():
    """A threshold above the asset's total (3 bought, threshold 5): low with every license free.
    The alert read 'Available licenses are below the threshold', and advised freeing unused ones
    (`mdm apps reclaim --unused`) when none was in use."""
    five = parse_threshold("t", 5)
    alert = license_alert("a", asset(3, 3), "ok", "low", five, margin=2)
    assert alert.title == "Only 3 of 3 licenses left of adamId 1 (STDQ, App) in account 'a'"
    assert alert.text == "Every license is free, but 3 is below the threshold (5): it stays low until more are bought or its threshold is lowered."
    assert "reclaim" not in alert.action and "lower its threshold ([alerts] low_licenses_per_asset)" in alert.action
    assert "mdm apps reclaim 1 --unused" in license_alert("a", asset(2, 3), "ok", "low", five).action  # some in use: free them


def test_license_changes_that_are_news():
    five = Threshold(count=5)
    assert license_alert("a", asset(10, 10), "ok", "ok", five) is None
    assert license_alert("a", asset(3, 10), "low", "low", five) is None
    assert license_alert("a", asset(3, 10), "ok", "low", five).severity == "warning"
    assert license_alert("a", asset(0, 10), "low", "none", five).severity == "critical"
    assert license_alert("a", asset(2, 10), "none", "low", five).title.startswith("Only 2 of 10")
    assert license_alert("a", asset(6, 10), "low", "ok", five).severity == "resolved"


def test_token_changes_that_are_news():
    expires = (NOW + timedelta(days=20)).isoformat()
    assert token_alert("a", None, "valid", expires=expires, detail=None, action=None, now=NOW) is None  # first seen, fine
    assert token_alert("a", "valid", "valid", expires=expires, detail=None, action=None, now=NOW) is None
    first = token_alert("a", None, "expiring_30", expires=expires, detail=None, action="renew it", now=NOW)
    assert first.title == "VPP token of account 'a' expires in 20 days, on 2026-06-21" and first.action == "renew it"
    assert token_alert("a", "expiring_30", "expiring_30", expires=expires, detail=None, action=None, now=NOW) is None
    back = token_alert("a", "revoked", "valid", expires=expires, detail=None, action=None, now=NOW)
    assert back.severity == "resolved" and "was revoked; it is now valid until 2026-06-21" in back.text
    # taken back (or renewed) with a token expiring soon: the admin told "syncs are stopped" hears they go on
    for blocked, said in (("taken_over", "taken over"), ("revoked", "revoked"), ("expired", "expired")):
        soon = token_alert("a", blocked, "expiring_30", expires=expires, detail=None, action="renew it", now=NOW)
        assert soon.title == "VPP token of account 'a' expires in 20 days, on 2026-06-21" and soon.severity == "warning"
        assert soon.text.startswith(f"The token of account 'a' was {said}: it works again and the account syncs again. When it expires"), soon.text
    assert first.text.startswith("When it expires")  # a first alert has nothing to take back
    expired = token_alert("a", "expiring_7", "expired", expires=NOW.isoformat(), detail=None, action=None, now=NOW)
    assert expired.severity == "critical" and expired.title == "VPP token of account 'a' expired on 2026-06-01"
    early = token_alert("a", "expiring_30", "expired", expires=expires, detail=None, action=None, now=NOW)  # Apple said 9621 before the date
    assert early.title == "VPP token of account 'a' has expired"  # was: "expired on 2026-06-21", a day still to come
    one = token_alert("a", "expiring_14", "expiring_7", expires=(NOW + timedelta(days=1, hours=2)).isoformat(), detail=None, action=None, now=NOW)
    assert "expires in 2 days," in one.title  # 1 day 2 hours left: rounded up
    late = token_alert("a", "expiring_14", "expiring_7", expires=(NOW - timedelta(hours=3)).isoformat(), detail=None, action=None, now=NOW)
    assert late.title == "VPP token of account 'a' expired on 2026-05-31" and late.severity == "critical"  # was: "expires in 0 days"
