"""Sync one VPP account: pages → staging tables → set differences → one transaction → events.

- **Full**: every page of assets, users and assignments; afterwards the mirror equals Apple.
- **Incremental**: assets in full (they have no delta), users and assignments since the
  stored first-page ``versionId``. Removed licenses do not show in a delta, so each asset's
  ``assignedCount`` is compared with the mirror and the assignments of just the assets that
  disagree are read again (``GET /assignments?adamId=``). 9721/9650 fall back to full.

Pages are staged in ``vpp_stage_*`` tables as they arrive (memory does not grow with the
account); the mirror changes in one final transaction with bulk set-difference statements,
which also records the sync run, the new ``versionId``s and the events (outbox).
A ``versionId`` that changes while paging restarts that traversal (bounded).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from sqlalchemy import and_, bindparam, delete, exists, func, insert, literal, or_, select, update
from sqlmodel import Session

from mdm_core.models import Device, MdmUser, utcnow

from .accounts import set_token_state
from .client import AppsBooksClient
from .errors import VppError
from .models import VppAccount, VppAsset, VppLicense, VppStageLicense, VppStageUser, VppSyncRun, VppUser
from .records import apple_asset, apple_user, page_assets, page_assignments, page_users, version_of
from .token_state import as_utc, expiry_state

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)

MAX_RESTARTS = 3
STAGE_BATCH = 20000  # rows per staging transaction: fewer, larger commits write far less WAL (index pages)
EVENT_TARGETS = 1000
EVENT_RECORDS = 500

L = VppLicense.__table__  # type: ignore[attr-defined]
SL = VppStageLicense.__table__  # type: ignore[attr-defined]
U = VppUser.__table__  # type: ignore[attr-defined]
SU = VppStageUser.__table__  # type: ignore[attr-defined]
A = VppAsset.__table__  # type: ignore[attr-defined]


class DataChangedError(VppError):
    """Apple's data kept changing while we paged through it; the next sync tries again."""

    retryable = True


class AccountSync:
    """One sync run of one account; ``run(mode)`` returns the counts it applied."""

    def __init__(self, host: "Host", account: VppAccount, client: AppsBooksClient, run_id: int, heartbeat: Callable[[], None]):
        self.host = host
        self.account = account
        self.client = client
        self.run_id = run_id
        self.heartbeat = heartbeat
        self.pages = 0
        self._pages_lock = threading.Lock()
        self.token_expiration: str | None = None
        self.invitation_template: str | None = None

    # ------------------------------------------------------------------ traversal

    def _count_page(self) -> None:
        with self._pages_lock:  # pages are read from several threads during re-reads
            self.pages += 1

    def _traverse(self, what: str, pages: Callable[[], Iterator[dict[str, Any]]], on_rows: Callable[[dict[str, Any]], None], reset: Callable[[], None]) -> str | None:
        """Page to the end; restart if the first page's ``versionId`` changes underway."""
        for attempt in range(MAX_RESTARTS + 1):
            first: str | None = None
            changed = False
            for index, page in enumerate(pages()):
                self._count_page()
                self.heartbeat()
                version = version_of(page)
                if index == 0:
                    first = version
                    expiry = page.get("tokenExpirationDate")
                    if isinstance(expiry, str):
                        self.token_expiration = expiry
                elif version is not None and first is not None and version != first:  # a page without versionId: lenient
                    changed = True
                    break
                on_rows(page)
            if not changed:
                return first
            log.info("%s changed while paging (account %s); reading it again (%d/%d)", what, self.account.name, attempt + 1, MAX_RESTARTS)
            reset()
        raise DataChangedError(f"Apple's {what} kept changing while paging ({MAX_RESTARTS + 1} tries): the next sync tries again")

    def fetch_assets(self) -> tuple[dict[tuple[str, str], dict[str, Any]], str | None]:
        """Every asset (they are few: kept in memory)."""
        assets: dict[tuple[str, str], dict[str, Any]] = {}

        def on_page(page: dict[str, Any]) -> None:
            for row in page_assets(page):
                assets[(row["adam_id"], row["pricing_param"])] = row

        version = self._traverse("assets", lambda: self.client.iter_assets(), on_page, assets.clear)
        return assets, version

    def stage_users(self, since: str | None) -> str | None:
        """Stage user records (all, or changed since ``since``)."""
        buffer = _StageBuffer(self.host, SU, self.run_id)

        def reset() -> None:
            buffer.clear()
            self._clear(SU)

        version = self._traverse("users", lambda: self.client.iter_users(since_version_id=since), lambda p: buffer.add(page_users(p)), reset)
        buffer.flush()
        return version

    def stage_licenses(self, since: str | None = None, adam_id: str | None = None, shared: "_StageBuffer | None" = None) -> str | None:
        """Stage assignments (all, changed since ``since``, or of one asset); ``shared``: a buffer
        the caller flushes (the re-reads of many assets then commit in a few large batches)."""
        buffer = shared if shared is not None else _StageBuffer(self.host, SL, self.run_id)

        def on_page(page: dict[str, Any]) -> None:
            buffer.add([{"adam_id": a, "pricing_param": p, "kind": k, "target": t} for a, p, k, t in page_assignments(page)])

        def reset() -> None:
            buffer.clear(adam_id)
            self._clear(SL, adam_id)

        pages = lambda: self.client.iter_assignments(since_version_id=since, adam_id=adam_id)  # noqa: E731
        version = self._traverse(f"assignments of {adam_id}" if adam_id else "assignments", pages, on_page, reset)
        if shared is None:
            buffer.flush()
        return version

    def _clear(self, table: Any, adam_id: str | None = None) -> None:
        condition = table.c.run_id == self.run_id
        if adam_id is not None:
            condition = and_(condition, table.c.adam_id == adam_id)
        self.host.db.run_write(lambda s: s.execute(delete(table).where(condition)))

    # ------------------------------------------------------------------ modes

    def run(self, mode: str) -> dict[str, Any]:
        """Read Apple's state for ``mode`` (``full`` or ``incremental``) and apply it."""
        assets, assets_version = self.fetch_assets()
        if mode == "full":
            users_version = self.stage_users(None)
            assignments_version = self.stage_licenses()
            assets, assets_version = self.refresh_assets(assets, assets_version)
            reread: list[str] = []
        else:
            users_version = self.stage_users(self.account.users_version_id)
            assignments_version = self.stage_licenses(since=self.account.assignments_version_id)
            self._dedupe_stage_licenses()
            assets, assets_version = self.refresh_assets(assets, assets_version)
            reread = self.count_mismatches(assets)
            shared = _StageBuffer(self.host, SL, self.run_id)
            # several assets at once; the client keeps Apple's limit of 5 requests in flight
            with ThreadPoolExecutor(max_workers=self.client.max_parallel_pages, thread_name_prefix="vpp-reread") as pool:
                for _ in pool.map(lambda adam_id: self.stage_licenses(adam_id=adam_id, shared=shared), reread):
                    pass
            shared.flush()
        versions = {"assets_version_id": assets_version, "users_version_id": users_version, "assignments_version_id": assignments_version}
        # read before the write transaction: no HTTP request while the database is locked
        self.invitation_template = self.client.service_config().urls.get("invitationEmail")
        return self.host.db.run_write(lambda session: self.apply(session, mode, assets, versions, reread))

    def refresh_assets(self, assets: dict[tuple[str, str], dict[str, Any]], version: str | None) -> tuple[dict[tuple[str, str], dict[str, Any]], str | None]:
        """Read the assets again if Apple changed them while users and assignments were read.

        Counts move with every assignment; without this, an assignment made in Apple's portal
        during the sync would leave ``assignedCount`` one sync behind the mirrored licenses.
        """
        pages = self.client.iter_assets()
        try:
            first = next(pages)
        finally:
            pages.close()
        self._count_page()
        if version is not None and version_of(first) == version:
            return assets, version
        log.info("account %s: assets changed during the sync; reading them again", self.account.name)
        return self.fetch_assets()

    def _dedupe_stage_licenses(self) -> None:
        keep = select(func.min(SL.c.id)).where(SL.c.run_id == self.run_id).group_by(SL.c.adam_id, SL.c.pricing_param, SL.c.kind, SL.c.target)
        self.host.db.run_write(lambda s: s.execute(delete(SL).where(SL.c.run_id == self.run_id, SL.c.id.not_in(keep))))

    def count_mismatches(self, assets: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
        """adamIds whose ``assignedCount`` differs from the mirror plus the staged delta."""
        acc = self.account.id
        with self.host.db.session() as session:
            mirrored = dict(((a, p), n) for a, p, n in session.execute(
                select(L.c.adam_id, L.c.pricing_param, func.count()).where(L.c.account_id == acc).group_by(L.c.adam_id, L.c.pricing_param)
            ).all())
            added = dict(((a, p), n) for a, p, n in session.execute(
                select(SL.c.adam_id, SL.c.pricing_param, func.count()).where(SL.c.run_id == self.run_id, ~_in_mirror(acc)).group_by(SL.c.adam_id, SL.c.pricing_param)
            ).all())
        adam_ids = {a for (a, p), asset in assets.items() if asset["assigned_count"] != mirrored.get((a, p), 0) + added.get((a, p), 0)}
        if adam_ids:
            log.info("account %s: %d asset(s) have counts that differ from the mirror; re-reading their assignments", self.account.name, len(adam_ids))
        return sorted(adam_ids)

    # ------------------------------------------------------------------ apply

    def apply(self, session: Session, mode: str, assets: dict[tuple[str, str], dict[str, Any]], versions: dict[str, str | None], reread: list[str]) -> dict[str, Any]:
        """The one transaction: mirror, account, sync run, events."""
        counts: dict[str, Any] = {}
        removed_assets = self._apply_assets(session, assets, counts)
        self._apply_users(session, full=mode == "full", counts=counts)
        self._apply_licenses(session, full=mode == "full", reread=reread, removed_assets=removed_assets, counts=counts)
        for table in (SL, SU):
            self._delete_stage(session, table)

        account = session.get(VppAccount, self.account.id)
        assert account is not None
        now = utcnow()
        for key, value in versions.items():
            setattr(account, key, value)
        account.last_sync_at = now
        account.last_sync_result = f"ok ({mode})"
        if mode == "full":
            account.last_full_sync_at = now
        if self.token_expiration:
            try:
                account.token_expires_at = as_utc(datetime.fromisoformat(self.token_expiration.replace("Z", "+00:00")))
            except ValueError:
                pass
        account.paused = False
        account.invitation_template = self.invitation_template or account.invitation_template
        new_state = expiry_state(account.token_expires_at)
        set_token_state(self.host, session, account, new_state, None, pause=False)
        run = session.get(VppSyncRun, self.run_id)
        assert run is not None
        run.mode, run.status, run.finished_at, run.pages, run.counts = mode, "ok", now, self.pages, counts
        session.add(run)
        return counts

    def _apply_assets(self, session: Session, assets: dict[tuple[str, str], dict[str, Any]], counts: dict[str, Any]) -> list[tuple[str, str]]:
        acc, name = self.account.id, self.account.name
        mirror = {(r.adam_id, r.pricing_param): r for r in session.execute(select(VppAsset).where(VppAsset.account_id == acc)).scalars()}
        now = utcnow()
        added = [row for key, row in assets.items() if key not in mirror]
        changed = [row for key, row in assets.items() if key in mirror and _asset_differs(mirror[key], row)]
        removed = [key for key in mirror if key not in assets]
        if added:
            session.execute(insert(A), [{**row, "account_id": acc, "updated_at": now} for row in added])
        if changed:
            session.execute(
                update(A).where(A.c.account_id == bindparam("b_account"), A.c.adam_id == bindparam("b_adam"), A.c.pricing_param == bindparam("b_pricing")),
                [{**{k: v for k, v in row.items() if k not in ("adam_id", "pricing_param")}, "updated_at": now, "b_account": acc, "b_adam": row["adam_id"], "b_pricing": row["pricing_param"]} for row in changed],
            )
        removed_dicts = [apple_asset(mirror[key].model_dump(), name) for key in removed]
        for a, p in removed:
            session.execute(delete(A).where(A.c.account_id == acc, A.c.adam_id == a, A.c.pricing_param == p))
        for event, rows in (("vpp_assets_added", added), ("vpp_assets_changed", changed)):
            self._record_chunks(session, event, [apple_asset(r, name) for r in rows])
        self._record_chunks(session, "vpp_assets_removed", removed_dicts)
        counts["assets"] = {"added": len(added), "changed": len(changed), "removed": len(removed), "total": len(assets)}
        return removed

    def _delete_stage(self, session: Session, table: Any) -> None:
        """Drop this run's staged rows; on SQLite, when no other run has any (the write lock is
        held), empty the table with an unqualified DELETE (SQLite's truncate optimisation)."""
        low, high = session.execute(select(func.min(table.c.run_id), func.max(table.c.run_id))).one()
        if self.host.db.is_sqlite and low in (None, self.run_id) and high in (None, self.run_id):
            session.execute(delete(table))
        else:
            session.execute(delete(table).where(table.c.run_id == self.run_id))

    def _record_chunks(self, session: Session, event: str, records: list[dict[str, Any]]) -> None:
        key = "assets" if event.startswith("vpp_assets") else "users"
        for start in range(0, len(records), EVENT_RECORDS):
            self.host.events.record(session, event, {"account": self.account.name, key: records[start:start + EVENT_RECORDS]})

    def _apply_users(self, session: Session, *, full: bool, counts: dict[str, Any]) -> None:
        acc, run = self.account.id, self.run_id
        other = SU.alias("su2")
        session.execute(delete(SU).where(SU.c.run_id == run, exists().where(
            other.c.run_id == run, other.c.client_user_id == SU.c.client_user_id,
            or_(other.c.rank < SU.c.rank, and_(other.c.rank == SU.c.rank, other.c.id > SU.c.id)),
        )))
        fields = ("email", "status", "id_hash", "invite_code")
        in_mirror = exists().where(U.c.account_id == acc, U.c.client_user_id == SU.c.client_user_id)
        is_new = and_(SU.c.run_id == run, ~in_mirror)
        added = 0
        new_rows: list[dict[str, Any]] = []
        for r in session.execute(select(SU.c.client_user_id, *(SU.c[f] for f in fields)).where(is_new)):
            new_rows.append(dict(r._mapping))  # streamed, an event of 500 at a time: memory does not grow with the account
            if len(new_rows) >= EVENT_RECORDS:
                added += self._record_added_users(session, new_rows)
        added += self._record_added_users(session, new_rows)
        joined = select(SU.c.client_user_id, *(SU.c[f] for f in fields), U.c.status.label("old_status")).join(
            U, and_(U.c.account_id == acc, U.c.client_user_id == SU.c.client_user_id)
        ).where(SU.c.run_id == run, or_(*(SU.c[f].is_distinct_from(U.c[f]) for f in fields)))
        changed_rows = [dict(r._mapping) for r in session.execute(joined)]
        removed = 0
        if full:
            gone = ~exists().where(SU.c.run_id == run, SU.c.client_user_id == U.c.client_user_id)
            removed = session.execute(delete(U).where(U.c.account_id == acc, gone)).rowcount
        now = utcnow()
        if added:
            columns = ["account_id", "client_user_id", *fields, "updated_at"]
            session.execute(insert(U).from_select(columns, select(literal(acc), SU.c.client_user_id, *(SU.c[f] for f in fields), literal(now, U.c.updated_at.type)).where(is_new)))
        if changed_rows:
            session.execute(
                update(U).where(U.c.account_id == acc, U.c.client_user_id == bindparam("b_id")),
                [{**{f: r[f] for f in fields}, "updated_at": now, "b_id": r["client_user_id"]} for r in changed_rows],
            )
        retired = [r for r in changed_rows if r["status"] in ("Retired", "Deleted") and r["old_status"] not in ("Retired", "Deleted")]
        retired_ids = {r["client_user_id"] for r in retired}
        other_changes = [r for r in changed_rows if r["client_user_id"] not in retired_ids]
        linked = _existing(session, MdmUser.__table__.c.id, [r["client_user_id"] for r in changed_rows])  # type: ignore[attr-defined]
        for event, rows in (("vpp_users_changed", other_changes), ("vpp_users_retired", retired)):
            self._record_chunks(session, event, [apple_user(r, linked) for r in rows])
        counts["users"] = {"added": added, "changed": len(other_changes), "retired": len(retired), "removed": removed}

    def _record_added_users(self, session: Session, rows: list[dict[str, Any]]) -> int:
        """One ``vpp_users_added`` event for these (at most 500) new users; empties ``rows``."""
        count = len(rows)
        if rows:
            linked = _existing(session, MdmUser.__table__.c.id, [r["client_user_id"] for r in rows])  # type: ignore[attr-defined]
            self._record_chunks(session, "vpp_users_added", [apple_user(r, linked) for r in rows])
            rows.clear()
        return count

    def _apply_licenses(self, session: Session, *, full: bool, reread: list[str], removed_assets: list[tuple[str, str]], counts: dict[str, Any]) -> None:
        acc, run = self.account.id, self.run_id
        columns = (SL.c.adam_id, SL.c.pricing_param, SL.c.kind, SL.c.target)
        is_new = and_(SL.c.run_id == run, ~_in_mirror(acc))
        # in the staging index's order (no sort); a row Apple sent twice is adjacent and skipped
        new_rows = session.execute(select(*columns).where(is_new).order_by(SL.c.run_id, *columns))
        added = self._record_license_events(session, "vpp_licenses_associated", new_rows)
        session.execute(_insert_ignoring_duplicates(session, L).from_select(["account_id", "adam_id", "pricing_param", "kind", "target"], select(literal(acc), *columns).where(is_new)))

        removed = 0
        conditions = []
        in_stage = exists().where(SL.c.run_id == run, SL.c.adam_id == L.c.adam_id, SL.c.pricing_param == L.c.pricing_param, SL.c.kind == L.c.kind, SL.c.target == L.c.target)
        if full:
            conditions.append(and_(L.c.account_id == acc, ~in_stage))
        else:
            for start in range(0, len(reread), 500):
                conditions.append(and_(L.c.account_id == acc, L.c.adam_id.in_(reread[start:start + 500]), ~in_stage))
        for a, p in removed_assets:
            conditions.append(and_(L.c.account_id == acc, L.c.adam_id == a, L.c.pricing_param == p))
        for condition in conditions:
            rows = session.execute(select(L.c.adam_id, L.c.pricing_param, L.c.kind, L.c.target).where(condition).order_by(L.c.adam_id, L.c.pricing_param, L.c.kind))
            removed += self._record_license_events(session, "vpp_licenses_disassociated", rows)
            session.execute(delete(L).where(condition))
        counts["licenses"] = {"added": added, "removed": removed, "reread_assets": len(reread)}

    def _record_license_events(self, session: Session, event: str, rows: Iterable[Any]) -> int:
        """Group (adamId, pricingParam, kind, target) rows into events of at most 1000 targets."""
        total = 0
        batch: list[str] = []
        current: tuple[str, str, str] | None = None
        events: list[tuple[str, dict[str, Any]]] = []

        def flush() -> None:
            if current and batch:
                events.append((event, license_payload(session, self.account.name, current[0], current[1], current[2], list(batch), "sync")))
                if len(events) >= 100:  # written as they come: memory does not grow with the account
                    self.host.events.record_many(session, events)
                    events.clear()
            batch.clear()

        previous = None
        for row in rows:
            if row == previous:
                continue
            previous = row
            adam_id, pricing, kind, target = row
            key = (adam_id, pricing, kind)
            if key != current or len(batch) >= EVENT_TARGETS:
                flush()
                current = key
            batch.append(target)
            total += 1
        flush()
        self.host.events.record_many(session, events)
        return total


def license_payload(session: Session, account: str, adam_id: str, pricing: str, kind: str, targets: list[str], source: str) -> dict[str, Any]:
    """The payload of a licenses event, with the targets the MDM inventory knows."""
    if kind == "device":
        known = _existing(session, Device.__table__.c.serial_number, targets)  # type: ignore[attr-defined]
        return {"account": account, "adamId": adam_id, "pricingParam": pricing, "source": source, "serialNumbers": targets,
                "clientUserIds": [], "enrolledSerialNumbers": [t for t in targets if t in known], "mdmUserIds": []}
    known = _existing(session, MdmUser.__table__.c.id, targets)  # type: ignore[attr-defined]
    return {"account": account, "adamId": adam_id, "pricingParam": pricing, "source": source, "serialNumbers": [],
            "clientUserIds": targets, "enrolledSerialNumbers": [], "mdmUserIds": [t for t in targets if t in known]}


_EXISTING: dict[Any, Any] = {}  # column -> its "IN (:values)" query, built once (one per license event otherwise)


def _existing(session: Session, column: Any, values: list[str]) -> set[str]:
    found: set[str] = set()
    query = _EXISTING.get(column)
    if query is None:
        query = _EXISTING[column] = select(column).where(column.in_(bindparam("values", expanding=True)))
    for start in range(0, len(values), 500):
        chunk = values[start:start + 500]
        if chunk:
            found.update(session.execute(query, {"values": chunk}).scalars())
    return found


def _insert_ignoring_duplicates(session: Session, table: Any) -> Any:
    """``INSERT`` that skips rows whose key already exists (SQLite and PostgreSQL dialects)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        return insert(table)
    return dialect_insert(table).on_conflict_do_nothing()


def _in_mirror(account_id: int) -> Any:
    return exists().where(L.c.account_id == account_id, L.c.adam_id == SL.c.adam_id, L.c.pricing_param == SL.c.pricing_param, L.c.kind == SL.c.kind, L.c.target == SL.c.target)


def _asset_differs(row: VppAsset, new: dict[str, Any]) -> bool:
    return any(getattr(row, key) != value for key, value in new.items() if key != "supported_platforms") or sorted(row.supported_platforms or []) != new["supported_platforms"]


class _StageBuffer:
    """Rows waiting to be written to a staging table, flushed in batches."""

    def __init__(self, host: "Host", table: Any, run_id: int):
        self.host, self.table, self.run_id = host, table, run_id
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.RLock()  # shared by the threads re-reading assets
        index = next(iter(table.indexes))  # the staging key, (run_id, ...)
        self.key = itemgetter(*[c.name for c in index.columns if c.name != "run_id"])

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self.rows.extend({**r, "run_id": self.run_id} for r in rows)
            if len(self.rows) >= STAGE_BATCH:
                self.flush()

    def flush(self) -> None:
        with self.lock:
            rows, self.rows = self.rows, []
        if rows:
            rows.sort(key=self.key)  # in index order (stable: equal keys keep Apple's order), a batch touches few index pages
            self.host.db.run_write(lambda s: s.execute(insert(self.table), rows))

    def clear(self, adam_id: str | None = None) -> None:
        """Drop the buffered rows (of one adamId only, when given)."""
        with self.lock:
            self.rows = [r for r in self.rows if r["adam_id"] != adam_id] if adam_id is not None else []


def choose_mode(account: VppAccount, full: bool, reconcile_seconds: int, now: datetime | None = None) -> str:
    """``full`` when asked, on the first sync, or when the last full sync is too old."""
    now = now or utcnow()
    if full or not account.assignments_version_id or not account.users_version_id or account.last_full_sync_at is None:
        return "full"
    if (now - as_utc(account.last_full_sync_at)).total_seconds() >= reconcile_seconds:
        return "full"
    return "incremental"


def monotonic_heartbeat(refresh: Callable[[], None], every: float) -> Callable[[], None]:
    """A callable that runs ``refresh`` at most every ``every`` seconds."""
    last = [time.monotonic()]

    lock = threading.Lock()

    def beat() -> None:
        with lock:
            if time.monotonic() - last[0] < every:
                return
            last[0] = time.monotonic()
            refresh()

    return beat


__all__ = ["AccountSync", "DataChangedError", "choose_mode", "license_payload", "monotonic_heartbeat"]
