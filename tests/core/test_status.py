"""`mdm status`, the notice of a new database (a mistyped path, a configuration outside conf/),
`-q`, one time format, errors printed once."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from mdm_core.cli import main

from ..conftest import head_revision


def test_status_of_a_new_then_used_database(mdm, project_dir):
    mdm.initialise = False  # a site whose database is not made yet
    code, out, err = mdm("status", "--json")
    assert code == 1, err  # the file does not exist yet: attention
    status = json.loads(out)
    db = project_dir / "var" / "mdm.sqlite3"
    assert status["database"] == {"url": f"sqlite:///{db}", "source": "from MDM_DATABASE_URL", "exists": False, "schema": "new", "pending": []}
    assert any("does not exist" in p for p in status["problems"])
    assert not db.exists()  # status creates nothing
    assert mdm("db", "upgrade")[0] == 0  # as the problem line says
    code, out, err = mdm("status")
    assert code == 0, out + err
    assert f"database:      sqlite:///{db} (from MDM_DATABASE_URL)" in out
    assert "schema:        current" in out
    assert "inventory" in out and "enabled" in out


def test_status_of_an_in_memory_database_warns_that_nothing_lasts(mdm, monkeypatch):
    """An in-memory database is new in every command: status shows an empty one's status, exit 0,
    and one warning saying so and how to keep data (was: exit 1, "lacks a table this release
    needs: run `mdm db upgrade`", which no upgrade can fix)."""
    monkeypatch.setenv("MDM_DATABASE_URL", "sqlite://")
    code, out, err = mdm("status")
    assert (code, err) == (0, ""), out + err
    assert "schema:        current\n" in out and "attention" not in out, out
    assert (
        "\nwarning: database sqlite:// is in memory: every mdm command starts with an empty one, and what it writes is gone when "
        "it ends; set [core] database_url or MDM_DATABASE_URL to a file or a PostgreSQL database\n"
    ) in out
    code, out, _ = mdm("status", "--json")
    status = json.loads(out)
    assert (code, status["database"]["schema"], status["problems"]) == (0, "current", [])
    assert [w for w in status["warnings"] if "in memory" in w] == [status["warnings"][-1]]


def test_status_of_an_empty_postgresql_database_is_new_as_db_status_says(mdm, pg_url, monkeypatch):
    """An empty PostgreSQL database is ``new`` (was: ``behind``, pending every migration), as
    `mdm db status` says and as `mdm status` says of a missing SQLite file; status creates nothing."""
    from sqlalchemy import create_engine, inspect

    monkeypatch.setenv("MDM_DATABASE_URL", pg_url)
    mdm.initialise = False  # the empty database itself
    code, out, err = mdm("status", "--json")
    assert code == 1, err
    status = json.loads(out)
    assert (status["database"]["schema"], status["database"]["pending"]) == ("new", []), status["database"]
    assert any("is not initialised, it has no tables (from MDM_DATABASE_URL): create them with `mdm db upgrade`" in p for p in status["problems"])
    code, out, err = mdm("status")
    assert "schema:        new\n" in out and "behind" not in out, out
    code, out, _ = mdm("db", "status")
    assert code == 1 and all(line.split()[3] == "new" for line in out.splitlines()[1:]), out
    engine = create_engine(pg_url)
    try:
        assert inspect(engine).get_table_names() == []  # status created nothing
    finally:
        engine.dispose()


def test_status_lists_disabled_plugins_accounts_and_jobs(vpp_host, project_dir, monkeypatch, capsys):
    conf = project_dir / "conf" / "mdm.toml"
    conf.write_text('[plugins]\ndisabled = ["demo"]\n')
    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    monkeypatch.setenv("MDM_SECRET_KEY", "test-secret-key")
    capsys.readouterr()
    assert main(["--config", str(conf), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {"name": "demo", "state": "disabled"}.items() <= next(p for p in status["plugins"] if p["name"] == "demo").items()
    [account] = status["sections"]["accounts"]
    assert account["name"] == "school" and account["token"] == "valid" and account["interval_seconds"] == 3600
    assert (account["notifications"], account["last_notification_at"]) == ("off", None)
    assert "vpp.sync.school" in {j["name"] for j in status["jobs"]}
    assert main(["--config", str(conf), "status"]) == 0
    out = capsys.readouterr().out
    assert "\naccounts:\n" in out and "school" in out and "vpp.sync.school" in out


def test_a_new_database_says_where_its_url_came_from(project_dir, monkeypatch, capsys, tmp_path):
    """A configuration outside conf/ (relative paths from its own folder) and a mistyped path
    are noticed: the notice names the file and where the URL came from."""
    monkeypatch.delenv("MDM_DATABASE_URL", raising=False)
    monkeypatch.setenv("MDM_PLUGIN_AUTOLOAD", "0")
    monkeypatch.setenv("MDM_SECRET_KEY", "k")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "my.toml").write_text("")
    capsys.readouterr()
    assert main(["--config", str(elsewhere / "my.toml"), "devices", "list"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"mdm: error: database file {elsewhere / 'var' / 'mdm.sqlite3'} does not exist (the default, relative to {elsewhere}, "
        f"the folder of {elsewhere / 'my.toml'}): create it with `mdm db upgrade`, or correct the path\n"
    )
    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{project_dir / 'var' / 'mdm.sqlte3'}")
    assert main(["--config", str(elsewhere / "my.toml"), "devices", "list"]) == 2
    typo = project_dir / "var" / "mdm.sqlte3"
    assert (
        capsys.readouterr().err
        == f"mdm: error: database file {typo} does not exist (from MDM_DATABASE_URL): create it with `mdm db upgrade`, or correct the path\n"
    )
    assert not typo.exists() and not (elsewhere / "var").exists()  # was: an empty database made at each


def test_quiet_silences_successes_but_not_lists_or_errors(mdm):
    assert mdm("-q", "users", "add", "u1")[:2] == (0, "")
    assert mdm("-q", "users", "set", "u1", "--name", "Ann")[:2] == (0, "")
    assert "u1" in mdm("-q", "users", "list")[1]
    code, out, err = mdm("-q", "users", "add", "u1")
    assert code == 1 and out == "" and "exists" in err
    assert mdm("users", "add", "u2")[1] == "added user u2\n"  # without -q again


def test_times_are_labelled_utc_in_one_format(mdm, caplog):
    from datetime import datetime, timedelta, timezone

    from mdm_core.cli import utc_log_formatter
    from mdm_core.output import format_time

    assert mdm("devices", "add", "S1", "--platform", "ios")[0] == 0
    line = mdm("devices", "list")[1].splitlines()[1]
    assert line.endswith(" UTC") and line.split()[-3].count("-") == 2  # enrolled_at 2026-11-28 04:37:29 UTC
    eastern = datetime(2024, 11, 3, 1, 30, tzinfo=timezone(timedelta(hours=-4)))
    assert format_time(eastern) == format_time(eastern.isoformat()) == "2024-11-03 05:30:00 UTC"
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "m", None, None)
    record.created = eastern.timestamp()
    assert utc_log_formatter().format(record).startswith("2024-11-03 05:30:00 UTC ERROR x: m")


STATUS_PLUGIN = """
    @hookimpl
    def mdm_status(host):
        return {"widgets": [{"name": "w1", "state": "spinning"}]}
"""

BROKEN_STATUS_PLUGIN = """
    @hookimpl
    def mdm_status(host):
        raise RuntimeError("widget store unreachable")
"""


def test_plugins_add_their_rows_and_a_failing_one_is_one_line(mdm, write_plugin):
    good, bad = write_plugin(STATUS_PLUGIN), write_plugin(BROKEN_STATUS_PLUGIN)
    config = f'[plugins]\nenabled = ["{good}", "{bad}"]\n'
    assert mdm("devices", "list", config=config)[0] == 0
    code, out, err = mdm("status", config=config)
    assert code == 1, err
    assert "\nwidgets:\nname  state\nw1    spinning\n" in out
    assert f"attention: plugin '{bad}' cannot tell its status: RuntimeError: widget store unreachable" in out


ATTENTION_PLUGIN = """
    @hookimpl
    def mdm_status_attention(host):
        return {"problems": ["widget store full: empty it with mdm widgets purge"], "warnings": ["widget licence ends in 9 days"]}
"""

WARNING_PLUGIN = """
    @hookimpl
    def mdm_status_attention(host):
        return {"warnings": ["widget licence ends in 9 days"]}
"""

MISSHAPEN_ATTENTION_PLUGIN = """
    @hookimpl
    def mdm_status_attention(host):
        return ["widget store full"]
"""


def test_a_plugins_problem_makes_status_exit_1_and_a_warning_does_not(mdm, write_plugin):
    """A monitoring script (`mdm status || alert`) hears of a plugin's problem; a warning is
    shown, in text and JSON, and leaves the exit code."""
    warner, troubled, misshapen = write_plugin(WARNING_PLUGIN), write_plugin(ATTENTION_PLUGIN), write_plugin(MISSHAPEN_ATTENTION_PLUGIN)
    config = f'[plugins]\nenabled = ["{warner}"]\n'
    assert mdm("devices", "list", config=config)[0] == 0
    code, out, err = mdm("status", config=config)
    assert code == 0, out + err
    assert out.endswith("\nwarning: widget licence ends in 9 days\n")
    code, out, err = mdm("status", "--json", config=config)
    assert code == 0 and (json.loads(out)["problems"], json.loads(out)["warnings"]) == ([], ["widget licence ends in 9 days"])

    config = f'[plugins]\nenabled = ["{troubled}", "{misshapen}"]\n'
    code, out, err = mdm("status", config=config)
    assert code == 1, out + err
    assert "\nwarning: widget licence ends in 9 days\n" in out
    assert "\nattention: widget store full: empty it with mdm widgets purge\n" in out
    assert f"\nattention: plugin '{misshapen}' returned an unexpected value from mdm_status_attention: " in out
    code, out, err = mdm("status", "--json", config=config)
    status = json.loads(out)
    assert code == 1 and "widget store full: empty it with mdm widgets purge" in status["problems"] and len(status["problems"]) == 2
    assert status["warnings"] == ["widget licence ends in 9 days"]


def _status(conf, capsys) -> tuple[int, dict, int, str]:
    code = main(["--config", str(conf), "status", "--json"])
    status = json.loads(capsys.readouterr().out)
    text_code = main(["--config", str(conf), "status"])
    return code, status, text_code, capsys.readouterr().out


@pytest.mark.parametrize(
    "fault, shown, advice",
    [
        ("expire_token", "expired", "download a new token from Apple School/Business Manager, then: mdm vpp account set school --token-file"),
        ("revoke_token", "revoked", "the token was revoked in Apple School/Business Manager"),
        ("claim_by_other_mdm", "taken over by another MDM (OtherMDM (other.example.com))", "another MDM claimed this location"),
    ],
)
def test_status_exits_1_while_a_vpp_token_stopped_working(vpp_host, simulator, project_dir, monkeypatch, capsys, fault, shown, advice):
    """`mdm status` exited 0 with a revoked token: `mdm status || alert` never told the admin."""
    from plugins.vpp.sync.run import sync_account

    conf = project_dir / "conf" / "mdm.toml"
    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    monkeypatch.setenv("MDM_SECRET_KEY", "test-secret-key")
    capsys.readouterr()
    assert _status(conf, capsys)[::2] == (0, 0)
    getattr(simulator, fault)()
    assert sync_account(vpp_host, "school")["status"] == "error"
    code, status, text_code, out = _status(conf, capsys)
    [problem] = status["problems"]
    assert (code, text_code, status["warnings"]) == (1, 1, [])
    assert problem.startswith(f"VPP account 'school': token {shown}, the account cannot sync: {advice}")
    assert f"\nattention: {problem}\n" in out
    assert simulator.token not in out


def test_a_vpp_token_expiring_soon_is_a_warning_that_leaves_the_exit_code(make_host, project_dir, monkeypatch, capsys):
    from plugins.vpp.simulator import Simulator
    from plugins.vpp.testing import add_simulated_account

    conf = project_dir / "conf" / "mdm.toml"
    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    monkeypatch.setenv("MDM_SECRET_KEY", "test-secret-key")
    expires = datetime.now(UTC) + timedelta(days=11, hours=12)
    with Simulator(seed=3, assets=2, devices=2, users=2, async_delay=0, token_expires_at=expires) as apple:
        add_simulated_account(make_host(), apple, project_dir)
        capsys.readouterr()
        code, status, text_code, out = _status(conf, capsys)
    assert (code, text_code, status["problems"]) == (0, 0, [])
    assert status["warnings"] == [
        f"VPP account 'school': token expiring in 12 days (on {expires:%Y-%m-%d}): "
        "renew the token before it expires: mdm vpp account set school --token-file NEW.vpptoken"
    ]
    assert f"\nwarning: {status['warnings'][0]}\n" in out


def test_a_vpp_token_this_host_cannot_decrypt_is_a_problem(vpp_host, project_dir, monkeypatch, capsys):
    """Started with another secret key, no account can sync: exit 1, saying how to fix it."""
    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    monkeypatch.setenv("MDM_SECRET_KEY", "another-hosts-key")
    capsys.readouterr()
    code, status, text_code, out = _status(project_dir / "conf" / "mdm.toml", capsys)
    assert (code, text_code) == (1, 1)
    assert status["problems"] == [
        "VPP account 'school': token unreadable (wrong or missing secret key), the account cannot sync: the stored token cannot be decrypted "
        "with this host's secret key: restore the key it was stored with (var/secret.key or MDM_SECRET_KEY), "
        "or enter the token again: `mdm vpp account set school --token-file FILE --key-lost`"  # another host's key reads none
    ]


@pytest.mark.parametrize("source", ["conf", "env"])
def test_a_disabled_name_no_plugin_has_is_a_warning(mdm, monkeypatch, source):
    """`disabled = ["invetory"]` (meaning inventory) left inventory enabled, and only `mdm plugins`
    showed the name, on a line of its own: `mdm status` said nothing. It is now a warning (exit
    0) naming it and the plugins installed."""
    config = ""
    if source == "conf":
        config = '[plugins]\ndisabled = ["invetory"]\n'
    else:
        monkeypatch.setenv("MDM_DISABLED_PLUGINS", "invetory")
    assert mdm("devices", "list", config=config)[0] == 0  # inventory is not disabled
    code, out, err = mdm("status", config=config)
    expected = (
        "[plugins] disabled or MDM_DISABLED_PLUGINS names 'invetory', which no installed plugin is (installed: inventory, web): "
        "a typo? the plugin meant is not disabled; correct the name"
    )
    assert code == 0 and f"\nwarning: {expected}\n" in out, out + err
    code, out, err = mdm("status", "--json", config=config)
    assert code == 0 and json.loads(out)["warnings"] == [expected]
    monkeypatch.delenv("MDM_DISABLED_PLUGINS", raising=False)
    code, out, err = mdm("status", config="")  # without it: no warning
    assert "warning:" not in out


def test_a_database_behind_or_ahead_names_the_next_step(mdm, project_dir):
    """`mdm status` said `attention: database schema is behind: see mdm db status`, one more
    command away from what to do; it now says it as every other command does."""
    import sqlite3

    from ..test_release_0_1_0 import build_release_0_1_0

    build_release_0_1_0(f"sqlite:///{mdm.db}")
    code, out, err = mdm("status")
    assert code == 1
    assert out.endswith(
        "\nattention: database schema is behind this release: run `mdm db upgrade` (pending: core release 0.1.0 tables -> "
        f"{head_revision('core')}, web nothing -> {head_revision('web')})\n"
    ), out
    assert mdm("db", "upgrade")[0] == 0
    with sqlite3.connect(mdm.db) as conn:
        conn.execute("UPDATE core_alembic_version SET version_num = '9999'")
    code, out, err = mdm("status")
    assert code == 1
    assert out.endswith(
        f"\nattention: database schema is ahead of this release (core is at 9999, this release knows up to {head_revision('core')}): "
        "a newer mdm-host has upgraded it; run that release, or restore the backup made before the upgrade\n"
    ), out
