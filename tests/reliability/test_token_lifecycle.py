"""Token lifecycle: expiring in 30, 14 and 7 days, expired, revoked, invalid and taken over are
distinct states (``list_accounts`` → ``token_state``), each announced once by a
``vpp_token_state_changed`` event that another plugin receives and can act on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mdm_core import hookimpl
from mdm_core.host import Host
from plugins.vpp.accounts import add_account, list_accounts, set_account
from plugins.vpp.sync.run import sync_account
from plugins.vpp.token_state import ACTIONS, STATES

from .conftest import RELIABLE_CONFIG, SIM_KWARGS, count_figure


class Renewer:
    """Another plugin: keeps what it hears and, like a real one would, tells the admins."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, dict[str, Any]]] = []
        self.notices: list[str] = []

    @hookimpl(optionalhook=True)
    def mdm_vpp_token_state_changed(self, host: Host, event: Any) -> None:
        payload = event.payload
        self.heard.append((event.id, payload))
        if payload["state"] != "valid":
            self.notices.append(f"{payload['account']}: {payload['state']}: {payload['action']}")


def test_every_token_state_is_distinct_and_announced(make_host: Callable[..., Host], project_dir: Path) -> None:
    import plugins.vpp.plugin
    from plugins.vpp.simulator import Simulator

    renewer = Renewer()
    host = make_host(plugins=[plugins.vpp.plugin, renewer], config=RELIABLE_CONFIG)
    now = datetime.now(UTC)
    seen: list[str] = []

    def state() -> str:
        return list_accounts(host)[0]["token_state"]

    def expect(expected: str) -> None:
        info = list_accounts(host)[0]
        assert info["token_state"] == expected
        assert info["action"].replace("school", "NAME") == ACTIONS[expected]
        assert renewer.heard[-1][1]["state"] == expected
        assert renewer.heard[-1][1]["previous"] == (seen[-1] if seen else None)
        assert "NAME" not in renewer.heard[-1][1]["action"]
        assert expected == "valid" or "school" in renewer.heard[-1][1]["action"]
        seen.append(expected)
        count_figure("token_states")

    with Simulator(seed=3, token_expires_at=now + timedelta(days=25, hours=1), **SIM_KWARGS) as sim:
        token_file = sim.write_token(project_dir / "school.vpptoken")
        add_account(host, "school", str(token_file), service_url=sim.base_url)
        expect("expiring_30")
        assert list_accounts(host)[0]["token_status"] == "expiring in 26 days"  # 25 days 1 hour: rounded up

        for days, expected in ((12, "expiring_14"), (5, "expiring_7")):
            sim._token.expires_at = now + timedelta(days=days, hours=1)  # Apple's tokenExpirationDate moves
            assert sync_account(host, "school")["status"] == "ok"
            expect(expected)
            # a second sync in the same state announces nothing new
            count = len(renewer.heard)
            assert sync_account(host, "school")["status"] == "ok"
            assert len(renewer.heard) == count

        sim._token.expires_at = now - timedelta(seconds=1)  # the day has come: Apple answers 9621
        assert sync_account(host, "school")["error_type"] == "TokenExpiredError"
        expect("expired")

        # each blocking state, from a renewed valid token
        for make_it, expected in (
            (sim.revoke_token, "revoked"),
            (lambda: sim.faults.add("error_200", endpoint="client/config", error_number=9622), "invalid"),
            (sim.claim_by_other_mdm, "taken_over"),
        ):
            sim.faults.clear()
            sim._token.expires_at = now + timedelta(days=200)
            set_account(host, "school", token_file=str(token_file))
            expect("valid")
            make_it()
            report = sync_account(host, "school")
            assert report["status"] == "error"
            expect(expected)
            assert list_accounts(host)[0]["paused"] is True

    assert set(seen) == set(STATES), "every state was reached"
    assert len(renewer.heard) == len(seen) and len({i for i, _ in renewer.heard}) == len(seen)
    assert any("taken_over" in n and "another MDM claimed" in n for n in renewer.notices)
    assert list_accounts(host)[0]["token_status"] == "taken over by another MDM (OtherMDM (other.example.com))"
