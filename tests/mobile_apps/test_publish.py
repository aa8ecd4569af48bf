"""Publishing: applications per platform after a sync, books as books, counts, retirement,
metadata looked up outside the sync and retried after a failure, idempotent subscribers."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from mdm_core.events import Event
from mdm_core.models import utcnow
from plugins.mobile_apps.catalog import list_apps
from plugins.mobile_apps.models import AppMetadata, MobileApp

from .conftest import fixed_assets, sync


def by_key(host):
    return {(r["adamId"], r["pricingParam"], r["platform"]): r for r in list_apps(host)}


def test_sync_publishes_one_app_per_platform_and_books_as_books(host, simulator, mdm, apps_events):
    a = fixed_assets(simulator)
    apps = by_key(host)
    sim_assets = simulator.snapshot()["assets"]
    expected = {(k[0], k[1], p) for k, asset in sim_assets.items() for p in asset["supportedPlatforms"]}
    assert set(apps) == expected
    published = apps_events.named("mobile_apps_app_published")
    assert sorted((e["adamId"], e["pricingParam"], e["platform"]) for e in published) == sorted(expected)  # one event per application
    # each event names its own application
    assert {(e["id"], e["adamId"], e["pricingParam"], e["platform"]) for e in published} == {(r["id"], *key) for key, r in apps.items()}
    ios_mac = a[1]["adamId"]
    assert apps[(ios_mac, "STDQ", "iOS")]["kind"] == apps[(ios_mac, "STDQ", "macOS")]["kind"] == "app"
    book = apps[(a[4]["adamId"], "STDQ", "iOS")]
    assert book["kind"] == "book" and book["state"] == "published"
    first = apps[(a[0]["adamId"], "STDQ", "iOS")]
    assert (first["availableCount"], first["totalCount"]) == (a[0]["availableCount"], a[0]["totalCount"])
    assert first["metadata"] == "pending" and first["name"] is None  # looked up later, not during the sync

    code, out, _ = mdm("apps", "list", "--platform", "ipados", "--json")
    rows = json.loads(out)
    assert code == 0 and rows and {r["platform"] for r in rows} == {"iOS"}
    code, out, _ = mdm("apps", "list", "--kind", "book")
    assert code == 0 and "book" in out and " app " not in out
    code, out, err = mdm("apps", "list", "--platform", "Android")  # was: "no applications", as if none were published
    assert (code, out) == (2, "") and "unknown platform 'Android': use one of iOS, macOS, tvOS, visionOS, watchOS" in err


def test_counts_follow_purchases_and_a_refund_retires(host, simulator, mdm, apps_events):
    a = fixed_assets(simulator)
    simulator.purchase(a[0]["adamId"], count=5)
    sync(host)
    assert by_key(host)[(a[0]["adamId"], "STDQ", "iOS")]["totalCount"] == a[0]["totalCount"] + 5
    new_adam, _ = simulator.purchase(count=3, supported_platforms=("iOS", "macOS"))
    simulator.remove_asset(a[2]["adamId"])
    sync(host)
    apps = by_key(host)
    assert apps[(new_adam, "STDQ", "macOS")]["state"] == "published"
    retired = apps[(a[2]["adamId"], "STDQ", "iOS")]
    assert retired["state"] == "retired" and retired["retiredAt"] is not None
    assert [(e["id"], e["adamId"]) for e in apps_events.named("mobile_apps_app_retired")] == [(retired["id"], a[2]["adamId"])]
    assert {(e["adamId"], e["platform"]) for e in apps_events.named("mobile_apps_app_published")} >= {(new_adam, "iOS"), (new_adam, "macOS")}
    code, _, err = mdm("apps", "install", str(retired["id"]), "--device", "ABC123")
    assert code == 1 and "retired" in err
    # its counts are those it had when retired: the list showed them as its licenses now ("1/5 retired")
    code, out, _ = mdm("apps", "list", "--state", "retired")
    [row] = [line.split() for line in out.splitlines() if a[2]["adamId"] in line]
    assert code == 0 and row[-3:] == ["-", "-", "retired"]  # availableCount, totalCount
    code, out, _ = mdm("apps", "show", str(retired["id"]))
    assert code == 0 and f"{retired['totalCount']} total (when it was retired, not now)" in out
    # --json kept the counts as they were with nothing saying they are old: countsAsOf says so
    code, out, _ = mdm("apps", "show", str(retired["id"]), "--json")
    assert code == 0 and (json.loads(out)["countsAsOf"], json.loads(out)["totalCount"]) == ("retired", retired["totalCount"])
    code, out, _ = mdm("apps", "list", "--json")
    assert code == 0 and {(r["state"], r["countsAsOf"]) for r in json.loads(out)} == {("published", "now"), ("retired", "retired")}
    new_app = apps[(new_adam, "STDQ", "iOS")]
    code, out, _ = mdm("apps", "list", "--state", "published")
    [row] = [line.split() for line in out.splitlines() if line.startswith(f"{new_app['id']} ")]
    assert code == 0 and row[-3:] == [str(new_app["availableCount"]), str(new_app["totalCount"]), "published"]


def test_metadata_failure_never_fails_the_sync_and_is_retried(host, simulator, mdm):
    from plugins.mobile_apps.jobs import metadata_job

    simulator.faults.add("server_error", endpoint="lookup")
    simulator.purchase(count=2)
    sync(host)  # the sync itself never calls the lookup
    assert simulator.faults.hits["server_error"] == 0
    code, out, err = mdm("apps", "refresh-metadata")
    assert code == 1 and "failed (account school: " in out and "retried later" in out
    assert "metadata lookup" not in err  # the reason is on the report line, not printed again as a log line
    with host.db.session() as session:
        rows = list(session.execute(select(AppMetadata)).scalars())
    assert rows and all(r.status == "error" and r.attempts == 1 and r.next_attempt_at is not None for r in rows)
    assert metadata_job(host) == {"looked_up": 0, "found": 0, "missing": 0, "failed": 0}  # not due yet

    simulator.faults.clear()
    host.db.run_write(lambda s: s.execute(update(AppMetadata).values(next_attempt_at=utcnow() - timedelta(seconds=1))))
    counts = metadata_job(host)
    assert counts["failed"] == 0 and counts["found"] == len(rows)
    a = fixed_assets(simulator)
    sim_asset = simulator.state.assets[(a[1]["adamId"], "STDQ")]  # a universal app (iOS and macOS)
    ios = by_key(host)[(a[1]["adamId"], "STDQ", "iOS")]
    assert (ios["name"], ios["bundleId"], ios["version"], ios["metadata"]) == (sim_asset.name, sim_asset.bundle_id, sim_asset.version, "ok")
    assert ios["iconUrl"].endswith("128x128bb.png")
    # the macOS application carries the Mac App Store's bundle id and version, not the iOS ones
    from plugins.vpp.simulator.metadata import mac_version

    mac = by_key(host)[(a[1]["adamId"], "STDQ", "macOS")]
    assert (mac["name"], mac["bundleId"], mac["version"], mac["metadata"]) == (sim_asset.name, f"{sim_asset.bundle_id}.macos", mac_version(sim_asset), "ok")
    code, out, _ = mdm("apps", "show", sim_asset.bundle_id)
    assert code == 0 and sim_asset.name in out and "application" in out and "iOS" in out
    code, out, _ = mdm("apps", "show", f"{sim_asset.bundle_id}.macos")
    assert code == 0 and sim_asset.name in out and "macOS" in out
    assert metadata_job(host)["looked_up"] == 0  # cached until metadata_max_age


def test_redelivered_events_change_nothing(host, simulator):
    new_adam, _ = simulator.purchase(count=4)
    before = len(list_apps(host))
    event = Event(
        name="vpp_assets_added",
        payload={
            "account": "school",
            "assets": [
                {
                    "adamId": new_adam,
                    "pricingParam": "STDQ",
                    "productType": "App",
                    "assignedCount": 0,
                    "availableCount": 4,
                    "retiredCount": 0,
                    "totalCount": 4,
                    "deviceAssignable": True,
                    "revocable": True,
                    "supportedPlatforms": ["iOS"],
                }
            ],
        },
    )
    host.events.dispatch(event)
    host.events.dispatch(event)  # delivered again after a "crash"
    host.deliver_events()
    assert len(list_apps(host)) == before + 1
    from sqlalchemy import select

    from mdm_core.models import OutboxEvent

    with host.db.session() as session:
        published = [
            e
            for e in session.execute(select(OutboxEvent).where(col(OutboxEvent.name) == "mobile_apps_app_published")).scalars()
            if e.payload["adamId"] == new_adam
        ]
    assert len(published) == 1


def test_a_manual_sync_looks_up_the_names_of_the_apps_it_published(make_apps_host, simulator, mdm):
    make_apps_host()
    code, out, err = mdm("vpp", "sync", "school")
    assert code == 0, err
    rows = json.loads(mdm("apps", "list", "--json")[1])
    assert rows and all(r["metadata"] != "pending" for r in rows)  # was: names only after the metadata job
    assert any(r["name"] for r in rows)


def test_a_manual_sync_leaves_older_pending_apps_to_the_metadata_job(host, simulator, mdm):
    """Only the apps the manual sync itself published are looked up on its path: apps an
    earlier (scheduled) sync published wait for the mobile_apps.metadata job, so that an
    incremental sync costs what it changed (was: up to 500 of them looked up after every
    manual sync, 0.3-0.65 s at the benchmark's size)."""
    older = {k for k, r in by_key(host).items() if r["metadata"] == "pending"}
    assert older  # published by the fixture's sync (trigger "test": no lookup)
    code, out, err = mdm("vpp", "sync", "school")
    assert code == 0 and "incremental sync ok" in out, out + err
    assert {k for k, r in by_key(host).items() if r["metadata"] == "pending"} == older
    new_adam, _ = simulator.purchase(count=2, supported_platforms=("iOS",))
    code, out, err = mdm("vpp", "sync", "school")
    assert code == 0, err
    apps = by_key(host)
    assert apps[(new_adam, "STDQ", "iOS")]["metadata"] == "ok" and apps[(new_adam, "STDQ", "iOS")]["name"]
    assert {k for k, r in apps.items() if r["metadata"] == "pending"} == older
    assert mdm("apps", "refresh-metadata")[0] == 0  # what the job does
    assert all(r["metadata"] != "pending" for r in by_key(host).values())


def test_a_manual_sync_that_published_nothing_reads_only_what_waits_for_a_lookup(host, simulator):
    """After a manual sync that published no application (most incremental syncs), its
    delivery asks once whether any application was published since it started and stops there
    (was: the pending metadata read through an EXISTS per row, then every published application
    to pick the account of each lookup, 0.005-0.012 s of CPU at the benchmark's size)."""
    from sqlalchemy import event

    from plugins.mobile_apps.catalog import MANUAL_SYNC_LOOKUPS, refresh_metadata

    statements: list[str] = []

    def look(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(host.db.engine, "before_cursor_execute", look)
    try:
        counts = refresh_metadata(host, account="school", limit=MANUAL_SYNC_LOOKUPS, pending_only=True, published_since=utcnow())
    finally:
        event.remove(host.db.engine, "before_cursor_execute", look)
    assert counts == {"looked_up": 0, "found": 0, "missing": 0, "failed": 0}
    [select_] = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert "mobile_apps_metadata" not in select_ and "LIMIT" in select_.upper(), select_
    new_adam, _ = simulator.purchase(count=1, supported_platforms=("iOS",))
    since = utcnow()
    sync(host)  # published by a sync that looks nothing up (trigger "test"): pending
    counts = refresh_metadata(host, account="school", limit=MANUAL_SYNC_LOOKUPS, pending_only=True, published_since=since)
    assert counts["looked_up"] == 1 and counts["found"] == 1
    assert by_key(host)[(new_adam, "STDQ", "iOS")]["metadata"] == "ok"


def test_a_failed_lookup_after_a_manual_sync_never_fails_it(make_apps_host, simulator, mdm):
    make_apps_host()
    simulator.faults.add("server_error", endpoint="lookup", status=503)
    code, out, err = mdm("vpp", "sync", "school")
    assert code == 0 and "school: full sync ok" in out, out + err
    rows = json.loads(mdm("apps", "list", "--json")[1])
    assert rows and {r["metadata"] for r in rows} <= {"pending", "error"}  # the mobile_apps.metadata job retries
    simulator.faults.clear()
    assert mdm("apps", "refresh-metadata")[0] == 0
    assert all(r["metadata"] != "error" for r in json.loads(mdm("apps", "list", "--json")[1]))


@pytest.mark.slow  # a metadata lookup held 1 s
def test_the_sync_report_time_is_the_wall_time(make_apps_host, simulator, mdm):
    """Event delivery (here a slow metadata lookup after the sync) is part of the time shown."""
    import re
    import time

    make_apps_host()
    simulator.faults.add("slow", endpoint="lookup", seconds=1.0)
    started = time.monotonic()
    code, out, err = mdm("vpp", "sync", "school")
    wall = time.monotonic() - started
    assert code == 0, err
    shown = float(re.search(r"sync ok in ([\d.]+)s", out).group(1))
    assert 1.0 <= shown <= wall + 0.01, (shown, wall)  # was: the read and apply alone, without delivery


def test_an_old_event_delivered_again_does_not_bring_back_a_retired_app(host, simulator):
    """The duplicate-event guard: an asset's ``vpp_assets_added`` redelivered (after a crash) once
    the asset was refunded must not publish its application again."""
    from mdm_core.models import OutboxEvent

    new_adam, _ = simulator.purchase(count=2)
    sync(host)
    with host.db.session() as session:
        [added] = [
            e
            for e in session.execute(select(OutboxEvent).where(col(OutboxEvent.name) == "vpp_assets_added")).scalars()
            if any(a["adamId"] == new_adam for a in e.payload["assets"])
        ]
    simulator.remove_asset(new_adam)
    sync(host)
    assert by_key(host)[(new_adam, "STDQ", "iOS")]["state"] == "retired"
    host.events.dispatch(Event(name=added.name, payload=added.payload, id=added.id))  # delivered again
    assert by_key(host)[(new_adam, "STDQ", "iOS")]["state"] == "retired"


def test_one_changed_event_updates_retires_and_publishes_again_each_app_as_its_asset_says(host, simulator, apps_events):
    """The applications an event names are updated by one statement for all of them: each takes
    its own asset's counts and flags (a count the asset lacks stays as stored), a dropped
    platform retires, a retired application is published again with its stored id."""
    a = fixed_assets(simulator)
    before = by_key(host)
    ios, both, third = (a[0]["adamId"], "STDQ"), (a[1]["adamId"], "STDQ"), (a[2]["adamId"], "STDQ")
    with host.db.session() as session:  # the third app was retired (a refund) earlier
        session.execute(update(MobileApp).where(col(MobileApp.adam_id) == third[0]).values(state="retired", retired_at=utcnow()))
        session.commit()
    first = {**a[0], "assignedCount": 7, "availableCount": 3, "totalCount": 10, "revocable": False}
    lacking = {k: v for k, v in {**a[1], "assignedCount": 2, "supportedPlatforms": ["iOS"]}.items() if k not in ("totalCount", "retiredCount")}
    again = {**a[2], "availableCount": 42}
    host.events.dispatch(Event(name="vpp_assets_changed", payload={"account": "school", "assets": [first, lacking, again]}))
    host.deliver_events()

    apps = by_key(host)
    one = apps[(*ios, "iOS")]
    assert (one["assignedCount"], one["availableCount"], one["totalCount"], one["revocable"]) == (7, 3, 10, False)
    kept = apps[(*both, "iOS")]
    assert (kept["assignedCount"], kept["totalCount"], kept["retiredCount"]) == (
        2,
        before[(*both, "iOS")]["totalCount"],
        before[(*both, "iOS")]["retiredCount"],
    )
    assert kept["availableCount"] == a[1]["availableCount"] and kept["state"] == "published"
    assert apps[(*both, "macOS")]["state"] == "retired"  # its platform was dropped
    republished = apps[(*third, "iOS")]
    assert (republished["state"], republished["availableCount"], republished["retiredAt"]) == ("published", 42, None)
    assert republished["id"] == before[(*third, "iOS")]["id"]
    assert [(e["id"], e["availableCount"]) for e in apps_events.named("mobile_apps_app_published") if e["adamId"] == third[0]][-1] == (republished["id"], 42)
    assert [e["id"] for e in apps_events.named("mobile_apps_app_retired")] == [apps[(*both, "macOS")]["id"]]
    others = {key: row for key, row in apps.items() if key[:2] not in (ios, both, third)}
    assert others == {key: row for key, row in before.items() if key[:2] not in (ios, both, third)}  # the apps it does not name are untouched


def test_a_change_of_license_counts_alone_writes_the_counts_alone(host, simulator):
    """After the benchmark's spread change most changed assets moved their license counts
    only: their applications get one UPDATE of the counts (no flags, platforms or JSON bound
    again), an application its asset leaves as stored is not written at all, and one whose
    flags moved gets every column, each as its asset says."""
    from sqlalchemy import event

    a = fixed_assets(simulator)
    before = by_key(host)
    with host.db.session() as session:
        stamps = {(r.adam_id, r.pricing_param, r.platform): r.updated_at for r in session.execute(select(MobileApp)).scalars()}
    counted = {**a[0], "assignedCount": 7, "availableCount": 3}
    flagged = {**a[2], "revocable": not a[2]["revocable"], "availableCount": 5}
    statements: list[tuple[str, int]] = []

    def look(_conn, _cursor, statement, parameters, _context, executemany):
        statement = statement.replace('"', "")
        if statement.lstrip().upper().startswith("UPDATE MOBILE_APPS_APP"):
            statements.append((statement, len(parameters) if executemany else 1))

    event.listen(host.db.engine, "before_cursor_execute", look)
    try:
        host.events.dispatch(Event(name="vpp_assets_changed", payload={"account": "school", "assets": [counted, a[1], flagged]}))
    finally:
        event.remove(host.db.engine, "before_cursor_execute", look)

    apps = by_key(host)
    one, flags = apps[(a[0]["adamId"], "STDQ", "iOS")], apps[(a[2]["adamId"], "STDQ", "iOS")]
    assert (one["assignedCount"], one["availableCount"], one["totalCount"]) == (7, 3, before[(a[0]["adamId"], "STDQ", "iOS")]["totalCount"])
    assert (flags["revocable"], flags["availableCount"]) == (not a[2]["revocable"], 5)
    assert {k: r for k, r in apps.items() if k[0] == a[1]["adamId"]} == {k: r for k, r in before.items() if k[0] == a[1]["adamId"]}
    with host.db.session() as session:
        after = {(r.adam_id, r.pricing_param, r.platform): r.updated_at for r in session.execute(select(MobileApp)).scalars()}
    assert all(after[k] == stamps[k] for k in stamps if k[0] == a[1]["adamId"])  # left as stored: not written
    full = [n for s, n in statements if "supported_platforms" in s]
    counts_only = [n for s, n in statements if "supported_platforms" not in s and "available_count" in s]
    assert (full, counts_only) == ([1], [1]), statements  # was: one UPDATE of every column for all three


def test_refresh_metadata_with_nothing_to_look_up_says_why_not_that_it_found_nothing(host, simulator, mdm):
    """ "looked up 0 app(s): 0 found" read as if the lookup had found nothing, where every name
    was already there (the demo runs it after the sync's own lookup)."""
    sync(host)
    code, out, err = mdm("apps", "refresh-metadata")
    assert code == 0 and out.startswith("looked up ") and not out.startswith("looked up 0 "), (out, err)
    code, out, err = mdm("apps", "refresh-metadata")
    assert (code, out.strip()) == (0, "nothing to look up: every published app's metadata is current (--all looks it up again)"), err
    code, out, err = mdm("apps", "refresh-metadata", "--all")
    assert code == 0 and out.startswith("looked up ") and not out.startswith("looked up 0 "), (out, err)


def test_an_event_of_stored_applications_reads_them_with_their_metadata_in_one_statement(on_both, simulator):
    """An incremental sync's assets event names hundreds of assets whose counts alone moved:
    their applications and whether each has its metadata row come back in one read (was two:
    the applications, then the metadata of every asset of the event). A platform the account
    has no application for yet still finds its metadata row, left by another account (no second
    row, no failure), and one without gets its row, pending."""
    from sqlalchemy import event

    host, _ = on_both
    a = fixed_assets(simulator)
    selects: list[str] = []

    def look(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT") and "mobile_apps_" in statement:  # this plugin's (alerts subscribes too)
            selects.append(statement.replace('"', ""))

    counted = [{**asset, "availableCount": asset["availableCount"] + 1} for asset in a[:3]]
    event.listen(host.db.engine, "before_cursor_execute", look)
    try:
        host.events.dispatch(Event(name="vpp_assets_changed", payload={"account": "school", "assets": counted}))
    finally:
        event.remove(host.db.engine, "before_cursor_execute", look)
    assert len(selects) == 1 and "mobile_apps_metadata" in selects[0], selects
    apps = by_key(host)
    assert [apps[(x["adamId"], "STDQ", "iOS")]["availableCount"] for x in counted] == [x["availableCount"] for x in counted]

    with host.db.write_session() as session:  # the macOS application of a[0] was another account's: its metadata row stays
        session.add(AppMetadata(adam_id=a[0]["adamId"], platform="macOS", account="other", status="ok", name="Known"))
        session.commit()
    grown = [{**a[0], "supportedPlatforms": [*a[0]["supportedPlatforms"], "macOS"]}, {**a[2], "supportedPlatforms": [*a[2]["supportedPlatforms"], "macOS"]}]
    host.events.dispatch(Event(name="vpp_assets_changed", payload={"account": "school", "assets": grown}))
    apps = by_key(host)
    assert {(k[0], k[2]) for k in apps if k[2] == "macOS"} >= {(a[0]["adamId"], "macOS"), (a[2]["adamId"], "macOS")}
    with host.db.session() as session:
        meta = {(m.adam_id, m.platform): (m.account, m.status, m.name) for m in session.execute(select(AppMetadata)).scalars()}
    assert meta[(a[0]["adamId"], "macOS")] == ("other", "ok", "Known")
    assert meta[(a[2]["adamId"], "macOS")][1] == "pending"
