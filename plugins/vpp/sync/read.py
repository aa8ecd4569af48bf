"""Reading Apple's state for one sync: pages into the staging tables, nothing in the mirror.

- **Full**: every page of assets, users and assignments.
- **Incremental**: assets in full (they have no delta), users and assignments since the
  stored first-page ``versionId``.

Every traversal keeps its first page's ``versionId`` (Apple's rule) and reads to the end even
when the data changes underway. When it did change, the records changed since that first
page are read again (``sinceVersionId``) so that nothing changed during the traversal is
missed; the next incremental sync starts from the first page's ``versionId`` too.

Then the counts are reconciled: each asset's ``assignedCount`` must equal the licenses the
mirror will hold for it (the staged ones, plus for an incremental sync those already
mirrored). Removed licenses do not show in a delta, and a record can move between pages
while Apple's data changes, so the assets that disagree have their assignments read again in
full (``GET /assignments?adamId=``), and the counts are read again afterwards (Apple's counts
move with every assignment), until they agree: a committed mirror is consistent.

An incremental sync compares an asset it reads again with the asset's mirrored licenses in
memory (:data:`DIFF_LIMIT` at most; a larger asset is staged whole): only the licenses the
mirror lacks are staged, and the mirrored ones Apple no longer lists are kept as removals
(:attr:`AppleRead.removed`). Its cost follows the pages it reads, not the size of the mirror.
The mirrored licenses of the assets read again are read on a thread of their own, a chunk of
assets per statement in the order the threads reading pages take the assets, ahead of them
(:data:`MIRROR_AHEAD` licenses at most, and past the first ones only once those threads
run): those threads never hold one of Apple's request slots waiting for the database. An asset's rows wait for its mirrored licenses (:data:`DIFF_LIMIT`
rows at most: then its thread waits), and are compared once they are in.

The asset list itself (a missing asset would be taken as removed) is read again while its
``versionId`` changes underway, until two reads agree on which assets exist.

Pages are staged in ``vpp_stage_*`` tables as they arrive (memory does not grow with the
account), under the run's id. Every request to Apple happens here, before :mod:`.apply` opens
the one write transaction.

A first full sync on PostgreSQL (the account's mirror holds no license) writes the licenses
straight into the mirror instead (:class:`DirectLicenses`): COPY into ``vpp_license`` in a
transaction opened for it, which the apply then continues and commits, so that each license
is written once instead of staged and then inserted. Nothing of it is visible to anyone before
that commit; a failure, an interruption or a crash rolls it back (nothing written, as with
staged rows). What would need the staged rows (a license Apple lists twice in two batches, an
asset read again, a license another writer committed for the account meanwhile) rolls the
transaction back and the sync reads everything again the staged way (:class:`DirectFallback`).
While it is open, another writer's insert of the very license it holds waits for its end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import compress
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, exists, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from mdm_core.db.bulk import insert_rows
from mdm_core.db.typed import table_of
from mdm_core.errors import describe

from ..apple.client import AppsBooksClient
from ..apple.errors import VppError
from ..apple.protocol import page_assets, page_assignments, page_users, parse_apple_date, version_of
from ..license_counts import counted_licenses, license_counts
from ..models import VppAccount, VppLicense, VppStageLicense, VppStageUser, VppSyncRun
from . import progress, stored_progress

if TYPE_CHECKING:
    from mdm_core.host import Host

log = logging.getLogger(__name__)

ASSET_READS = 4  # reads of the asset list at most, until two agree on which assets exist
CATCH_UP_READS = 3  # sinceVersionId reads at most after a traversal during which the data changed
RECONCILE_ROUNDS = 3  # rounds of re-reading the assets whose counts disagree
STAGE_BATCH = 20000  # rows per staging transaction: fewer, larger commits write far less WAL (index pages)
DIFF_LIMIT = 50_000  # mirrored licenses of one asset compared in memory when it is read again (larger: staged whole)
REMOVED_LIMIT = 200_000  # removals kept in memory by one read; past it, re-read assets are staged whole

L = table_of(VppLicense)
SL = table_of(VppStageLicense)
SU = table_of(VppStageUser)

AssetKey = tuple[str, str]
#: an asset's mirrored licenses, one row each, in the driver's own parameter style ({p}): read
#: with the driver's cursor and ``fetchall`` (plain tuples) when a value holds a separator
_MIRRORED = f"SELECT pricing_param, kind, target FROM {L.name} WHERE account_id = {{p}} AND adam_id = {{p}} LIMIT {DIFF_LIMIT + 1}"
#: the mirrored licenses of several assets (``{assets}``: ``VALUES`` of their adamIds) as one
#: string ({agg}: the database's string aggregate): for each asset in turn, its adamId, its
#: licenses counted and its licenses grouped by pricingParam and kind, these three joined by
#: the group separator; a group is its pricingParam, its kind and its targets joined by the
#: unit separator, targets joined by the record separator, groups by the group separator,
#: assets by the file separator. A license is its target alone, where it was its three fields
#: joined: the database's concatenations per license were most of the statement's time
#: (SQLite), and the count of its own scan (to stop past DIFF_LIMIT) cost more than it saved
#: (PostgreSQL): an asset known to be larger is not read (see :func:`mirrored_licenses`).
_MIRRORED_SETS = (
    "WITH t(adam_id) AS (VALUES {assets}) SELECT {agg}(s, '\x1c') FROM (SELECT t.adam_id || '\x1d' || ("
    "SELECT coalesce(sum(g.n), 0) || '\x1d' || coalesce({agg}(g.p || '\x1f' || g.k || '\x1f' || g.ts, '\x1d'), '') FROM ("
    f"SELECT pricing_param AS p, kind AS k, count(*) AS n, {{agg}}(target, '\x1e') AS ts FROM {L.name} "
    "WHERE account_id = {p} AND adam_id = t.adam_id GROUP BY pricing_param, kind) AS g) AS s FROM t) AS x"
)
#: PostgreSQL: the same licenses as one row per asset, pricingParam and kind (its adamId, its
#: pricingParam, its kind, its licenses counted and its targets joined by the record separator):
#: a fifth less of the server's time than the three nested aggregates above, and less to split
#: here (a value holding a separator is a column of its own, but for the targets' one); on
#: SQLite, rows cost the GIL at every step (see :func:`mirrored_licenses`), the string stays
_MIRRORED_GROUPS = (
    "WITH t(adam_id) AS (VALUES {assets}) SELECT t.adam_id, g.p, g.k, g.n, g.ts FROM t, LATERAL ("
    f"SELECT pricing_param AS p, kind AS k, count(*) AS n, string_agg(target, '\x1e') AS ts FROM {L.name} "
    "WHERE account_id = {p} AND adam_id = t.adam_id GROUP BY pricing_param, kind) AS g"
)
_AGGREGATES = {"sqlite": "group_concat", "postgresql": "string_agg"}
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
MIRROR_CHUNK = 64  # assets per query of their mirrored licenses at most (the first query: one per re-reading thread)
CHUNK_LICENSES = 20_000  # ... and their stored license counts summed at most (one asset at least)
MIRROR_AHEAD = DIFF_LIMIT  # mirrored licenses read ahead of the re-reading threads at most (one asset at least)


UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE


class DirectFallback(Exception):
    """A first full sync writing its licenses straight into the mirror met what needs them
    staged: its transaction is rolled back and the sync reads again, staging them."""


class DirectLicenses:
    """The licenses of a first full sync on PostgreSQL, written straight into the mirror in one
    transaction held open from the read to the apply's commit (see the module docstring).
    ``session`` is that transaction's; :meth:`close` rolls it back unless it was committed."""

    def __init__(self, host: Host, account_id: int | None):
        self.account_id = account_id
        self.conn = host.db.write_engine.connect()
        self.session = Session(bind=self.conn, expire_on_commit=False)
        self.rows = 0  # licenses written (each once: see write)

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        """COPY sorted (adam_id, pricing_param, kind, target) rows, a repeated row once; a row
        already in the mirror (written by an earlier batch, or by another writer) falls back."""
        unique = [row for i, row in enumerate(rows) if i == 0 or row != rows[i - 1]]
        acc = self.account_id
        try:
            insert_rows(self.session, L, ("account_id", *LICENSE_COLUMNS), [(acc, *r) for r in unique])
        except Exception as exc:  # COPY raises the driver's own error (psycopg's UniqueViolation)
            if not isinstance(exc, IntegrityError) and getattr(exc, "sqlstate", None) != UNIQUE_VIOLATION:
                raise
            raise DirectFallback("a license is listed twice, or was mirrored meanwhile") from exc  # the transaction is lost
        self.rows += len(unique)

    def close(self) -> None:
        """Roll back what was not committed (again: nothing)."""
        try:
            self.session.close()
            self.conn.close()
        except Exception as exc:  # a lost connection: the server rolled it back
            log.warning("could not close the sync's license transaction: %s", describe(exc))


class Beside:
    """``work`` run on a thread of its own while the caller reads something else; a failure of
    either stops the other at its next page (through ``stopped``), and the first failure is the
    one raised. :meth:`result` waits for the thread and returns its result or raises its error;
    :meth:`instead_of` is for the caller's own failure."""

    def __init__(self, work: Callable[[], Any], stopped: threading.Event, name: str):
        self.stopped = stopped
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)  # daemon: an interrupted sync does not wait for it
        self.thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self.value = work()
        except BaseException as exc:
            self.error = exc
            self.stopped.set()  # the caller's read stops at its next page

    def result(self) -> Any:
        """The work's result, once it is done; its error raised."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value

    def instead_of(self, exc: BaseException) -> BaseException:
        """The error to raise for the caller's failure ``exc``: the thread's own, when it failed
        first (``exc`` is then the stop it caused). The thread is stopped at its next page, not
        waited for: one waiting for Apple's answer to a page held up the failed sync until that
        answer came (up to ``[vpp] request_timeout``). What it would stage afterwards is refused
        (:func:`check_running`: a failed run is ended before its staged rows are dropped); a
        caller that reads again under the same run waits for it first (:meth:`SyncReader.settle`)."""
        first = self.error
        self.stopped.set()
        return first if first is not None else exc


class DataChangedError(VppError):
    """Apple's data kept changing while we read it; the next sync tries again."""

    retryable = True


class ReadStopped(DataChangedError):
    """A thread of the read stopped because another one failed (or the read was stopped)."""


def first_failure(exc: BaseException, *besides: Beside) -> BaseException:
    """The error to raise for the caller's failure ``exc`` while ``besides`` ran: each is stopped
    (:meth:`Beside.instead_of`), and a real failure wins over the stops it caused in the others
    (a thread that failed first stops the caller and the other threads at their next page)."""
    errors = [beside.instead_of(exc) for beside in besides]
    return next((e for e in (*errors, exc) if not isinstance(e, ReadStopped)), exc)


@dataclass
class AppleRead:
    """What one read found; the users and assignments wait in the staging tables under ``run_id``."""

    mode: str
    assets: dict[AssetKey, dict[str, Any]]  # (adamId, pricingParam) -> vpp_asset values
    versions: dict[str, str | None]  # assets_version_id, users_version_id, assignments_version_id
    reread: list[str]  # adamIds whose assignments were read again in full
    pages: int
    token_expiration: datetime | None  # the latest tokenExpirationDate Apple sent during the read
    invitation_template: str | None  # Service Config's invitationEmail URL
    unknown_assets: dict[AssetKey, int] = field(default_factory=dict)  # licenses of assets Apple did not list
    count_mismatches: list[str] = field(default_factory=list)  # adamIds whose counts Apple itself does not match
    diffed: list[str] = field(default_factory=list)  # adamIds of ``reread`` compared with the mirror: only their changes are staged
    removed: list[tuple[str, str, str, str]] = field(default_factory=list)  # their mirrored licenses Apple no longer lists
    direct: DirectLicenses | None = None  # the licenses were written straight into the mirror, in this open transaction


@dataclass
class Traversal:
    """One traversal of a listing: its first page's ``versionId``, and whether it changed underway."""

    version: str | None
    changed: bool


class SyncReader:
    """Reads one account's data from Apple for one sync run; ``read(mode)`` returns an :class:`AppleRead`.

    ``heartbeat`` is called at every page: it raises to stop the read (the lock was lost, the
    process is being interrupted); threads re-reading assets stop at their next page too.
    """

    def __init__(self, host: Host, account: VppAccount, client: AppsBooksClient, run_id: int, heartbeat: Callable[[], None], *, direct: bool = True):
        self.host = host
        self.allow_direct = direct  # a first full sync on PostgreSQL may write its licenses straight into the mirror
        self.direct: DirectLicenses | None = None
        self.account = account
        self.client = client
        self.run_id = run_id
        self.heartbeat = heartbeat
        self.pages = 0
        self._pages_lock = threading.Lock()
        self.expirations: list[datetime] = []
        self._expiration_values: set[str] = set()  # the tokenExpirationDate values noted (each parsed once)
        self.stopped = threading.Event()
        self.threads: list[Callable[[], None]] = []  # each waits for one of the read's threads to end (settle)
        self._staged: dict[AssetKey, int] | None = None  # _staged_counts, until the staged licenses change
        self._mirrored_per_asset: dict[AssetKey, int] | None = None  # _mirrored_counts
        self._added: dict[AssetKey, int] | None = None  # _added_counts, until the assignments are read again
        self.diff = False  # re-read assets are compared with the mirror (incremental syncs)
        self.matched: dict[str, dict[AssetKey, int]] = {}  # diffed adamId -> mirrored licenses Apple still lists, per asset
        self.removed: dict[str, list[tuple[str, str, str, str]]] = {}  # diffed adamId -> mirrored licenses Apple no longer lists

    def read(self, mode: str) -> AppleRead:
        """Read Apple's state for ``mode`` (``full`` or ``incremental``)."""
        full = mode == "full"
        self.diff = not full
        # the users and the assignments each on a thread of their own, beside the assets: three
        # listings independent of one another (a full sync: 100,000 users no longer wait for
        # the 300,000 assignments; an incremental one: its three short listings at once, the
        # assignments' changes no longer after the asset list)
        users = self._beside(lambda: self.stage_users(None if full else self.account.users_version_id), "vpp-users")
        try:
            listing = self._beside(lambda: self._read_assignments(None if full else self.account.assignments_version_id), "vpp-assignments")
        except BaseException as exc:  # the thread could not start
            raise users.instead_of(exc) from None
        try:
            assets, assets_version = self.fetch_assets()
            assignments: Traversal = listing.result()
        except BaseException as exc:
            raise first_failure(exc, listing, users) from None
        users_version = users.result()
        self.host.db.analyze(SU.name, SL.name)  # the reconcile and the apply join these rows with the mirror
        reread: set[str] = set()
        mismatched = self.reconcile(assets, assets_version, full, reread, assignments.changed or not full)
        assets, assets_version = self.last_assets
        # read now: no HTTP request once the write transaction holds the database
        template = self.client.service_config().urls.get("invitationEmail")
        versions = {"assets_version_id": assets_version, "users_version_id": users_version, "assignments_version_id": assignments.version}
        removed = [row for adam_id in sorted(self.removed) for row in self.removed[adam_id]]
        return AppleRead(
            mode,
            assets,
            versions,
            sorted(reread),
            self.pages,
            max(self.expirations, default=None),
            template,
            self._unknown_assets(assets),
            mismatched,
            sorted(self.matched),
            removed,
            self.direct,
        )

    def _beside(self, work: Callable[[], Any], name: str) -> Beside:
        beside = Beside(work, self.stopped, name)
        self.threads.append(beside.thread.join)
        return beside

    def settle(self) -> None:
        """Wait until the read's threads have ended (each stops at its next page): nothing of
        this read is staged afterwards, which a read again under the same run needs."""
        self.stopped.set()
        for wait_for in self.threads:
            wait_for()

    def close(self) -> None:
        """Roll back the licenses written straight into the mirror, unless the apply committed
        them (once the read's threads have ended: one may still be writing them)."""
        if self.direct is not None:
            self.settle()
            self.direct.close()

    # ------------------------------------------------------------------ traversal

    def _count_page(self) -> None:
        with self._pages_lock:  # pages are read from several threads during re-reads
            self.pages += 1

    def _note_expiration(self, page: dict[str, Any]) -> None:
        """The page's ``tokenExpirationDate``, parsed once per value (every page repeats it)."""
        raw = page.get("tokenExpirationDate")
        if not isinstance(raw, str) or raw in self._expiration_values:  # not a date (parsed as None), or noted already
            return
        self._expiration_values.add(raw)
        expires = parse_apple_date(raw)
        if expires is not None:
            self.expirations.append(expires)

    def _traverse(self, what: str, pages: Callable[[], Iterator[dict[str, Any]]], on_rows: Callable[[dict[str, Any]], None]) -> Traversal:
        """Page to the end, keeping the first page's ``versionId``; note whether it changed."""
        first: str | None = None
        changed = False
        for index, page in enumerate(pages()):
            self._count_page()
            progress.page(self.account.name, what, page)
            self.heartbeat()
            if self.stopped.is_set():
                raise ReadStopped("the read was stopped")
            version = version_of(page)
            self._note_expiration(page)
            if index == 0:
                first = version
            elif version is not None and version != first:
                changed = True
            on_rows(page)
        return Traversal(first, changed)

    def fetch_assets(self) -> tuple[dict[AssetKey, dict[str, Any]], str | None]:
        """Every asset (they are few: kept in memory). While the list changes underway it is read
        again, until two reads agree on which assets exist (the counts are reconciled later)."""
        previous: set[AssetKey] | None = None
        for attempt in range(ASSET_READS):
            assets: dict[AssetKey, dict[str, Any]] = {}

            def on_page(page: dict[str, Any], assets: dict[AssetKey, dict[str, Any]] = assets) -> None:
                for row in page_assets(page):
                    assets[(row["adam_id"], row["pricing_param"])] = row

            traversal = self._traverse("assets", lambda: self.client.iter_assets(), on_page)
            if not traversal.changed or set(assets) == previous:
                self.last_assets = (assets, traversal.version)
                return assets, traversal.version
            log.info("account %s: the assets changed while paging; reading them again (%d/%d)", self.account.name, attempt + 1, ASSET_READS)
            previous = set(assets)
        raise DataChangedError(f"Apple's asset list kept changing while paging ({ASSET_READS} reads): the next sync tries again")

    def stage_users(self, since: str | None) -> str | None:
        """Stage user records (all, or changed since ``since``); returns the first page's ``versionId``.

        When the users changed while paging, a record may have moved into a page already read
        and been missed: the same listing is read once more (the union is staged; the later
        record of a user wins), then what changed since the first page."""
        with StageBuffer(self.host, SU, self.run_id, USER_COLUMNS, background=True) as buffer:
            on_page = lambda p: buffer.add([tuple(r[c] for c in USER_COLUMNS) for r in page_users(p)])  # noqa: E731
            traversal = self._traverse("users", lambda: self.client.iter_users(since_version_id=since), on_page)
            if traversal.changed:
                log.info("account %s: users changed while paging; reading them once more", self.account.name)
                self._traverse("users", lambda: self.client.iter_users(since_version_id=since), on_page)
            self._catch_up(traversal, lambda v: self.client.iter_users(since_version_id=v), on_page, "users")
            buffer.flush()
        return traversal.version

    def _read_assignments(self, since: str | None) -> Traversal:
        if since is None and self.allow_direct and not self.host.db.is_sqlite:
            with self.host.db.session() as session:
                if session.execute(select(L.c.target).where(L.c.account_id == self.account.id).limit(1)).first() is None:
                    self.direct = DirectLicenses(self.host, self.account.id)
        with StageBuffer(self.host, SL, self.run_id, LICENSE_COLUMNS, background=True, direct=self.direct) as buffer:
            on_page = self._license_rows(buffer)
            traversal = self._traverse("assignments", lambda: self.client.iter_assignments(since_version_id=since), on_page)
            self._catch_up(traversal, lambda v: self.client.iter_assignments(since_version_id=v), on_page, "assignments")
            buffer.flush()
        self._staged = self._added = None
        return traversal

    def _catch_up(self, traversal: Traversal, pages: Callable[[str], Iterator[dict[str, Any]]], on_page: Callable[[dict[str, Any]], None], what: str) -> None:
        """After a traversal during which the data changed: read what changed since its first
        page (again while that read changes too, a few times), so that nothing is missed."""
        if not traversal.changed or traversal.version is None:
            return
        version = traversal.version
        for attempt in range(CATCH_UP_READS):
            log.info(
                "account %s: %s changed while paging; reading the changes since the first page (%d/%d)", self.account.name, what, attempt + 1, CATCH_UP_READS
            )
            catch_up = self._traverse(what, lambda: pages(version), on_page)
            if not catch_up.changed:
                return
        # what changed during the last catch-up is left to the next sync (it starts from the first page's versionId)

    @staticmethod
    def _license_rows(buffer: StageBuffer) -> Callable[[dict[str, Any]], None]:
        def on_page(page: dict[str, Any]) -> None:
            buffer.add(page_assignments(page))  # (adam_id, pricing_param, kind, target) tuples: LICENSE_COLUMNS

        return on_page

    def reread_assets(self, adam_ids: list[str]) -> None:
        """Read the assignments of these assets again in full, replacing what is staged for them
        (in an incremental sync, compared with the mirror: see the module docstring)."""
        if self.direct is not None:
            raise DirectFallback(f"{len(adam_ids)} asset(s) to read again")
        self._staged = None

        def drop(session: Session, chunk: list[str]) -> None:
            session.execute(delete(SL).where(SL.c.run_id == self.run_id, SL.c.adam_id.in_(chunk)))

        for start in range(0, len(adam_ids), 500):
            self.host.db.run_write(partial(drop, chunk=adam_ids[start : start + 500]))
        for adam_id in adam_ids:
            self.matched.pop(adam_id, None)
            self.removed.pop(adam_id, None)
        shared = StageBuffer(self.host, SL, self.run_id, LICENSE_COLUMNS)
        on_page = self._license_rows(shared)
        removals = [sum(len(r) for r in self.removed.values())]
        removals_lock = threading.Lock()
        # several assets at once; the client keeps Apple's limit of 5 requests in flight
        workers = max(1, min(self.client.max_parallel_pages, len(adam_ids)))
        mirror = None
        if self.diff:
            sizes = per_adam_id((self._mirrored_per_asset or {}).items())
            mirror = _MirrorPrefetch(self.host, self.account.id, adam_ids, self.stopped, workers, sizes)

        def one(adam_id: str) -> None:
            if mirror is None:
                self._traverse("assignments", lambda: self.client.iter_assignments(adam_id=adam_id), on_page)
                return
            try:
                if removals[0] >= REMOVED_LIMIT:  # staged whole
                    self._traverse("assignments", lambda: self.client.iter_assignments(adam_id=adam_id), on_page)
                else:
                    compare(adam_id, mirror)
            finally:
                mirror.done(adam_id)

        def compare(adam_id: str, mirror: _MirrorPrefetch) -> None:
            """Read the asset's pages while its mirrored licenses are read; compare them with
            the mirror once those are in (until then its rows wait, DIFF_LIMIT at most)."""
            mirrored: Mirrored = _UNREAD
            waiting: list[tuple[str, str, str, str]] = []
            seen: set[Any] = set()  # the keys of Apple's rows

            def compared(rows: list[tuple[str, str, str, str]]) -> None:
                """Stage the rows the mirror lacks; each step a pass of C code over the rows."""
                if mirrored is None:  # past DIFF_LIMIT: staged whole
                    shared.add(rows)
                    return
                keys = mirrored.keys_of(rows)
                page = set(keys)
                seen.update(page)
                absent = page - mirrored.keys
                if absent:
                    shared.add(list(compress(rows, map(absent.__contains__, keys))))

            def diff_page(page: dict[str, Any]) -> None:
                nonlocal mirrored, waiting
                rows = page_assignments(page)
                if mirrored is _UNREAD:
                    waiting.extend(rows)
                    mirrored = mirror.take(adam_id, wait=len(waiting) > DIFF_LIMIT)
                    if mirrored is _UNREAD:
                        return
                    rows, waiting = waiting, []
                compared(rows)

            self._traverse("assignments", lambda: self.client.iter_assignments(adam_id=adam_id), diff_page)
            if mirrored is _UNREAD:
                mirrored = mirror.take(adam_id, wait=True)
                compared(waiting)
            if mirrored is None:
                return
            gone = sorted((adam_id, *key) for key in mirrored.licenses(mirrored.keys - seen))
            matched: dict[AssetKey, int] = {}
            for pricing, held in mirrored.per_pricing.items():  # those Apple still lists: all but the gone ones
                still = held - sum(1 for row in gone if row[1] == pricing)
                if still:
                    matched[(adam_id, pricing)] = still
            with removals_lock:
                self.matched[adam_id] = matched
                self.removed[adam_id] = gone
                removals[0] += len(gone)

        todo = iter(adam_ids)  # in the order the mirrored licenses are read
        todo_lock = threading.Lock()

        def worker() -> None:
            """Re-read assets until none is left."""
            while not self.stopped.is_set():
                with todo_lock:
                    adam_id = next(todo, None)
                if adam_id is None:
                    return
                one(adam_id)

        pool = ThreadPoolExecutor(max_workers=workers + (mirror is not None), thread_name_prefix="vpp-reread")
        self.threads.append(partial(pool.shutdown, wait=True))
        futures: list[Future[None]] = []
        reader: Future[None] | None = None
        try:
            if mirror is not None:  # first: the first assets' licenses are read at once, then it waits (see go)
                reader = pool.submit(mirror.run)
                futures.append(reader)
            futures += [pool.submit(worker) for _ in range(workers)]
            if mirror is not None:
                mirror.go()
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # interrupted: do not wait for requests in flight
            self._stop(mirror)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        failed = [f for f in futures if f.done() and f.exception() is not None]
        if failed:
            self._stop(mirror)  # the other threads stop at their next page (not waited for: see Beside.instead_of)
            pool.shutdown(wait=False, cancel_futures=True)
            if reader is not None and reader.exception() is not None:
                failed = [reader]  # the reader's error, rather than the stop it caused in a re-reading thread
            failed[0].result()
        pool.shutdown(wait=True)
        shared.flush()

    def _stop(self, mirror: _MirrorPrefetch | None) -> None:
        self.stopped.set()
        if mirror is not None:
            mirror.wake()

    def refresh_assets(self, assets: dict[AssetKey, dict[str, Any]], version: str | None) -> tuple[dict[AssetKey, dict[str, Any]], str | None, bool]:
        """The assets as they are now: read again if their ``versionId`` moved since ``version``
        (counts move with every assignment). Returns (assets, versionId, changed)."""
        pages = self.client.iter_assets()
        try:
            first = next(pages)
        finally:
            pages.close()
        self._count_page()
        progress.page(self.account.name, "assets", first, count_rows=False)
        self._note_expiration(first)
        if version is not None and version_of(first) == version:
            return assets, version, False
        log.info("account %s: assets changed during the sync; reading them again", self.account.name)
        assets, version = self.fetch_assets()
        return assets, version, True

    # ------------------------------------------------------------------ counts

    def reconcile(self, assets: dict[AssetKey, dict[str, Any]], version: str | None, full: bool, reread: set[str], check: bool) -> list[str]:
        """Make the staged licenses agree with the assets' counts (see the module docstring).

        ``check`` False (a full read during which nothing changed) skips the re-reads but still
        re-reads the counts. Returns the adamIds whose counts Apple's own list does not match
        (read twice with nothing changing in between): reported, not retried forever.

        An incremental read's counts (:meth:`mismatches`: three statements, the staged licenses
        the mirror lacks the costliest, 20-35 ms at a third of the benchmark's size) are read
        beside the request that checks whether the asset list moved, not after it: nothing else
        runs at this point of the sync, and the database's time then overlaps the request's."""
        counting = self._beside(lambda: self._counts(assets), "vpp-counts") if check and not full else None
        try:
            assets, version, changed = self.refresh_assets(assets, version)
            if counting is not None:
                counting.result()
        except BaseException as exc:
            if counting is None:
                raise
            raise first_failure(exc, counting) from None
        self.last_assets = (assets, version)
        for round_ in range(RECONCILE_ROUNDS):
            if not (check or changed):
                return []
            todo = self.mismatches(assets, full, reread)
            if not todo:
                return []
            if round_ > 0 and not changed and set(todo) <= reread:
                # read again after the counts, and the counts have not moved since: Apple's own disagreement
                log.warning(
                    "account %s: the assignedCount of %d asset(s) differs from Apple's own assignment list (%s): mirrored as Apple lists them",
                    self.account.name,
                    len(todo),
                    ", ".join(todo[:5]),
                )
                return todo
            log.info("account %s: %d asset(s) have counts that differ from the licenses read; reading their assignments again", self.account.name, len(todo))
            # the largest (Apple's count of its licenses) read first, the small ones fill the end
            size = per_adam_id((key, asset["assigned_count"]) for key, asset in assets.items())
            self.reread_assets(sorted(todo, key=lambda adam_id: -size.get(adam_id, 0)))
            reread.update(todo)
            assets, version, changed = self.refresh_assets(assets, version)
            self.last_assets = (assets, version)
            check = True
        todo = self.mismatches(assets, full, reread)
        if not todo:
            return []
        if not changed:
            return todo
        raise DataChangedError(
            f"the counts of {len(todo)} asset(s) kept changing while their assignments were read ({RECONCILE_ROUNDS} rounds): "
            "nothing written; the next sync tries again"
        )

    def _counts(self, assets: dict[AssetKey, dict[str, Any]]) -> None:
        """Read the counts :meth:`mismatches` compares (an incremental read's), each kept for it."""
        self._staged_counts()
        self._mirrored_counts(assets)
        self._added_counts()

    def _staged_counts(self) -> dict[AssetKey, int]:
        """Distinct staged licenses per asset (kept until the staged licenses change: a re-read)."""
        if self._staged is not None:
            return self._staged
        if self.direct is not None:  # written straight into the mirror (each once): counted there, in its transaction
            self._staged = counted_licenses(self.direct.session, self.account.id, None)
            return self._staged
        distinct = select(SL.c.adam_id, SL.c.pricing_param, SL.c.kind, SL.c.target).where(SL.c.run_id == self.run_id).distinct().subquery()
        with self.host.db.session() as session:
            if not self.host.db.is_sqlite:
                # PostgreSQL: the distinct rows streamed from the staging index in its order and
                # counted as they pass, instead of a hash of every staged license, which spills
                # to disk past work_mem (300,000 licenses: 0.1 s of server time instead of 0.35-0.5 s)
                session.execute(text("SET LOCAL enable_hashagg = off"))
            self._staged = {
                (a, p): n
                for a, p, n in session.execute(
                    select(distinct.c.adam_id, distinct.c.pricing_param, func.count()).group_by(distinct.c.adam_id, distinct.c.pricing_param)
                )
            }
        return self._staged

    def _mirrored_counts(self, assets: dict[AssetKey, dict[str, Any]]) -> dict[AssetKey, int]:
        """Mirrored licenses per asset: the counts stored on the mirrored assets (one row per
        asset, :mod:`..license_counts`), and for assets Apple lists that the mirror does not
        yet, their licenses counted (licenses of an asset Apple listed none of before). Read
        once per read: the read writes nothing to the mirror, so the reconcile's rounds reuse
        it. An asset whose licenses changed meanwhile (an assignment made through this host)
        at worst mismatches and is read again; the re-read assets' counts never use these."""
        counts = self._mirrored_per_asset
        missing = list(assets) if counts is None else [key for key in assets if key not in counts]
        if missing:
            with self.host.db.session() as session:
                if counts is None:
                    counts = license_counts(session, self.account.id)
                    missing = [key for key in missing if key not in counts]
                found = counted_licenses(session, self.account.id, missing)
            counts.update({key: found.get(key, 0) for key in missing})
            self._mirrored_per_asset = counts
        return counts or {}

    def _added_counts(self) -> dict[AssetKey, int]:
        """Distinct staged licenses the mirror lacks, per asset. Read once per read of the
        assignments: used only for assets not read again, whose staged licenses a re-read
        (of other assets) leaves as they are, and the read writes nothing to the mirror (as
        :meth:`_mirrored_counts`): the reconcile's later rounds reuse it (PostgreSQL: an
        anti-join of the staged licenses with the mirror, 13 ms for 1,500 of them, not run again)."""
        if self._added is None:
            with self.host.db.session() as session:
                self._added = {
                    (a, p): n
                    for a, p, n in session.execute(
                        select(SL.c.adam_id, SL.c.pricing_param, func.count(func.distinct(SL.c.kind + ":" + SL.c.target)))
                        .where(SL.c.run_id == self.run_id, ~in_mirror(self.account.id))
                        .group_by(SL.c.adam_id, SL.c.pricing_param)
                    )
                }
        return self._added

    def mismatches(self, assets: dict[AssetKey, dict[str, Any]], full: bool, reread: set[str]) -> list[str]:
        """adamIds whose ``assignedCount`` differs from the licenses the mirror would hold."""
        staged = self._staged_counts()
        expected = dict(staged)
        if not full:
            mirrored = self._mirrored_counts(assets)
            added = self._added_counts()
            # a re-read asset holds what Apple listed: staged whole, or (diffed) the mirrored licenses
            # Apple still lists plus the staged ones the mirror lacks
            expected = {
                key: (staged.get(key, 0) + self.matched.get(key[0], {}).get(key, 0) if key[0] in reread else mirrored.get(key, 0) + added.get(key, 0))
                for key in set(mirrored) | set(staged)
            }
        return sorted({a for (a, p), asset in assets.items() if asset["assigned_count"] != expected.get((a, p), 0)})

    def _unknown_assets(self, assets: dict[AssetKey, dict[str, Any]]) -> dict[AssetKey, int]:
        unknown = {key: n for key, n in self._staged_counts().items() if key not in assets}
        if unknown:
            log.warning(
                "account %s: Apple lists %d license(s) of %d asset(s) it does not list as assets (%s)",
                self.account.name,
                sum(unknown.values()),
                len(unknown),
                ", ".join(f"{a} {p}" for a, p in sorted(unknown)[:5]),
            )
        return unknown


_FIELDS = itemgetter(1, 2, 3)  # a staged license row's (pricingParam, kind, target)
_JOIN = "\x1f".join  # the database's record of a license: its fields joined by the unit separator


def per_adam_id(counts: Iterable[tuple[AssetKey, int]]) -> dict[str, int]:
    """Counts per (adamId, pricingParam) summed per adamId (its pricings together)."""
    summed: dict[str, int] = {}
    for (adam_id, _), n in counts:
        summed[adam_id] = summed.get(adam_id, 0) + n
    return summed


class MirroredLicenses:
    """An asset's mirrored licenses, to compare Apple's rows with (see :meth:`keys_of`).

    Read as one string (``joined``: no value holding a separator), each license is the string
    ``pricing US kind US target``, and an Apple row's key is built by C code (:data:`_JOIN`),
    so that hundreds of thousands of licenses cost no Python bytecode each. Read row by row
    (a value holds a separator), the licenses are (pricingParam, kind, target) tuples. A joined
    license holds exactly two unit separators, so a key of Apple's holding one in a value never
    matches one. ``per_pricing``: the licenses counted per pricingParam."""

    __slots__ = ("keys", "joined", "per_pricing")

    def __init__(self, keys: set[Any], per_pricing: dict[str, int] | None = None):
        self.keys = keys  # joined strings, or tuples
        self.joined = per_pricing is not None
        if per_pricing is None:
            per_pricing = {}
            for pricing, _, _ in keys:
                per_pricing[pricing] = per_pricing.get(pricing, 0) + 1
        self.per_pricing = per_pricing

    def __len__(self) -> int:
        return len(self.keys)

    def keys_of(self, rows: list[tuple[str, str, str, str]]) -> list[Any]:
        """The keys of staged license rows (adam_id, pricing_param, kind, target), in order."""
        fields = map(_FIELDS, rows)
        return list(map(_JOIN, fields) if self.joined else fields)

    def licenses(self, keys: Iterable[Any] | None = None) -> set[tuple[str, str, str]]:
        """These keys (all by default) as (pricingParam, kind, target)."""
        keys = self.keys if keys is None else keys
        return {tuple(k.split("\x1f")) for k in keys} if self.joined else set(keys)


def _license_keys(pricing: str, kind: str, joined: str) -> list[str]:
    """The keys of a group's licenses (``joined``: its targets joined by the record separator),
    each ``pricing US kind US target``, made by two passes of C code over the group's text (the
    separator replaced by itself and the prefix, then split): no string made per target and
    then another per key."""
    prefix = f"{pricing}\x1f{kind}\x1f"
    return (prefix + joined.replace("\x1e", "\x1e" + prefix)).split("\x1e")


Mirrored = MirroredLicenses | None  # an asset's mirrored licenses, None past DIFF_LIMIT
_UNREAD: Any = object()  # an asset whose mirrored licenses have not been read yet


def mirrored_licenses(
    conn: Any, account_id: int | None, adam_ids: list[str], first: int = MIRROR_CHUNK, sizes: Mapping[str, int] | None = None
) -> Generator[tuple[str, Mirrored], None, None]:
    """The mirrored licenses of these assets (:class:`MirroredLicenses`), each asset's in the
    order given, ``None`` for one with more than :data:`DIFF_LIMIT` (then it is staged whole).
    ``conn``: a SQLAlchemy connection (:meth:`mdm_core.db.engine.Database.reading`);
    ``sizes``: the assets' licenses as far as known (their stored counts), to size the chunks:
    one known to hold more than :data:`DIFF_LIMIT` is not read; the others are read whole (one
    whose stored count is behind, by licenses this host assigned meanwhile, reads those too).

    One statement per chunk of assets (the first ``first`` of them, so that the first assets
    arrive at once, then twice as many each time, :data:`MIRROR_CHUNK` and
    :data:`CHUNK_LICENSES` at most) on the driver's cursor returns the chunk's rows as one
    string (SQLite), or one row per asset and group (PostgreSQL: :data:`_MIRRORED_GROUPS`),
    split here into licenses: SQLite hands the GIL back and forth at every row it steps, which
    with the threads downloading pages made one row per license, then one per asset, the
    slowest part of the comparison; a statement per asset cost a round trip each. A value
    holding a separator (the counts disagree) is read again row by row."""
    raw: Any = conn.connection.dbapi_connection
    p = _PLACEHOLDERS[conn.dialect.paramstyle]
    agg = _AGGREGATES.get(conn.dialect.name)
    cursor = raw.cursor()
    try:

        def rows_of(adam_id: str) -> Mirrored:
            cursor.execute(_MIRRORED.format(p=p), (account_id, adam_id))
            rows = set(cursor.fetchall())
            return MirroredLicenses(rows) if len(rows) <= DIFF_LIMIT else None

        def collected(adam_id: str, count: int, groups: Iterable[Sequence[str]]) -> Mirrored:
            """The asset's ``count`` licenses from its groups as the database joined them, each
            (pricingParam, kind, its targets joined by the record separator), whichever shape the
            statement gave them in; read row by row when a value holds a separator. A group's
            fields hold no unit separator, and its targets split into as many keys as the
            database counted licenses (a separator in a value, of a record or between groups,
            splits one more), all distinct: then the keys are exactly the licenses."""
            if count > DIFF_LIMIT:
                return None
            keys: set[str] = set()
            per_pricing: dict[str, int] = {}
            total = 0
            for group in groups:
                if len(group) != 3 or "\x1f" in group[0] or "\x1f" in group[1] or "\x1f" in group[2]:  # a key would not hold exactly two
                    return rows_of(adam_id)
                pricing, kind, joined = group
                licenses = _license_keys(pricing, kind, joined)
                keys.update(licenses)
                total += len(licenses)
                per_pricing[pricing] = per_pricing.get(pricing, 0) + len(licenses)
            return MirroredLicenses(keys, per_pricing) if total == count == len(keys) else rows_of(adam_id)

        def parsed(adam_id: str, piece: str) -> Mirrored:
            """An asset's piece of :data:`_MIRRORED_SETS` (its adamId, count and groups)."""
            got, _, rest = piece.partition("\x1d")
            head, _, body = rest.partition("\x1d")
            if got != adam_id:  # the adamId holds a separator
                return rows_of(adam_id)
            return collected(adam_id, int(head), (group.split("\x1f") for group in body.split("\x1d")) if body else ())

        def grouped(adam_id: str, groups: list[tuple[str, str, str, int, str]]) -> Mirrored:
            """An asset's rows of :data:`_MIRRORED_GROUPS` (none: no license)."""
            return collected(adam_id, sum(group[3] for group in groups), ((pricing, kind, joined) for _, pricing, kind, _, joined in groups))

        known = sizes or {}
        start, size = 0, max(1, first)
        while start < len(adam_ids):
            if known.get(adam_ids[start], 0) > DIFF_LIMIT:  # staged whole: not read
                yield adam_ids[start], None
                start += 1
                continue
            end, held = start, 0
            while end < len(adam_ids) and end - start < size and known.get(adam_ids[end], 0) <= DIFF_LIMIT:
                if end > start and held + known.get(adam_ids[end], 0) > CHUNK_LICENSES:
                    break
                held += known.get(adam_ids[end], 0)
                end += 1
            chunk = adam_ids[start:end]
            start, size = end, min(2 * size, MIRROR_CHUNK)
            if agg is None:  # a database without a string aggregate known here: row by row
                for adam_id in chunk:
                    yield adam_id, rows_of(adam_id)
                continue
            assets = ", ".join([f"({p})"] * len(chunk))
            if conn.dialect.name == "postgresql":
                cursor.execute(_MIRRORED_GROUPS.format(assets=assets, p=p), (*chunk, account_id))
                by_asset: dict[str, list[tuple[str, str, str, int, str]]] = {}
                for row in cursor.fetchall():
                    by_asset.setdefault(row[0], []).append(row)
                for adam_id in chunk:
                    yield adam_id, grouped(adam_id, by_asset.get(adam_id, []))
                continue
            cursor.execute(_MIRRORED_SETS.format(assets=assets, p=p, agg=agg), (*chunk, account_id))
            (joined,) = cursor.fetchone()
            pieces = joined.split("\x1c")
            if len(pieces) != len(chunk):  # a value holds the file separator: each asset row by row
                pieces = [""] * len(chunk)
            for adam_id, piece in zip(chunk, pieces, strict=True):
                yield adam_id, parsed(adam_id, piece)
    finally:
        cursor.close()


class _MirrorPrefetch:
    """Reads the mirrored licenses of the assets an incremental sync reads again, on a thread of
    its own with one connection (:func:`mirrored_licenses`), in the order the re-reading threads
    take the assets and ahead of them (:data:`MIRROR_AHEAD` licenses at most), so that those
    threads download pages instead of waiting for the database. :meth:`run` is the thread;
    :meth:`take` an asset's licenses, :meth:`done` when its thread is done with the asset.

    Each side wakes the other only when it waits for what just happened (``room``: the reader,
    once it may read on; ``arrived``: a thread waiting for the asset just read): waking every
    waiting thread at every asset had each of them take the interpreter's lock in turn only to
    wait again, 0.3 s of a re-read of 566 assets."""

    def __init__(self, host: Host, account_id: int | None, adam_ids: list[str], stopped: threading.Event, first: int, sizes: Mapping[str, int]):
        self.host, self.account_id, self.adam_ids, self.stopped, self.first, self.sizes = host, account_id, adam_ids, stopped, first, sizes
        lock = threading.Lock()
        self.room = threading.Condition(lock)  # the reader waits on it: read ahead enough, or the first assets in
        self.arrived = threading.Condition(lock)  # re-reading threads wait on it for their asset
        self.ready: dict[str, Mirrored] = {}  # read, not yet taken
        self.held: dict[str, int] = {}  # read, the thread re-reading it not done with it: its licenses
        self.dropped: set[str] = set()  # not needed (staged whole): not kept when read
        self.wanted: set[str] = set()  # assets a thread waits for
        self.ahead = 0  # sum of held
        self.ended = False
        self.read = 0  # assets read
        self.going = False  # past the first assets (see go)

    def run(self) -> None:
        try:
            with self.host.db.reading() as conn, closing(mirrored_licenses(conn, self.account_id, self.adam_ids, self.first, self.sizes)) as sets:
                for adam_id, licenses in sets:
                    with self.room:
                        while self.ahead >= MIRROR_AHEAD and not self.stopped.is_set():
                            self.room.wait()
                        if self.stopped.is_set():
                            return
                        self.read += 1
                        if adam_id not in self.dropped:
                            self.ready[adam_id] = licenses
                            self.held[adam_id] = n = len(licenses or ())
                            self.ahead += n
                            if adam_id in self.wanted:
                                self.arrived.notify_all()
                        while self.read >= self.first and not self.going and not self.stopped.is_set():
                            self.room.wait()  # the first assets are in: the next statement waits (see go)
        finally:
            with self.room:
                self.ended = True
                self.arrived.notify_all()

    def take(self, adam_id: str, *, wait: bool) -> Mirrored:
        """The asset's mirrored licenses; :data:`_UNREAD` when not read yet and not ``wait``."""
        with self.arrived:
            while adam_id not in self.ready:
                if not wait:
                    return _UNREAD
                if self.stopped.is_set() or self.ended:  # the read failed or was stopped (its error is the read's)
                    raise ReadStopped("the read of the mirrored licenses was stopped")
                self.wanted.add(adam_id)
                try:
                    self.arrived.wait()
                finally:
                    self.wanted.discard(adam_id)
            return self.ready.pop(adam_id)

    def done(self, adam_id: str) -> None:
        """The asset's thread is done with it: its licenses no longer count as read ahead."""
        with self.room:
            self.ready.pop(adam_id, None)
            if adam_id in self.held:
                full = self.ahead >= MIRROR_AHEAD
                self.ahead -= self.held.pop(adam_id)
                if full and self.ahead < MIRROR_AHEAD:  # the reader may wait for this
                    self.room.notify()
            else:
                self.dropped.add(adam_id)

    def go(self) -> None:
        """Read on past the first ``first`` assets: once the re-reading threads run (starting a
        thread waits until it runs, which this one, parsing, would delay by up to a switch
        interval each: their first requests went out over ~30 ms instead of at once)."""
        with self.room:
            self.going = True
            self.room.notify()

    def wake(self) -> None:
        """After ``stopped`` was set: the waiting threads stop."""
        with self.room:
            self.room.notify_all()
            self.arrived.notify_all()


def in_mirror(account_id: int | None) -> Any:
    """SQL: the staged license row is already in the account's mirror."""
    return exists().where(
        L.c.account_id == account_id, L.c.adam_id == SL.c.adam_id, L.c.pricing_param == SL.c.pricing_param, L.c.kind == SL.c.kind, L.c.target == SL.c.target
    )


def clear_stage(host: Host, run_id: int) -> None:
    """Drop what a run staged (a failed, interrupted or abandoned read)."""
    host.db.run_write(lambda session: drop_staged(session, run_id))


def drop_staged(session: Session, run_id: int) -> None:
    """Delete the run's staged rows, in the caller's transaction."""
    session.execute(delete(VppStageLicense).where(col(VppStageLicense.run_id) == run_id))
    session.execute(delete(VppStageUser).where(col(VppStageUser.run_id) == run_id))


class RunEnded(Exception):
    """The run is no longer ``running`` (interrupted, or taken as abandoned) while its pages are
    still being staged: the rows are not written."""


def check_running(session: Session, run_id: int) -> None:
    """Inside a staging write: raise :class:`RunEnded` unless the run is still ``running``.

    The run's row is read ``FOR SHARE`` (PostgreSQL), so a transaction ending the run (an
    ``UPDATE`` of that row, then a delete of its staged rows: :func:`.run.end_interrupted`) waits for this
    write and then deletes its rows, or this write waits for it and finds the run ended. On
    SQLite the write lock, held already, orders them the same way. Without it, a thread that
    had not seen an interruption yet could commit rows after the run's were dropped."""
    runs = table_of(VppSyncRun)
    status = session.execute(select(runs.c.status).where(runs.c.id == run_id).with_for_update(read=True)).scalar_one_or_none()
    if status != "running":
        raise RunEnded(f"sync run {run_id} is {status or 'gone'}: its pages are not staged")


LICENSE_COLUMNS = ("adam_id", "pricing_param", "kind", "target")  # the staged tuples of vpp_stage_license
USER_COLUMNS = ("client_user_id", "email", "status", "id_hash", "invite_code", "rank")  # ... of vpp_stage_user


class StageBuffer:
    """Rows (tuples in the order of ``columns``) waiting to be written to a staging table under
    the run's id, flushed in batches with :func:`mdm_core.db.bulk.insert_rows` (COPY on PostgreSQL).

    ``background`` (PostgreSQL; one thread adding rows): each full batch is written by a
    thread of its own while the pages that follow are downloaded and parsed, so the server's
    COPY overlaps the client's parsing instead of pausing it; the next full batch waits for
    the previous one (memory holds two batches at most), :meth:`flush` waits for the last one
    and raises a failed write's error. Used as a context manager, the buffer waits on exit for
    a batch still being written, so that nothing is staged after a failed read drops its rows.
    On SQLite the batches are written in the adding thread (one writer at a time anyway)."""

    def __init__(self, host: Host, table: Any, run_id: int, columns: tuple[str, ...], *, background: bool = False, direct: DirectLicenses | None = None):
        self.host, self.table, self.run_id, self.columns, self.direct = host, table, run_id, columns, direct
        self.rows: list[tuple[Any, ...]] = []
        self.lock = threading.RLock()  # shared by the threads re-reading assets
        index = next(iter(table.indexes))  # the staging key, (run_id, ...)
        positions = [columns.index(c.name) for c in index.columns if c.name != "run_id"]
        # the whole row is the key (licenses): tuples sort as they are, much faster than with a key function
        self.key = None if positions == list(range(len(columns))) else itemgetter(*positions)
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vpp-stage") if background and not host.db.is_sqlite else None
        self.writing: Future[None] | None = None

    def __enter__(self) -> StageBuffer:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.writer is not None:
            self.writer.shutdown(wait=True)  # a batch being written ends (its error, if any, is the read's to ignore: it failed)

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        with self.lock:
            self.rows.extend(rows)
            full = len(self.rows) >= STAGE_BATCH
        if full:  # written outside the lock: the other re-reading threads keep adding meanwhile
            self._write_batch(wait=False)

    def flush(self) -> None:
        """Write the rows added so far; return once every batch is written."""
        self._write_batch(wait=True)

    def _write_batch(self, *, wait: bool) -> None:
        with self.lock:
            rows, self.rows = self.rows, []
        if self.writer is None:
            self._write(rows)
            return
        self._wait()  # the previous batch first: at most one being written
        if rows:
            self.writing = self.writer.submit(self._write, rows)
        if wait:
            self._wait()

    def _wait(self) -> None:
        writing, self.writing = self.writing, None
        if writing is not None:
            writing.result()  # a failed write's error is raised here

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            rows.sort(key=self.key)  # in index order (stable: equal keys keep Apple's order), a batch touches few index pages
            if self.direct is not None:
                self.direct.write(rows)
                return
            run, columns = self.run_id, ("run_id", *self.columns)
            self.host.db.run_write(lambda s: self._insert(s, columns, [(run, *r) for r in rows]))

    def _insert(self, session: Session, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        check_running(session, self.run_id)
        insert_rows(session, self.table, columns, rows)
        if self.host.db.is_sqlite:  # its write lock is held already: the run's progress too, when due
            stored_progress.carry(session, self.run_id)
