"""Secrets: neither the sToken nor its inner ``token`` appears in logs (DEBUG), stdout/stderr,
exception messages, the database file (+ WAL) or ``account list --json``; a database copied
without the key does not reveal it; the key file is created 0600."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mdm_core.db.backup import backup_sqlite
from mdm_core.host import Host, create_host
from mdm_core.testing import MdmRunner
from plugins.vpp.sync.run import sync_account

from .conftest import RELIABLE_CONFIG, count_figure, inner_token


def _db_bytes(db: Path) -> bytes:
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(str(db) + suffix)
        if path.exists():
            data += path.read_bytes()
    return data


def _assert_absent(stoken: str, *places: str | bytes) -> None:
    secrets = [stoken, inner_token(stoken)]
    for place in places:
        for secret in secrets:
            needle = secret.encode() if isinstance(place, bytes) else secret
            assert needle not in place, "a token leaked"
        count_figure("secret_places_checked")


@pytest.fixture
def cli_env(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    conf = project_dir / "conf" / "mdm.toml"
    return MdmRunner(project_dir, monkeypatch, capsys, config=None if conf.exists() else RELIABLE_CONFIG)


@pytest.mark.slow  # the whole demo and failing syncs
def test_demo_and_failing_syncs_never_show_the_token(
    project_dir: Path, cli_env: Callable[..., tuple[int, str, str]], caplog: pytest.LogCaptureFixture, small_sim: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    code, out, err = cli_env("-vv", "demo")
    assert code == 0, err[-2000:]
    demo_token = (project_dir / "var" / "demo" / "demo.vpptoken").read_text().strip()
    assert stat.S_IMODE(os.stat(project_dir / "var" / "demo" / "demo.vpptoken").st_mode) == 0o600
    listed = cli_env("vpp", "account", "list", "--json")
    _assert_absent(demo_token, out, err, caplog.text, listed[1], listed[2])

    # a failing sync at DEBUG: revoked, then Apple echoing the token in an error body
    token_file = small_sim.write_token(project_dir / "school.vpptoken")
    assert cli_env("-vv", "vpp", "account", "add", "school", "--token-file", str(token_file), "--service-url", small_sim.base_url)[0] == 0
    outputs: list[str] = []
    small_sim.revoke_token()
    code, out, err = cli_env("-vv", "vpp", "sync", "school")
    assert code == 1 and "revoked" in err and "revoked" not in out
    outputs += [out, err]
    small_sim.restore_token()
    small_sim.faults.add("malformed_json", endpoint="assets", body=f'{{"errorMessage": "bad {small_sim.token} {inner_token(small_sim.token)}"')
    code, out, err = cli_env("-vv", "vpp", "sync", "school", "--json")
    assert code == 1
    outputs += [out, err]
    small_sim.faults.clear()
    for args in (("vpp", "account", "list", "--json"), ("vpp", "account", "list"), ("vpp", "runs", "--json")):
        outputs += list(cli_env(*args)[1:])
    _assert_absent(small_sim.token, caplog.text, *outputs)
    _assert_absent(demo_token, caplog.text, *outputs)

    db = project_dir / "var" / "mdm.sqlite3"
    raw = _db_bytes(db)
    assert len(raw) > 10_000
    _assert_absent(small_sim.token, raw)
    _assert_absent(demo_token, raw)


def test_token_echoed_by_apple_is_redacted(school: Host, small_sim: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A 401 whose error message repeats the token: the error, the run and the logs show it redacted."""
    import responses

    from plugins.vpp.accounts import client_for
    from plugins.vpp.apple.errors import VppError
    from plugins.vpp.models import VppAccount

    caplog.set_level(logging.DEBUG)
    token, inner = small_sim.token, inner_token(small_sim.token)
    with school.db.session() as session:
        account = session.get_one(VppAccount, session.execute(text("SELECT id FROM vpp_account")).scalar_one())
    client = client_for(school, account)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, small_sim.base_url + "/service/config", json={"urls": {"clientConfig": small_sim.base_url + "/client/config"}})
        mock.add(
            responses.GET,
            small_sim.base_url + "/client/config",
            status=401,
            json={"errorNumber": 9622, "errorMessage": f"token {token} / {inner} is invalid", "errorInfo": {"echo": [token, inner]}},
        )
        with pytest.raises(VppError) as caught:
            client.get_client_config()
    exc = caught.value
    _assert_absent(token, str(exc), repr(exc), " ".join(map(str, exc.args)), repr(exc.error_info), caplog.text)
    client.close()


def test_database_copied_without_the_key(
    synced: Host,
    small_sim: Any,
    tmp_path_factory: pytest.TempPathFactory,
    make_host: Callable[..., Host],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import plugins.vpp.plugin

    # a consistent copy (mdm db backup), not cp: the host checkpoints its WAL on a thread of its
    # own, so a copy of the file alone could miss the sync's last commits (its lock's release:
    # the copy's sync was then "already running")
    elsewhere = tmp_path_factory.mktemp("stolen")
    backup_sqlite(synced.db, elsewhere / "mdm.sqlite3")
    _assert_absent(small_sim.token, (elsewhere / "mdm.sqlite3").read_bytes())

    (elsewhere / "mdm.toml").write_text(RELIABLE_CONFIG)
    thief = create_host(
        elsewhere / "mdm.toml", environ={"MDM_SECRET_KEY": "another-key"}, plugins=[plugins.vpp.plugin], database_url=f"sqlite:///{elsewhere / 'mdm.sqlite3'}"
    )
    try:
        report = sync_account(thief, "school")
    finally:
        thief.close()
    assert report["status"] == "error" and "cannot be decrypted" in report["error"] and "\n" not in report["error"]
    _assert_absent(small_sim.token, str(report["error"]))

    from mdm_core.cli import main

    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{elsewhere / 'mdm.sqlite3'}")
    monkeypatch.setenv("MDM_SECRET_KEY", "another-key")
    monkeypatch.setenv("MDM_DISABLED_PLUGINS", "mobile_apps,alerts")  # the plugins the database was made with
    capsys.readouterr()
    code = main(["--config", str(elsewhere / "mdm.toml"), "vpp", "sync", "school"])
    out, err = capsys.readouterr()
    assert code == 1 and "cannot be decrypted" in out + err
    # one line on stderr (the sync report), and the error is not printed again as a log line
    assert out == "" and len(err.strip().splitlines()) == 1
    _assert_absent(small_sim.token, out, err)


def test_key_file_created_0600_without_mdm_secret_key(project_dir: Path, small_sim: Any) -> None:
    import plugins.vpp.plugin
    from plugins.vpp.accounts import add_account

    (project_dir / "conf" / "mdm.toml").write_text(RELIABLE_CONFIG)
    host = create_host(
        project_dir / "conf" / "mdm.toml", environ={}, plugins=[plugins.vpp.plugin], database_url=f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"
    )
    try:
        add_account(host, "school", str(small_sim.write_token(project_dir / "t.vpptoken")), service_url=small_sim.base_url)
        assert sync_account(host, "school")["status"] == "ok"
    finally:
        host.close()
    key = project_dir / "var" / "secret.key"
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert small_sim.token.encode() not in _db_bytes(project_dir / "var" / "mdm.sqlite3")
    count_figure("secret_places_checked")
