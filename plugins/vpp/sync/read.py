"""Reading Apple's state for one sync: pages into the staging tables, nothing in the mirror.

- **Full**: every page of assets, users and assignments.
- **Incremental**: assets in full (they have no delta), users and assignments since the
  stored first-page ``versionId``. Removed licenses do not show in a delta, so each asset's
  ``assignedCount`` is compared with the mirror and the assignments of just the assets that
  disagree are read again (``GET /assignments?adamId=``).

Pages are staged in ``vpp_stage_*`` tables as they arrive (memory does not grow with the
account). A ``versionId`` that changes while paging restarts that traversal (bounded). Every
request to Apple happens here, before :mod:`.apply` opens the one write transaction.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable, Iterator

from sqlalchemy import and_, delete, exists, func, insert, select

from ..apple.client import AppsBooksClient
from ..apple.errors import VppError
from . import progress
from ..apple.protocol import page_assets, page_assignments, page_users, version_of
from ..models import VppAccount, VppLicense, VppStageLicense, VppStageUser

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)

MAX_RESTARTS = 3
STAGE_BATCH = 20000  # rows per staging transaction: fewer, larger commits write far less WAL (index pages)

L = VppLicense.__table__  # type: ignore[attr-defined]
SL = VppStageLicense.__table__  # type: ignore[attr-defined]
SU = VppStageUser.__table__  # type: ignore[attr-defined]


class DataChangedError(VppError):
    """Apple's data kept changing while we paged through it; the next sync tries again."""

    retryable = True


@dataclass
class AppleRead:
    """What one read found; the users and assignments wait in the staging tables under ``run_id``."""

    mode: str
    assets: dict[tuple[str, str], dict[str, Any]]  # (adamId, pricingParam) -> vpp_asset values
    versions: dict[str, str | None]  # assets_version_id, users_version_id, assignments_version_id
    reread: list[str]  # adamIds whose assignments were read again in full (incremental)
    pages: int
    token_expiration: str | None  # the first page's tokenExpirationDate
    invitation_template: str | None  # Service Config's invitationEmail URL


class SyncReader:
    """Reads one account's data from Apple for one sync run; ``read(mode)`` returns an :class:`AppleRead`."""

    def __init__(self, host: "Host", account: VppAccount, client: AppsBooksClient, run_id: int, heartbeat: Callable[[], None]):
        self.host = host
        self.account = account
        self.client = client
        self.run_id = run_id
        self.heartbeat = heartbeat
        self.pages = 0
        self._pages_lock = threading.Lock()
        self.token_expiration: str | None = None

    def read(self, mode: str) -> AppleRead:
        """Read Apple's state for ``mode`` (``full`` or ``incremental``)."""
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
            shared = StageBuffer(self.host, SL, self.run_id)
            # several assets at once; the client keeps Apple's limit of 5 requests in flight
            with ThreadPoolExecutor(max_workers=self.client.max_parallel_pages, thread_name_prefix="vpp-reread") as pool:
                for _ in pool.map(lambda adam_id: self.stage_licenses(adam_id=adam_id, shared=shared), reread):
                    pass
            shared.flush()
        versions = {"assets_version_id": assets_version, "users_version_id": users_version, "assignments_version_id": assignments_version}
        # read now: no HTTP request once the write transaction holds the database
        template = self.client.service_config().urls.get("invitationEmail")
        return AppleRead(mode, assets, versions, reread, self.pages, self.token_expiration, template)

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
                progress.page(self.account.name, what, page)
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
        buffer = StageBuffer(self.host, SU, self.run_id)

        def reset() -> None:
            buffer.clear()
            self._clear(SU)

        version = self._traverse("users", lambda: self.client.iter_users(since_version_id=since), lambda p: buffer.add(page_users(p)), reset)
        buffer.flush()
        return version

    def stage_licenses(self, since: str | None = None, adam_id: str | None = None, shared: "StageBuffer | None" = None) -> str | None:
        """Stage assignments (all, changed since ``since``, or of one asset); ``shared``: a buffer
        the caller flushes (the re-reads of many assets then commit in a few large batches)."""
        buffer = shared if shared is not None else StageBuffer(self.host, SL, self.run_id)

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
        progress.page(self.account.name, "assets", first)
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
                select(SL.c.adam_id, SL.c.pricing_param, func.count()).where(SL.c.run_id == self.run_id, ~in_mirror(acc)).group_by(SL.c.adam_id, SL.c.pricing_param)
            ).all())
        adam_ids = {a for (a, p), asset in assets.items() if asset["assigned_count"] != mirrored.get((a, p), 0) + added.get((a, p), 0)}
        if adam_ids:
            log.info("account %s: %d asset(s) have counts that differ from the mirror; re-reading their assignments", self.account.name, len(adam_ids))
        return sorted(adam_ids)


def in_mirror(account_id: int) -> Any:
    """SQL: the staged license row is already in the account's mirror."""
    return exists().where(L.c.account_id == account_id, L.c.adam_id == SL.c.adam_id, L.c.pricing_param == SL.c.pricing_param, L.c.kind == SL.c.kind, L.c.target == SL.c.target)


def clear_stage(host: "Host", run_id: int) -> None:
    """Drop what a run staged (a failed or restarted read)."""

    def work(session: Any) -> None:
        session.execute(delete(VppStageLicense).where(VppStageLicense.run_id == run_id))
        session.execute(delete(VppStageUser).where(VppStageUser.run_id == run_id))

    host.db.run_write(work)


class StageBuffer:
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
