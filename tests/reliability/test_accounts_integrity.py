"""Nothing changes at Apple that is not recorded here (issue 17 point 8, issue 12 "Accounts").

`vpp account add` claimed the location at Apple before writing the database: a read-only
database, a full disk or two concurrent adds left an orphan claim, and the retry was refused as
"managed by another MDM" (ourselves). Now the database must take writes before Apple is
called, adds are serialised, and a claim this host made before is recognised as its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mdm_core.host import Host
from mdm_core.testing import MdmRunner

from .conftest import count_figure, database_param, make_read_only


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    return database_param(request, project_dir)


@pytest.fixture
def mdm(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str) -> MdmRunner:
    return MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DATABASE_URL": database_url, "MDM_DISABLED_PLUGINS": "mobile_apps,alerts"})


@pytest.fixture
def token(small_sim: Any, project_dir: Path) -> str:
    return str(small_sim.write_token(project_dir / "school.vpptoken"))


def _add(mdm: MdmRunner, sim: Any, token: str, name: str = "school", *extra: str) -> tuple[int, str, str]:
    return mdm("vpp", "account", "add", name, "--token-file", token, "--service-url", sim.base_url, *extra)


def test_a_read_only_database_stops_the_add_before_apple_is_claimed(
    mdm: MdmRunner, small_sim: Any, token: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert mdm("devices", "list")[0] == 0  # the database exists, then it becomes read-only
    make_read_only(monkeypatch)
    code, out, err = _add(mdm, small_sim, token)
    assert code == 1, (out, err)
    assert err.count("\n") == 1 and "is read-only" in err and "SQL" not in err and "INSERT" not in err, err
    assert small_sim.state.mdm_info is None, "the location was claimed at Apple although nothing could be recorded"
    count_figure("claims_checked")


def test_an_add_whose_final_write_failed_is_retried_without_take_over(mdm: MdmRunner, small_sim: Any, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The claim happened, then the disk filled up: the retry recognises our own claim."""
    from sqlalchemy.exc import OperationalError

    from plugins.vpp import token_state

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT INTO vpp_account ...", {"token_ciphertext": "gAAAA-secret"}, Exception("database or disk is full"))

    with monkeypatch.context() as patch:
        patch.setattr(token_state, "token_added", disk_full)
        code, out, err = _add(mdm, small_sim, token)
    assert code == 1 and "the disk is full" in err and "gAAAA" not in err and "INSERT" not in err, err
    first_claim = dict(small_sim.state.mdm_info)
    code, out, err = _add(mdm, small_sim, token)
    assert code == 0, err
    assert small_sim.state.mdm_info["id"] == first_claim["id"]
    code, out, err = mdm("vpp", "sync", "school")
    assert code == 0, out + err
    count_figure("claims_checked")


def test_a_location_this_host_claimed_before_is_ours_and_another_mdms_is_not(mdm: MdmRunner, small_sim: Any, token: str) -> None:
    """Issue 12 "Accounts": re-adding a removed account needs no --take-over; another MDM's
    claim still does."""
    assert _add(mdm, small_sim, token)[0] == 0
    assert mdm("vpp", "account", "remove", "school", "--yes")[0] == 0
    code, out, err = _add(mdm, small_sim, token, "school-again")
    assert code == 0, err
    assert mdm("vpp", "sync", "school-again")[0] == 0
    assert mdm("vpp", "account", "remove", "school-again", "--yes")[0] == 0
    small_sim.claim_by_other_mdm(name="RivalMDM", metadata="rival.example.com")
    code, out, err = _add(mdm, small_sim, token)
    assert code == 1 and "RivalMDM" in err and "--take-over" in err
    assert _add(mdm, small_sim, token, "school", "--take-over")[0] == 0
    count_figure("claims_checked")


def test_two_adds_of_one_name_at_once_claim_once(make_host: Callable[..., Host], small_sim: Any, token: str, database_url: str) -> None:
    import plugins.vpp.plugin
    from mdm_core.errors import MdmError
    from plugins.vpp.accounts import add_account

    host = make_host(plugins=[plugins.vpp.plugin], database_url=database_url)
    posts: list[Any] = []
    original = small_sim.api._post["client/config"]

    def recorded(body: Any) -> Any:
        posts.append(body)
        return original(body)

    small_sim.api._post["client/config"] = recorded
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def add() -> None:
        barrier.wait()
        try:
            results.append(add_account(host, "school", token, service_url=small_sim.base_url))
        except MdmError as exc:
            results.append(exc)

    threads = [threading.Thread(target=add) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(results) == 2 and len(errors) == 1, results
    assert "already exists" in str(errors[0])
    assert len(posts) == 1, "the location was claimed twice"
    count_figure("claims_checked")
