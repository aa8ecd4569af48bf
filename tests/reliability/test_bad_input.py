"""Bad input: each gives ONE line on stderr naming what is wrong and how to fix it, exit code 1
or 2, no traceback, and nothing written."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mdm_core.testing import MdmRunner

from .conftest import RELIABLE_CONFIG, count_figure

ROOT = Path(__file__).resolve().parents[2]


def _b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _stoken(exp: Any, token: Any = "c2VjcmV0", org: Any = "Springfield Schools") -> str:
    return _b64({"token": token, "expDate": exp, "orgName": org})


def row_counts(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            tables = [r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))]
            return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables if t != "core_lock"}
    finally:
        engine.dispose()


class Cli(MdmRunner):
    """The shared in-process runner, plus a check that a failure is one clean line."""

    def fails(self, *args: str, code: int | tuple[int, ...] = (1, 2), says: tuple[str, ...] = ()) -> str:
        """Run, and check the failure: one line on stderr, no traceback, nothing written."""
        before = row_counts(self.db)
        got, out, err = self(*args)
        assert got in ((code,) if isinstance(code, int) else code), (got, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "Traceback" not in err + out
        assert lines[0].startswith("mdm"), err
        for word in says:
            assert word.lower() in lines[0].lower(), (word, lines[0])
        assert row_counts(self.db) == before, "a failed command wrote to the database"
        count_figure("bad_inputs")
        return lines[0]


@pytest.fixture
def cli(project_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    runner = Cli(project_dir, monkeypatch, capsys, config=RELIABLE_CONFIG)
    assert runner("vpp", "account", "list")[0] == 0  # the database exists: "nothing written" is measurable
    return runner


FUTURE = (datetime.now(UTC) + timedelta(days=300)).strftime("%Y-%m-%dT%H:%M:%S+0000")
PAST = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S+0000")

TOKEN_FILES: dict[str, tuple[bytes | None, tuple[str, ...]]] = {
    "not-base64": (b"%%% this is not a token %%%", ("not base64",)),
    "truncated": (_stoken(FUTURE).encode()[:37], ("token file",)),
    "empty": (b"\n", ("empty",)),
    "binary": (bytes(range(256)), ("token file",)),
    "json-array": (_b64(["token", FUTURE]).encode(), ("JSON object",)),
    "json-string": (_b64("just a string").encode(), ("JSON object",)),
    "expDate-number": (_stoken(1893456000).encode(), ("expDate",)),
    "expDate-garbage": (_stoken("next tuesday").encode(), ("expDate",)),
    "token-number": (_stoken(FUTURE, token=12345).encode(), ("token",)),
    "no-token-field": (_b64({"expDate": FUTURE, "orgName": "x"}).encode(), ("token",)),
    "orgName-list": (_stoken(FUTURE, org=["a"]).encode(), ("orgName",)),
    "expired": (_stoken(PAST).encode(), ("expired", "download")),
    "missing-file": (None, ("does not exist",)),
}


@pytest.mark.parametrize("case", TOKEN_FILES)
def test_bad_token_file(cli: Cli, project_dir: Path, small_sim: Any, case: str) -> None:
    content, says = TOKEN_FILES[case]
    path = project_dir / f"{case}.vpptoken"
    if content is not None:
        path.write_bytes(content)
    line = cli.fails("vpp", "account", "add", "school", "--token-file", str(path), "--service-url", small_sim.base_url, code=2, says=says)
    assert str(path) in line


def test_token_file_is_a_directory(cli: Cli, project_dir: Path) -> None:
    cli.fails("vpp", "account", "add", "school", "--token-file", str(project_dir), code=2, says=("directory",))


def test_unreachable_service_url_fails_fast_in_one_line(cli: Cli, project_dir: Path, small_sim: Any, closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone waits at the command line: at most two tries, a bounded connect timeout, and at
    most 2 s of back-off between them (recorded, not slept), then one line. Asserted on what
    the client actually sends and waits, not on elapsed time (which a busy machine stretches)."""
    import requests

    import plugins.vpp.accounts as accounts

    sent: list[Any] = []
    waits: list[float] = []
    real_request = requests.Session.request

    def spy_request(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        sent.append(kwargs.get("timeout"))
        return real_request(self, method, url, **kwargs)

    real_client = accounts.AppsBooksClient
    monkeypatch.setattr(requests.Session, "request", spy_request)
    monkeypatch.setattr(accounts, "AppsBooksClient", lambda *a, **kw: real_client(*a, sleep=waits.append, **kw))
    token = small_sim.write_token(project_dir / "school.vpptoken")
    cli.fails(
        "vpp",
        "account",
        "add",
        "school",
        "--token-file",
        str(token),
        "--service-url",
        f"http://127.0.0.1:{closed_port}/mdm/v2",
        code=1,
        says=("cannot reach", "--service-url"),
    )
    assert 1 <= len(sent) <= 2, sent  # the configured max_attempts (3) is not used at the prompt
    assert all(isinstance(t, tuple) and 0 < t[0] <= 10 for t in sent), sent  # connect timeout bounded
    assert len(waits) == len(sent) - 1 and sum(waits) <= 2.0, waits


def test_unreachable_service_url_fails_without_traceback_and_writes_nothing(cli: Cli, project_dir: Path, small_sim: Any, closed_port: int) -> None:
    """The part of the above that holds today: exit 1, the last line says what to check, nothing written."""
    token = small_sim.write_token(project_dir / "school.vpptoken")
    before = row_counts(cli.db)
    code, out, err = cli("vpp", "account", "add", "school", "--token-file", str(token), "--service-url", f"http://127.0.0.1:{closed_port}/mdm/v2")
    assert code == 1 and "Traceback" not in err
    assert "connection refused" in err.strip().splitlines()[-1] and "--service-url" in err.strip().splitlines()[-1]
    assert row_counts(cli.db) == before
    count_figure("bad_inputs")


def test_wrong_service_url(cli: Cli, project_dir: Path, small_sim: Any) -> None:
    """An HTTP server that is not Apple's service (a 404 page)."""
    token = small_sim.write_token(project_dir / "school.vpptoken")
    cli.fails(
        "vpp",
        "account",
        "add",
        "school",
        "--token-file",
        str(token),
        "--service-url",
        small_sim.root_url + "/not/the/service",
        code=1,
        says=("cannot read the location",),
    )


def test_invalid_url_scheme(cli: Cli, project_dir: Path, small_sim: Any) -> None:
    token = small_sim.write_token(project_dir / "school.vpptoken")
    cli.fails("vpp", "account", "add", "school", "--token-file", str(token), "--service-url", "ftp//nowhere", code=(1, 2))


CONFIGS = {
    "malformed-toml": ("[vpp\nmax_attempts = 3\n", ("malformed TOML",)),
    "unknown-key": ("[vpp]\nmax_atempts = 3\n", ("max_atempts", "known keys")),
    "wrong-type": ('[vpp]\nmax_attempts = "three"\n', ("max_attempts", "integer")),
    "wrong-type-float": ("[vpp]\nrequest_timeout = [1]\n", ("request_timeout",)),
    "unknown-section": ("[vppp]\nx = 1\n", ("vppp",)),
    "section-not-a-table": ("vpp = 3\n", ("[vpp]", "table")),
    "inline-secret": ('[core]\nsecret_key = "hunter2"\n', ("secret_key", "reference")),
    "not-utf8": (b"\xff\xfe[vpp]\n", ("mdm.toml",)),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_invalid_configuration(cli: Cli, case: str) -> None:
    content, says = CONFIGS[case]
    if isinstance(content, bytes):
        cli.conf.write_bytes(content)
    else:
        assert isinstance(content, str)
        cli.conf.write_text(content)
    line = cli.fails("vpp", "account", "list", code=2, says=says)
    assert "mdm.toml" in line


def test_missing_configuration_file(cli: Cli, project_dir: Path) -> None:
    from mdm_core.cli import main

    code = main(["--config", str(project_dir / "nope.toml"), "vpp", "account", "list"])
    err = cli.capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err
    count_figure("bad_inputs")


ARGS = {
    "unknown-command": (("frobnicate",), 2),
    "missing-name": (("vpp", "account", "add", "--token-file", "x"), 2),
    "wait-not-a-number": (("vpp", "sync", "--wait", "soon"), 2),
    "interval-not-int": (("vpp", "account", "set", "school", "--interval", "1h"), 2),
    "interval-too-short": (("vpp", "account", "add", "school", "--token-file", "x", "--interval", "5"), 2),
    "nothing-to-set": (("vpp", "account", "set", "school"), 2),
    "unknown-account-sync": (("vpp", "sync", "nosuch"), 2),
    "unknown-account-remove": (("vpp", "account", "remove", "nosuch"), 2),
    "bad-account-name": (("vpp", "account", "add", "bad name!", "--token-file", "x"), 2),
    "config-without-value": (("--config",), 2),
    "limit-not-int": (("vpp", "runs", "--limit", "many"), 2),
    "device-bad-platform": (("devices", "add", "ABC123", "--platform", "Windows"), 2),
    "device-bad-serial": (("devices", "add", "ABC 123!", "--platform", "iOS"), 2),
    "device-unknown-owner": (("devices", "add", "ABC123", "--platform", "iOS", "--user", "ghost"), 2),
    "user-bad-email": (("users", "add", "u1", "--email", "not-an-address"), 2),
    "remove-unknown-device": (("devices", "remove", "NOPE123"), 2),
}


@pytest.mark.parametrize("case", ARGS)
def test_bad_arguments(cli: Cli, case: str) -> None:
    args, code = ARGS[case]
    if case == "config-without-value":
        from mdm_core.cli import main

        cli.capsys.readouterr()
        got = main(list(args))
        err = cli.capsys.readouterr().err
        assert got == 2 and len(err.strip().splitlines()) == 1
        count_figure("bad_inputs")
        return
    cli.fails(*args, code=code)


LONG = "x" * 300
TOO_LONG = {  # accepted by SQLite before (PostgreSQL refused it with a database error naming no field)
    "user-id": (("users", "add", LONG), ("user id", "300 characters", "at most 255")),
    "user-email": (("users", "add", "u9", "--email", LONG + "@example.org"), ("email", "at most 255")),
    "user-name": (("users", "add", "u9", "--name", LONG), ("name", "at most 255")),
    "user-set-managed-apple-id": (("users", "set", "u1", "--managed-apple-id", LONG + "@example.org"), ("managed Apple ID", "at most 255")),
    "device-model": (("devices", "add", "ABC123", "--platform", "iOS", "--model", LONG), ("model", "at most 128")),
    "device-udid": (("devices", "add", "ABC123", "--platform", "iOS", "--udid", LONG), ("udid", "at most 64")),
    "device-set-model": (("devices", "set", "ABC999", "--model", LONG), ("model", "at most 128")),
}


@pytest.mark.parametrize("case", TOO_LONG)
def test_a_value_longer_than_its_column_is_refused_naming_the_field(cli: Cli, case: str) -> None:
    assert cli("users", "add", "u1")[0] == 0 and cli("devices", "add", "ABC999", "--platform", "iOS")[0] == 0
    args, says = TOO_LONG[case]
    line = cli.fails(*args, code=2, says=says)
    assert LONG not in line  # the value is shown cut short


NOT_TEXT = {  # SQLite stored them; PostgreSQL refused them with a database error naming no field, or the driver raised
    "argument-not-utf8": (None, ("users", "add", "u9", "--name", "caf\udce9"), ("argument", "caf", "surrogate", "UTF-8")),
    "import-nul-email": ("users", "id,email\nu9,a\x00b@example.org\n", ("line 2", "email", "NUL")),
    "import-nul-model": ("devices", "serial_number,platform,model\nABC1,iOS,iPad\x00Pro\n", ("line 2", "model", "NUL")),
    "import-nul-user-id": ("users", "id,email\nu\x009,a@example.org\n", ("line 2", "user id", "NUL")),
}


@pytest.mark.parametrize("case", NOT_TEXT)
def test_a_value_no_database_holds_is_refused_naming_it(cli: Cli, project_dir: Path, case: str) -> None:
    what, content, says = NOT_TEXT[case]
    if what is None:
        cli.fails(*content, code=2, says=says)
        return
    path = project_dir / f"{case}.csv"
    assert isinstance(content, str)
    path.write_text(content)
    line = cli.fails(what, "import", str(path), code=2, says=says)
    assert "\x00" not in line


IMPORTS = {
    "users-id-too-long": ("users", "id,email\nu1,a@example.org\n" + "u" * 256 + ",b@example.org\n", ("line 3", "user id", "at most 255")),
    "devices-model-too-long": ("devices", "serial_number,platform,model\nABC1,iOS," + "m" * 129 + "\n", ("line 2", "model", "at most 128")),
    "devices-bad-header": ("devices", "serial,platform\nABC,iOS\n", ("header",)),
    "devices-bad-platform-line-3": ("devices", "serial_number,platform,udid,model,user\nABC1,iOS,,,\nABC2,Windows,,,\n", ("line 3",)),
    "devices-duplicate": ("devices", "serial_number,platform,udid,model,user\nABC1,iOS,,,\nABC1,iOS,,,\n", ("line 3", "already")),
    "devices-columns": ("devices", "serial_number,platform,udid,model,user\nABC1,iOS\n", ("line 2", "columns")),
    "devices-unknown-owner": ("devices", "serial_number,platform,udid,model,user\nABC1,iOS,,,ghost\n", ("ghost",)),
    "devices-binary": ("devices", b"\xff\xfe\x00garbage\x00", ()),
    "users-bad-email": ("users", "id,email,managed_apple_id,name\nu1,u1@example.org,,\nu2,nope,,\n", ("line 3",)),
    "users-empty-id": ("users", "id,email,managed_apple_id,name\n ,a@example.org,,\n", ("line 2",)),
    "users-empty-file": ("users", "", ("header",)),
    "users-missing-file": ("users", None, ("cannot be read",)),
}


@pytest.mark.parametrize("case", IMPORTS)
def test_bad_import_file(cli: Cli, project_dir: Path, case: str) -> None:
    what, content, says = IMPORTS[case]
    path = project_dir / f"{case}.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        assert isinstance(content, str)
        path.write_text(content)
    line = cli.fails(what, "import", str(path), code=2, says=says)
    assert str(path) in line


BOUNDED_FILES = {  # a wrong path given as a small file: /dev/zero was read until the kernel killed the process
    "token-file": (("vpp", "account", "add", "school", "--token-file", "/dev/zero"), None, ("token file /dev/zero", "larger than 64 KB")),
    "password-file": (("admins", "add", "ann", "--password-file", "/dev/zero"), None, ("password file /dev/zero", "larger than 64 KB")),
    "configuration-file": (("--config", "/dev/zero", "vpp", "account", "list"), None, ("/dev/zero", "larger than 4 MB", "--config")),
    "secret-key-reference": (("secrets", "status"), '[core]\nsecret_key = { file = "/dev/zero" }\n', ("secret file /dev/zero", "larger than 64 KB")),
}


@pytest.mark.parametrize("case", BOUNDED_FILES)
def test_a_file_named_by_the_user_is_read_with_a_size_bound(cli: Cli, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """Issue 17 point 16: every file a user names is read with a bound, one line when it holds more."""
    import resource

    args, config, says = BOUNDED_FILES[case]
    if config is not None:
        monkeypatch.delenv("MDM_SECRET_KEY")
        cli.conf.write_text(config)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cli.fails(*args, says=says)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KB: read up to the bound, no further


def test_traceback_only_with_verbose(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected error: one line, and its traceback only with -v."""
    from plugins.vpp import accounts

    def broken(host: Any) -> Any:
        raise RuntimeError("unexpected\nbug")

    monkeypatch.setattr(accounts, "list_accounts", broken)
    line = cli.fails("vpp", "account", "list", code=1, says=("RuntimeError", "-v"))
    assert "unexpected bug" in line
    code, out, err = cli("-v", "vpp", "account", "list")
    assert code == 1 and "Traceback" in err


@pytest.mark.slow  # a real mdm process each
@pytest.mark.parametrize(
    "args, code, says",
    [
        (["vpp", "account", "add", "school", "--token-file", "TOKEN"], 2, "expDate"),
        (["--config", "CONFDIR/broken.toml", "vpp", "account", "list"], 2, "malformed TOML"),
    ],
)
def test_real_mdm_process(project_dir: Path, args: list[str], code: int, says: str) -> None:
    """The installed console script, in a process of its own."""
    token = project_dir / "bad.vpptoken"
    token.write_text(_stoken(1893456000))
    (project_dir / "conf" / "broken.toml").write_text("[vpp\n")
    (project_dir / "conf" / "mdm.toml").write_text(RELIABLE_CONFIG)
    args = [a.replace("TOKEN", str(token)).replace("CONFDIR", str(project_dir / "conf")) for a in args]
    if args[0] != "--config":
        args = ["--config", str(project_dir / "conf" / "mdm.toml"), *args]
    env = {**os.environ, "MDM_DATABASE_URL": f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}", "MDM_SECRET_KEY": "k"}
    before = row_counts(project_dir / "var" / "mdm.sqlite3")
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "mdm"), *args], capture_output=True, text=True, env=env, timeout=60, cwd=project_dir)
    assert result.returncode == code, result
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr and "Traceback" not in result.stderr
    assert row_counts(project_dir / "var" / "mdm.sqlite3") == before
    count_figure("bad_inputs")
