"""Two installs at once for the last free license (two admins, or the command line and the API):
one gets it, the other is refused before Apple is asked, with the usual "not enough licenses"
line, and records nothing. It was: both passed the count check, both asked Apple, and the
loser ended ``failed`` with Apple's error 9709."""

from __future__ import annotations

import re
import shlex
import threading
import time
from typing import Any

import pytest

from mdm_core.inventory import add_device
from plugins.mobile_apps.installs.commands import list_installs
from plugins.mobile_apps.installs.request import Outcome, install
from plugins.mobile_apps.vpp_port import VppPort

from .conftest import BASE_CONFIG, app_id, commands, free_serials, holders, sync


class TwoAtOnce:
    """Hold each install's call to Apple until the other install asks Apple too, or ends
    without asking: two requests that both passed the count check meet at Apple's door."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.asking = 0
        self.ended = 0

    def associate(self, real: Any) -> Any:
        def wrapper(port: VppPort, *args: Any, **kwargs: Any) -> Any:
            with self.cond:
                self.asking += 1
                self.cond.notify_all()
                assert self.cond.wait_for(lambda: self.asking + self.ended >= 2, timeout=30), "the other install neither asked Apple nor ended"
            return real(port, *args, **kwargs)

        return wrapper

    def run(self, *calls: Any) -> list[Outcome | BaseException]:
        results: list[Outcome | BaseException] = [RuntimeError("not run")] * len(calls)

        def one(index: int) -> None:
            try:
                results[index] = calls[index]()
            except BaseException as exc:  # noqa: BLE001  # the test reads it
                results[index] = exc
            finally:
                with self.cond:
                    self.ended += 1
                    self.cond.notify_all()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        return results


def last_license_for_two(make_host: Any, simulator: Any, project_dir: Any, database_url: str | None) -> tuple[Any, Any, str, str, tuple[str, str]]:
    """Two admins' hosts (two processes on one database), an app with one license left and two
    devices without one: the hosts, the adamId, the application id and the two serials."""
    from plugins.vpp.testing import add_simulated_account

    first_admin = make_host(config=BASE_CONFIG, database_url=database_url)
    add_simulated_account(first_admin, simulator, project_dir)
    adam, _ = simulator.purchase(count=1)
    sync(first_admin)
    second_admin = make_host(config=BASE_CONFIG, database_url=database_url)
    ipad, iphone = free_serials(simulator, adam)[:2]
    add_device(first_admin, ipad, "iPadOS")
    add_device(first_admin, iphone, "iOS")
    return first_admin, second_admin, adam, app_id(first_admin, adam), (ipad, iphone)


@pytest.mark.slow
def test_two_installs_of_the_last_license_at_once_one_is_refused_up_front(make_host, simulator, project_dir, database_url, monkeypatch):
    first_admin, second_admin, adam, app, (ipad, iphone) = last_license_for_two(make_host, simulator, project_dir, database_url)
    meeting = TwoAtOnce()
    monkeypatch.setattr(VppPort, "associate", meeting.associate(VppPort.associate))

    results = meeting.run(lambda: install(first_admin, app, serials=[ipad]), lambda: install(second_admin, app, serials=[iphone]))

    outcomes = [r for r in results if isinstance(r, Outcome)]
    assert len(outcomes) == 2, results
    lines = sorted((line for out in outcomes for line in out.as_dicts()), key=lambda line: line["status"])
    assert [line["status"] for line in lines] == ["queued", "refused"], lines
    winner, loser = lines[0]["target"], lines[1]["target"]
    assert lines[1]["message"].startswith("not enough licenses: 0 available in account 'school' (1 more being licensed by other installs"), lines[1]
    assert "9709" not in lines[1]["message"]
    assert holders(simulator, adam) == {winner}
    assert len(commands(first_admin, winner)) == 1 and commands(first_admin, loser) == []
    assert [(i["target"], i["status"]) for i in list_installs(first_admin)] == [(winner, "queued")]  # nothing recorded for the refused one


@pytest.mark.slow
def test_a_license_apple_has_not_confirmed_yet_is_counted_as_taken(make_host, project_dir, database_url):
    """The first install of the last license waits ``pending`` (Apple has not answered): a second
    one is refused by this host, not sent to Apple to fail later with 9709; once the first is
    licensed, the mirror counts it and the refusal no longer names installs in progress."""
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.testing import add_simulated_account

    with Simulator(seed=11, assets=10, devices=30, users=20, page_size=7, async_delay=60) as slow:
        host = make_host(config=BASE_CONFIG, database_url=database_url)
        add_simulated_account(host, slow, project_dir)
        adam, _ = slow.purchase(count=1)
        sync(host)
        first, second = free_serials(slow, adam)[:2]
        add_device(host, first, "iOS")
        add_device(host, second, "iOS")
        app = app_id(host, adam)
        [(_, status, _)] = install(host, app, serials=[first], wait=0).lines
        assert status == "pending"

        [line] = install(host, app, serials=[second], wait=0).as_dicts()
        assert (line["status"], line["message"].split(" (buy more")[0]) == (
            "refused",
            "not enough licenses: 0 available in account 'school' (1 more being licensed by other installs: see `mdm apps installs`; "
            "`mdm jobs run mobile_apps.installs` asks Apple again now for those an interrupted request left), 1 needed",
        )
        assert [(i["target"], i["status"]) for i in list_installs(host)] == [(first, "pending")]
        slow.state.process_due(now=time.monotonic() + 120)  # Apple licenses the first
        sync(host)
        [line] = install(host, app, serials=[second], wait=0).as_dicts()
        assert line["message"].startswith("not enough licenses: 0 available in account 'school', 1 needed"), line


def test_the_refusal_names_the_command_that_settles_an_install_an_interrupted_request_left(on_both, simulator):
    """A request that died after recording its install ``associating`` (before or while Apple was
    asked) holds the last license here: a new install was refused, naming `mdm apps installs`
    only, and the installs job left it alone for ``interrupted_after`` (15 minutes). The refusal
    now names `mdm jobs run mobile_apps.installs`, and that command, run as written, asks Apple
    again for it at once: licensed and queued, the next refusal counts the license as held."""
    from plugins.mobile_apps.installs.request import resolve_asset
    from plugins.mobile_apps.installs.reserve import fresh_counts, reserve

    host, mdm = on_both
    adam, _ = simulator.purchase(count=1)
    sync(host)
    stuck, other = free_serials(simulator, adam)[:2]
    add_device(host, stuck, "iOS")
    add_device(host, other, "iOS")
    app = app_id(host, adam)
    asset = resolve_asset(host, app)
    fresh_counts(host, asset)
    assert reserve(host, asset, [stuck], []).devices  # recorded; then the process died, Apple not asked

    [line] = install(host, app, serials=[other], wait=0).as_dicts()
    assert line["status"] == "refused" and "(1 more being licensed by other installs: see `mdm apps installs`; " in line["message"], line
    [command] = re.findall(r"`(mdm jobs run [^`]+)` asks Apple again now for those an interrupted request left\)", line["message"])
    code, out, err = mdm(*shlex.split(command)[1:])
    assert code == 0, err
    assert [(i["target"], i["status"]) for i in list_installs(host)] == [(stuck, "queued")]
    assert holders(simulator, adam) == {stuck} and len(commands(host, stuck)) == 1
    [line] = install(host, app, serials=[other], wait=0).as_dicts()
    assert line["message"].startswith("not enough licenses: 0 available in account 'school', 1 needed"), line
