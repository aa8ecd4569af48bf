"""SecretBox: round trip, a private key file under var/, one-line error with the wrong key."""

from __future__ import annotations

import stat
import threading

import pytest

from mdm_core.errors import MdmError
from mdm_core.secrets import SecretBox


def test_round_trip_and_repr_hides_the_key():
    box = SecretBox("my key material")
    token = box.encrypt("eyJ0b2tlbiI6InNlY3JldCJ9")
    assert "secret" not in token and token != "eyJ0b2tlbiI6InNlY3JldCJ9"
    assert box.decrypt(token) == "eyJ0b2tlbiI6InNlY3JldCJ9"
    assert SecretBox("my key material").decrypt(token) == "eyJ0b2tlbiI6InNlY3JldCJ9"
    assert "my key material" not in repr(box) and repr(box) == "SecretBox(<key hidden>)"


def test_wrong_key_is_one_line_mdm_error():
    token = SecretBox("right").encrypt("s")
    with pytest.raises(MdmError) as info:
        SecretBox("wrong").decrypt(token)
    assert "\n" not in str(info.value) and "MDM_SECRET_KEY" in str(info.value)
    # the command that re-enters a token (was: "add the token again", which `mdm vpp account add` refuses for an existing account)
    assert str(info.value).endswith(
        "enter each token again with `mdm vpp account set NAME --token-file FILE` (with --key-lost while the key reads none of the stored secrets)"
    )
    with pytest.raises(MdmError):
        SecretBox("right").decrypt("not a token at all")


def test_key_file_created_0600_under_var(make_host, project_dir):
    host = make_host(plugins=[], environ={"MDM_SECRET_KEY": None})
    key_file = project_dir / "var" / "secret.key"
    assert not key_file.exists()
    token = host.secrets.encrypt("s3cret")
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir() if p.name.startswith(".secret.key")] == []
    again = make_host(plugins=[], environ={"MDM_SECRET_KEY": None})
    assert again.secrets.decrypt(token) == "s3cret"  # the same key is read back


def test_key_file_created_once_by_concurrent_callers(tmp_path):
    path = tmp_path / "var" / "secret.key"
    boxes: list[SecretBox] = []
    threads = [threading.Thread(target=lambda: boxes.append(SecretBox.from_key_file(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    token = boxes[0].encrypt("x")
    assert all(b.decrypt(token) == "x" for b in boxes)


def test_empty_key_file_is_an_error_not_a_weak_key(tmp_path):
    path = tmp_path / "secret.key"
    path.write_text("")
    with pytest.raises(MdmError, match="is empty"):
        SecretBox.from_key_file(path)


def test_key_sources(make_host, project_dir):
    (project_dir / "conf" / "key.txt").write_text("file-key\n")
    host = make_host(plugins=[], environ={"MDM_SECRET_KEY": None}, config='[core]\nsecret_key = { file = "conf/key.txt" }\n')
    assert SecretBox("file-key").decrypt(host.secrets.encrypt("a")) == "a"
    env_host = make_host(plugins=[], environ={"MDM_SECRET_KEY": "env-key"})
    assert SecretBox("env-key").decrypt(env_host.secrets.encrypt("b")) == "b"
    assert not (project_dir / "var" / "secret.key").exists()


def test_the_database_file_and_its_folder_are_created_for_their_owner_only(make_host, project_dir):
    """Issue 17 point 16: the database file was created 0644 (umask), the folder 0755."""
    fresh = project_dir / "fresh" / "mdm.sqlite3"
    host = make_host(plugins=[], database_url=f"sqlite:///{fresh}")
    host.db  # creates it through the migrations
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o700
    for companion in (fresh.with_name(fresh.name + "-wal"), fresh.with_name(fresh.name + "-shm")):
        if companion.exists():
            assert stat.S_IMODE(companion.stat().st_mode) == 0o600
    key = project_dir / "var" / "fresh-keys" / "secret.key"
    SecretBox.from_key_file(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    (project_dir / "var").chmod(0o750)
    deeper = project_dir / "var" / "new" / "keys" / "secret.key"  # each folder made on the way is private too
    SecretBox.from_key_file(deeper)
    assert [stat.S_IMODE(f.stat().st_mode) for f in (deeper.parent.parent, deeper.parent)] == [0o700, 0o700]
    assert stat.S_IMODE((project_dir / "var").stat().st_mode) == 0o750  # a folder that existed keeps its mode


def test_import_files_are_read_with_a_size_bound(mdm, project_dir):
    """Issue 17 point 16: an input file is read with a size bound (`/dev/zero` as a token file
    grew to 23.5 GB before the kernel killed it; the same for CSV imports and devices files)."""
    import resource

    big = project_dir / "big.csv"
    with open(big, "wb") as handle:  # sparse: larger than the bound, costs no disk
        handle.truncate(300 * 2**20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for path in (big, "/dev/zero"):
        code, out, err = mdm("devices", "import", str(path))
        assert code == 2 and err.count("\n") == 1 and "larger than 256 MB" in err, err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 400 * 1024  # KB: bounded, no runaway read


@pytest.mark.parametrize(
    "reference, said",
    [
        ('{ env = "MDM_TEST_NO_SUCH_KEY" }', "environment variable MDM_TEST_NO_SUCH_KEY is not set: export it or change the reference"),
        (
            '{ file = "conf/no-such.key" }',
            "secret file {project}/conf/no-such.key cannot be read (No such file or directory): create it or change the reference",
        ),
    ],
)
def test_a_secret_key_reference_that_does_not_resolve_names_the_file_and_the_key(mdm, project_dir, monkeypatch, reference, said):
    """`[core] secret_key = { env = "X" }` with X unset said only `environment variable X is not
    set: export it or change the reference`, naming neither the configuration nor the key that
    refers to it. The line now starts with both; nothing is written."""
    monkeypatch.delenv("MDM_SECRET_KEY")
    conf = project_dir / "conf" / "mdm.toml"
    code, out, err = mdm("secrets", "status", config=f"[core]\nsecret_key = {reference}\n")
    assert (code, out) == (2, "")
    assert err == f"mdm: error: {conf}: [core] secret_key: {said.format(project=project_dir)}\n"
    assert not (project_dir / "var" / "secret.key").exists()
