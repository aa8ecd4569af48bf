""" "Expires in N days" counts the whole days left, rounded up, in `mdm vpp account list`, the
alerts and the console alike: a token with 29 days 23 hours left said "expires in 29 days"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mdm_core.output import days_until
from plugins.alerts.rules import token_alert
from plugins.vpp import token_state
from plugins.vpp.simulator import Simulator

from .conftest import FAST_CONFIG

NOW = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "left, days",
    [
        (timedelta(days=29, hours=23), 30),
        (timedelta(days=30), 30),  # exactly N days: N
        (timedelta(days=7, seconds=1), 8),
        (timedelta(days=7), 7),
        (timedelta(days=1, hours=2), 2),
        (timedelta(hours=23), 1),  # under a day: 1, never 0 before the token expires
        (timedelta(seconds=1), 1),
        (timedelta(0), -1),  # it has come
        (timedelta(hours=-1), -1),
        (timedelta(days=-1), -1),
        (timedelta(days=-2), -2),
    ],
)
def test_days_left_are_rounded_up_until_the_token_expires(left: timedelta, days: int) -> None:
    assert days_until(NOW + left, NOW) == days


@pytest.mark.parametrize("left, text", [(timedelta(days=29, hours=23), "30 days"), (timedelta(days=7), "7 days"), (timedelta(hours=3), "1 day")])
def test_account_list_and_alerts_say_the_same_number(left: timedelta, text: str) -> None:
    """The days agree with the state: a token with 7 days or less left is ``expiring_7`` and
    says at most "7 days"."""
    expires = NOW + left
    state = token_state.expiry_state(expires, NOW)
    assert token_state.describe(state, expires, now=NOW) == f"expiring in {text}"
    alert = token_alert("school", None, state, expires=expires.isoformat(), detail=None, action=None, now=NOW)
    assert alert is not None and f"expires in {text}, on {expires:%Y-%m-%d}" in alert.title


def test_account_list_counts_a_token_with_29_days_23_hours_left_as_30(make_host: Any, cli: Any, project_dir: Path) -> None:
    make_host(config=FAST_CONFIG).db
    expires = datetime.now(UTC) + timedelta(days=29, hours=23)
    with Simulator(seed=3, assets=2, devices=2, users=2, async_delay=0, token_expires_at=expires) as apple:
        path = apple.write_token(project_dir / "soon.vpptoken")
        assert cli("vpp", "account", "add", "soon", "--token-file", str(path), "--service-url", apple.base_url)[0] == 0
        code, out, err = cli("vpp", "account", "list")
    assert code == 0, err
    assert "expiring in 30 days" in out and "expiring in 29 days" not in out
