"""The mirror's licenses and users refer to an existing account (vpp migration 0008: by
trigger, checked once per statement on PostgreSQL, instead of a foreign key checked per row):
a row of a missing account is refused, deleting an account deletes its rows, and on
PostgreSQL an account cannot be deleted under a sync that is inserting its rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from mdm_core.host import Host
from tests.conftest import PG_ADMIN_URL, PG_SKIP_REASON

ACCOUNT = (
    "INSERT INTO vpp_account (id, name, uid, service_url, token_ciphertext, token_fingerprint, token_expires_at, mdm_info_id,"
    " interval_seconds, token_state, paused, created_at) VALUES ({id}, '{name}', 'u{id}', 'https://x.test/mdm/v2', 'c', 'f',"
    " '2030-01-01 00:00:00', 'm', 3600, 'valid', false, '2026-01-02 03:04:05')"
)
LICENSE = "INSERT INTO vpp_license (account_id, adam_id, pricing_param, kind, target) VALUES ({id}, '111', 'STDQ', 'device', '{target}')"
USER = "INSERT INTO vpp_user (account_id, client_user_id, status, updated_at) VALUES ({id}, '{target}', 'Registered', '2026-01-02 03:04:05')"


@pytest.fixture(params=["sqlite", "postgres"])
def db_host(request: pytest.FixtureRequest, make_host: Callable[..., Host], project_dir: Path) -> Iterator[Host]:
    """A host at the head of every history, on SQLite or PostgreSQL, with accounts 1 and 2."""
    if request.param == "postgres" and not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    host = make_host(database_url=url)
    with host.db.engine.begin() as conn:
        for account_id, name in ((1, "school"), (2, "office")):
            conn.execute(text(ACCOUNT.format(id=account_id, name=name)))
    yield host


def _count(host: Host, table: str, account_id: int) -> int:
    with host.db.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE account_id = :a"), {"a": account_id}).scalar_one())


@pytest.mark.parametrize("row", [LICENSE, USER])
def test_a_row_of_a_missing_account_is_refused_whole(db_host: Host, row: str) -> None:
    """One statement inserting rows of an existing and a missing account stores neither; a row
    moved to a missing account is refused too."""
    table = "vpp_license" if row is LICENSE else "vpp_user"
    values = row.split(" VALUES ")[1]
    both = f"{row} , {values.format(id=9, target='C02')}".format(id=1, target="C01")
    with pytest.raises(IntegrityError), db_host.db.engine.begin() as conn:
        conn.execute(text(both))
    assert _count(db_host, table, 1) == 0 and _count(db_host, table, 9) == 0
    with db_host.db.engine.begin() as conn:
        conn.execute(text(row.format(id=1, target="C01")))
    with pytest.raises(IntegrityError), db_host.db.engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET account_id = 9 WHERE account_id = 1"))
    with db_host.db.engine.begin() as conn:  # to another account that exists: allowed, as with a foreign key
        conn.execute(text(f"UPDATE {table} SET account_id = 2 WHERE account_id = 1"))
    assert _count(db_host, table, 1) == 0 and _count(db_host, table, 2) == 1


def test_deleting_an_account_deletes_its_licenses_and_users_only(db_host: Host) -> None:
    with db_host.db.engine.begin() as conn:
        for account_id in (1, 2):
            conn.execute(text(LICENSE.format(id=account_id, target="C01")))
            conn.execute(text(USER.format(id=account_id, target="u1")))
    with pytest.raises(IntegrityError), db_host.db.engine.begin() as conn:  # renumbering an account that has rows
        conn.execute(text("UPDATE vpp_account SET id = 7 WHERE id = 1"))
    with db_host.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM vpp_account WHERE id = 1"))
    assert [_count(db_host, t, a) for t in ("vpp_license", "vpp_user") for a in (1, 2)] == [0, 1, 0, 1]


@pytest.fixture
def pg_conns(make_host: Callable[..., Host], pg_url: str) -> Iterator[tuple[Any, Any]]:
    """Two connections to a PostgreSQL database at head with account 1, each in a transaction
    whose lock waits end after 300 ms."""
    host = make_host(database_url=pg_url)
    with host.db.engine.begin() as conn:
        conn.execute(text(ACCOUNT.format(id=1, name="school")))
    engine = create_engine(pg_url)
    first, second = engine.connect(), engine.connect()
    for conn in (first, second):
        conn.execute(text("SET lock_timeout = '300ms'"))
    try:
        yield first, second
    finally:
        first.close()
        second.close()
        engine.dispose()


def test_an_account_cannot_be_deleted_under_an_insert_of_its_rows_on_postgres(pg_conns: tuple[Any, Any]) -> None:
    """The insert's statement locks the account (FOR KEY SHARE, as a foreign key's check): a
    delete waits for it, and once it commits the delete takes its rows with the account."""
    sync, admin = pg_conns
    sync.execute(text(LICENSE.format(id=1, target="C01")))
    with pytest.raises(OperationalError, match="lock timeout"):
        admin.execute(text("DELETE FROM vpp_account WHERE id = 1"))
    admin.rollback()
    sync.commit()
    admin.execute(text("DELETE FROM vpp_account WHERE id = 1"))
    admin.commit()
    assert sync.execute(text("SELECT count(*) FROM vpp_license")).scalar_one() == 0


def test_rows_cannot_be_inserted_for_an_account_being_deleted_on_postgres(pg_conns: tuple[Any, Any]) -> None:
    """An insert waits for a delete of its account in progress, and fails once it commits."""
    sync, admin = pg_conns
    admin.execute(text("DELETE FROM vpp_account WHERE id = 1"))
    with pytest.raises(OperationalError, match="lock timeout"):
        sync.execute(text(USER.format(id=1, target="u1")))
    sync.rollback()
    admin.commit()
    with pytest.raises(IntegrityError, match="account 1, which does not exist"):
        sync.execute(text(USER.format(id=1, target="u1")))
    sync.rollback()
    assert sync.execute(text("SELECT count(*) FROM vpp_user")).scalar_one() == 0


def test_vpp_0008_keeps_the_rows_and_refuses_orphans_from_then_on(project_dir: Path, monkeypatch: Any, capsys: Any) -> None:
    """From 0007, with rows: the upgrade keeps every license and user and the references hold."""
    from tests.test_apple_migrations import _database_at, _upgrade_then_query

    account = ACCOUNT.replace("false", "0")
    mdm = _database_at(
        project_dir,
        monkeypatch,
        capsys,
        {"vpp": "0007"},
        [account.format(id=1, name="school"), LICENSE.format(id=1, target="C01"), USER.format(id=1, target="u1")],
    )
    rows = _upgrade_then_query(
        mdm,
        "vpp: applied 0008 (account references by trigger",
        "SELECT account_id, target FROM vpp_license",
        "SELECT account_id, client_user_id FROM vpp_user",
        "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    )
    assert rows[:2] == [[(1, "C01")], [(1, "u1")]]
    assert [name for (name,) in rows[2]] == [
        "vpp_account_cascade",
        "vpp_account_renumber",
        "vpp_license_account_insert",
        "vpp_license_account_update",
        "vpp_user_account_insert",
        "vpp_user_account_update",
    ]


def test_vpp_0008_downgrades_to_the_foreign_keys_and_back(db_host: Host) -> None:
    """Down to 0007 the foreign keys are back (and the triggers gone); up again, the triggers."""
    from alembic import command
    from sqlalchemy import inspect

    from mdm_core.db.migrate import alembic_config

    [vpp] = [s for s in db_host.migration_sets() if s.name == "vpp"]

    def references() -> list[str]:
        with db_host.db.engine.connect() as conn:
            return [fk["referred_table"] for t in ("vpp_license", "vpp_user") for fk in inspect(conn).get_foreign_keys(t)]

    for step, target, expected in ((command.downgrade, "0007", ["vpp_account", "vpp_account"]), (command.upgrade, "0008", [])):
        with db_host.db.migration_connection() as conn, conn.begin():
            step(alembic_config(vpp, connection=conn), target)
        db_host.db.engine.dispose()
        assert references() == expected
    with pytest.raises(IntegrityError), db_host.db.engine.begin() as conn:
        conn.execute(text(LICENSE.format(id=9, target="C01")))
