"""A sync's license events reach the outbox in few bulk writes: many small events (an
incremental sync's one or two targets per asset) in one write, large ones (a full sync's
1,000 targets each) a bounded number of targets at a time, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from mdm_core.db.typed import table_of
from mdm_core.host import Host
from mdm_core.models import OutboxEvent, utcnow
from plugins.vpp.models import VppAccount
from plugins.vpp.sync import events
from tests.conftest import PG_ADMIN_URL, PG_SKIP_REASON


@pytest.fixture(params=["sqlite", "postgres"])
def vpp_host(request: pytest.FixtureRequest, make_host: Callable[..., Host]) -> Host:
    import plugins.vpp.plugin

    if request.param == "postgres" and not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return make_host(plugins=[plugins.vpp.plugin], database_url=url)


def _record(host: Host, rows: list[tuple[str, str, str, str, bool]], monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[int]]:
    """Record ``rows`` as associated licenses in one transaction; returns the rows counted and
    the number of events each outbox write held."""
    writes: list[int] = []
    record_many = host.events.record_many

    def counted(session: Any, batch: Any) -> int:
        batch = list(batch)
        writes.append(len(batch))
        return record_many(session, batch)

    monkeypatch.setattr(host.events, "record_many", counted)
    account = VppAccount(  # not stored: its events carry the caller's id, nothing is read
        id=7,
        name="school",
        uid="1",
        service_url="https://vpp.example/mdm/v2",
        token_ciphertext="",
        token_fingerprint="",
        token_expires_at=utcnow(),
        mdm_info_id="x",
    )
    total = host.db.run_write(lambda session: events.record_license_events(host, session, account, "vpp_licenses_associated", rows))
    return total, writes


def _outbox(host: Host) -> list[dict[str, Any]]:
    with host.db.session() as session:
        return sorted(session.execute(select(table_of(OutboxEvent).c.payload)).scalars(), key=lambda p: str(p["adamId"]))


def test_many_small_license_events_are_written_at_once(vpp_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [(f"{1000 + n}", "STDQ", "device", f"C{n:05d}", n % 2 == 0) for n in range(1374)]
    total, writes = _record(vpp_host, rows, monkeypatch)
    assert total == 1374
    assert writes == [1374]  # one write (it was one per 100 events: 14)
    payloads = _outbox(vpp_host)
    assert [(p["adamId"], p["serialNumbers"], p["enrolledSerialNumbers"]) for p in payloads[:2]] == [("1000", ["C00000"], ["C00000"]), ("1001", ["C00001"], [])]
    assert len(payloads) == 1374 and {p["accountId"] for p in payloads} == {7}  # the caller's account, not read again by its name


def test_large_license_events_are_written_a_bounded_number_of_targets_at_a_time(vpp_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "WRITE_TARGETS", 2500)
    rows = [("1000", "STDQ", "user", f"u{n:05d}", False) for n in range(5 * events.EVENT_TARGETS)]
    total, writes = _record(vpp_host, rows, monkeypatch)
    assert total == 5000
    assert writes == [3, 2]  # 3,000 targets waiting: written; the rest at the end
    with vpp_host.db.session() as session:
        assert session.execute(select(func.count()).select_from(table_of(OutboxEvent))).scalar_one() == 5
