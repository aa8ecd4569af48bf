"""Publishing VPP assets as applications (from the VPP sync events) and their metadata.

Subscribers apply each event in one transaction together with a ``mobile_apps_seen_event`` row,
so an event delivered twice (after a crash) changes nothing the second time. Metadata is never
looked up while an event is delivered: applications are published with what the event says and
their metadata is marked pending; the ``mobile_apps.metadata`` job (and ``mdm apps
refresh-metadata``) looks it up in batches, and a failed lookup is retried later.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, bindparam, case, cast, func, insert, or_, select, update
from sqlmodel import Session, col

from mdm_core.db.bulk import in_chunks, one_of, unnest_rows, update_rows
from mdm_core.db.engine import MAX_ROW_ID
from mdm_core.db.stream import stream_rows
from mdm_core.db.typed import table_of
from mdm_core.errors import NotFound, UsageError, one_line
from mdm_core.events import first_time
from mdm_core.models import utcnow
from plugins.vpp.payloads import Asset

from .models import AppMetadata, MobileApp, SeenEvent
from .payloads import AppPayload
from .settings import settings
from .versions import is_newer
from .vpp_port import VppPort

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.host import Host

log = logging.getLogger(__name__)

#: supportedPlatforms value (lower case) → application platform.
APP_PLATFORMS = {"ios": "iOS", "ipados": "iOS", "macos": "macOS", "tvos": "tvOS", "watchos": "watchOS", "visionos": "visionOS"}
#: device platform (core inventory) → application platform.
DEVICE_TO_APP_PLATFORM = {"iOS": "iOS", "iPadOS": "iOS", "macOS": "macOS", "tvOS": "tvOS"}
LOOKUP_BATCH = 100
MANUAL_SYNC_LOOKUPS = 5 * LOOKUP_BATCH  # a manual sync looks up at most this many new apps at once (5 requests)
#: an application's metadata: its adamId's entry on its platform
METADATA_JOIN = (col(AppMetadata.adam_id) == col(MobileApp.adam_id)) & (col(AppMetadata.platform) == col(MobileApp.platform))


def app_platform(value: str) -> str:
    """``ipados`` → ``iOS``; an unknown platform is kept as given."""
    return APP_PLATFORMS.get(value.strip().lower(), value.strip())


def once(host: Host, event: Event, work: Callable[[Session], Any]) -> Any:
    """Apply ``work`` for ``event`` in one transaction, unless this event was applied before.

    Events recorded by ``work`` are delivered by the delivery loop that called the subscriber
    (no nested delivery here).
    """

    seen = table_of(SeenEvent)

    def run(session: Session) -> Any:  # one Core statement for the guard: no ORM object, identity lookup or flush
        if not first_time(session, seen, {"event_id": event.id, "name": event.name, "at": utcnow()}):
            log.info("event %s (%s) already applied; skipping", event.id, event.name)
            return None
        return work(session)

    return host.db.run_write(run)


# ---------------------------------------------------------------------- publishing


def _payload(app: MobileApp | Mapping[str, Any]) -> AppPayload:
    """The event payload of a stored application (an ORM row, or the values of a row inserted in bulk with its id)."""
    get: Callable[[str], Any] = app.__getitem__ if isinstance(app, Mapping) else partial(getattr, app)
    assert get("id") is not None, "published and retired apps are stored rows (flushed)"
    return {
        "id": get("id"),
        "account": get("account"),
        "adamId": get("adam_id"),
        "pricingParam": get("pricing_param"),
        "platform": get("platform"),
        "kind": get("kind"),
        "availableCount": get("available_count"),
        "totalCount": get("total_count"),
    }


def upsert_assets(host: Host, session: Session, account: str, assets: list[Asset]) -> None:
    """Publish (or update) one application per platform of each asset; retire dropped platforms.

    The event's applications and metadata rows are read in two queries; the stored
    applications are updated by one ``UPDATE`` run for all of them (an incremental sync's
    event names hundreds of assets whose counts moved: ORM objects changed attribute by
    attribute cost 0.1 s of CPU per 750 applications), one that sets their counts alone for
    those whose counts alone moved (most of them: no flags and platforms bound again), none for
    those the asset leaves as stored; the new applications, their metadata
    rows and their ``mobile_apps_app_published`` events are each inserted by one bulk statement
    (an event carries up to 500 assets: a first sync publishes every asset)."""
    now = utcnow()
    apps = table_of(MobileApp)
    metadata = table_of(AppMetadata)
    adam_ids = sorted({str(a["adamId"]) for a in assets})
    existing: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    known: set[tuple[str, str]] = set()  # (adamId, platform) with a metadata row
    postgres = not host.db.is_sqlite
    of_event = {"adam_ids": adam_ids}  # at most 500: one event's assets
    result = session.execute(_stored_query(postgres), {**of_event, "account": account})  # Core: no ORM compile state
    names = list(result.keys())
    for fetched in result.all():  # fetched at once: no call into the driver per row
        stored = dict(zip(names, fetched, strict=True))
        if stored.pop("has_metadata"):
            known.add((stored["adam_id"], stored["platform"]))
        stored["supported_platforms"] = stored_platforms(stored["supported_platforms"])
        existing.setdefault((stored["adam_id"], stored["pricing_param"]), {})[stored["platform"]] = stored
    platforms_of = [list(dict.fromkeys(app_platform(p) for p in asset.get("supportedPlatforms") or [])) for asset in assets]
    # the metadata of a platform no stored application of the account has (a new one) may exist
    # all the same (another account's, or retired): read for those alone (none when only counts moved)
    unsure = sorted({str(a["adamId"]) for a, platforms in zip(assets, platforms_of, strict=True) for p in platforms if (str(a["adamId"]), p) not in known})
    if unsure:
        known_query = select(metadata.c.adam_id, metadata.c.platform).where(one_of(metadata.c.adam_id, "adam_ids", postgres))
        known.update((a, p) for a, p in session.execute(known_query, {"adam_ids": unsure}).all())
    published: list[Mapping[str, Any]] = []  # in the assets' order: stored rows published again, new rows' values
    updates: list[dict[str, Any]] = []  # every column the asset sets
    counts: list[tuple[Any, ...]] = []  # the license counts alone (update_rows)
    new_apps: list[dict[str, Any]] = []
    new_metadata: list[dict[str, Any]] = []
    for asset, platforms in zip(assets, platforms_of, strict=True):
        adam_id, pricing = str(asset["adamId"]), str(asset["pricingParam"])
        kind = "book" if str(asset.get("productType", "")).lower() == "book" else "app"
        rows = existing.get((adam_id, pricing), {})
        for platform in platforms:
            row = rows.get(platform)
            if row is None:
                values = {
                    **NEW_APP,
                    "account": account,
                    "adam_id": adam_id,
                    "pricing_param": pricing,
                    "platform": platform,
                    "published_at": now,
                    "updated_at": now,
                }
                values.update(_asset_values(asset, kind, ""))
                new_apps.append(values)
                published.append(values)
                continue
            values = _asset_values(asset, kind, row["product_type"])
            moved = {attr for attr, value in values.items() if row[attr] != value}
            if row["state"] != "published":
                changes = _updated_values(row, values, now)
                updates.append({"b_id": row["id"], **changes})
                published.append({**row, **changes})
            elif moved and moved <= COUNT_ATTRS:  # most changed assets: only their license counts moved
                counts.append((*(values.get(attr, row[attr]) for attr, _ in COUNTS), row["id"]))
            elif moved:
                updates.append({"b_id": row["id"], **_updated_values(row, values, now)})
        for platform, row in rows.items():
            if platform not in platforms and row["state"] != "retired":
                app = session.get(MobileApp, row["id"])
                assert app is not None
                _retire(host, session, app, now)
        for platform in platforms:  # metadata per platform: a universal app's Mac entry differs
            if (adam_id, platform) not in known:
                new_metadata.append({**NEW_METADATA, "adam_id": adam_id, "platform": platform, "account": account})
                known.add((adam_id, platform))
    session.flush()  # the retired applications
    if updates:  # the updated applications, before the new ones (one transaction either way)
        session.execute(update(apps).where(apps.c.id == bindparam("b_id")), updates)
    if counts:
        update_rows(session, apps, "id", COUNT_ATTRS_ORDER, counts, fixed={"updated_at": now})
    if new_apps:  # their ids, in the order of the rows given
        ids = session.execute(insert(apps).returning(apps.c.id, sort_by_parameter_order=True), new_apps).scalars().all()
        for values, new_id in zip(new_apps, ids, strict=True):
            values["id"] = new_id
    if new_metadata:
        session.execute(insert(table_of(AppMetadata)), new_metadata)
    host.events.record_many(session, [("mobile_apps_app_published", _payload(row)) for row in published])


#: a stored application's columns that :func:`upsert_assets` compares (dates: written, never
#: compared), its platforms as the stored JSON text: a few distinct values, each decoded once
#: (:func:`stored_platforms`), not once per application by the column's type
STORED_COLUMNS = tuple(
    cast(c, String).label(c.name) if c.name == "supported_platforms" else c
    for c in table_of(MobileApp).c
    if c.name not in ("published_at", "updated_at", "retired_at")
)


@functools.cache
def _stored_query(postgres: bool) -> Any:
    """The stored applications of ``account`` for the assets ``adam_ids`` (:func:`upsert_assets`),
    each with whether its metadata row exists: one read, where a second one read the metadata
    of every asset of the event (an incremental sync's: only their counts moved). On PostgreSQL
    the applications are joined to the adamIds unnested from their array (distinct: no row
    twice): planning ``adam_id = ANY(...)`` estimated each of the event's adamIds in turn (2.5 ms
    of the server's for the 500 of an incremental sync's first assets event, 0.4 ms joined).
    Built once."""
    apps, metadata = table_of(MobileApp), table_of(AppMetadata)
    has_metadata = metadata.c.adam_id.is_not(None).label("has_metadata")
    if postgres:
        keys = unnest_rows("keys", "", {"adam_ids": apps.c.adam_id.type})
        stored = select(*STORED_COLUMNS, has_metadata).select_from(apps.join(keys, keys.c.adam_ids == apps.c.adam_id))
    else:
        stored = select(*STORED_COLUMNS, has_metadata).where(one_of(apps.c.adam_id, "adam_ids", postgres))
    return stored.outerjoin(metadata, (metadata.c.adam_id == apps.c.adam_id) & (metadata.c.platform == apps.c.platform)).where(
        apps.c.account == bindparam("account")
    )


@functools.lru_cache(maxsize=256)
def stored_platforms(text: str) -> list[str]:
    """A stored application's platforms (its column's JSON text), as the column's type reads
    them; one list per distinct text: compared, never changed."""
    return list(json.loads(text))


def _updated_values(row: Mapping[str, Any], values: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A stored application's columns as its asset's ``values`` (:func:`_asset_values`) set
    them, published again: every count column (the stored one where the asset lacks it), so
    that every row of one ``UPDATE`` sets the same columns."""
    updated: dict[str, Any] = {attr: row[attr] for attr, _ in COUNTS}
    updated.update(values)
    updated.update(state="published", retired_at=None, updated_at=now)
    return updated


#: the columns of a new application that do not come from its asset
NEW_APP: dict[str, Any] = {"state": "published", "retired_at": None, "assigned_count": 0, "available_count": 0, "retired_count": 0, "total_count": 0}
#: a new metadata row: pending, to be looked up by the ``mobile_apps.metadata`` job
NEW_METADATA: dict[str, Any] = {
    "status": "pending",
    "name": None,
    "bundle_id": None,
    "version": None,
    "icon_url": None,
    "store_kind": None,
    "device_families": [],
    "fetched_at": None,
    "attempts": 0,
    "last_error": None,
    "next_attempt_at": None,
}
COUNTS = (("assigned_count", "assignedCount"), ("available_count", "availableCount"), ("retired_count", "retiredCount"), ("total_count", "totalCount"))
COUNT_ATTRS_ORDER = [attr for attr, _ in COUNTS]
COUNT_ATTRS = frozenset(COUNT_ATTRS_ORDER)


def _asset_values(asset: Mapping[str, Any], kind: str, product_type: str) -> dict[str, Any]:
    """An application's columns taken from its asset; ``product_type``: kept when the asset has
    none; a count the asset lacks is left out (a new application's is 0)."""
    values: dict[str, Any] = {
        "kind": kind,
        "product_type": str(asset.get("productType") or product_type),
        "device_assignable": bool(asset.get("deviceAssignable")),
        "revocable": bool(asset.get("revocable")),
        "supported_platforms": list(asset.get("supportedPlatforms") or []),
    }
    for attr, key in COUNTS:
        if asset.get(key) is not None:
            values[attr] = int(asset[key])
    return values


def _set_counts(row: MobileApp, asset: Mapping[str, Any], kind: str) -> None:
    for attr, value in _asset_values(asset, kind, row.product_type).items():
        setattr(row, attr, value)


def _retire(host: Host, session: Session, row: MobileApp, now: Any) -> None:
    row.state, row.retired_at, row.updated_at = "retired", now, now
    session.add(row)
    host.events.record(session, "mobile_apps_app_retired", _payload(row))


def retire_assets(host: Host, session: Session, account: str, assets: list[Asset]) -> None:
    """The assets left the account: their applications are retired (kept, not installable)."""
    now = utcnow()
    for asset in assets:
        rows = session.execute(
            select(MobileApp).where(
                col(MobileApp.account) == account, col(MobileApp.adam_id) == str(asset["adamId"]), col(MobileApp.pricing_param) == str(asset["pricingParam"])
            )
        ).scalars()
        for row in rows:
            _set_counts(row, asset, row.kind)
            if row.state != "retired":
                _retire(host, session, row, now)
            else:
                session.add(row)


# ---------------------------------------------------------------------- metadata


def refresh_metadata(
    host: Host,
    *,
    force: bool = False,
    everything: bool = False,
    account: str | None = None,
    limit: int | None = None,
    pending_only: bool = False,
    published_since: datetime | None = None,
    errors: list[str] | None = None,
) -> dict[str, int]:
    """Look up the metadata that is pending, failed (when its retry is due, or ``force``) or
    older than ``metadata_max_age`` (or all of it with ``everything``); returns counts.
    ``account``, ``limit``, ``pending_only`` (never looked up) and ``published_since`` (apps
    published since then: a manual sync's own) narrow it (after a manual sync).
    With ``errors`` (a command that prints them itself) the failures are put there instead of
    being logged as warnings.

    A failed lookup never raises: the rows are marked ``error`` and retried after
    ``metadata_retry`` seconds.
    """
    s = settings(host)
    now = utcnow()
    stale = now - timedelta(seconds=s.metadata_max_age)
    if published_since is not None:  # after a manual sync: most publish nothing, and then nothing is looked up
        apps = table_of(MobileApp)
        with host.db.reading() as conn:
            if conn.execute(select(apps.c.id).where(apps.c.published_at >= published_since).limit(1)).first() is None:
                return {"looked_up": 0, "found": 0, "missing": 0, "failed": 0}
    with host.db.session() as session:
        query = select(AppMetadata).order_by(AppMetadata.adam_id)
        if pending_only:
            query = query.where(col(AppMetadata.status) == "pending")
        elif not everything:
            query = query.where(or_(col(AppMetadata.status).in_(("pending", "error")), col(AppMetadata.fetched_at) < stale))
            if not force:
                query = query.where(or_(col(AppMetadata.next_attempt_at).is_(None), col(AppMetadata.next_attempt_at) <= now))
        if account is not None:
            query = query.where(col(AppMetadata.account) == account)
        if published_since is not None:
            query = query.where(select(col(MobileApp.id)).where(METADATA_JOIN, col(MobileApp.published_at) >= published_since).exists())
        if limit is not None:
            query = query.limit(limit)
        rows = list(session.execute(query).scalars())
        accounts = _live_accounts(session) if rows else {}  # every published app: read only when there is something to look up
    by_account: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        account = row.account if row.account in accounts else (accounts.get(row.adam_id) or row.account)
        by_account.setdefault((account, row.platform), []).append(row.adam_id)
    return look_up(host, by_account, errors=errors)


def look_up(host: Host, by_account: Mapping[tuple[str, str], list[str]], *, errors: list[str] | None = None) -> dict[str, int]:
    """Look up the metadata of ``{(account, platform): [adamId, ...]}`` in batches of
    ``LOOKUP_BATCH`` and store what Apple answered (``version`` and the other fields as the VPP
    plugin's lookup names them); returns counts. A failed batch never raises: its rows are
    marked and retried after ``metadata_retry`` seconds, the failure logged (or put in
    ``errors``)."""
    s = settings(host)
    counts = {"looked_up": 0, "found": 0, "missing": 0, "failed": 0}
    for (account, platform), adam_ids in sorted(by_account.items()):
        for start in range(0, len(adam_ids), LOOKUP_BATCH):
            batch = adam_ids[start : start + LOOKUP_BATCH]
            counts["looked_up"] += len(batch)
            try:
                found = VppPort(host).lookup_metadata(account, batch, platform)
            except Exception as exc:  # never fails the caller: retried later
                message = one_line(exc) or type(exc).__name__
                if errors is not None:
                    errors.append(f"account {account}: {message}")
                else:
                    log.warning("metadata lookup of %d app(s) in account %s failed, retrying in %ss: %s", len(batch), account, s.metadata_retry, message)
                host.db.run_write(partial(_mark_failed, adam_ids=batch, platform=platform, message=message, retry=s.metadata_retry))
                counts["failed"] += len(batch)
                continue
            host.db.run_write(partial(_store, account=account, platform=platform, adam_ids=batch, found=found, max_age=s.metadata_max_age))
            counts["found"] += sum(1 for a in batch if a in found)
            counts["missing"] += sum(1 for a in batch if a not in found)
    return counts


def _live_accounts(session: Session) -> dict[str, str]:
    """Published account of each adamId (and each account name mapped to itself)."""
    out: dict[str, str] = {}
    for account, adam_id in session.execute(select(col(MobileApp.account), col(MobileApp.adam_id)).where(col(MobileApp.state) == "published")).all():
        out.setdefault(adam_id, account)
        out[account] = account
    return out


def _mark_failed(session: Session, adam_ids: list[str], platform: str, message: str, retry: int) -> None:
    now = utcnow()
    for adam_id in adam_ids:
        row = session.get(AppMetadata, (adam_id, platform))
        if row is None:
            continue
        row.status = "error" if row.fetched_at is None else row.status  # keep what we had; it is only stale
        row.attempts += 1
        row.last_error = message[:1000]
        row.next_attempt_at = now + timedelta(seconds=retry)
        session.add(row)


def _store(session: Session, account: str, platform: str, adam_ids: list[str], found: Mapping[str, Mapping[str, Any]], max_age: int) -> None:
    now = utcnow()
    rows = {
        r.adam_id: r
        for r in session.execute(select(AppMetadata).where(col(AppMetadata.adam_id).in_(adam_ids), col(AppMetadata.platform) == platform)).scalars()
    }
    for adam_id in adam_ids:
        row = rows.get(adam_id)
        if row is None:
            continue
        data = found.get(adam_id)
        row.account, row.fetched_at, row.attempts, row.last_error = account, now, 0, None
        row.next_attempt_at = now + timedelta(seconds=max_age)
        if data is None:
            row.status = "missing" if row.name is None else row.status
            session.add(row)
            continue
        row.status = "ok"
        row.name, row.bundle_id, row.version, row.icon_url = data.get("name"), data.get("bundleId"), data.get("version"), data.get("iconUrl")
        row.store_kind, row.device_families = data.get("kind"), list(data.get("deviceFamilies") or [])
        session.add(row)
    session.flush()
    apps = table_of(MobileApp)
    start_known_versions(session, apps.c.platform == platform, apps.c.adam_id.in_(adam_ids))


def start_known_versions(session: Session, *where: Any) -> None:
    """Applications (matching ``where``) with no known version take their metadata's: the first
    version looked up is where automatic updates start from (:mod:`.updates`)."""
    apps = table_of(MobileApp)
    looked_up = select(col(AppMetadata.version)).where(col(AppMetadata.adam_id) == apps.c.adam_id, col(AppMetadata.platform) == apps.c.platform)
    session.execute(update(apps).where(apps.c.known_version.is_(None), *where).values(known_version=looked_up.scalar_subquery()))


# ---------------------------------------------------------------------- reading


def app_dict(app: MobileApp, meta: AppMetadata | None) -> dict[str, Any]:
    """An application as plain values: ``version`` is the one the MDM knows its devices are on
    (``known_version``; the looked-up one until it has none), ``available`` a higher one the
    last lookup answered (not installed yet: the update check installs it), else None."""
    looked_up = meta.version if meta else None
    version = app.known_version or looked_up
    return {
        "id": app.id,
        "kind": app.kind,
        "platform": app.platform,
        "state": app.state,
        "account": app.account,
        "adamId": app.adam_id,
        "pricingParam": app.pricing_param,
        "productType": app.product_type,
        "name": meta.name if meta else None,
        "bundleId": meta.bundle_id if meta else None,
        "version": version,
        "available": looked_up if looked_up and version and looked_up != version and is_newer(looked_up, version) else None,
        "iconUrl": meta.icon_url if meta else None,
        "metadata": meta.status if meta else "pending",
        "metadataFetchedAt": meta.fetched_at if meta else None,
        "metadataError": meta.last_error if meta else None,
        "deviceAssignable": app.device_assignable,
        "revocable": app.revocable,
        "supportedPlatforms": list(app.supported_platforms or []),
        "assignedCount": app.assigned_count,
        "availableCount": app.available_count,
        "retiredCount": app.retired_count,
        "totalCount": app.total_count,
        "countsAsOf": "retired" if app.state == "retired" else "now",  # a retired app's counts are those it had then (retiredAt)
        "publishedAt": app.published_at,
        "retiredAt": app.retired_at,
    }


RETIRED_COUNTS = "when it was retired, not now"


def counts_shown(app: dict[str, Any]) -> dict[str, Any]:
    """An application's ``availableCount`` and ``totalCount`` as the lists' text shows them. A
    retired app's counts are those it had when it was retired (its account may be gone, or
    bought it again under another row): ``-``, never read as its licenses now (``show`` and the
    JSON keep them)."""
    retired = app["state"] == "retired"
    return {k: None if retired else app[k] for k in ("availableCount", "totalCount")}


#: The states of an application (``mdm apps list --state``).
APP_STATES = ("published", "retired")
APP_KINDS = ("app", "book")


def apps_query(platform: str | None = None, kind: str | None = None, state: str | None = None) -> Any:
    """Rows ``(MobileApp, AppMetadata or None)`` for :func:`app_dict`; an unknown platform, kind
    or state is a ``UsageError`` (raised at once, before any row is read)."""
    query = select(MobileApp, AppMetadata).outerjoin(AppMetadata, METADATA_JOIN)
    if platform:
        known = sorted(set(APP_PLATFORMS.values()), key=str.lower)
        if platform.strip().lower() not in APP_PLATFORMS:
            raise UsageError(f"unknown platform '{platform}': use one of {', '.join(known)} (iPadOS apps are listed as iOS)")
        query = query.where(col(MobileApp.platform) == app_platform(platform))
    if kind:
        if kind not in APP_KINDS:
            raise UsageError(f"unknown kind '{kind}': use {' or '.join(APP_KINDS)}")
        query = query.where(col(MobileApp.kind) == kind)
    if state:
        if state not in APP_STATES:
            raise UsageError(f"unknown state '{state}': use one of {', '.join(APP_STATES)}")
        query = query.where(col(MobileApp.state) == state)
    return query


#: The order of the applications everywhere (``mdm apps list``, the console, ``GET /api/v1/apps``):
#: by name (any case; unnamed last), then adamId, pricing, platform and id. Every key is NOT NULL
#: and the last unique, so the API's keyset cursor can start a page just after any row.
APP_ORDER = (
    func.lower(func.coalesce(AppMetadata.name, "~"), type_=String),
    MobileApp.adam_id,
    MobileApp.pricing_param,
    MobileApp.platform,
    MobileApp.id,
)


def iter_apps(
    host: Host, platform: str | None = None, kind: str | None = None, state: str | None = None, *, offset: int = 0, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Applications (and books) with their metadata, in ``APP_ORDER``; streamed (constant
    memory). An unknown platform raises before any row."""
    query = apps_query(platform, kind, state).order_by(*APP_ORDER)
    return (app_dict(a, m) for a, m in stream_rows(host.db, query, offset=offset, limit=limit))


def list_apps(host: Host, platform: str | None = None, kind: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
    """Applications (and books) with their metadata, in ``APP_ORDER``."""
    return list(iter_apps(host, platform, kind, state))


def label_source() -> Any:
    """Names and icons of looked-up apps as a subquery (``adam_id``, ``name``, ``icon_url``), one
    row per adamId (its iOS entry when it has one), for the VPP plugin's pages to join
    (``mdm_vpp_asset_labels``)."""
    first = func.row_number().over(partition_by=AppMetadata.adam_id, order_by=(case((col(AppMetadata.platform) == "iOS", 0), else_=1), AppMetadata.platform))
    ranked = (
        select(col(AppMetadata.adam_id), col(AppMetadata.name), col(AppMetadata.icon_url), first.label("rank"))
        .where(col(AppMetadata.name).is_not(None))
        .subquery()
    )
    return select(ranked.c.adam_id, ranked.c.name, ranked.c.icon_url).where(ranked.c.rank == 1).subquery("asset_labels")


def app_names(host: Host, adam_ids: list[str]) -> dict[str, str]:
    """``{adamId: name}`` of the looked-up apps among ``adam_ids`` (an app's iOS entry first,
    as ``label_source``), for ``mdm_app_names``; stored rows only."""
    meta = table_of(AppMetadata)
    query = select(meta.c.adam_id, meta.c.platform, meta.c.name).where(one_of(meta.c.adam_id, "ids", not host.db.is_sqlite), meta.c.name.is_not(None))
    rows: list[Any] = []
    with host.db.reading() as conn:
        for chunk in in_chunks(sorted({str(a) for a in adam_ids})):
            rows += conn.execute(query, {"ids": chunk}).all()
    names: dict[str, str] = {}
    for adam_id, _, name in sorted(rows, key=lambda r: (r.adam_id, r.platform != "iOS", r.platform)):
        names.setdefault(adam_id, name)
    return names


def find_apps(session: Session, selector: str) -> list[tuple[MobileApp, AppMetadata | None]]:
    """Applications matching an application id, an adamId or a bundle id."""
    selector = selector.strip()
    if not selector:
        raise UsageError("APP is empty: give an application id, an adamId or a bundle id (see `mdm apps list`)")
    base = select(MobileApp, AppMetadata).outerjoin(AppMetadata, METADATA_JOIN)
    if selector.isascii() and selector.isdigit():  # not '²', a digit int() refuses
        rows = list(session.execute(base.where(col(MobileApp.adam_id) == selector)).all())
        if not rows and int(selector) <= MAX_ROW_ID:  # a larger id would overflow the database's integer
            rows = list(session.execute(base.where(col(MobileApp.id) == int(selector))).all())
    else:
        rows = list(session.execute(base.where(col(AppMetadata.bundle_id) == selector)).all())
    if not rows:
        raise NotFound(
            f"no application '{selector}': give an application id, an adamId or a bundle id (see `mdm apps list`; run `mdm vpp sync` after a purchase)"
        )
    return [(a, m) for a, m in rows]


def label(app: MobileApp, meta: AppMetadata | None) -> str:
    """``Name (adamId)`` or just the adamId."""
    name = meta.name if meta and meta.name else None
    return f"{name} ({app.adam_id})" if name else f"adamId {app.adam_id}"
