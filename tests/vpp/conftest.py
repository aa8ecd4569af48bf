"""Fixtures for the VPP integration tests: a host with an event recorder, the CLI, and
helpers that compare the mirror with the simulator's own state."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from mdm_core import hookimpl
from mdm_core.host import Host

from ..conftest import MdmRunner

#: Fast failure: one retry at most, no long back-off (faults use retry_after=0).
FAST_CONFIG = """
[vpp]
max_attempts = 2
max_total_wait = 2
request_timeout = 10
"""

EVENT_NAMES = (
    "vpp_assets_added", "vpp_assets_changed", "vpp_assets_removed",
    "vpp_licenses_associated", "vpp_licenses_disassociated",
    "vpp_users_added", "vpp_users_changed", "vpp_users_retired", "vpp_user_invited",
    "vpp_token_state_changed", "vpp_sync_finished",
)


class Recorder:
    """A subscriber plugin object: every VPP event lands in ``events`` as (name, payload)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ids: list[str] = []

    def _keep(self, name: str, event: Any) -> None:
        self.events.append((name, event.payload))
        self.ids.append(event.id)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [p for n, p in self.events if n == name]

    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    def clear(self) -> None:
        self.events.clear()
        self.ids.clear()

    @hookimpl(optionalhook=True)
    def mdm_vpp_assets_added(self, host: Host, event: Any) -> None:
        self._keep("vpp_assets_added", event)

    @hookimpl(optionalhook=True)
    def mdm_vpp_assets_changed(self, host: Host, event: Any) -> None:
        self._keep("vpp_assets_changed", event)

    @hookimpl(optionalhook=True)
    def mdm_vpp_assets_removed(self, host: Host, event: Any) -> None:
        self._keep("vpp_assets_removed", event)

    @hookimpl(optionalhook=True)
    def mdm_vpp_licenses_associated(self, host: Host, event: Any) -> None:
        self._keep("vpp_licenses_associated", event)

    @hookimpl(optionalhook=True)
    def mdm_vpp_licenses_disassociated(self, host: Host, event: Any) -> None:
        self._keep("vpp_licenses_disassociated", event)

    @hookimpl(optionalhook=True)
    def mdm_vpp_users_added(self, host: Host, event: Any) -> None:
        self._keep("vpp_users_added", event)

    @hookimpl(optionalhook=True)
    def mdm_vpp_users_changed(self, host: Host, event: Any) -> None:
        self._keep("vpp_users_changed", event)

    @hookimpl(optionalhook=True)
    def mdm_vpp_users_retired(self, host: Host, event: Any) -> None:
        self._keep("vpp_users_retired", event)

    @hookimpl(optionalhook=True)
    def mdm_vpp_user_invited(self, host: Host, event: Any) -> None:
        self._keep("vpp_user_invited", event)

    @hookimpl(optionalhook=True)
    def mdm_vpp_token_state_changed(self, host: Host, event: Any) -> None:
        self._keep("vpp_token_state_changed", event)

    @hookimpl(optionalhook=True)
    def mdm_vpp_sync_finished(self, host: Host, event: Any) -> None:
        self._keep("vpp_sync_finished", event)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def host(make_host: Callable[..., Host], recorder: Recorder) -> Host:
    """A host with the VPP plugin, the recorder and fast retries (no account yet)."""
    import plugins.vpp.plugin

    return make_host(plugins=[plugins.vpp.plugin, recorder], config=FAST_CONFIG)


@pytest.fixture
def token_file(simulator: Any, project_dir: Path) -> Path:
    return simulator.write_token(project_dir / "school.vpptoken")


@pytest.fixture
def school(host: Host, simulator: Any, token_file: Path, recorder: Recorder) -> Host:
    """``host`` with the account ``school`` on ``simulator`` (added, not synced)."""
    from plugins.vpp.accounts import add_account

    add_account(host, "school", str(token_file), service_url=simulator.base_url)
    recorder.clear()
    return host


@pytest.fixture
def synced(school: Host, recorder: Recorder) -> Host:
    """``school`` after a first (full) sync; the recorder is emptied."""
    from plugins.vpp.sync.run import sync_account

    report = sync_account(school, "school")
    assert report["status"] == "ok", report
    recorder.clear()
    return school


@pytest.fixture
def cli(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``cli("vpp", "sync")`` runs ``mdm`` on the fixture's config and database: (exit, out, err)."""
    conf = project_dir / "conf" / "mdm.toml"
    # only this plugin: the VPP tests do not depend on mobile_apps
    return MdmRunner(project_dir, monkeypatch, capsys, config=None if conf.exists() else FAST_CONFIG,
                     environ={"MDM_DISABLED_PLUGINS": "mobile_apps"})


# ---------------------------------------------------------------------- comparisons


def apple_state(sim: Any) -> dict[str, Any]:
    """What Apple (the simulator) holds, in the shape of ``mirror_state``."""
    snap = sim.snapshot()
    assets = {}
    for key, asset in snap["assets"].items():
        assets[key] = {**asset, "supportedPlatforms": sorted(asset["supportedPlatforms"])}
    users = {}
    for cid, user in snap["users"].items():
        # Apple sends inviteCode only while the user is Registered
        users[cid] = {**user, "inviteCode": user["inviteCode"] if user["status"] == "Registered" else None}
    return {"assets": assets, "assignments": set(snap["assignments"]), "users": users}


def mirror_state(host: Host, account: str | None = "school") -> dict[str, Any]:
    """The mirror as read through the plugin's hooks (Apple's field names)."""
    hook = host.pm.hook
    assets = {}
    for row in hook.mdm_vpp_assets(host=host, account=account):
        row = dict(row)
        row.pop("account")
        row["supportedPlatforms"] = sorted(row["supportedPlatforms"])
        assets[(row["adamId"], row["pricingParam"])] = row
    assignments = set()
    for row in hook.mdm_vpp_licenses(host=host, account=account, adam_id=None, serial_number=None, client_user_id=None):
        kind = "serialNumber" if "serialNumber" in row else "clientUserId"
        assignments.add((row["adamId"], row["pricingParam"], kind, row[kind]))
    users = {
        row["clientUserId"]: {"email": row["email"], "status": row["status"], "idHash": row["idHash"], "inviteCode": row["inviteCode"]}
        for row in hook.mdm_vpp_users(host=host, account=account)
    }
    return {"assets": assets, "assignments": assignments, "users": users}


def assert_mirror_equals_apple(host: Host, sim: Any, account: str = "school") -> None:
    mirror, apple = mirror_state(host, account), apple_state(sim)
    assert mirror["assets"] == apple["assets"]
    assert mirror["assignments"] == apple["assignments"]
    assert mirror["users"] == apple["users"]


def account_row(host: Host, name: str = "school") -> Any:
    from sqlalchemy import select

    from plugins.vpp.models import VppAccount

    with host.db.session() as session:
        return session.execute(select(VppAccount).where(VppAccount.name == name)).scalar_one()


def inner_token(sim: Any) -> str:
    """The ``token`` field inside the sToken."""
    return json.loads(base64.b64decode(sim.token))["token"]


@pytest.fixture
def request_counter(simulator: Any) -> Iterator[Any]:
    """A harmless fault that matches every request: ``.seen`` counts the requests."""
    fault = simulator.faults.add("slow", seconds=0)
    yield fault
