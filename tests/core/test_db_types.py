"""UTCDateTime: every datetime column stores UTC and reads back aware UTC, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlmodel import Session, SQLModel, col

from mdm_core.db.typed import table_of
from mdm_core.db.types import UTCDateTime
from mdm_core.models import Device

from ..conftest import PG_ADMIN_URL, PG_SKIP_REASON

PARIS = timezone(timedelta(hours=2))


def test_every_datetime_column_of_every_model_is_utc_aware() -> None:
    import mdm_core.models  # noqa: F401
    import plugins.examples.device_notes.models  # noqa: F401
    import plugins.mobile_apps.models  # noqa: F401
    import plugins.vpp.models  # noqa: F401

    datetime_columns = [c for t in SQLModel.metadata.tables.values() for c in t.columns if c.type.python_type is datetime]
    assert len(datetime_columns) >= 25
    assert [f"{c.table.name}.{c.name}" for c in datetime_columns if not isinstance(c.type, UTCDateTime)] == []


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'types.sqlite3'}"
    if not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    return request.getfixturevalue("pg_url")


def test_values_are_stored_in_utc_and_read_back_aware_utc(engine_url: str) -> None:
    # on PostgreSQL the session's time zone is not UTC: what is read back still is
    kwargs = {"connect_args": {"options": "-c timezone=America/New_York"}} if engine_url.startswith("postgresql") else {}
    engine = create_engine(engine_url, **kwargs)
    try:
        SQLModel.metadata.create_all(engine, tables=[table_of(Device)])
        paris_noon = datetime(2026, 3, 1, 12, 0, tzinfo=PARIS)
        with Session(engine) as session:
            session.add(Device(serial_number="A1", platform="iOS", enrolled_at=paris_noon))
            session.add(Device(serial_number="N1", platform="iOS", enrolled_at=datetime(2026, 3, 1, 10, 0)))  # naive: taken as UTC
            session.commit()
        with Session(engine) as session:
            read = {serial: at for serial, at in session.execute(select(col(Device.serial_number), col(Device.enrolled_at)))}
            # comparisons in SQL convert the parameter the same way
            later = session.execute(select(col(Device.serial_number)).where(col(Device.enrolled_at) >= datetime(2026, 3, 1, 10, 0, tzinfo=UTC))).scalars().all()
        for value in read.values():
            assert value.tzinfo == UTC
            assert value == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
        assert sorted(later) == ["A1", "N1"]
        if engine_url.startswith("sqlite"):  # stored as 0.1.0 stored it: naive UTC text
            with engine.connect() as conn:
                assert conn.execute(text("SELECT enrolled_at FROM core_device WHERE serial_number = 'A1'")).scalar() == "2026-03-01 10:00:00.000000"
    finally:
        engine.dispose()


def test_rows_updated_by_the_driver_store_what_sqlalchemy_would(engine_url: str) -> None:
    """``bulk.update_rows`` writes plain values without SQLAlchemy's per-row processing (one
    ``UPDATE ... FROM unnest`` on PostgreSQL, the driver's executemany elsewhere): each row gets
    its own values, a fixed datetime is stored as SQLAlchemy stores it (UTC, read back aware
    UTC), the rows not named are left alone."""
    from mdm_core.db.bulk import update_rows

    kwargs = {"connect_args": {"options": "-c timezone=America/New_York"}} if engine_url.startswith("postgresql") else {}
    engine = create_engine(engine_url, **kwargs)
    try:
        devices = table_of(Device)
        SQLModel.metadata.create_all(engine, tables=[devices])
        old = datetime(2026, 1, 1, tzinfo=UTC)
        with Session(engine) as session:
            session.add_all([Device(serial_number=s, platform="iOS", enrolled_at=old) for s in ("A1", "B2", "C3")])
            session.commit()
        paris_noon = datetime(2026, 3, 1, 12, 0, tzinfo=PARIS)
        sent: list[bool] = []
        event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[-1]))  # executemany or not
        with Session(engine) as session:
            update_rows(session, devices, "serial_number", ["model"], [("iPad", "A1"), ("iPhone", "C3")], fixed={"enrolled_at": paris_noon})
            session.commit()
        # PostgreSQL: one execution of one UPDATE ... FROM unnest (an executemany sends each row on its own)
        assert sent == ([False] if engine_url.startswith("postgresql") else [True])
        with Session(engine) as session:
            read = {s: (m, at) for s, m, at in session.execute(select(col(Device.serial_number), col(Device.model), col(Device.enrolled_at)))}
        noon_utc = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
        assert read == {"A1": ("iPad", noon_utc), "B2": (None, old), "C3": ("iPhone", noon_utc)}
        assert all(at.tzinfo == UTC for _, at in read.values())
    finally:
        engine.dispose()


def test_rows_deleted_and_matched_by_array_parameters_are_exactly_the_named_ones(engine_url: str) -> None:
    """``bulk.delete_rows`` and ``bulk.one_of`` match the keys given, whatever they hold (quotes,
    backslashes, braces, commas, spaces, non-ASCII text, NULLs among the matched values), and
    nothing else. On PostgreSQL each array reaches psycopg as a binary array (``BinaryList``:
    the text format quoted every element by a regular expression, hundreds a statement)."""
    from mdm_core.db.bulk import BinaryList, delete_rows, in_chunks, one_of

    engine = create_engine(engine_url)
    postgres = engine_url.startswith("postgresql")
    try:
        devices = table_of(Device)
        SQLModel.metadata.create_all(engine, tables=[devices])
        awkward = ['q"uote', "back\\slash", "{brace}", "a,b", "sp ace", "NULL", "é☃", "", "plain"]
        with Session(engine) as session:
            session.add_all([Device(serial_number=s, platform="iOS", model=str(i)) for i, s in enumerate([*awkward, "keep1", "keep2"])])
            session.commit()
        arrays: list[Any] = []

        def sent(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
            if isinstance(params, dict):
                arrays.extend(v for v in params.values() if isinstance(v, list))

        event.listen(engine, "before_cursor_execute", sent)
        with Session(engine) as session:
            matched: list[str] = []
            for chunk in in_chunks(awkward[:5]):
                query = select(col(Device.serial_number)).where(one_of(devices.c.serial_number, "keys", postgres))
                matched += session.execute(query, {"keys": [*chunk, None]}).scalars().all()
            keys = {"serial_number": devices.c.serial_number.type, "model": devices.c.model.type}
            deleted = delete_rows(session, devices, {"platform": "iOS"}, keys, [(s, str(i)) for i, s in enumerate(awkward)] + [("keep1", "x")])
            session.commit()
        assert sorted(matched) == sorted(awkward[:5])
        assert deleted == len(awkward)
        with Session(engine) as session:
            assert sorted(session.execute(select(col(Device.serial_number))).scalars()) == ["keep1", "keep2"]
        if postgres:  # one_of's array, then delete_rows' two
            assert [type(a) for a in arrays] == [BinaryList] * 3
    finally:
        engine.dispose()


def test_statements_alike_but_for_their_arrays_item_types_each_bind_their_own(pg_url: str) -> None:
    """SQLAlchemy's statement cache keys a type by the arguments its constructor names: a
    statement binding an array of strings after one alike binding an array of times is not
    served the other's compiled form (cast to ``timestamptz[]``) and bind processing (each
    element's ``tzinfo`` asked: it raised for a string). Run on PostgreSQL, the only database
    that takes array parameters."""
    from sqlalchemy import Text, bindparam, func

    from mdm_core.db.bulk import BinaryArray

    def statement(item: Any) -> Any:
        return select(func.cardinality(bindparam("keys", type_=BinaryArray(item))))

    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(statement(UTCDateTime()), {"keys": [datetime(2026, 1, 1, tzinfo=UTC)]}).scalar_one() == 1
            assert conn.execute(statement(Text()), {"keys": ["b", "c"]}).scalar_one() == 2
            assert conn.execute(statement(UTCDateTime()), {"keys": [datetime(2026, 1, 1, tzinfo=PARIS)] * 3}).scalar_one() == 3
    finally:
        engine.dispose()


def _in_a_fresh_process(code: str) -> str:
    """``code``'s output, run by this interpreter in a process of its own (psycopg's adapters and
    the modules loaded are per process)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.slow  # a fresh Python process
def test_an_sqlite_host_does_not_load_the_postgresql_driver(tmp_path: Any) -> None:
    """Every `mdm` command on SQLite paid psycopg's import (9 MB of its peak memory, 50 ms) for a
    binary-array adapter only PostgreSQL uses; a query on SQLite still works."""
    code = (
        "import sys, mdm_core.cli, mdm_core.events, plugins.vpp.sync.apply;"
        "from sqlalchemy import text;"
        "from mdm_core.db.engine import Database;"
        f"db = Database('sqlite:///{tmp_path / 'mdm.sqlite3'}');"
        "conn = db.engine.connect(); print(conn.execute(text('SELECT 7')).scalar_one()); conn.close();"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))"
    )
    assert _in_a_fresh_process(code).splitlines() == ["7", "[]"]


@pytest.mark.slow  # a fresh Python process
@pytest.mark.skipif(not PG_ADMIN_URL, reason=PG_SKIP_REASON)
def test_a_postgresql_database_sends_its_array_parameters_in_binary(pg_url: str) -> None:
    """The adapter registered when the PostgreSQL engine is made, before its dialect copies
    psycopg's adapters (registered after, the connections kept quoting each element as text)."""
    code = (
        "from psycopg.adapt import PyFormat;"
        "from mdm_core.db.bulk import BinaryList;"
        "from mdm_core.db.engine import Database;"
        f"db = Database({pg_url!r});"
        "conn = db.engine.connect();"
        "print(conn.connection.driver_connection.adapters.get_dumper(BinaryList, PyFormat.AUTO).__name__); conn.close()"
    )
    assert _in_a_fresh_process(code) == "ListBinaryDumper"
