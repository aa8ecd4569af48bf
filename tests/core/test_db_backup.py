"""``mdm db backup FILE``: a consistent, owner-only copy of the SQLite database, taken while
another process writes; refusals that leave every file as it was."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from mdm_core.testing import MdmRunner


@pytest.fixture
def database(mdm: MdmRunner, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project's SQLite database, made by `mdm db upgrade`, with two enrolled devices."""
    path = project_dir / "var" / "mdm.sqlite3"
    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{path}")
    assert mdm("db", "upgrade")[0] == 0
    for serial in ("C02BACKUP001", "C02BACKUP002"):
        code, out, err = mdm("devices", "add", serial, "--platform", "iOS")
        assert code == 0, out + err
    return path


def test_a_backup_taken_while_another_process_writes_is_one_checked_snapshot(
    mdm: MdmRunner, database: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = sqlite3.connect(database, check_same_thread=False, timeout=30)
    writer.execute("CREATE TABLE backup_probe (n INTEGER NOT NULL)")
    writer.commit()
    stop, written = threading.Event(), [0]

    def write() -> None:  # a commit after another, as `mdm run` syncing, for the whole backup
        while not stop.is_set():
            writer.execute("INSERT INTO backup_probe VALUES (?)", (written[0] + 1,))
            writer.commit()
            written[0] += 1

    thread = threading.Thread(target=write)
    thread.start()
    try:
        while written[0] < 50:  # the writes are well under way
            stop.wait(0.01)
        before = written[0]
        code, out, err = mdm("db", "backup", str(project_dir / "copy.sqlite3"))
        after = written[0]
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert code == 0, out + err
    copy = project_dir / "copy.sqlite3"
    assert out.startswith(f"backed up {database} to {copy} (") and "schema: core " in out, out
    assert "the secret key is not in the backup: keep a copy of the key in MDM_SECRET_KEY apart" in out, out  # the tests' key
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600  # the tokens, the admins' hashes, the mirror
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file: no -wal to copy with it
        rows = [n for (n,) in conn.execute("SELECT n FROM backup_probe ORDER BY n")]
    assert before <= len(rows) <= after + 1 and rows == list(range(1, len(rows) + 1))  # a prefix of the commits: one snapshot (+1: a commit not yet counted)
    assert not [p.name for p in project_dir.iterdir() if p.name.endswith(".partial")]
    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{copy}")
    code, out, err = mdm("devices", "list")  # the copy is a working database
    assert code == 0 and "C02BACKUP001" in out and "C02BACKUP002" in out, out + err


def test_a_backup_never_replaces_a_file_nor_writes_one_it_cannot_finish(mdm: MdmRunner, database: Path, project_dir: Path) -> None:
    kept = project_dir / "monday.sqlite3"
    kept.write_bytes(b"last week's backup")
    code, out, err = mdm("db", "backup", str(kept))
    assert (code, out) == (1, "") and err == f"mdm: error: {kept} exists: give a new file name (a backup never replaces a file)\n"
    assert kept.read_bytes() == b"last week's backup"
    code, out, err = mdm("db", "backup", str(database))
    assert code == 1 and "exists: give a new file name" in err
    code, out, err = mdm("db", "backup", str(project_dir / "backups" / "mdm.sqlite3"))
    assert code == 1 and err == f"mdm: error: folder {project_dir / 'backups'} does not exist: create it first, or give a file in an existing folder\n"
    assert not (project_dir / "backups").exists()


def test_nothing_to_back_up_is_said_and_nothing_is_created(mdm: MdmRunner, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    typo = project_dir / "vra" / "mdm.sqlite3"
    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{typo}")
    code, out, err = mdm("db", "backup", str(project_dir / "copy.sqlite3"))
    assert code == 1
    assert err == f"mdm: error: database file {typo} does not exist: there is nothing to back up (check [core] database_url or MDM_DATABASE_URL)\n"
    assert not typo.parent.exists() and not (project_dir / "copy.sqlite3").exists()


def test_postgresql_is_pointed_to_pg_dump_without_its_password(mdm: MdmRunner, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDM_DATABASE_URL", "postgresql+psycopg://mdm:s3cret-pw@db.example.org/mdm")
    code, out, err = mdm("db", "backup", str(project_dir / "copy.dump"))
    assert code == 1 and "s3cret-pw" not in out + err
    assert err == (
        "mdm: error: mdm db backup copies SQLite databases; this one is postgresql+psycopg://mdm:***@db.example.org/mdm: "
        "back PostgreSQL up with its own tools, e.g. `pg_dump --format=custom --file FILE DATABASE_URL`\n"
    )
    assert not (project_dir / "copy.dump").exists()


def test_a_backup_of_a_release_0_1_0_database_names_its_tables_and_the_missing_key(mdm: MdmRunner, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before its first upgrade, a 0.1.0 database's backup said `schema: none`, as if it were
    empty, and `keep a copy of the key file PATH apart` of a key file that did not exist. It
    now names the tables 0.1.0 made and says the key file is missing while secrets are stored."""
    from ..test_release_0_1_0 import build_release_0_1_0

    path = project_dir / "var" / "mdm.sqlite3"
    monkeypatch.setenv("MDM_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.delenv("MDM_SECRET_KEY")
    build_release_0_1_0(f"sqlite:///{path}")
    code, out, err = mdm("db", "backup", str(project_dir / "before-upgrade.sqlite3"), config='[plugins]\nenabled = ["plugins.vpp.plugin"]\n')
    assert code == 0, err
    first, second = out.splitlines()
    assert first.endswith("; schema: core release 0.1.0 tables, vpp release 0.1.0 tables)"), first
    key_file = project_dir / "var" / "secret.key"
    assert second.startswith(f"the secret key is not in the backup, and the key file {key_file} is missing: the secrets in the backup ")
    assert not key_file.exists()


def test_a_backup_before_any_token_says_the_key_file_does_not_exist_yet(
    mdm: MdmRunner, database: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MDM_SECRET_KEY")
    code, out, err = mdm("db", "backup", str(project_dir / "copy.sqlite3"))
    assert code == 0, err
    key_file = project_dir / "var" / "secret.key"
    assert out.splitlines()[1] == (
        f"the secret key is not in the backup: the key file {key_file} does not exist yet (no secret stored); "
        "keep a copy of it apart once the first token creates it"
    )
    assert not key_file.exists()
