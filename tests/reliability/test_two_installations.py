"""Two installations on one machine (two databases: a test instance, a staging copy, another
school's) never take each other's location silently.

``mdmInfo`` was "ours" when it named ``[vpp] mdm_name`` and this machine's host name: the second
installation adding the first one's token reused its ``mdmInfo`` id, with no take-over question,
and neither saw ``taken_over``. A claim now carries this database's installation id (vpp
migration 0012) in its metadata; the second installation is asked for ``--take-over`` as for any
other MDM, and what this database claimed itself is still taken back without it.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mdm_core.testing import MdmRunner

from .conftest import database_param

DISABLED = "mobile_apps,alerts"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project_dir: Path) -> str:
    return database_param(request, project_dir)


def _runner(folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str) -> MdmRunner:
    """``mdm`` on ``folder``'s configuration, whose database is ``url`` (in its file: two runners, two databases)."""
    config = f'[core]\ndatabase_url = "{url}"\n'
    return MdmRunner(folder, monkeypatch, capsys, config=config, environ={"MDM_DISABLED_PLUGINS": DISABLED}, unset=["MDM_DATABASE_URL"])


def _add(mdm: MdmRunner, sim: Any, token: str, name: str, *extra: str) -> tuple[int, str, str]:
    return mdm("vpp", "account", "add", name, "--token-file", token, "--service-url", sim.base_url, *extra)


def test_a_second_installation_on_this_machine_must_take_the_location_over(
    project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], small_sim: Any, database_url: str
) -> None:
    first_dir = tmp_path / "first-installation"
    for folder in ("conf", "var"):
        (first_dir / folder).mkdir(parents=True)
    first = _runner(first_dir, monkeypatch, capsys, f"sqlite:///{first_dir / 'var' / 'mdm.sqlite3'}")
    second = _runner(project_dir, monkeypatch, capsys, database_url)
    token = str(small_sim.write_token(project_dir / "school.vpptoken"))
    assert second("db", "upgrade")[0] == 0  # its database made first: the add's error is its only line
    assert _add(first, small_sim, token, "school")[0] == 0
    claim = dict(small_sim.state.mdm_info)

    code, out, err = _add(second, small_sim, token, "school")
    assert code == 1 and "is managed by mdm-host" in err and "--take-over" in err and err.count("\n") == 1, err
    assert small_sim.state.mdm_info == claim, "the second installation claimed the location without asking"
    assert first("vpp", "sync", "school")[0] == 0

    assert _add(second, small_sim, token, "school", "--take-over")[0] == 0
    assert small_sim.state.mdm_info["id"] != claim["id"]
    code, out, err = first("vpp", "sync", "school")
    assert code == 1 and "managed by another MDM" in out + err, out + err
    assert "taken over by another MDM" in first("vpp", "account", "list")[1]

    # what the second installation claimed itself is still its own: removed, it is added again without --take-over
    assert second("vpp", "account", "remove", "school", "--yes")[0] == 0
    assert _add(second, small_sim, token, "school-again")[0] == 0
    assert second("vpp", "sync", "school-again")[0] == 0


def test_upgrading_keeps_the_locations_of_its_accounts_and_then_its_installation_id(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], small_sim: Any, database_url: str
) -> None:
    """A database from before vpp migration 0012 (its claims named the host alone): after
    ``mdm db upgrade`` its account syncs and renews without --take-over, and its installation id,
    made once by the upgrade, is the one later claims carry."""
    mdm = _runner(project_dir, monkeypatch, capsys, database_url)
    token = str(small_sim.write_token(project_dir / "school.vpptoken"))
    assert _add(mdm, small_sim, token, "school")[0] == 0
    account_id = small_sim.state.mdm_info["id"]
    small_sim.claim_by_other_mdm(id=account_id, name="mdm-host", metadata=socket.getfqdn()[:255])  # as the earlier release claimed it
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:  # back to vpp 0011 (without what 0012 and 0013 make)
            conn.execute(text("DROP TABLE vpp_installation"))
            conn.execute(text("DROP INDEX ix_vpp_sync_run_running"))
            conn.execute(text("UPDATE vpp_alembic_version SET version_num = '0011'"))
        code, out, err = mdm("db", "upgrade")
        assert code == 0 and "vpp: applied 0012" in out, out + err
        assert mdm("vpp", "sync", "school")[0] == 0
        code, out, err = mdm("vpp", "account", "set", "school", "--token-file", token)
        assert code == 0, err
        with engine.connect() as conn:
            [installation] = [row[0] for row in conn.execute(text("SELECT installation_id FROM vpp_installation"))]
    finally:
        engine.dispose()
    assert small_sim.state.mdm_info["id"] == account_id
    assert small_sim.state.mdm_info["metadata"].endswith(f" installation {installation}")
    assert mdm("vpp", "account", "remove", "school", "--yes")[0] == 0
    assert _add(mdm, small_sim, token, "school")[0] == 0  # its own claim: no --take-over
    assert small_sim.state.mdm_info["id"] == account_id
