"""A renamed VPP account (``mdm vpp account rename``): its published applications, their
metadata, installs and reclaims follow it, so that installing, reclaiming, completing a pending
install and a full sync work under the new name (no duplicate, nothing retired). The rename's
event applied twice, or two renames in a row, end where the last rename says. SQLite and
PostgreSQL, on the simulator."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from mdm_core.errors import MdmError
from mdm_core.events import Event
from mdm_core.host import Host
from mdm_core.inventory import add_device, remove_device
from mdm_core.models import OutboxEvent, utcnow
from mdm_core.testing import MdmRunner
from plugins.mobile_apps.catalog import list_apps
from plugins.mobile_apps.installs.commands import list_installs
from plugins.mobile_apps.installs.request import install
from plugins.mobile_apps.jobs import installs_job, reclaim_job
from plugins.mobile_apps.models import MOBILE_APPS_TABLES, Install, Reclaim, SeenEvent
from plugins.mobile_apps.reclaims import list_reclaims, reclaim_candidates
from plugins.vpp.accounts import remove_account
from plugins.vpp.rename import rename_account
from plugins.vpp.simulator import Simulator
from plugins.vpp.testing import add_simulated_account

from .conftest import BASE_CONFIG, commands, fixed_assets, free_serials, holders

SIM: dict[str, Any] = {"seed": 11, "assets": 10, "devices": 30, "users": 20, "page_size": 7}


@pytest.fixture
def setup(make_host: Callable[..., Host], project_dir: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Any:
    """``setup(sim)``: a host with account ``school`` on ``sim``, synced, and an in-process ``mdm`` on its database."""

    def make(sim: Simulator) -> tuple[Host, MdmRunner]:
        host = make_host(config=BASE_CONFIG, database_url=database_url)
        add_simulated_account(host, sim, project_dir)
        _sync(host, "school")
        return host, MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url} if database_url else None)

    return make


def _sync(host: Host, account: str, full: bool = False) -> None:
    [report] = host.pm.hook.mdm_vpp_sync(host=host, account=account, full=full, trigger="test", wait=0)
    assert report["status"] == "ok", report


def _district(host: Host, other: Simulator, project_dir: Path) -> tuple[dict[str, Any], int]:
    """Add ``other`` as account ``district``, synced: its first asset and that asset's iOS application id."""
    add_simulated_account(host, other, project_dir, name="district")
    _sync(host, "district")
    asset = fixed_assets(other)[0]
    [app] = [
        a["id"]
        for a in list_apps(host)
        if a["account"] == "district" and a["adamId"] == asset["adamId"] and a["pricingParam"] == "STDQ" and a["platform"] == "iOS"
    ]
    return asset, app


def _apps(mdm: MdmRunner) -> list[dict[str, Any]]:
    code, out, err = mdm("apps", "list", "--json")
    assert code == 0, err
    return sorted(json.loads(out), key=lambda a: a["id"])


def _app_id(apps: list[dict[str, Any]], adam_id: str) -> str:
    [app] = [a for a in apps if a["adamId"] == adam_id and a["pricingParam"] == "STDQ" and a["platform"] == "iOS"]
    return str(app["id"])


def _accounts(host: Host) -> dict[str, set[str]]:
    """The account names each mobile_apps table files its rows under."""
    with host.db.session() as session:
        return {
            str(model.__tablename__): set(session.execute(select(model.account)).scalars())  # type: ignore[attr-defined]
            for model in MOBILE_APPS_TABLES
            if model is not SeenEvent
        }


def test_installs_reclaims_and_syncs_follow_a_renamed_account(setup: Any) -> None:
    with Simulator(**SIM, async_delay=60) as sim:
        host, mdm = setup(sim)
        before = _apps(mdm)
        asset = fixed_assets(sim)[0]
        app = _app_id(before, asset["adamId"])
        waiting, fresh = free_serials(sim, asset["adamId"])[:2]
        for serial in (waiting, fresh):
            add_device(host, serial, "iOS")
        code, out, err = mdm("apps", "install", app, "--device", waiting, "--wait", "0")
        assert code == 0 and f"{waiting}: pending" in out, err  # Apple has not confirmed it yet

        code, out, err = mdm("vpp", "account", "rename", "school", "district")
        assert code == 0, err
        after = _apps(mdm)
        assert [(a["id"], a["adamId"], a["platform"], a["state"]) for a in after] == [(a["id"], a["adamId"], a["platform"], a["state"]) for a in before]
        assert {a["account"] for a in after} == {"district"}
        assert all(names <= {"district"} for names in _accounts(host).values())

        sim.state.process_due(now=time.monotonic() + 120)  # Apple confirms the license asked for before the rename
        _sync(host, "district")
        assert len(commands(host, waiting)) == 1 and list_installs(host, "pending") == []

        sim.state.async_delay = 0
        code, out, err = mdm("apps", "install", app, "--device", fresh, "--wait", "5")
        assert code == 0, err
        assert f"{fresh}: queued: InstallApplication queued" in out and "license associated" in out and "from account district" in out
        assert fresh in holders(sim, asset["adamId"])

        code, out, err = mdm("apps", "reclaim", app, "--device", fresh, "--yes")
        assert code == 0 and f"{fresh}: done" in out, (out, err)
        assert fresh not in holders(sim, asset["adamId"])

        _sync(host, "district", full=True)
        final = _apps(mdm)
        assert [(a["id"], a["adamId"], a["platform"], a["state"], a["account"]) for a in final] == [
            (a["id"], a["adamId"], a["platform"], a["state"], "district") for a in before
        ]  # no application published twice, none retired
        assert all(names <= {"district"} for names in _accounts(host).values())


def _published(host: Host) -> dict[str, int]:
    """How many applications each account publishes (retired ones aside)."""
    out: dict[str, int] = {}
    for app in list_apps(host, state="published"):
        out[app["account"]] = out.get(app["account"], 0) + 1
    return out


def _renames(host: Host) -> list[Event]:
    with host.db.session() as session:
        rows = session.execute(select(OutboxEvent).where(OutboxEvent.name == "vpp_account_renamed").order_by(OutboxEvent.seq)).scalars()  # type: ignore[arg-type]
        return [Event(name=r.name, payload=dict(r.payload), id=r.id) for r in rows]


def test_an_install_or_reclaim_before_mobile_apps_heard_of_the_rename_says_why(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process renamed the account and this one asks before the rename's event reached
    mobile_apps: one line saying why, not an unknown account or 'no license to reclaim'."""
    with Simulator(**SIM, async_delay=0) as sim:
        host, _ = setup(sim)
        asset = fixed_assets(sim)[0]
        app = _app_id(list_apps(host), asset["adamId"])
        serial = free_serials(sim, asset["adamId"])[0]
        holder = sorted(s for s in holders(sim, asset["adamId"]) if s in sim.state.device_serials())[0]
        add_device(host, serial, "iOS")
        with monkeypatch.context() as patch:
            patch.setattr(host, "deliver_events", lambda: 0)
            rename_account(host, "school", "district")
        why = "is filed under VPP account 'school', which is not on this host any more (accounts: district): removed, "
        renamed = "; renamed, its applications follow the new name"
        with pytest.raises(MdmError, match=re.escape(why) + ".*" + re.escape(renamed)):
            install(host, app, serials=[serial], wait=5)
        with pytest.raises(MdmError, match=re.escape(f"app {app} {why}") + ".*" + re.escape(renamed)):
            reclaim_candidates(host, app, serial=holder)
        assert serial not in holders(sim, asset["adamId"])  # nothing asked of Apple

        host.deliver_events()
        assert install(host, app, serials=[serial], wait=5).ok and serial in holders(sim, asset["adamId"])
        assert [lic["account"] for lic in reclaim_candidates(host, app, serial=holder)] == ["district"]


def test_a_rename_delivered_twice_or_renamed_again_ends_at_the_last_name(setup: Any, project_dir: Path) -> None:
    with Simulator(**SIM, async_delay=0) as sim, Simulator(**{**SIM, "seed": 12}, async_delay=0) as other:
        host, _ = setup(sim)
        count = _published(host)["school"]
        rename_account(host, "school", "district")
        rename_account(host, "district", "campus")
        assert _published(host) == {"campus": count}
        add_simulated_account(host, other, project_dir, name="school")  # another account takes the free name
        _sync(host, "school")
        published = _published(host)
        assert published["campus"] == count and published["school"] > 0
        first, second = _renames(host)
        for event in (first, second, first):  # delivered again (at least once): applied once
            assert host.events.dispatch(event) == []
        assert _published(host) == published
        assert _accounts(host)["mobile_apps_install"] <= {"campus", "school"}


def test_a_rename_to_the_name_of_a_removed_account_replaces_its_retired_applications(setup: Any, project_dir: Path) -> None:
    """The removed account's applications stay as retired history under its name; the renamed
    account, holding the same assets, takes the name without two rows of one asset."""
    with Simulator(**SIM, async_delay=0) as sim:
        host, _ = setup(sim)
        count = _published(host)["school"]
        remove_account(host, "school")
        assert _published(host) == {}
        add_simulated_account(host, sim, project_dir, name="district")
        _sync(host, "district")
        remove_account(host, "district")
        add_simulated_account(host, sim, project_dir, name="school")
        _sync(host, "school")
        rename_account(host, "school", "district")
        assert _published(host) == {"district": count}
        assert {(a["account"], a["state"]) for a in list_apps(host)} == {("district", "published")}


def test_a_removed_accounts_waiting_installs_and_reclaims_are_canceled_not_sent_to_the_account_renamed_to_its_name(setup: Any, project_dir: Path) -> None:
    """An install and a reclaim still waiting for Apple under ``district`` when it is removed end
    canceled, saying why; ``school`` renamed to ``district`` afterwards is never asked for them."""
    with Simulator(**SIM, async_delay=0) as sim, Simulator(**SIM, async_delay=60, location_name="District") as other:
        other.state.uid = str(int(sim.state.uid) + 1)  # another location with the same assets: what is asked of the wrong one succeeds
        host, mdm = setup(sim)
        asset, app = _district(host, other, project_dir)
        serial = free_serials(other, asset["adamId"])[0]
        holder = sorted(s for s in holders(other, asset["adamId"]) if s in other.state.device_serials())[0]
        for device in (serial, holder):
            add_device(host, device, "iOS")
        assert install(host, str(app), serials=[serial], wait=0).ok  # Apple has not confirmed it yet
        other.faults.add("drop", endpoint="assets/revoke")  # Apple unreachable: the reclaim waits
        remove_device(host, holder)
        assert [i["account"] for i in list_installs(host, "pending")] == ["district"]
        waiting = [r["id"] for r in list_reclaims(host) if r["status"] == "pending"]
        assert waiting and {r["account"] for r in list_reclaims(host) if r["status"] == "pending"} == {"district"}

        remove_account(host, "district")
        rename_account(host, "school", "district")
        asked = dict(sim.requests)
        host.db.run_write(lambda session: session.execute(update(Reclaim).values(next_attempt_at=None)))
        installs_job(host)
        reclaim_job(host)
        assert {e: sim.requests[e] for e in ("assets/associate", "assets/revoke")} == {e: asked.get(e, 0) for e in ("assets/associate", "assets/revoke")}
        assert serial not in holders(sim, asset["adamId"])
        why = "its VPP account district was removed"
        [closed] = [i for i in list_installs(host) if i["target"] == serial]
        assert (closed["status"], closed["error"]) == ("canceled", why)
        assert [(r["status"], r["last_error"]) for r in list_reclaims(host, everything=True) if r["id"] in waiting] == [("canceled", why)] * len(waiting)
        code, out, err = mdm("apps", "installs", "--json")
        assert code == 0 and why in out, err


def test_a_removed_accounts_interrupted_install_is_canceled_when_resumed_and_one_in_flight_is_left_to_its_request(setup: Any, project_dir: Path) -> None:
    """Installs ``associating`` under ``district`` when it is removed: the one whose process died
    asking Apple (older than ``interrupted_after``) ends canceled saying why when the installs job
    resumes it, not pending under the name ``school`` takes next; the one whose request may still
    be in flight is left ``associating`` for its request to finish."""
    with Simulator(**SIM, async_delay=0) as sim, Simulator(**SIM, async_delay=60, location_name="District") as other:
        other.state.uid = str(int(sim.state.uid) + 1)
        host, _ = setup(sim)
        add_simulated_account(host, other, project_dir, name="district")
        _sync(host, "district")
        asset = fixed_assets(other)[0]
        died, flying = free_serials(other, asset["adamId"])[:2]
        for device in (died, flying):
            add_device(host, device, "iOS")
        started = {died: utcnow() - timedelta(hours=1), flying: utcnow()}  # the default interrupted_after: 15 minutes

        def intents(session: Any) -> None:  # as reserve leaves them before Apple is asked
            for target, at in started.items():
                fields = {"adam_id": asset["adamId"], "pricing_param": "STDQ", "kind": "device", "source": "request"}
                session.add(Install(account="district", target=target, status="associating", created_at=at, updated_at=at, **fields))

        host.db.run_write(intents)
        remove_account(host, "district")
        rename_account(host, "school", "district")
        asked = sim.requests.get("assets/associate", 0)
        installs_job(host)
        assert sim.requests.get("assets/associate", 0) == asked
        why = "its VPP account district was removed"
        by_target = {i["target"]: (i["status"], i["error"]) for i in list_installs(host)}
        assert by_target[died] == ("canceled", why)
        assert by_target[flying][0] == "associating"


@pytest.mark.parametrize("delay", [60, 0], ids=["unconfirmed", "licensed"])
def test_an_install_whose_account_is_removed_while_apple_is_asked_ends_canceled_or_queued_without_the_removal(
    setup: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, delay: int
) -> None:
    """``district`` removed while its install's request is in flight (Apple answers after the
    removal was applied): unconfirmed, the install ended ``pending`` under the removed name (the
    installs job then asked the account renamed to it); licensed, it ended ``queued`` with the
    removal's reason as its error. Now the first ends ``canceled`` saying why, never asked again,
    and the second is ``queued`` with no error."""
    from plugins.mobile_apps.vpp_port import VppPort

    with Simulator(**SIM, async_delay=0) as sim, Simulator(**SIM, async_delay=delay, location_name="District") as other:
        other.state.uid = str(int(sim.state.uid) + 1)  # another location with the same assets
        host, mdm = setup(sim)
        asset, app = _district(host, other, project_dir)
        serial = free_serials(other, asset["adamId"])[0]
        add_device(host, serial, "iOS")
        real = VppPort.associate

        def answered_after_the_removal(self: VppPort, *args: Any, **kwargs: Any) -> Any:
            result = real(self, *args, **kwargs)
            remove_account(host, "district")  # applied (its event delivered) before the answer is recorded
            return result

        monkeypatch.setattr(VppPort, "associate", answered_after_the_removal)
        outcome = install(host, str(app), serials=[serial], wait=0)
        monkeypatch.setattr(VppPort, "associate", real)
        why = "its VPP account district was removed"
        [row] = [i for i in list_installs(host) if i["target"] == serial]
        if delay:
            assert (row["status"], row["error"]) == ("canceled", why)
            assert [(t, s) for t, s, _ in outcome.lines] == [(serial, "canceled")] and why in outcome.lines[0][2].cli
            rename_account(host, "school", "district")
            asked = sim.requests.get("assets/associate", 0)
            installs_job(host)
            assert sim.requests.get("assets/associate", 0) == asked  # the other location is never asked for it
        else:
            assert (row["status"], row["error"]) == ("queued", None)
            assert [(t, s) for t, s, _ in outcome.lines] == [(serial, "queued")]


def test_a_reclaim_after_the_account_was_removed_says_where_its_licenses_go_back(setup: Any) -> None:
    """After its VPP account was removed, `mdm apps reclaim` (and the API's, the same line)
    said the account was renamed, 'try again then': nothing the admin could do would work. The
    line now says both cases, as the console does: removed, the licenses are taken back in
    Apple School Manager or Apple Business Manager; renamed, the app follows the new name."""
    with Simulator(**SIM, async_delay=0) as sim:
        host, mdm = setup(sim)
        asset = fixed_assets(sim)[0]
        app = _app_id(list_apps(host), asset["adamId"])
        holder = sorted(s for s in holders(sim, asset["adamId"]) if s in sim.state.device_serials())[0]
        remove_account(host, "school")
        code, out, err = mdm("apps", "reclaim", app, "--device", holder)
        assert code != 0 and len(err.strip().splitlines()) == 1, (out, err)
        assert "VPP account 'school', which is not on this host any more (no account): removed, its licenses are taken back in Apple School Manager" in err
        assert "renamed, its applications follow the new name" in err, err
        assert holder in holders(sim, asset["adamId"])  # nothing asked of Apple
