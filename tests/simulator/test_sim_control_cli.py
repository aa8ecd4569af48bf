"""The simulator's control actions from `mdm`: change, fault, actions, and a token that
expires soon (`serve --token-expires-in DAYS`) to preview the expiring states."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from mdm_core.testing import MdmRunner
from plugins.vpp.simulator.cli import add_serve_arguments, serve


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[str, Path]]:
    """`mdm vpp simulator serve --token-expires-in 20` in a thread: (base URL, token file)."""
    token_file = tmp_path / "sim.vpptoken"
    args = add_serve_arguments(argparse.ArgumentParser()).parse_args(
        ["--seed", "4", "--assets", "3", "--devices", "5", "--users", "5", "--async-delay", "0", "--token-file", str(token_file), "--token-expires-in", "20"]
    )
    ready, stop = threading.Event(), threading.Event()
    worker = threading.Thread(target=serve, args=(args,), kwargs={"ready": ready, "stop": stop})
    worker.start()
    try:
        assert ready.wait(10)
        capsys.readouterr()
        yield Path(str(token_file) + ".url").read_text().strip(), token_file
    finally:
        stop.set()
        worker.join(10)


@pytest.fixture
def mdm(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> MdmRunner:
    return MdmRunner(project_dir, monkeypatch, capsys)


def _root(url: str) -> str:
    return url[: -len("/mdm/v2")]


def test_change_and_fault_reach_a_running_simulator(served: tuple[str, Path], mdm: Any) -> None:
    url, token_file = served
    before = requests.get(_root(url) + "/_sim/snapshot", timeout=5).json()
    code, out, err = mdm("vpp", "simulator", "change", "purchase", "count=25", 'supported_platforms=["iOS","macOS"]', "--token-file", str(token_file))
    assert code == 0, err
    assert out.startswith("purchase: [") and "versions" in out
    after = requests.get(_root(url) + "/_sim/snapshot", timeout=5).json()
    assert len(after["assets"]) == len(before["assets"]) + 1
    new = next(a for a in after["assets"] if a not in before["assets"])
    assert new["totalCount"] == 25 and new["supportedPlatforms"] == ["iOS", "macOS"]

    code, out, err = mdm("vpp", "simulator", "fault", "rate_limit", "retry_after=2", "--endpoint", "assets", "--count", "1", "--url", url)
    assert code == 0 and out.startswith("armed ") and '"retry_after": 2' in out, err
    code, out, err = mdm("vpp", "simulator", "fault", "--list", "--url", url)
    assert code == 0 and json.loads(out)["faults"][0]["kind"] == "rate_limit"
    code, out, err = mdm("vpp", "simulator", "fault", "--clear", "--url", url)
    assert (code, out) == (0, "faults cleared; the token is valid again\n")
    assert mdm("-q", "vpp", "simulator", "fault", "slow", "seconds=0", "--count", "1", "--url", url) == (0, "", "")  # -q: successes are silent
    assert requests.get(_root(url) + "/_sim/faults", timeout=5).json()["faults"][0]["kind"] == "slow"
    assert mdm("-q", "vpp", "simulator", "fault", "--clear", "--url", url) == (0, "", "")
    assert mdm("-q", "vpp", "simulator", "change", "purchase", "count=2", "--url", url) == (0, "", "")
    assert requests.get(_root(url) + "/_sim/faults", timeout=5).json()["faults"] == []


def test_bad_control_input_is_one_line(served: tuple[str, Path], mdm: Any, tmp_path: Path) -> None:
    url, token_file = served
    code, out, err = mdm("vpp", "simulator", "change", "purchase", "colour=red", "--url", url)
    assert code == 2 and "action purchase takes no parameter 'colour'; it takes: adam_id, pricing_param, count" in err and err.count("\n") == 1
    code, out, err = mdm("vpp", "simulator", "change", "teleport", "--url", url)
    assert code == 2 and "invalid choice: 'teleport'" in err
    code, out, err = mdm("vpp", "simulator", "fault", "slow", "secs=1", "--url", url)
    assert code == 2 and "fault slow takes no parameter 'secs'; it takes: seconds" in err
    code, out, err = mdm("vpp", "simulator", "change", "remove", "adam_id=1", "--token-file", str(tmp_path / "none.vpptoken"))
    assert code == 2 and "no running simulator known" in err and "mdm vpp simulator serve" in err
    code, out, err = mdm("vpp", "simulator", "change", "restore_token", "--url", "http://127.0.0.1:9/mdm/v2")
    assert code == 1 and "cannot reach the simulator at http://127.0.0.1:9" in err


def test_actions_are_documented_with_their_parameters(mdm: Any) -> None:
    code, out, err = mdm("vpp", "simulator", "actions")
    assert code == 0, err
    assert "purchase" in out and "count=10" in out and "adam_id=null" in out
    assert "remove" in out and "adam_id=(required)" in out
    assert "rate_limit" in out and "retry_after" in out and "--endpoint" in out


def test_a_token_that_expires_soon_previews_the_expiring_state(served: tuple[str, Path], mdm: Any) -> None:
    url, token_file = served
    expires = datetime.fromisoformat(requests.get(_root(url) + "/_sim/token", timeout=5).json()["tokenExpirationDate"].replace("Z", "+00:00"))
    assert timedelta(days=19) < expires - datetime.now(UTC) <= timedelta(days=20)
    code, out, err = mdm("vpp", "account", "add", "preview", "--token-file", str(token_file), "--service-url", url)
    assert code == 0, err
    [account] = json.loads(mdm("vpp", "account", "list", "--json")[1])
    assert account["token_state"] == "expiring_30"
    code, out, err = mdm("vpp", "simulator", "serve", "--token-expires-in", "nan")
    assert code == 2 and "--token-expires-in" in err


def test_serve_numbers_are_checked(mdm: Any) -> None:
    for args in (("--port", "70000"), ("--page-size", "0"), ("--devices", "-1"), ("--async-delay", "nan"), ("--token-expires-in", "0")):
        code, out, err = mdm("vpp", "simulator", "serve", *args)
        assert code == 2 and args[0] in err and err.count("\n") == 1, (args, err)


def test_limits_are_at_least_one(mdm: Any) -> None:
    for args in (("vpp", "runs", "--limit", "0"), ("alerts", "list", "--limit", "-5")):
        code, out, err = mdm(*args)
        assert code == 2 and "--limit" in err and err.count("\n") == 1, (args, err)


def test_an_adam_id_given_as_digits_names_the_asset(served: tuple[str, Path], mdm: Any) -> None:
    """`change remove adam_id=1029705796 serial_number=...` (the README's example): the digits
    were read as a JSON number, which matches no asset (Apple's adamIds are text): `remove`
    answered false and `transfer` 'unknown asset', and nothing changed."""
    url, token_file = served
    snapshot = requests.get(_root(url) + "/_sim/snapshot", timeout=5).json()
    adam, pricing, kind, serial = next(t for t in snapshot["assignments"] if t[2] == "serialNumber")
    asset = next(a for a in snapshot["assets"] if (a["adamId"], a["pricingParam"]) == (adam, pricing))
    code, out, err = mdm("vpp", "simulator", "change", "remove", f"adam_id={adam}", f"pricing_param={pricing}", f"serial_number={serial}", "--url", url)
    assert code == 0 and out.startswith("remove: true"), (out, err)
    code, out, err = mdm("vpp", "simulator", "change", "transfer", f"adam_id={adam}", f"pricing_param={pricing}", "count=2", "--url", url)
    assert code == 0, err
    after = requests.get(_root(url) + "/_sim/snapshot", timeout=5).json()
    assert [adam, pricing, kind, serial] not in after["assignments"]
    assert next(a for a in after["assets"] if a["adamId"] == adam and a["pricingParam"] == pricing)["totalCount"] == asset["totalCount"] + 2


def test_a_change_that_matches_nothing_fails_saying_what_to_check(served: tuple[str, Path], mdm: Any) -> None:
    url, token_file = served
    snapshot = requests.get(_root(url) + "/_sim/snapshot", timeout=5).json()
    adam_id = snapshot["assets"][0]["adamId"]
    code, out, err = mdm("vpp", "simulator", "change", "remove", f"adam_id={adam_id}", "serial_number=NOSUCHSERIAL", "--url", url)
    assert code == 1 and out == "", (code, out, err)  # was: `remove: false`, exit 0
    assert "remove changed nothing: nothing matched" in err and "serial_number" in err and len(err.strip().splitlines()) == 1
    code, out, err = mdm("vpp", "simulator", "change", "refund", "adam_id=999", "--url", url)
    assert code == 1 and "refund changed nothing: nothing matched: no asset has that adam_id" in err
    assert requests.get(_root(url) + "/_sim/snapshot", timeout=5).json() == snapshot
    code, out, err = mdm("vpp", "simulator", "change", "refund", f"adam_id={adam_id}", "--url", url)
    assert code == 0 and out.startswith("refund: true;"), err  # a change that changed something still succeeds


def test_every_action_that_can_match_nothing_says_what_to_check() -> None:
    import inspect

    from plugins.vpp.simulator.cli import UNMATCHED
    from plugins.vpp.simulator.remote import ACTIONS
    from plugins.vpp.simulator.server import Simulator

    boolean = {m for m, _ in ACTIONS.values() if inspect.signature(getattr(Simulator, m)).return_annotation in (bool, "bool")}
    assert boolean == set(UNMATCHED)
