"""The README's main job: `mdm demo` works on a fresh project folder, and again, on a
database of its own: the configured database (production, say) is never touched."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from mdm_core.cli import main
from mdm_core.host import create_host

APPLE = "https://vpp.itunes.apple.com/mdm/v2"


def _admin_database(project_dir: Path, conf: Path) -> str:
    """The admin's own database: an account named `demo` on Apple's service, a device and a user."""
    from mdm_core.inventory import add_device, add_user
    from plugins.vpp.accounts import add_account
    from plugins.vpp.models import VppAccount
    from plugins.vpp.simulator import Simulator

    url = f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}"
    host = create_host(conf, environ={"MDM_SECRET_KEY": "admin-key"}, database_url=url)
    try:
        with Simulator(seed=3, assets=2, devices=2, users=2, async_delay=0) as sim:
            add_account(host, "demo", str(sim.write_token(project_dir / "admin.vpptoken")), service_url=sim.base_url)
        host.db.run_write(lambda s: s.execute(update(VppAccount).values(service_url=APPLE)))
        add_user(host, "alice", email="alice@school.example")
        add_device(host, "ADMIN0001", "iOS", owner="alice")
    finally:
        host.close()
    return url


def _admin_state(conf: Path, url: str) -> tuple[list[tuple[str, str]], list[dict], list[dict]]:
    from mdm_core.inventory import list_devices, list_users
    from plugins.vpp.accounts import list_accounts

    host = create_host(conf, environ={"MDM_SECRET_KEY": "admin-key"}, database_url=url)
    try:
        return [(a["name"], a["service_url"]) for a in list_accounts(host)], list_devices(host), list_users(host)
    finally:
        host.close()


@pytest.mark.slow  # the whole demo, twice
def test_demo_runs_twice_on_its_own_database(project_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text("")
    url = _admin_database(project_dir, conf)
    before = _admin_state(conf, url)
    monkeypatch.setenv("MDM_DATABASE_URL", url)  # even when the environment names the admin's database
    monkeypatch.setenv("MDM_SECRET_KEY", "admin-key")
    for run in (1, 2):
        assert main(["--config", str(conf), "demo"]) == 0, capsys.readouterr()
        out = capsys.readouterr().out
        assert "demo: full sync ok" in out and "demo: incremental sync ok" in out
        assert "licenses +0 -1" in out  # the license removed in Apple's portal left the mirror
        assert "queued: InstallApplication queued" in out if run == 1 else "queued: InstallApplication already queued" in out
        assert '"iTunesStoreID": ' in out and '"PurchaseMethod": 1' in out
        assert f"database: sqlite:///{project_dir / 'var' / 'demo' / 'demo.sqlite3'} (the demo's own" in out
        assert f"its data stays in sqlite:///{project_dir / 'var' / 'demo' / 'demo.sqlite3'}" in out
        if run == 2:
            assert "replacing the 'demo' account left by an earlier run; the rest of what it left stays" in out
        # it ends by telling how to open the console on the demo's database, leaving no server running
        hint = re.search(r'export MDM_DATABASE_URL=(\S+) MDM_SECRET_KEY="\$\(cat (\S+)\)"', out)
        listen = re.search(r"run --listen 127\.0\.0\.1:(\d+) .*http://127\.0\.0\.1:\1/", out)
        assert hint and listen and "admins add demo-admin" in out
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", int(listen.group(1)))) != 0
    assert (project_dir / "var" / "demo" / "demo.sqlite3").is_file()
    assert (project_dir / "var" / "demo" / "secret.key").is_file()  # its own key: the host's is not created
    assert not (project_dir / "var" / "secret.key").exists()
    assert _admin_state(conf, url) == before  # the admin's account, device and user are untouched

    # following the hint opens the demo's data in the console
    assert hint is not None
    monkeypatch.setenv("MDM_DATABASE_URL", hint.group(1))
    monkeypatch.setenv("MDM_SECRET_KEY", Path(hint.group(2)).read_text().strip())
    password = project_dir / "pw.txt"
    password.write_text("correct horse battery staple\n")
    assert main(["--config", str(conf), "admins", "add", "demo-admin", "--password-file", str(password)]) == 0
    _console_shows_the_demo_account(conf)


@pytest.mark.slow  # the whole demo, twice, each in a process of its own
def test_a_second_demo_removes_the_same_license_and_says_what_the_first_left(project_dir: Path) -> None:
    """Each run removed a license from another device (a set's order, which changes with the
    process's hash seed); a second run listed the app the first bought as retired without a
    word. Each run removes the same one; the second says what the first left before listing it."""
    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text("")
    outs = []
    for hash_seed in ("1", "2"):
        env = {k: v for k, v in os.environ.items() if k not in ("MDM_DATABASE_URL", "MDM_DISABLED_PLUGINS")} | {"PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-m", "mdm_core.cli", "--config", str(conf), "demo"], env=env, cwd=project_dir, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
        outs.append(done.stdout)
    removed = [re.findall(r"removed the license of \d+ from device \S+", out) for out in outs]
    assert len(removed[0]) == 1 and removed[0] == removed[1], removed
    assert "earlier run" not in outs[0]
    first, second = outs[1].index("the rest of what it left stays"), outs[1].index("$ mdm apps list")
    assert first < second and f"delete {project_dir / 'var' / 'demo'} to start afresh" in outs[1][:second]
    # the app the first run bought, retired with the first run's account: it showed "24/25 retired",
    # that account's counts, as if they were its licenses now
    listing = outs[1][second:].split("\n== ", 1)[0]
    [bought] = [line.split() for line in listing.splitlines() if "Piano Plus" in line]
    assert bought[-3:] == ["-", "-", "retired"], listing  # availableCount, totalCount


def test_demo_never_replaces_an_account_it_did_not_create(project_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text("")
    url = _admin_database(project_dir, conf)
    before = _admin_state(conf, url)
    monkeypatch.setenv("MDM_SECRET_KEY", "admin-key")
    capsys.readouterr()
    assert main(["--config", str(conf), "demo", "--database-url", url]) == 1
    err = capsys.readouterr().err
    assert "has an account named 'demo' that the demo did not create" in err and err.count("\n") == 1
    assert _admin_state(conf, url) == before


def _console_shows_the_demo_account(conf: Path) -> None:
    from fastapi.testclient import TestClient

    from mdm_core.web.app import create_app

    host = create_host(conf)
    try:
        with TestClient(create_app(host)) as client:
            client.get("/login")
            signed_in = client.post(
                "/login", data={"name": "demo-admin", "password": "correct horse battery staple", "next": "/vpp", "csrftoken": client.cookies.get("csrftoken")}
            )
            assert signed_in.status_code == 200 and 'href="/vpp/accounts/demo/assets"' in signed_in.text
    finally:
        host.close()


def test_quiet_demo_prints_nothing_unless_it_fails(project_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``mdm -q demo``: no walkthrough on success; a failure names its step on stderr."""
    import plugins.demo.run as demo

    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text("")
    (project_dir / "var").rmdir()  # a new project: the demo makes var/
    capsys.readouterr()
    assert main(["--config", str(conf), "-q", "demo"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "error" not in err
    assert (project_dir / "var" / "demo" / "demo.sqlite3").is_file()  # it did run
    for folder in (project_dir / "var", project_dir / "var" / "demo"):  # they hold a database, a key and a token
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder

    real = demo._mdm

    def sync_fails(host, command):
        if command.startswith("vpp sync"):
            print("demo: full sync failed: (a simulated failure)")
            return 1
        return real(host, command)

    monkeypatch.setattr(demo, "_mdm", sync_fails)
    assert main(["--config", str(conf), "-q", "demo"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == ('mdm: error: the demo failed at "Full sync: assets, users and licenses": run `mdm demo` without -q to see each command')
