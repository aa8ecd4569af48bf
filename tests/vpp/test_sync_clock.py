"""The sync's own clocks (issue 17 point 15): a wrong date stored or sent never pins a state.

- A ``last_full_sync_at`` in the future (the clock was set back after a sync) must not stop the
  daily full reconcile: the next sync is a full one.
- A ``tokenExpirationDate`` in the past on one page, while the other pages and
  ``client/config`` give the real date, must not pin the account to ``expired``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from mdm_core.models import utcnow
from plugins.vpp.models import VppAccount
from plugins.vpp.sync.run import choose_mode, sync_account

from .conftest import account_row


def test_a_last_full_sync_in_the_future_does_not_stop_the_full_reconcile(synced: Any) -> None:
    synced.db.run_write(lambda s: s.execute(update(VppAccount).values(last_full_sync_at=utcnow() + timedelta(days=3))))
    report = sync_account(synced, "school")
    assert (report["status"], report["mode"]) == ("ok", "full"), report
    assert account_row(synced).last_full_sync_at <= utcnow()  # stored again from the corrected clock
    assert sync_account(synced, "school")["mode"] == "incremental"


@pytest.mark.parametrize("ahead, mode", [(timedelta(minutes=2), "incremental"), (timedelta(hours=1), "full")])
def test_choose_mode_tolerates_small_skew_only(synced: Any, ahead: timedelta, mode: str) -> None:
    account = account_row(synced)
    account.last_full_sync_at = utcnow() + ahead
    assert choose_mode(account, False, 86400) == mode


@pytest.mark.parametrize("endpoint", ["assets", "users", "assignments"])
def test_a_past_expiration_on_one_page_does_not_pin_the_account_to_expired(synced: Any, simulator: Any, endpoint: str) -> None:
    simulator.faults.add("extra_field", endpoint=endpoint, count=1, fields={"tokenExpirationDate": "2020-01-01T00:00:00+0000"})
    report = sync_account(synced, "school", full=True)
    assert report["status"] == "ok", report
    account = account_row(synced)
    assert account.token_state == "valid" and not account.paused
    assert account.token_expires_at.date().isoformat() == simulator.token_expiration_date[:10]
