"""Events: recorded in the transaction, delivered after commit, one failing subscriber isolated."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from mdm_core.models import OutboxEvent, SubscriberFailure
from mdm_core.testing import recorded_statements

from ..conftest import PG_ADMIN_URL, PG_SKIP_REASON

pytestmark = pytest.mark.arbitrary_payloads  # the machinery is tested with hand-made payloads

SUBSCRIBERS = """
    calls = []

    @hookimpl
    def mdm_device_enrolled(host, event):
        calls.append(("{tag}", "enrolled", event.id, dict(event.payload)))
        if "{tag}" == "bad":
            raise RuntimeError("subscriber exploded\\nsecond line")

    @hookimpl
    def mdm_device_removed(host, event):
        calls.append(("{tag}", "removed", event.id, dict(event.payload)))

    @hookimpl
    def mdm_event(host, event):
        calls.append(("{tag}", "event:" + event.name, event.id, dict(event.payload)))
"""


@pytest.fixture
def subscribers(load_plugin):
    good1 = load_plugin(SUBSCRIBERS.replace("{tag}", "good1"))
    bad = load_plugin(SUBSCRIBERS.replace("{tag}", "bad"))
    good2 = load_plugin(SUBSCRIBERS.replace("{tag}", "good2"))
    return good1, bad, good2


def failures(host):
    with host.db.session() as s:
        return list(s.execute(select(SubscriberFailure)).scalars())


def test_failing_subscriber_is_logged_recorded_and_others_still_run(make_host, subscribers, caplog):
    good1, bad, good2 = subscribers
    host = make_host(plugins=[good1, bad, good2])
    with caplog.at_level(logging.ERROR):
        host.db.run_write(lambda s: host.events.record(s, "device_enrolled", {"serial_number": "S1"}))
        assert host.deliver_events() == 1
    for mod in (good1, good2):
        assert [c[:2] for c in mod.calls] == [(mod.calls[0][0], "enrolled"), (mod.calls[0][0], "event:device_enrolled")]
    # the failing one still received mdm_event
    assert [c[1] for c in bad.calls] == ["enrolled", "event:device_enrolled"]
    [failure] = failures(host)
    assert failure.plugin == bad.__name__ and failure.event_name == "device_enrolled"
    assert failure.error == "RuntimeError: subscriber exploded second line"
    assert failure.event_id == good1.calls[0][2]
    assert any(bad.__name__ in r.getMessage() and "subscriber exploded" in r.getMessage() for r in caplog.records)
    # delivered once: the failure does not make it re-deliver
    assert host.deliver_events() == 0


def test_every_event_has_a_stable_id(make_host, subscribers):
    good1, _, good2 = subscribers
    host = make_host(plugins=[good1, good2])
    recorded = host.db.run_write(lambda s: host.events.record(s, "device_removed", {"serial_number": "S1"}))
    host.deliver_events()
    ids = {c[2] for c in good1.calls + good2.calls}
    assert ids == {recorded.id}
    with host.db.session() as s:
        assert s.execute(select(col(OutboxEvent.id))).scalars().all() == [recorded.id]


def test_rolled_back_transaction_delivers_nothing(make_host, subscribers):
    good1, _, _ = subscribers
    host = make_host(plugins=[good1])

    def work(session):
        host.events.record(session, "device_enrolled", {"serial_number": "S1"})
        raise LookupError("changed my mind")

    with pytest.raises(LookupError):
        host.db.run_write(work)
    with host.db.write_session() as session:
        host.events.record(session, "device_enrolled", {"serial_number": "S2"})
        session.rollback()
    assert host.deliver_events() == 0
    assert good1.calls == []


def test_events_are_delivered_only_after_commit_and_in_order(make_host, subscribers):
    good1, _, _ = subscribers
    host = make_host(plugins=[good1])
    with host.db.write_session() as session:
        host.events.record(session, "device_enrolled", {"serial_number": "A"})
        n = host.events.record_many(session, [("device_removed", {"serial_number": "A"}), ("user_added", {"id": "u1"})])
        assert n == 2
        session.commit()
    assert good1.calls == []  # recording does not deliver
    assert host.deliver_events() == 3
    assert [c[1] for c in good1.calls] == [
        "enrolled",
        "event:device_enrolled",
        "removed",
        "event:device_removed",
        "event:user_added",
    ]


def test_undelivered_events_are_delivered_at_next_start(make_host, subscribers):
    good1, _, _ = subscribers
    first = make_host(plugins=[good1])
    first.db.run_write(lambda s: host_record(first, s))
    first.close()  # "crash" before delivery
    assert good1.calls == []
    second = make_host(plugins=[good1])
    second.start()
    assert [c[1] for c in good1.calls] == ["enrolled", "event:device_enrolled"]
    assert second.deliver_events() == 0


def _host_recording_enrolled(make_host, load_plugin, request, database, recorded):
    """A host on ``database`` (skipped without a PostgreSQL server) with a plugin whose ``seen``
    lists ``recorded`` (an expression of ``event``) for each device_enrolled event."""
    if database == "postgres" and not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    plugin = load_plugin(
        f"""
    seen = []

    @hookimpl
    def mdm_device_enrolled(host, event):
        seen.append({recorded})
"""
    )
    url = request.getfixturevalue("pg_url") if database == "postgres" else None
    return (make_host(database_url=url, plugins=[plugin]) if url else make_host(plugins=[plugin])), plugin


def host_record(host, session):
    return host.events.record(session, "device_enrolled", {"serial_number": "S9"})


def test_event_claimed_by_a_dead_process_is_delivered_at_next_start(make_host, subscribers):
    good1, _, _ = subscribers
    host = make_host(plugins=[good1])
    event = host.db.run_write(lambda s: host_record(host, s))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    import socket

    holder = f"{socket.gethostname()}:{int(dead.stdout)}:deadbeef"
    with host.db.write_session() as s:
        s.execute(update(OutboxEvent).values(claimed_by=holder, claimed_at=event.created_at))
        s.commit()
    host.close()
    again = make_host(plugins=[good1])
    again.start()
    assert [c[2] for c in good1.calls] == [event.id, event.id]


def test_event_claimed_by_a_live_holder_is_not_delivered_twice(make_host, subscribers):
    good1, _, _ = subscribers
    host = make_host(plugins=[good1])
    event = host.db.run_write(lambda s: host_record(host, s))
    with host.db.write_session() as s:
        s.execute(update(OutboxEvent).values(claimed_by="elsewhere:1:abc", claimed_at=event.created_at))
        s.commit()
    assert host.deliver_events() == 0
    assert good1.calls == []


def test_delivered_event_values_are_plain(make_host, subscribers):
    good1, _, _ = subscribers
    host = make_host(plugins=[good1])
    recorded = host.db.run_write(lambda s: host.events.record(s, "device_enrolled", {"serial_number": "S1", "n": [1, 2]}))
    seen = []
    from mdm_core import hookimpl

    class Probe:
        @hookimpl
        def mdm_event(self, host, event):
            seen.append(event)

    host.pm.register(Probe(), name="probe")
    host.deliver_events()
    [event] = seen
    assert event.payload == {"serial_number": "S1", "n": [1, 2]}
    assert event.created_at == recorded.created_at  # time-zone aware, as recorded
    assert event.hook_name == "mdm_device_enrolled"


def test_shutdown_delivers_what_the_last_jobs_recorded_before_mdm_shutdown(make_host, load_plugin):
    plug = load_plugin("""
        order = []

        @hookimpl
        def mdm_event(host, event):
            order.append("event:" + event.name)

        @hookimpl
        def mdm_shutdown(host):
            order.append("shutdown")
            raise RuntimeError("shutdown errors are only logged")
    """)
    other = load_plugin("""
        order = []

        @hookimpl
        def mdm_shutdown(host):
            order.append("shutdown")
    """)
    host = make_host(plugins=[plug, other])
    host.start()
    host.db.run_write(lambda s: host.events.record(s, "command_queued", {"n": 1}))
    host.shutdown()
    assert plug.order == ["event:command_queued", "shutdown"]
    assert other.order == ["shutdown"]  # the raising implementation did not stop the others


def test_recording_an_undeclared_event_is_an_error_and_writes_nothing(make_host, load_plugin):
    """A misspelt event name fails at once (no hookspec mdm_<name>), and its transaction is rolled back."""
    from mdm_core.errors import PluginError

    host = make_host(plugins=[])

    def work(session):
        host.events.record(session, "device_enrolled", {"serial_number": "S1"})
        host.events.record(session, "device_enroled", {"serial_number": "S1"})

    with pytest.raises(PluginError, match="event 'device_enroled' is not declared: add a hookspec mdm_device_enroled"):
        host.db.run_write(work)
    with pytest.raises(PluginError, match="event 'widget_made' is not declared"):
        host.db.run_write(lambda s: host.events.record_many(s, [("device_enrolled", {}), ("widget_made", {})]))
    with host.db.session() as session:
        assert session.execute(select(OutboxEvent)).first() is None
    specs = load_plugin("""
        @hookspec
        def mdm_widget_made(host, event):
            "A widget was made."

        @hookimpl
        def mdm_add_hookspecs(pluginmanager):
            import sys
            pluginmanager.add_hookspecs(sys.modules[__name__])
    """)
    declared = make_host(plugins=[specs])
    declared.db.run_write(lambda s: declared.events.record(s, "widget_made", {"n": 1}))
    assert declared.deliver_events() == 1


def interrupted_once_at(serial: str) -> str:
    """A subscriber plugin's source: it keeps the serial of each device enrolled it hears
    (``calls``), and is interrupted (Ctrl-C) once, on ``serial``, before keeping it."""
    return f"""
    calls = []
    stop_at = [{serial!r}]

    @hookimpl
    def mdm_device_enrolled(host, event):
        if event.payload["serial_number"] in stop_at:
            stop_at.clear()
            raise KeyboardInterrupt
        calls.append(event.payload["serial_number"])
"""


def test_an_interruption_in_a_later_batch_keeps_the_earlier_batches_delivered_once(make_host, load_plugin, monkeypatch):
    """The delivered events of a batch are marked in the next batch's claim (one write a batch):
    an interruption inside a later batch marks what it delivered, releases the rest, and the
    next delivery starts at the first event not delivered, each event once and in order."""
    from mdm_core import events

    monkeypatch.setattr(events, "DELIVERY_BATCH", 2)
    plugin = load_plugin(interrupted_once_at("S3"))
    host = make_host(plugins=[plugin])
    serials = [f"S{i}" for i in range(1, 6)]
    host.db.run_write(lambda s: host.events.record_many(s, [("device_enrolled", {"serial_number": n}) for n in serials]))
    with pytest.raises(KeyboardInterrupt):
        host.events.deliver_pending()
    assert plugin.calls == ["S1", "S2"]
    with host.db.session() as s:
        rows = s.execute(select(col(OutboxEvent.payload), col(OutboxEvent.delivered_at), col(OutboxEvent.claimed_by)).order_by(col(OutboxEvent.seq))).all()
    assert [(r[0]["serial_number"], r[1] is not None) for r in rows] == [(n, n in ("S1", "S2")) for n in serials]
    assert all(r[2] is None for r in rows if r[1] is None)  # the interrupted batch's claims are released
    assert host.events.deliver_pending() == 3
    assert plugin.calls == serials
    assert host.events.deliver_pending() == 0


def test_a_delivered_batch_is_let_go_before_the_next_one_is_read(make_host, monkeypatch):
    """One batch of payloads in memory at a time (a sync's user events carry 500 users each):
    when the next batch is read and claimed, nothing holds the previous batch's payloads."""
    import gc

    from mdm_core import events

    monkeypatch.setattr(events, "DELIVERY_BATCH", 2)
    held: list[set[str]] = []
    claim = events.EventBus._claim

    def claim_and_look(self, seqs, *args, **kwargs):
        gc.collect()
        held.append({o["serial_number"] for o in gc.get_objects() if isinstance(o, dict) and "tags" in o and isinstance(o.get("serial_number"), str)})
        return claim(self, seqs, *args, **kwargs)

    monkeypatch.setattr(events.EventBus, "_claim", claim_and_look)
    host = make_host()
    host.db.run_write(lambda s: host.events.record_many(s, [("device_enrolled", {"serial_number": f"S{i}", "tags": [i]}) for i in range(1, 5)]))
    assert host.events.deliver_pending() == 4
    assert held == [{"S1", "S2"}, {"S3", "S4"}]  # each claim sees its own batch's payloads only


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_batch_takes_many_small_events_and_few_large_ones(make_host, load_plugin, request, monkeypatch, database):
    """A batch is bounded by its payloads' stored bytes as well as by its count: a sync's
    1,381 small events go in one batch (was: two of 1,000, before that 14 of 100: each one read, claim and mark more), a
    run of large payloads in batches of ``DELIVERY_BYTES`` (one batch in memory stays small), a
    payload larger than that alone; each event once, in order."""
    import secrets

    from mdm_core import events

    host, plugin = _host_recording_enrolled(make_host, load_plugin, request, database, 'event.payload["serial_number"]')
    claims: list[int] = []  # the events of each batch claimed
    dispatch = events.EventBus._dispatch_batch

    def counted(self, batch, *args, **kwargs):
        claims.append(len(batch))
        return dispatch(self, batch, *args, **kwargs)

    monkeypatch.setattr(events.EventBus, "_dispatch_batch", counted)
    host.db.run_write(lambda s: host.events.record_many(s, [("device_enrolled", {"serial_number": f"S{i}"}) for i in range(1, 1382)]))
    assert host.events.deliver_pending() == 1381
    assert claims == [1381]  # a sync's events after the spread change: one claim (was two, of 1,000 and 381)
    claims.clear()
    host.db.run_write(lambda s: host.events.record_many(s, [("device_enrolled", {"serial_number": f"T{i}"}) for i in range(1, events.DELIVERY_BATCH + 200)]))
    assert host.events.deliver_pending() == events.DELIVERY_BATCH + 199
    assert claims == [events.DELIVERY_BATCH, 199]
    claims.clear()
    monkeypatch.setattr(events, "DELIVERY_BYTES", 10_000)
    sizes = [3000] * 6 + [12_000, 100]  # bytes of JSON text
    large = [("device_enrolled", {"serial_number": f"L{i}", "tags": secrets.token_hex(n // 2)}) for i, n in enumerate(sizes)]
    host.db.run_write(lambda s: host.events.record_many(s, large))
    assert host.events.deliver_pending() == 8
    assert claims == [4, 3, 1]  # 4 x 3 kB start within 10 kB; then 2 x 3 kB and the 12 kB one; then the last
    assert plugin.seen == [f"S{i}" for i in range(1, 1382)] + [f"T{i}" for i in range(1, events.DELIVERY_BATCH + 200)] + [f"L{i}" for i in range(8)]


def test_the_read_of_a_batch_measures_payloads_without_carrying_them_through_its_window():
    """The byte bound of a batch is a running sum over the next events' sizes: only their seqs
    and sizes go through the window, the payloads are read by a join on the seqs it keeps (SQLite
    stores a subquery: carrying the payloads copied a full sync's 18 MB of user events at each
    batch, +0.17 s of CPU in its delivery)."""
    from sqlalchemy.dialects import postgresql, sqlite

    from mdm_core.events import _next_events

    for dialect in (sqlite.dialect(), postgresql.dialect()):
        sql = " ".join(str(_next_events().compile(dialect=dialect)).split())
        outer, window = sql.split(" JOIN ", 1)
        assert "core_event.payload" in outer
        assert window.count("payload") == 1 and "OVER" in window, window  # in the size alone


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_batch_is_claimed_marked_and_released_by_its_range_and_holder(make_host, load_plugin, request, database):
    """A claim's holder is its own: its batch is marked delivered (and what an interruption left,
    released) by the range of its seqs and that holder, a few parameters whatever the batch's
    size (was: each of 200 seqs bound, three times), and so is claimed on SQLite. An event in
    the range that a live delivery elsewhere holds is neither delivered, marked nor released."""

    from mdm_core.models import utcnow

    if database == "postgres" and not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    plugin = load_plugin(interrupted_once_at("S150"))
    url = request.getfixturevalue("pg_url") if database == "postgres" else None
    host = make_host(database_url=url, plugins=[plugin]) if url else make_host(plugins=[plugin])
    names = [f"S{i}" for i in range(1, 201)]
    host.db.run_write(lambda s: host.events.record_many(s, [("device_enrolled", {"serial_number": n}) for n in names]))
    with host.db.write_session() as s:
        third = s.execute(select(col(OutboxEvent.seq)).order_by(col(OutboxEvent.seq)).offset(2).limit(1)).scalar_one()
        s.execute(update(OutboxEvent).where(col(OutboxEvent.seq) == third).values(claimed_by="elsewhere:1:abc", claimed_at=utcnow()))
        s.commit()
    with recorded_statements(host.db.engine) as statements, pytest.raises(KeyboardInterrupt):
        host.events.deliver_pending()
    bound = [len(s.parameters) for s in statements if "UPDATE CORE_EVENT" in s.sql.upper()]  # on PostgreSQL the claim is the read's
    assert plugin.calls == [n for n in names[:149] if n != "S3"]
    assert len(bound) == 3 and max(bound) <= 8, bound  # the claim; the mark and the release at the end
    with host.db.session() as s:
        rows = {
            r[0]["serial_number"]: (r[1] is not None, r[2])
            for r in s.execute(select(col(OutboxEvent.payload), col(OutboxEvent.delivered_at), col(OutboxEvent.claimed_by)))
        }
    assert rows["S3"] == (False, "elsewhere:1:abc")  # in the range, held elsewhere: left as it was
    assert all(rows[n][0] for n in names[:149] if n != "S3")
    assert all(rows[n] == (False, None) for n in names[149:])  # released
    assert host.events.deliver_pending() == 51
    assert plugin.calls == [n for n in names if n != "S3"]


@pytest.mark.skipif(not PG_ADMIN_URL, reason=PG_SKIP_REASON)
def test_a_delivery_on_postgres_takes_over_only_dead_and_stale_claims(make_host, pg_url, load_plugin):
    """The claim's lists go as array parameters on PostgreSQL: an event claimed by a live holder
    is left to it; those of a dead local process, of an expired claim and of nobody are
    delivered once, in order, and marked delivered."""
    import socket

    from mdm_core.events import CLAIM_TIMEOUT
    from mdm_core.models import utcnow

    plugin = load_plugin(
        """
    seen = []

    @hookimpl
    def mdm_device_enrolled(host, event):
        seen.append(event.payload["serial_number"])
"""
    )
    host = make_host(database_url=pg_url, plugins=[plugin])
    names = ["LIVE", "DEAD", "STALE", "FREE"]
    host.db.run_write(lambda s: host.events.record_many(s, [("device_enrolled", {"serial_number": n}) for n in names]))
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True).stdout)
    now = utcnow()
    claims = {"LIVE": ("elsewhere:1:abc", now), "DEAD": (f"{socket.gethostname()}:{dead_pid}:dead", now), "STALE": ("elsewhere:2:abc", now - CLAIM_TIMEOUT * 2)}
    with host.db.write_session() as s:
        seqs = dict(zip(names, s.execute(select(col(OutboxEvent.seq)).order_by(col(OutboxEvent.seq))).scalars(), strict=True))
        for name, (holder, at) in claims.items():
            s.execute(update(OutboxEvent).where(col(OutboxEvent.seq) == seqs[name]).values(claimed_by=holder, claimed_at=at))
        s.commit()
    assert host.deliver_events() == 3
    assert plugin.seen == ["DEAD", "STALE", "FREE"]
    with host.db.session() as s:
        rows = {r.seq: r for r in s.execute(select(OutboxEvent)).scalars()}
    assert [rows[seqs[n]].delivered_at is not None for n in names] == [False, True, True, True]
    assert rows[seqs["LIVE"]].claimed_by == "elsewhere:1:abc"
    assert host.deliver_events() == 0 and plugin.seen == ["DEAD", "STALE", "FREE"]


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_events_recorded_together_are_written_without_per_row_statement_processing(make_host, load_plugin, request, database):
    """A sync records its 1,381 events in chunks: each chunk is one ``COPY`` on PostgreSQL and
    one driver ``executemany`` on SQLite, each payload serialised once (was: SQLAlchemy's per-row
    parameter processing, and ``INSERT ... VALUES`` of 1,000 rows on PostgreSQL, +0.011 s of CPU
    on PostgreSQL). They are stored and delivered as given, in order, after one recorded before
    them in the same transaction."""
    from datetime import timedelta

    host, plugin = _host_recording_enrolled(make_host, load_plugin, request, database, "(event.payload, event.created_at)")
    payloads = [{"serial_number": f"S{i}", "tags": ["é", i, None, {"n": 1.5}]} for i in range(1, 301)]
    with recorded_statements(host.db.write_engine) as statements, host.db.write_session() as session:
        host.events.record(session, "device_enrolled", {"serial_number": "FIRST"})
        rows = host.events.outbox_rows(("device_enrolled", p) for p in payloads)
        assert host.events.record_rows(session, rows) == 300
        session.commit()
    inserts = [s for s in statements if s.sql.upper().replace('"', "").startswith("INSERT INTO CORE_EVENT")]
    if database == "postgres":
        assert len(inserts) == 1 and not inserts[0].many  # the one recorded alone; the 300 went by COPY
    else:
        assert [(s.many, s.compiled) for s in inserts] == [(False, True), (True, False)]  # the driver's executemany
    assert host.deliver_events() == 301
    assert [p for p, _ in plugin.seen] == [{"serial_number": "FIRST"}, *payloads]
    at = rows[0]["created_at"]
    assert all(created == at and created.utcoffset() == timedelta(0) for _, created in plugin.seen[1:])  # aware UTC, as recorded
    import json

    from sqlalchemy import String, cast, select

    from mdm_core.db.typed import table_of
    from mdm_core.models import OutboxEvent

    outbox = table_of(OutboxEvent)
    with host.db.session() as session:
        stored = list(session.execute(select(cast(outbox.c.payload, String)).order_by(outbox.c.seq)).scalars())
    # the text the ORM's statement stores (PostgreSQL's json type keeps it as it was sent)
    assert stored == [json.dumps(p) for p in [{"serial_number": "FIRST"}, *payloads]]


@pytest.mark.skipif(not PG_ADMIN_URL, reason=PG_SKIP_REASON)
def test_a_claim_on_postgres_leaves_each_event_in_its_page(make_host, pg_url):
    """The outbox's pages are kept 45% full on PostgreSQL (core migration 0005): a delivery's
    claim writes each event's new version in its own page (a heap-only tuple: none of the three
    indexes written; was: full pages, every claimed row moved, -40% of the claims' and marks'
    server time for a sync's 1,378 events), then delivers and marks them as before."""
    from sqlalchemy import text

    host = make_host(database_url=pg_url)
    with host.db.session() as s:
        assert "fillfactor=45" in (s.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'core_event'")).scalar_one() or [])
    names = [f"S{i:03d}" for i in range(300)]
    payloads = [{"serial_number": n, "tags": ["x" * 200]} for n in names]  # rows of a sync's license events' size
    host.db.run_write(lambda s: host.events.record_many(s, [("device_enrolled", p) for p in payloads]))

    def pages() -> dict[int, int]:
        with host.db.session() as s:
            return dict(s.execute(text("SELECT seq, (ctid::text::point)[0]::int FROM core_event")).all())

    before = pages()
    won, holder = host.events._claim(sorted(before))
    assert won == set(before) and holder
    after = pages()
    assert after == before  # every claimed row in its page
    assert len(set(before.values())) > 1  # more than one page: the rows of full pages would have moved
    host.events._finish(holder, [], sorted(won))  # released, then delivered once each, in order
    assert host.deliver_events() == 300


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_subscriber_guard_applies_an_event_once_in_one_statement(make_host, request, database):
    """``first_time``: the guard of a subscriber that applies each event once (mobile_apps,
    alerts) inserts the event's row unless it is there, in one statement (was: a read then the
    insert, two round trips on PostgreSQL for each guarded event); True the first time only,
    the row kept as first written."""
    from datetime import timedelta

    from mdm_core.db.typed import table_of
    from mdm_core.events import Event, first_time
    from mdm_core.models import utcnow
    from plugins.mobile_apps.models import SeenEvent

    if database == "postgres" and not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    url = request.getfixturevalue("pg_url") if database == "postgres" else None
    host = make_host(database_url=url) if url else make_host()
    seen, at = table_of(SeenEvent), utcnow()
    answers = []
    for when in (at, at + timedelta(hours=1)):
        with recorded_statements(host.db.write_engine) as statements:
            answers.append(host.db.run_write(lambda s, when=when: first_time(s, seen, {"event_id": "e1", "name": "device_enrolled", "at": when})))
        assert len([s for s in statements if "mobile_apps_seen_event" in s.sql]) == 1
    assert answers == [True, False]
    assert host.db.run_write(lambda s: first_time(s, seen, {"event_id": "e2", "name": "device_enrolled", "at": at}))
    with host.db.session() as s:
        assert sorted((r.event_id, r.at) for r in s.execute(select(SeenEvent)).scalars()) == [("e1", at), ("e2", at)]
    changed = Event(name="vpp_assets_changed", payload={"account": "school", "assets": []})
    for _ in range(2):  # delivered, then again: applied once by each subscriber, each guard one statement
        with recorded_statements(host.db.write_engine) as statements:
            host.events.dispatch(changed)
        guards = [s.sql.split()[0] for s in statements if "_seen_event" in s.sql]
        assert guards == ["INSERT"], guards  # mobile_apps' (alerts opens no transaction for an event that changes no license level)
    with host.db.session() as s:
        assert s.execute(select(col(SeenEvent.event_id)).where(col(SeenEvent.event_id) == changed.id)).scalar_one() == changed.id


def test_events_recorded_together_get_distinct_random_uuid4_ids(make_host):
    """The ids of events recorded together are made in one go (``new_ids``): each a distinct
    version 4 UUID in its canonical text, as ``uuid.uuid4()`` made them one by one."""
    import uuid

    from mdm_core.events import new_ids

    ids = new_ids(5000)
    assert len(set(ids)) == 5000
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    host = make_host()
    rows = host.events.outbox_rows([("device_enrolled", {"serial_number": "A"}), ("device_enrolled", {"serial_number": "B"})])
    assert len({r["id"] for r in rows}) == 2 and all(uuid.UUID(r["id"]).version == 4 for r in rows)
    assert new_ids(0) == []


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_delivery_is_one_read_one_claim_and_one_mark_whatever_its_size(make_host, load_plugin, request, database, monkeypatch):
    """What the outbox itself costs a delivery that fits in a batch (a sync's events): the read,
    the claim and the mark, for 3 events as for 300; on PostgreSQL the read and the claim are
    one statement (was: a read, then a claim binding every seq read), each statement one round
    trip, with no BEGIN and COMMIT around them (was: eight round trips, with a second read that
    found nothing)."""
    import psycopg

    host, plugin = _host_recording_enrolled(make_host, load_plugin, request, database, 'event.payload["serial_number"]')
    commands: list[str] = []
    send = psycopg.Connection._exec_command

    def counted(self, command, *args, **kwargs):
        commands.append(command.decode() if isinstance(command, bytes) else str(command))
        return send(self, command, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "_exec_command", counted)
    names: list[str] = []
    for count in (3, 300):
        new = [f"S{count}-{i}" for i in range(count)]
        names += new
        host.db.run_write(lambda s, new=new: host.events.record_many(s, [("device_enrolled", {"serial_number": n}) for n in new]))
        commands.clear()
        with recorded_statements(host.db.engine) as statements:
            assert host.deliver_events() == count
        outbox = [s.sql.split()[0].upper() for s in statements if "core_event" in s.sql.lower()]
        # the read, the claim, the mark; on PostgreSQL the read is the claim's (WITH ... UPDATE ... RETURNING)
        assert outbox == (["SELECT", "UPDATE", "UPDATE"] if database == "sqlite" else ["WITH", "UPDATE"]), outbox
        assert commands == []  # on PostgreSQL: no BEGIN, no COMMIT (none on SQLite, whose driver psycopg is not)
    assert plugin.seen == names
    assert host.deliver_events() == 0


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_events_a_subscriber_records_during_the_last_batch_are_delivered_by_the_same_call(make_host, load_plugin, request, database):
    """A batch that held every waiting event is the last one read, unless its subscribers
    recorded events: those are delivered by the same call, after the batch, in order; one
    recorded in a transaction that rolled back is delivered to nobody."""
    if database == "postgres" and not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    plugin = load_plugin(
        """
    seen = []

    @hookimpl
    def mdm_device_enrolled(host, event):
        serial = event.payload["serial_number"]
        seen.append(serial)
        if serial == "S2":
            host.db.run_write(lambda s: host.events.record(s, "device_removed", {"serial_number": serial}))
        if serial == "S3":
            with host.db.write_session() as s:
                host.events.record(s, "device_removed", {"serial_number": "never"})
                s.rollback()

    @hookimpl
    def mdm_device_removed(host, event):
        seen.append("removed " + event.payload["serial_number"])
"""
    )
    url = request.getfixturevalue("pg_url") if database == "postgres" else None
    host = make_host(database_url=url, plugins=[plugin]) if url else make_host(plugins=[plugin])
    host.db.run_write(lambda s: host.events.record_many(s, [("device_enrolled", {"serial_number": f"S{i}"}) for i in (1, 2, 3)]))
    assert host.deliver_events() == 4
    assert plugin.seen == ["S1", "S2", "S3", "removed S2"]
    assert host.deliver_events() == 0
