"""The key of the stored secrets (issue 17 point 14, issue 16's KDF).

A missing key file was silently replaced by a new key, after which no stored token decrypted
and ``account list`` still said ``valid``. Now the host refuses to create a key while the
database holds secrets, says how to restore it, and ``account list`` marks tokens it cannot
read. ``mdm secrets rotate`` re-encrypts every secret with a new key in one transaction
(MultiFernet), readable whatever happens half-way. A passphrase is stretched with scrypt; what
release 0.1.0 encrypted with its SHA-256 still reads.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import create_engine, text

from mdm_core.secrets import SecretBox
from mdm_core.testing import MdmRunner

from .conftest import count_figure, database_param


@pytest.fixture
def mdm(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> MdmRunner:
    """The CLI on a project whose key is the key file under var/ (no MDM_SECRET_KEY)."""
    return MdmRunner(project_dir, monkeypatch, capsys, environ={"MDM_DISABLED_PLUGINS": "mobile_apps,alerts"}, unset=["MDM_SECRET_KEY"])


def _add(mdm: MdmRunner, sim: Any, project_dir: Path, name: str) -> None:
    token = sim.write_token(project_dir / f"{name}.vpptoken")
    code, out, err = mdm("vpp", "account", "add", name, "--token-file", str(token), "--service-url", sim.base_url)
    assert code == 0, err


def _ciphertexts(project_dir: Path) -> dict[str, str]:
    engine = create_engine(f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    with engine.connect() as conn:
        rows: dict[str, str] = {name: ciphertext for name, ciphertext in conn.execute(text("SELECT name, token_ciphertext FROM vpp_account"))}
    engine.dispose()
    return rows


def test_a_missing_key_file_is_never_replaced_while_secrets_exist(mdm: MdmRunner, small_sim: Any, project_dir: Path) -> None:
    _add(mdm, small_sim, project_dir, "school")
    key_file = project_dir / "var" / "secret.key"
    key_file.unlink()
    for args in (("vpp", "account", "list"), ("vpp", "sync", "school")):
        code, out, err = mdm(*args)
        said = out + err  # (a sync reports it on its report line)
        assert code == 1, (args, out, err)
        assert said.count("\n") == 1 and f"the secret key file {key_file} is missing" in said and "restore the file from a backup" in said, said
        assert "mdm vpp account set NAME --token-file FILE" in said
        assert not key_file.exists(), "a new key was created over the secrets of the old one"
    code, out, err = mdm("secrets", "status")  # was: "key file PATH (0 key(s))", not saying the file is gone
    assert code == 1 and out.startswith(f"key: key file {key_file} is missing: restore it from a backup (0 key(s))"), out + err
    count_figure("key_cases")


def test_a_sync_that_fails_says_so_on_stderr_for_each_account(mdm: MdmRunner, small_sim: Any, project_dir: Path) -> None:
    """`mdm vpp sync` printed an account's error line ("school: error: ... is missing") on stdout,
    with the results; errors go to stderr, one line per account (named or all), stdout stays empty."""
    _add(mdm, small_sim, project_dir, "school")
    code, out, err = mdm("vpp", "sync", "school")
    assert code == 0 and out.startswith("school: ") and " sync ok " in out and not err, (out, err)
    key_file = project_dir / "var" / "secret.key"
    key_file.unlink()
    for args in (("vpp", "sync", "school"), ("vpp", "sync")):
        code, out, err = mdm(*args)
        assert code == 1 and out == "", (args, out, err)
        lines = err.splitlines()
        assert [line.split(":")[0] for line in lines] == ["school"], err
        assert all(f"the secret key file {key_file} is missing" in line for line in lines), err


def test_secrets_status_on_a_fresh_database_creates_nothing(mdm: MdmRunner, small_sim: Any, project_dir: Path) -> None:
    key_file = project_dir / "var" / "secret.key"
    mdm.initialise = False  # a site whose database is not made yet
    code, out, err = mdm("secrets", "status")
    assert code == 0, err
    assert f"key: key file {key_file} does not exist yet: the first stored token creates it" in out
    code, out, err = mdm("secrets", "status", "--json")
    assert code == 0 and json.loads(out)["key_file_exists"] is False and json.loads(out)["secrets"] == 0
    assert not key_file.exists() and not mdm.db.exists()  # was: a new key (and database) made by a command that only looks
    assert mdm("db", "upgrade")[0] == 0
    _add(mdm, small_sim, project_dir, "school")  # the first stored token creates the key file
    code, out, err = mdm("secrets", "status")
    assert code == 0 and out.startswith(f"key: key file {key_file} (1 key(s)); stored secrets: 1: 1 with the current key"), out


def test_commands_that_only_look_create_no_key_file(mdm: MdmRunner, project_dir: Path) -> None:
    """On a database without accounts, `mdm status` and `mdm vpp account list` made the key
    file (the listing read the key before knowing there was no token to check)."""
    assert mdm("db", "upgrade")[0] == 0
    for args in (("status",), ("vpp", "account", "list"), ("vpp", "account", "list", "--json"), ("secrets", "status")):
        code, out, err = mdm(*args)
        assert code == 0, (args, out, err)
        assert not (project_dir / "var" / "secret.key").exists(), args


def test_secrets_status_on_an_empty_postgres_database_creates_nothing(mdm: MdmRunner, pg_url: str, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import inspect

    monkeypatch.setenv("MDM_DATABASE_URL", pg_url)
    mdm.initialise = False  # the empty database itself
    code, out, err = mdm("secrets", "status")
    assert code == 0 and "does not exist yet" in out, (out, err)
    assert err == ""  # was: "created the tables in empty database ..."
    engine = create_engine(pg_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()
    assert not (project_dir / "var" / "secret.key").exists()


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_mdm_secret_key_is_an_error_not_the_key_file(
    mdm: MdmRunner, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, empty: str
) -> None:
    """A failed secret lookup in a deploy script exports MDM_SECRET_KEY="": it was taken as unset,
    and the key file made and used while the admin believed the key came from the environment."""
    _add(mdm, small_sim, project_dir, "school")  # with the key file
    key_file = project_dir / "var" / "secret.key"
    before = key_file.read_bytes()
    monkeypatch.setenv("MDM_SECRET_KEY", empty)
    says = f"MDM_SECRET_KEY is set but empty: give it the key, or unset it (`unset MDM_SECRET_KEY`) to use the key file {key_file}"
    token = small_sim.write_token(project_dir / "college.vpptoken")
    for args in (
        ("secrets", "status"),
        ("secrets", "rotate"),
        ("vpp", "account", "list"),
        ("vpp", "sync", "school"),
        ("vpp", "account", "add", "college", "--token-file", str(token), "--service-url", small_sim.base_url),
        ("db", "backup", str(project_dir / "backup.sqlite3")),
        ("run", "--no-web"),
    ):
        code, out, err = mdm(*args)
        said = out + err  # (a sync reports it on its report line)
        assert code != 0 and says in said and said.count("\n") == 1, (args, code, out, err)
    assert key_file.read_bytes() == before and not (project_dir / "backup.sqlite3").exists()
    assert set(_ciphertexts(project_dir)) == {"school"}
    code, out, err = mdm("status")  # says it among what needs attention
    assert code == 1 and f"attention: {says}" in out and "Traceback" not in out + err, (out, err)


def test_a_key_file_open_to_other_users_is_used_with_one_warning(mdm: MdmRunner, small_sim: Any, project_dir: Path) -> None:
    """A key file restored with mode 0644 was used without a word: now each command that reads
    it says so once (still using it: an admin must be able to run while fixing it)."""
    import os
    import subprocess
    import sys

    _add(mdm, small_sim, project_dir, "school")
    key_file = project_dir / "var" / "secret.key"
    key_file.chmod(0o644)
    warning = f"mdm: warning: the secret key file {key_file} is open to other users (mode 0644): run chmod 600 {key_file}\n"
    for args in (("secrets", "status"), ("vpp", "account", "list"), ("vpp", "sync", "school")):
        code, out, err = mdm(*args)
        assert code == 0 and err == warning, (args, code, out, err)  # used all the same, said once
    code, out, err = mdm("status")  # among its warnings, once, and not again on stderr
    assert out.count(f"warning: {warning[len('mdm: warning: ') :]}") == 1 and warning not in err, (out, err)
    run = subprocess.Popen([sys.executable, "-m", "mdm_core.cli", "run", "--no-web"], cwd=project_dir, env=dict(os.environ), stderr=subprocess.PIPE, text=True)
    said = []
    assert run.stderr is not None
    with run.stderr:
        try:
            for line in run.stderr:  # until the banner: it has started
                if line.startswith("mdm-host "):
                    break
                said.append(line)
        finally:
            run.terminate()
            run.wait(30)
    assert said == [warning], said  # at start, once (its jobs read the key again: not said again)
    key_file.chmod(0o600)
    assert mdm("vpp", "account", "list")[2] == ""


def test_a_lost_key_a_new_key_and_tokens_entered_again(mdm: MdmRunner, small_sim: Any, project_dir: Path) -> None:
    _add(mdm, small_sim, project_dir, "school")
    (project_dir / "var" / "secret.key").unlink()
    code, out, err = mdm("secrets", "new-key")
    assert code == 0 and "1 secret(s) stored with the lost key cannot be read" in out, out + err
    code, out, err = mdm("vpp", "account", "list", "--json")
    (account,) = json.loads(out)
    assert account["token_state"] == "unreadable" and "mdm vpp account set school --token-file FILE" in account["action"]
    assert mdm("vpp", "sync", "school")[0] == 1
    for form in ((), ("--json",)):  # a monitoring script reading --json sees the exit code too (was: 0 with --json)
        code, out, err = mdm("secrets", "status", *form)
        assert code == 1 and (json.loads(out)["unreadable"] == 1 if form else out.endswith("1 unreadable\n")), out + err
    token = small_sim.write_token(project_dir / "renewed.vpptoken")
    code, out, err = mdm("vpp", "account", "set", "school", "--token-file", str(token))  # the new key reads none: the admin says it is lost
    assert code == 1 and "run this again with --key-lost" in err, err
    assert mdm("vpp", "account", "set", "school", "--token-file", str(token), "--key-lost")[0] == 0
    assert json.loads(mdm("vpp", "account", "list", "--json")[1])[0]["token_state"] == "valid"
    assert mdm("vpp", "sync", "school")[0] == 0
    count_figure("key_cases")


def test_rotate_re_encrypts_every_secret_with_a_new_key(mdm: MdmRunner, small_sim: Any, project_dir: Path) -> None:
    from plugins.vpp.simulator import Simulator

    _add(mdm, small_sim, project_dir, "school")
    with Simulator(seed=9, assets=3, devices=5, users=4, async_delay=0) as other:
        _add(mdm, other, project_dir, "college")
        key_file = project_dir / "var" / "secret.key"
        old_key = key_file.read_text().strip()
        before = _ciphertexts(project_dir)
        code, out, err = mdm("secrets", "rotate")
        assert code == 0 and "re-encrypted 2 secret(s) with a new key" in out, out + err
        new_key = key_file.read_text().strip()
        assert "\n" not in new_key and new_key != old_key
        after = _ciphertexts(project_dir)
        assert set(after) == set(before) and all(after[n] != before[n] for n in after)
        for ciphertext in after.values():
            Fernet(new_key.encode()).decrypt(ciphertext.encode())
            with pytest.raises(InvalidToken):
                Fernet(old_key.encode()).decrypt(ciphertext.encode())
        assert mdm("vpp", "sync", "school")[0] == 0 and mdm("vpp", "sync", "college")[0] == 0
        code, out, err = mdm("secrets", "status", "--json")
        assert json.loads(out) == {
            **{"source": "key file", "key_file": str(key_file), "key_file_exists": True, "keys": 1},
            **{"secrets": 2, "current": 2, "older_key": 0, "unreadable": 0},
        }
        code, out, err = mdm("secrets", "status")  # where the file to back up is
        assert (code, err) == (0, "")
        assert out.startswith(f"key: key file {key_file} (1 key(s)); stored secrets: 2: 2 with the current key, 0 with an older key")
    count_figure("key_cases")


def test_a_rotation_that_fails_half_way_leaves_everything_readable(mdm: MdmRunner, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mdm_core import secrets_cli

    _add(mdm, small_sim, project_dir, "school")
    before = _ciphertexts(project_dir)
    original = SecretBox.rotate
    monkeypatch.setattr(SecretBox, "rotate", lambda self, c: (_ for _ in ()).throw(OSError("the disk went away")))
    code, out, err = mdm("secrets", "rotate")
    assert code == 1
    assert _ciphertexts(project_dir) == before  # one transaction: nothing re-encrypted
    assert len((project_dir / "var" / "secret.key").read_text().split()) == 2  # the new key and the old: both read
    assert mdm("vpp", "sync", "school")[0] == 0
    monkeypatch.setattr(SecretBox, "rotate", original)
    assert mdm("secrets", "rotate")[0] == 0
    assert len((project_dir / "var" / "secret.key").read_text().split()) == 1
    assert mdm("vpp", "sync", "school")[0] == 0
    assert secrets_cli  # the module under test
    count_figure("key_cases")


def _no_space(*_args: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_key_file_that_cannot_be_written_is_one_line_naming_it(mdm: MdmRunner, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first stored token creates the key file; on a full disk `mdm vpp account add` said
    only `OSError: [Errno 28] No space left on device`, naming neither the file nor what to do.
    Now one line names the key file, why and the fix; no account, no key file, no temporary file."""
    token = small_sim.write_token(project_dir / "school.vpptoken")
    key_file = project_dir / "var" / "secret.key"
    assert mdm("db", "upgrade")[0] == 0
    monkeypatch.setattr(os, "fsync", _no_space)
    code, out, err = mdm("vpp", "account", "add", "school", "--token-file", str(token), "--service-url", small_sim.base_url)
    assert (code, out) == (1, "")
    assert err == (
        f"mdm: error: the secret key file {key_file} cannot be written (No space left on device): free space on its disk, "
        f"or let the user running mdm write in {key_file.parent} ([core] var_dir), then try again; or set MDM_SECRET_KEY\n"
    )
    assert not [p.name for p in key_file.parent.iterdir() if "secret.key" in p.name]
    monkeypatch.undo()
    code, out, err = mdm("vpp", "account", "list")
    assert "no VPP accounts" in out + err


def test_a_rotation_whose_old_key_cannot_be_dropped_says_what_holds(mdm: MdmRunner, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets were re-encrypted and the key file then could not be rewritten without the old
    key (a full disk): rotate ended with `OSError: ...`, as if it had failed, though the database
    held only the new key's secrets. Now it says what was done and that both keys are in the file."""
    _add(mdm, small_sim, project_dir, "school")
    key_file = project_dir / "var" / "secret.key"
    replace = os.replace
    calls: list[str] = []

    def second_fails(src: Any, dst: Any) -> None:
        calls.append(str(dst))
        if len(calls) == 2:  # the new key alone, once the secrets are re-encrypted
            _no_space()
        replace(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    code, out, err = mdm("secrets", "rotate")
    monkeypatch.undo()
    assert (code, out) == (1, "")
    assert err == (
        f"mdm: error: re-encrypted 1 secret(s) with a new key in {key_file}, but the old key could not be dropped from it "
        "(No space left on device): it holds both keys, which read every secret; back it up, and run `mdm secrets rotate` "
        "again once it can be written\n"
    )
    assert len(key_file.read_text().split()) == 2
    code, out, err = mdm("secrets", "status", "--json")
    assert json.loads(out)["current"] == 1 and json.loads(out)["unreadable"] == 0
    assert mdm("vpp", "sync", "school")[0] == 0
    count_figure("key_cases")


def test_a_rotation_refused_for_an_unreadable_secret_leaves_the_key_file_alone(mdm: MdmRunner, small_sim: Any, project_dir: Path) -> None:
    """A wrong key file restored from a backup: rotate said 'nothing was re-encrypted' but had
    already put a new key in front of it, so the next token stored used a key no backup held."""
    _add(mdm, small_sim, project_dir, "school")
    key_file = project_dir / "var" / "secret.key"
    right = key_file.read_text()
    key_file.write_text(Fernet.generate_key().decode() + "\n")  # the wrong backup
    wrong = key_file.read_text()
    code, out, err = mdm("secrets", "rotate")
    assert code == 1 and err.count("\n") == 1 and "cannot be decrypted with the current key(s): nothing was re-encrypted" in err, out + err
    # the account by its name, not only its row id (was: "the secret in vpp_account (id 1)")
    assert err.startswith("mdm: error: the secret in vpp_account ('school', id 1) cannot be decrypted"), err
    assert key_file.read_text() == wrong  # was: a new key added in front of it
    key_file.write_text(right)
    assert mdm("secrets", "status")[0] == 0 and mdm("vpp", "sync", "school")[0] == 0
    count_figure("key_cases")


def test_a_wrong_key_file_whose_right_key_is_lost_leads_to_tokens_entered_again(mdm: MdmRunner, small_sim: Any, project_dir: Path) -> None:
    """new-key sent the admin to rotate, and rotate back to 'restore the key': a loop with the
    wrong key file in place. new-key now names the way out, and it works."""
    _add(mdm, small_sim, project_dir, "school")
    key_file = project_dir / "var" / "secret.key"
    key_file.write_text(Fernet.generate_key().decode() + "\n")  # the right key is lost; some other key is there
    code, out, err = mdm("secrets", "new-key")
    assert code == 1 and err.count("\n") == 1 and f"the key file {key_file} exists but does not read 1 stored secret(s)" in err, err
    assert "mdm secrets rotate" not in err  # was: run `mdm secrets rotate`, which refuses
    assert "`mdm vpp account set NAME --token-file FILE --key-lost`" in err  # the key reads none: the plain command is refused
    token = small_sim.write_token(project_dir / "renewed.vpptoken")
    assert mdm("vpp", "account", "set", "school", "--token-file", str(token), "--key-lost")[0] == 0
    assert mdm("secrets", "status")[0] == 0 and mdm("secrets", "rotate")[0] == 0 and mdm("vpp", "sync", "school")[0] == 0
    code, out, err = mdm("secrets", "new-key")  # every secret readable: replacing the key is rotate's job
    assert code == 1 and "to replace its key, run `mdm secrets rotate`" in err
    count_figure("key_cases")


def test_rotate_with_keys_in_the_environment(mdm: MdmRunner, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("MDM_SECRET_KEY", old)
    _add(mdm, small_sim, project_dir, "school")
    monkeypatch.setenv("MDM_SECRET_KEY", f"{new},{old}")
    code, out, err = mdm("secrets", "rotate")
    assert code == 0 and "with the first key of MDM_SECRET_KEY" in out, err
    monkeypatch.setenv("MDM_SECRET_KEY", new)
    assert mdm("vpp", "sync", "school")[0] == 0
    assert not (project_dir / "var" / "secret.key").exists()
    status = json.loads(mdm("secrets", "status", "--json")[1])
    assert (status["source"], status["key_file"]) == ("MDM_SECRET_KEY", None)
    count_figure("key_cases")


def test_a_passphrase_is_stretched_with_scrypt_and_0_1_0_secrets_still_read(
    mdm: MdmRunner, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: SHA-256 of a passphrase was the key; now scrypt derives it, and a database
    written by 0.1.0 (SHA-256 key) stays readable until `mdm secrets rotate` re-encrypts it."""
    passphrase = "correct horse battery staple"
    sha256_key = base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest())
    fresh = SecretBox(passphrase).encrypt("secret")
    with pytest.raises(InvalidToken):
        Fernet(sha256_key).decrypt(fresh.encode())  # not the weak derivation any more
    monkeypatch.setenv("MDM_SECRET_KEY", passphrase)
    _add(mdm, small_sim, project_dir, "school")
    token = SecretBox(passphrase).decrypt(_ciphertexts(project_dir)["school"])
    engine = create_engine(f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
    with engine.begin() as conn:  # as release 0.1.0 stored it
        conn.execute(text("UPDATE vpp_account SET token_ciphertext = :c"), {"c": Fernet(sha256_key).encrypt(token.encode()).decode()})
    engine.dispose()
    assert mdm("vpp", "sync", "school")[0] == 0
    assert json.loads(mdm("secrets", "status", "--json")[1])["older_key"] == 1
    assert mdm("secrets", "rotate")[0] == 0
    assert json.loads(mdm("secrets", "status", "--json")[1])["current"] == 1
    with pytest.raises(InvalidToken):
        Fernet(sha256_key).decrypt(_ciphertexts(project_dir)["school"].encode())
    assert mdm("vpp", "sync", "school")[0] == 0
    count_figure("key_cases")


def test_a_running_host_reads_secrets_rotated_by_another_process(tmp_path: Path) -> None:
    from mdm_core.secrets import write_key_file

    path = tmp_path / "var" / "secret.key"
    running = SecretBox.from_key_file(path)
    rotated, _ = running.with_new_key()
    write_key_file(path, rotated._keys[:1], replace=True)  # what `mdm secrets rotate` leaves
    assert running.decrypt(rotated.encrypt("token")) == "token"


def test_every_column_holding_an_encrypted_secret_is_marked(make_host: Any) -> None:
    """`mdm secrets rotate` and the missing-key check find secrets by the SECRET mark: each
    column the code fills with ``host.secrets.encrypt`` must carry it."""
    host = make_host()
    marked = {f"{c.table.name}.{c.name}" for c in host.secret_columns()}
    assert {
        "vpp_account.token_ciphertext",
        "vpp_account.notification_secret",
        "vpp_pending_secret.secret_ciphertext",
        "alerts_webhook_secret.secret_ciphertext",
    } <= marked


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_token_is_not_stored_with_a_key_that_reads_none_of_the_stored_ones(
    mdm: MdmRunner, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, kind: str
) -> None:
    """A wrong key file restored: `account add` / `account set --token-file` encrypted the new
    token with it, which was unreadable once the right key was back. Now refused, nothing
    written; --key-lost stores it when the right key is gone for good."""
    monkeypatch.setenv("MDM_DATABASE_URL", database_param(request, project_dir, kind))
    _add(mdm, small_sim, project_dir, "school")
    key_file = project_dir / "var" / "secret.key"
    right = key_file.read_text()
    key_file.write_text(Fernet.generate_key().decode() + "\n")  # the wrong backup
    token = small_sim.write_token(project_dir / "renewed.vpptoken")
    for args in (("add", "second", "--service-url", small_sim.base_url), ("set", "school")):
        code, out, err = mdm("vpp", "account", *args, "--token-file", str(token))
        assert code == 1 and err.count("\n") == 1, (args, out, err)
        assert err.startswith(f"mdm: error: the secret key file {key_file} reads none of the 1 stored secret(s)"), err
        assert "nothing was stored: restore the key they were stored with" in err and "--key-lost" in err, err
    assert [a["name"] for a in json.loads(mdm("vpp", "account", "list", "--json")[1])] == ["school"]
    key_file.write_text(right)
    code, out, err = mdm("secrets", "status")
    assert code == 0 and out.endswith("0 unreadable\n"), out + err  # was: 1 unreadable, the token stored with the wrong key
    assert mdm("vpp", "sync", "school")[0] == 0
    key_file.write_text(Fernet.generate_key().decode() + "\n")  # the right key lost for good: the admin says so
    assert mdm("vpp", "account", "set", "school", "--token-file", str(token), "--key-lost")[0] == 0
    assert mdm("secrets", "status")[0] == 0 and mdm("vpp", "sync", "school")[0] == 0
    count_figure("key_cases")


def _advised(text: str) -> list[str]:
    """The arguments of the `mdm vpp account set ...` command that ``text`` advises."""
    match = re.search(r"`mdm (vpp account set [^`]+)`", text)
    assert match, text
    return match.group(1).split()


def test_every_advice_to_enter_a_token_again_after_a_lost_key_names_the_command_that_works(mdm: MdmRunner, small_sim: Any, project_dir: Path) -> None:
    """After `mdm secrets new-key` the new key reads none of the stored tokens, so storing one
    again needs --key-lost; the missing key's message, new-key's and the unreadable account's
    action in `mdm vpp account list` gave the plain command, which is refused."""
    _add(mdm, small_sim, project_dir, "school")
    (project_dir / "var" / "secret.key").unlink()
    code, out, err = mdm("vpp", "sync", "school")
    assert code != 0 and "is missing" in out + err and _advised(out + err) == ["vpp", "account", "set", "NAME", "--token-file", "FILE", "--key-lost"], err
    code, out, err = mdm("secrets", "new-key")
    assert code == 0 and _advised(out)[-1] == "--key-lost", out
    code, out, err = mdm("secrets", "rotate")
    assert code == 1 and _advised(err)[-1] == "--key-lost", err
    (account,) = json.loads(mdm("vpp", "account", "list", "--json")[1])
    advised = _advised(account["action"])
    assert advised == ["vpp", "account", "set", "school", "--token-file", "FILE", "--key-lost"], account["action"]
    token = small_sim.write_token(project_dir / "renewed.vpptoken")
    code, out, err = mdm(*(str(token) if word == "FILE" else word for word in advised))  # the advice, followed, works
    assert code == 0, err
    assert json.loads(mdm("vpp", "account", "list", "--json")[1])[0]["token_state"] == "valid"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_lost_key_renewal_without_public_url_turns_the_unreadable_notifications_off(
    mdm: MdmRunner, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, kind: str
) -> None:
    """Notifications on, [web] public_url since removed, the key lost: the renewal with
    --key-lost kept the notification secret stored with the lost key (and a pending one), so
    Apple's posts were refused with 401 and `mdm secrets status` exited 1 for good. Now the
    renewal turns them off at Apple, forgets both secrets and says how to turn them on again."""
    url = database_param(request, project_dir, kind)
    monkeypatch.setenv("MDM_DATABASE_URL", url)
    _add(mdm, small_sim, project_dir, "school")
    old = Fernet((project_dir / "var" / "secret.key").read_text().strip().encode())
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:  # as `--notifications on` left them while public_url was set
        mdm_info_id = conn.execute(text("SELECT mdm_info_id FROM vpp_account")).scalar_one()
        conn.execute(
            text("UPDATE vpp_account SET notifications = 'on', notification_url = :u, notification_secret = :s"),
            {"u": f"https://mdm.example/apple/apps-books/notify/{mdm_info_id}", "s": old.encrypt(b"old secret").decode()},
        )
        conn.execute(
            text("INSERT INTO vpp_pending_secret (mdm_info_id, secret_ciphertext, created_at) VALUES (:m, :s, CURRENT_TIMESTAMP)"),
            {"m": mdm_info_id, "s": old.encrypt(b"pending secret").decode()},
        )
    engine.dispose()
    small_sim.state.notification_url, small_sim.state.notification_types = "https://mdm.example/notify", ["ASSET_MANAGEMENT"]
    (project_dir / "var" / "secret.key").write_text(Fernet.generate_key().decode() + "\n")  # the key lost for good
    token = small_sim.write_token(project_dir / "renewed.vpptoken")
    code, out, err = mdm("vpp", "account", "set", "school", "--token-file", str(token), "--key-lost")
    assert code == 0, out + err
    assert "notifications off" in out and err.startswith("warning: Apple's notifications of school were turned off"), out + err
    assert "set [web] public_url" in err and "`mdm vpp account set school --notifications on`" in err, err
    assert small_sim.state.notification_types == []  # Apple posts nothing more to be refused
    assert json.loads(mdm("vpp", "account", "list", "--json")[1])[0]["notifications"] == "off"
    code, out, err = mdm("secrets", "status")
    assert code == 0 and out.endswith("0 unreadable\n"), out + err  # was: 2 unreadable, for good


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_lost_key_renewal_forgets_an_orphan_pending_secret_of_that_key(
    mdm: MdmRunner, small_sim: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, kind: str
) -> None:
    """An add killed while Apple tested its notification URL left a pending secret of no account;
    the key then lost, the renewals with --key-lost forgot only their own account's, so `mdm
    secrets status` said 1 unreadable (exit 1) until some later notifications change. Now the
    renewal forgets it too; a readable orphan (an add under way elsewhere, its hour not over) stays."""
    url = database_param(request, project_dir, kind)
    monkeypatch.setenv("MDM_DATABASE_URL", url)
    _add(mdm, small_sim, project_dir, "school")
    old = Fernet((project_dir / "var" / "secret.key").read_text().strip().encode())
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    insert = text("INSERT INTO vpp_pending_secret (mdm_info_id, secret_ciphertext, created_at) VALUES (:m, :s, CURRENT_TIMESTAMP)")
    with engine.begin() as conn:
        conn.execute(insert, {"m": "killed-add", "s": old.encrypt(b"orphan secret").decode()})
    new = Fernet.generate_key()
    (project_dir / "var" / "secret.key").write_text(new.decode() + "\n")  # the key lost for good
    with engine.begin() as conn:
        conn.execute(insert, {"m": "add-under-way", "s": Fernet(new).encrypt(b"readable secret").decode()})
    token = small_sim.write_token(project_dir / "renewed.vpptoken")
    code, out, err = mdm("vpp", "account", "set", "school", "--token-file", str(token), "--key-lost")
    assert code == 0, out + err
    code, out, err = mdm("secrets", "status")
    assert code == 0 and out.endswith("0 unreadable\n"), out + err  # was: 1 unreadable
    with engine.connect() as conn:
        assert conn.execute(text("SELECT mdm_info_id FROM vpp_pending_secret")).scalars().all() == ["add-under-way"]
    engine.dispose()


def _secret_of_another_key(make_host: Any, small_sim: Any, project_dir: Path, database_url: str | None) -> tuple[Any, str]:
    """A host with account ``school`` whose notifications are on with a secret stored with
    another key; and its notification URL's id."""
    from sqlalchemy import select

    import plugins.vpp.plugin
    from plugins.vpp.models import VppAccount
    from plugins.vpp.testing import add_simulated_account

    host = make_host(plugins=[plugins.vpp.plugin], database_url=database_url)
    add_simulated_account(host, small_sim, project_dir)
    other = Fernet(Fernet.generate_key())

    def notifications_on(session: Any) -> str:
        account = session.execute(select(VppAccount)).scalar_one()
        account.notifications, account.notification_secret = "on", other.encrypt(b"secret").decode()
        return str(account.mdm_info_id)

    return host, host.db.run_write(notifications_on)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_notification_secret_the_key_cannot_read_is_logged_with_what_fits_a_wrong_or_lost_key(
    make_host: Any, small_sim: Any, project_dir: Path, request: pytest.FixtureRequest, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Apple's notification refused for a secret stored with another key: the error line said
    only that `mdm run` and the command must share MDM_SECRET_KEY, no help when a wrong key file
    was restored from a backup or the key is lost. Now it names `mdm secrets status` and the
    renewal with --key-lost."""
    from plugins.vpp.notifications.inbox import authenticate

    host, mdm_info_id = _secret_of_another_key(make_host, small_sim, project_dir, database_param(request, project_dir, kind))
    caplog.set_level("ERROR")
    assert authenticate(host, mdm_info_id, "Bearer secret") is None
    (line,) = [r.getMessage() for r in caplog.records if "cannot be decrypted" in r.getMessage()]
    assert "a key restored from a backup may be another one: see `mdm secrets status`" in line, line
    assert line.endswith("`mdm vpp account set school --token-file FILE --key-lost`") and "secret'" not in line, line


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_posts_to_a_url_whose_secret_the_key_cannot_read_log_one_error_then_a_count_every_few_minutes(
    make_host: Any, small_sim: Any, project_dir: Path, request: pytest.FixtureRequest, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each POST to a real notification URL whose secret the key cannot read logged that ERROR
    (before the throttled 401 warning): forged POSTs still filled `mdm run`'s log there. Now one
    ERROR line, then, a few minutes on, one with the exact count of those not logged; each POST
    is still refused."""
    from plugins.vpp.notifications.inbox import authenticate, refusals

    host, mdm_info_id = _secret_of_another_key(make_host, small_sim, project_dir, database_param(request, project_dir, kind))
    now = [1000.0]
    refusals(host).clock = lambda: now[0]
    caplog.set_level("DEBUG", logger="plugins.vpp.notifications")
    for _ in range(30):
        assert authenticate(host, mdm_info_id, "Bearer forged") is None
        now[0] += 1.0
    unreadable = [r for r in caplog.records if "cannot be decrypted" in r.getMessage()]
    assert [r.levelname for r in unreadable if r.levelname != "DEBUG"] == ["ERROR"] and len(unreadable) == 30
    now[0] += 300.0
    caplog.clear()
    assert authenticate(host, mdm_info_id, "Bearer secret") is None
    (line,) = [r for r in caplog.records if "cannot be decrypted" in r.getMessage()]
    assert line.levelname == "ERROR" and "`mdm secrets status`" in line.getMessage(), line.getMessage()
    assert line.getMessage().endswith("--key-lost` (and 29 more in the last 330 s, not logged)"), line.getMessage()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_post_whose_stored_and_pending_secrets_are_both_unreadable_counts_once(
    make_host: Any, small_sim: Any, project_dir: Path, request: pytest.FixtureRequest, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The account's secret and a pending one (a renewal under way) both stored with another
    key: each POST counted twice in the throttled ERROR's count (20 POSTs said 39 more). Now
    one POST counts once."""
    from plugins.vpp.models import VppPendingSecret
    from plugins.vpp.notifications.inbox import authenticate, refusals

    host, mdm_info_id = _secret_of_another_key(make_host, small_sim, project_dir, database_param(request, project_dir, kind))
    other = Fernet(Fernet.generate_key())
    host.db.run_write(lambda s: s.add(VppPendingSecret(mdm_info_id=mdm_info_id, secret_ciphertext=other.encrypt(b"pending").decode())))
    now = [1000.0]
    refusals(host).clock = lambda: now[0]
    caplog.set_level("ERROR", logger="plugins.vpp.notifications")
    for _ in range(20):
        assert authenticate(host, mdm_info_id, "Bearer forged") is None
        now[0] += 1.0
    now[0] += 300.0
    assert authenticate(host, mdm_info_id, "Bearer forged") is None
    lines = [r.getMessage() for r in caplog.records if "cannot be decrypted" in r.getMessage()]
    assert len(lines) == 2 and lines[1].endswith("(and 19 more in the last 320 s, not logged)"), lines
