"""A list's filter naming nothing here (an account, an asset, a device, a VPP user) is bad
input: one line naming it and the command listing the valid ones, exit 2 as argparse's own
usage errors; a known one that matches nothing is an empty list, exit 0. `mdm vpp licenses
--asset abc` printed "no licenses" and exit 0, an unknown --account exited 1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import EventRecorder, MdmRunner

from .conftest import FAST_CONFIG


@pytest.fixture
def host(make_host: Callable[..., Host], recorder: EventRecorder, database_url: str | None) -> Host:
    """The VPP host on SQLite and PostgreSQL: each filter is a lookup each database answers on its own."""
    import plugins.vpp.plugin

    return make_host(plugins=[plugins.vpp.plugin, recorder], config=FAST_CONFIG, database_url=database_url)


@pytest.fixture
def cli(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str | None) -> MdmRunner:
    """``mdm`` on the host's database."""
    return MdmRunner(project_dir, monkeypatch, capsys, config=FAST_CONFIG, environ={"MDM_DISABLED_PLUGINS": "mobile_apps"}, database_url=database_url)


def test_a_filter_naming_nothing_is_exit_2_naming_the_list_of_valid_ones(synced: Host, cli: Any, simulator: Any) -> None:
    licenses = json.loads(cli("vpp", "licenses", "--json")[1])
    adam = licenses[0]["adamId"]
    for args, said in [
        (["vpp", "licenses", "--asset", "abc"], "adamId 'abc' is not valid: an adamId is a number (see `mdm vpp assets`)"),
        (["vpp", "licenses", "--asset", "999999999"], "no asset 999999999 in the mirror (see `mdm vpp assets`"),
        (["vpp", "licenses", "--device", "NOPE0000"], "device NOPE0000 is neither enrolled nor holding a license (`mdm devices list` lists the enrolled ones)"),
        (["vpp", "licenses", "--user", "nobody-here"], "'nobody-here' is not a VPP user (see `mdm vpp users`)"),
        (["vpp", "licenses", "--account", "nope"], "no VPP account named 'nope' (known accounts: school)"),
        (["vpp", "assets", "--account", "nope"], "no VPP account named 'nope'"),
        (["vpp", "users", "--account", "nope"], "no VPP account named 'nope'"),
        (["vpp", "runs", "nope"], "no VPP account named 'nope'"),
        (["vpp", "account", "set", "nope", "--interval", "3600"], "no VPP account named 'nope'"),
    ]:
        code, out, err = cli(*args)
        assert (code, out) == (2, ""), (args, code, out, err)
        assert said in err and len(err.strip().splitlines()) == 1, (args, err)
    code, out, err = cli("vpp", "licenses", "--asset", adam, "--json")
    assert code == 0 and {r["adamId"] for r in json.loads(out)} == {adam}


def test_a_known_filter_matching_nothing_is_an_empty_list(synced: Host, cli: Any) -> None:
    from plugins.vpp.models import VppUser

    with synced.db.session() as session:  # a VPP user of the mirror without a license
        session.add(VppUser(account_id=1, client_user_id="no-licence", status="Registered"))
        session.commit()
    code, out, err = cli("vpp", "licenses", "--user", "no-licence")
    assert (code, out.strip()) == (0, "no licenses") and "error" not in err
