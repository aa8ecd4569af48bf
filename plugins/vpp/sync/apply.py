"""Applying a read to the mirror: set differences between the staging tables and the mirror,
in one transaction that also updates the account, records the sync run and the events.

Either the whole sync is committed or nothing changes (an error rolls everything back).
Bulk statements only: new rows are ``INSERT ... SELECT`` from the staging tables, removed ones
are deleted by anti-join, so memory does not grow with the account.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, Text, and_, bindparam, cast, delete, exists, func, insert, literal, or_, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import Grouping
from sqlmodel import Session, col

from mdm_core.db.bulk import BinaryArray, bind_processor, bound_value, delete_rows, in_chunks, insert_rows, page_cache, unnest_rows
from mdm_core.db.typed import rowcount, stored_id, table_of
from mdm_core.errors import describe
from mdm_core.interrupts import deferred
from mdm_core.models import MdmUser, utcnow

from .. import token_state
from ..apple.protocol import apple_asset, apple_user
from ..license_counts import add_license_counts, per_asset, recount_licenses
from ..models import VppAccount, VppAsset, VppAssetCount, VppLicense, VppSyncRun, VppUser
from ..recording import record_events
from .events import EVENT_RECORDS, EventBatch, record_chunks, record_license_events, with_known, with_known_keys
from .read import SL, SU, AppleRead, DirectFallback, DirectLicenses, in_mirror

if TYPE_CHECKING:
    from mdm_core.host import Host
    from mdm_core.locks import DbLock

log = logging.getLogger(__name__)
L = table_of(VppLicense)
U = table_of(VppUser)
A = table_of(VppAsset)
RUNS = table_of(VppSyncRun)
#: Reads of a number of rows that grows with the account (new users and licenses, removed
#: licenses) stream: a server-side cursor on PostgreSQL, where psycopg would otherwise fetch the
#: whole result into memory first (3,000,000 licenses: 600 MB). Each is read in a ``with``
#: block, closed before the transaction ends also when its reader raises: on SQLite a cursor
#: left open (kept by the failure's traceback until the collector runs) holds a read snapshot
#: on its connection after the rollback, and the next write on that pooled connection fails
#: at once with "database is locked" (SQLITE_BUSY_SNAPSHOT: no busy timeout is waited)
STREAMED = {"yield_per": 5000}
#: A run that leaves at least this many dead staged rows in a table vacuums it after its commit
#: (PostgreSQL): the staged rows are deleted by run, and a full sync's 100,000 staged users
#: otherwise stay in the table as dead rows that the next syncs scan (until autovacuum passes)
VACUUM_AFTER = 10_000
#: SQLite: the page cache of an incremental sync's write transaction (MiB; SQLite's default is
#: 2): its changes spread over the mirror's tables (1,500 licenses inserted and 1,345 deleted by
#: the benchmark's, 5,000 pages changed), and with 2 MiB each page dropped was read again. A full
#: sync, which writes the whole mirror, keeps the default (its memory does not grow with it)
APPLY_CACHE_MIB = 64


def apply_read(
    host: Host,
    account: VppAccount,
    run_id: int,
    read: AppleRead,
    lock: DbLock,
    finished: Callable[[dict[str, Any]], Mapping[str, Any]] | None,
    cleared: dict[str, int],
) -> dict[str, Any]:
    """Apply ``read`` in one write transaction, if this run still holds ``lock``; returns the
    counts (added/changed/removed). ``LockLost`` (nothing written) when another holder took it.
    ``finished``: the sync's report of these counts, recorded (``vpp_sync_finished``) in the same
    transaction, after every other event of the sync. Once committed, the staged rows it deleted
    from each staging table are added to ``cleared``: the caller vacuums them
    (:func:`vacuum_stage`, once the sync's heartbeat has stopped)."""
    mirror = MirrorUpdate(host, account, run_id, lock, finished)
    if read.direct is None:
        counts = host.db.run_write(lambda session: mirror.apply(session, read))
    else:
        with deferred():  # the transaction that holds the licenses written straight into the mirror
            counts = mirror.apply(read.direct.session, read)  # on failure the sync closes it (rolled back) before recording the failure
            read.direct.session.commit()
    for table, n in mirror.cleared.items():
        cleared[table] = cleared.get(table, 0) + n
    return counts


def vacuum_stage(host: Host, cleared: dict[str, int]) -> list[str]:
    """After a committed sync (PostgreSQL): vacuum the staging tables it left
    :data:`VACUUM_AFTER` dead rows or more in, so that the next syncs do not scan them
    (only dead rows go: other runs' staged rows stay); returns the tables vacuumed. Best effort:
    the sync is committed whatever happens here."""
    names = sorted(t for t, n in cleared.items() if n >= VACUUM_AFTER)
    if host.db.is_sqlite or not names:
        return []
    try:
        host.db.vacuum(*names)
    except Exception as exc:  # autovacuum passes later
        log.warning("could not vacuum %s: %s", ", ".join(names), describe(exc))
        return []
    return names


def refresh_statistics(host: Host, counts: dict[str, Any]) -> list[str]:
    """After a committed sync: ``VACUUM (ANALYZE)`` of the mirror's tables that it changed by a
    large share (a first full sync fills them), so that the next sync's joins with them are
    planned for their real size and its index-only scans of the mirrored licenses read the
    index alone (:meth:`mdm_core.db.engine.Database.vacuum_changed`); returns the tables
    vacuumed (PostgreSQL; none on SQLite)."""
    licenses, users, assets = (counts.get(k, {}) for k in ("licenses", "users", "assets"))
    return host.db.vacuum_changed(
        {
            L.name: licenses.get("added", 0) + licenses.get("removed", 0),
            U.name: sum(users.get(k, 0) for k in ("added", "changed", "retired", "removed")),
            A.name: sum(assets.get(k, 0) for k in ("added", "changed", "removed")),
        }
    )


class MirrorUpdate:
    """The one transaction of a sync run of ``account``."""

    def __init__(self, host: Host, account: VppAccount, run_id: int, lock: DbLock, finished: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None):
        self.host = host
        self.finished = finished
        self.account = account
        self.run_id = run_id
        self.lock = lock
        self.cleared: dict[str, int] = {}  # staging table -> rows of this run it deleted
        #: an incremental sync's changed assets, written with their license counts once the
        #: licenses are (:func:`write_changed`): each asset row written once, not twice
        self.changed: list[dict[str, Any]] = []
        #: the events of the mirror's changes, written together before the account's (its token
        #: state's) and the sync's report (set by :meth:`apply`)
        self.batch: EventBatch

    def apply(self, session: Session, read: AppleRead) -> dict[str, Any]:
        """The one transaction: mirror, account, sync run, events; returns the counts.

        It starts by checking the fencing token (holder and generation of the account's lock)
        inside itself: a run that lost its lock writes nothing, whatever it read. It ends by
        extending the lock again (its row is held meanwhile: the heartbeat cannot)."""
        self.changed = []  # a transaction run again (a retried write) starts afresh
        self.batch = EventBatch(self.host, session, stored_id(self.account))
        self.lock.fence(session)
        if read.mode == "full":
            return self._apply(session, read)
        with page_cache(session, APPLY_CACHE_MIB):  # set back before the commit: the pool's connections keep the default
            return self._apply(session, read)

    def _apply(self, session: Session, read: AppleRead) -> dict[str, Any]:
        mode, assets, versions, reread = read.mode, read.assets, read.versions, read.reread
        counts: dict[str, Any] = {}
        removed_assets = self._apply_assets(session, assets, counts, recount=mode != "full")
        self._apply_users(session, full=mode == "full", counts=counts)
        self._apply_licenses(
            session,
            full=mode == "full",
            reread=reread,
            assets=assets,
            removed_assets=removed_assets,
            counts=counts,
            diffed=read.diffed,
            gone=read.removed,
            direct=read.direct,
        )
        self._delete_stage(session)
        self.batch.write()  # before the token state's event and the report, in the outbox's (delivery's) order

        now = utcnow()
        synced: dict[str, Any] = {**versions, "last_sync_at": now, "last_sync_result": f"ok ({mode})"}
        if mode == "full":
            synced["last_full_sync_at"] = now
        if read.invitation_template:  # else the stored one stays
            synced["invitation_template"] = read.invitation_template
        token_state.sync_succeeded(self.host, session, stored_id(self.account), read.token_expiration, synced)
        if read.unknown_assets:
            counts["licenses"]["unknown_assets"] = sorted({a for a, _ in read.unknown_assets})
            counts["licenses"]["of_unknown_assets"] = sum(read.unknown_assets.values())
        if read.count_mismatches:
            counts["assets"]["count_mismatches"] = read.count_mismatches
        # the run's record by one Core statement (no ORM object loaded and flushed for it)
        ended = {"mode": mode, "status": "ok", "finished_at": now, "pages": read.pages, "counts": counts, "progress": None}
        session.execute(update(RUNS).where(RUNS.c.id == self.run_id).values(ended))
        if self.finished is not None:  # the report commits with what it reports (was a write transaction of its own, after this one)
            record_events(self.host, session, stored_id(self.account), [("vpp_sync_finished", self.finished(counts))])
        # the lock's row is ours since the fence above, so the heartbeat waits on it until the
        # commit: extend the lock from here, or an apply longer than its TTL ends with it expired
        self.lock.fence(session)
        return counts

    def _apply_assets(self, session: Session, assets: dict[tuple[str, str], dict[str, Any]], counts: dict[str, Any], *, recount: bool) -> list[tuple[str, str]]:
        deferred = self.changed if recount else None  # a full sync recounts every asset after its licenses
        removed, counts["assets"] = apply_assets(self.host, session, self.account, assets, recount=recount, deferred=deferred, batch=self.batch)
        return removed

    def _delete_stage(self, session: Session) -> None:
        """Drop this run's staged licenses and users, counted in :attr:`cleared`. PostgreSQL
        deletes them by run (other runs may be staging meanwhile, uncommitted: unseen), both
        tables by one statement (two ``DELETE ... RETURNING`` counted by one ``SELECT``: one
        round trip, where a statement per table took two), the dead rows vacuumed after the
        commit (:func:`vacuum_stage`). SQLite, when no other run has any row in a table (the
        write lock is held), empties it with an unqualified DELETE (SQLite's truncate
        optimisation), else deletes by run."""
        if not self.host.db.is_sqlite:
            deleted = [delete(t).where(t.c.run_id == self.run_id).returning(t.c.run_id).cte(f"cleared_{t.name}") for t in (SL, SU)]
            counts = session.execute(select(*(select(func.count()).select_from(d).scalar_subquery() for d in deleted))).one()
            self.cleared.update({t.name: int(n) for t, n in zip((SL, SU), counts, strict=True)})
            return
        for table in (SL, SU):
            low, high = session.execute(select(func.min(table.c.run_id), func.max(table.c.run_id))).one()
            whole = low in (None, self.run_id) and high in (None, self.run_id)
            self.cleared[table.name] = rowcount(session.execute(delete(table) if whole else delete(table).where(table.c.run_id == self.run_id)))

    def _apply_users(self, session: Session, *, full: bool, counts: dict[str, Any]) -> None:
        """The staged users into the mirror, with their events. On PostgreSQL an incremental
        sync's few staged users (1% of 100,000: 1,113) are joined with the mirror through its
        primary key: the planner hashed every mirrored user of the account instead, in each of
        the four statements below (81 ms of server time against 32 ms). Its setting is back for
        the rest of the transaction afterwards (a rolled-back transaction undoes it as well)."""
        by_key = not full and not self.host.db.is_sqlite
        if by_key:
            session.execute(text("SET LOCAL enable_hashjoin = off"))
        self._write_users(session, full=full, counts=counts)
        if by_key:
            session.execute(text("SET LOCAL enable_hashjoin TO DEFAULT"))

    def _write_users(self, session: Session, *, full: bool, counts: dict[str, Any]) -> None:
        acc, run = self.account.id, self.run_id
        other = SU.alias("su2")
        session.execute(
            delete(SU).where(
                SU.c.run_id == run,
                exists().where(
                    other.c.run_id == run,
                    other.c.client_user_id == SU.c.client_user_id,
                    or_(other.c.rank < SU.c.rank, and_(other.c.rank == SU.c.rank, other.c.id > SU.c.id)),
                ),
            )
        )
        fields = ("email", "status", "id_hash", "invite_code")
        in_mirror = exists().where(U.c.account_id == acc, U.c.client_user_id == SU.c.client_user_id)
        is_new = and_(SU.c.run_id == run, ~in_mirror)
        MU = table_of(MdmUser)
        # the staged users that are new or changed (with the mirrored status: a user retired
        # now), the new ones first as their events come first. An incremental sync reads them
        # by one statement, sorted (1% of 100,000 users: two reads joined the stage with the
        # mirror twice); a full sync by one read of each kind, unsorted (sorting 100,000 users
        # took 0.26 s of server time on PostgreSQL). Streamed, the events recorded 500 users at
        # a time, the mirror written by one statement of each kind after
        mirrored = U.c.client_user_id.is_not(None).label("mirrored")
        staged = (
            select(SU.c.client_user_id, *(SU.c[f] for f in fields), U.c.status.label("old_status"), MU.c.id.label("mdm_user"), mirrored)
            .outerjoin(U, and_(U.c.account_id == acc, U.c.client_user_id == SU.c.client_user_id))
            .outerjoin(MU, MU.c.id == SU.c.client_user_id)
            .where(SU.c.run_id == run)
        )
        differs = or_(*(SU.c[f].is_distinct_from(U.c[f]) for f in fields))
        if full:
            reads = [staged.where(U.c.client_user_id.is_(None)), staged.where(U.c.client_user_id.is_not(None), differs)]
        else:
            reads = [staged.where(or_(U.c.client_user_id.is_(None), differs)).order_by(mirrored, SU.c.client_user_id)]
        retiring = ("Retired", "Deleted")
        news = UserEvents(self, session, "vpp_users_added")
        changed = {"vpp_users_changed": UserEvents(self, session, "vpp_users_changed"), "vpp_users_retired": UserEvents(self, session, "vpp_users_retired")}
        for read in reads:
            with session.execute(read, execution_options=STREAMED) as rows:  # streamed: memory does not grow with the account
                for r in rows:
                    if not r.mirrored:
                        news.add(r._mapping)
                        continue
                    news.flush()  # the last new users' event before the first changed user's
                    retired = r.status in retiring and r.old_status not in retiring
                    changed["vpp_users_retired" if retired else "vpp_users_changed"].add(r._mapping)
        news.flush()
        added = news.count
        for events in changed.values():
            events.flush()
        removed = 0
        if full:
            gone = ~exists().where(SU.c.run_id == run, SU.c.client_user_id == U.c.client_user_id)
            removed = rowcount(session.execute(delete(U).where(U.c.account_id == acc, gone)))
        now = utcnow()
        columns = ["account_id", "client_user_id", *fields, "updated_at"]
        staged_users = select(literal(acc), SU.c.client_user_id, *(SU.c[f] for f in fields), literal(now, U.c.updated_at.type))
        in_key_order = (SU.c.run_id, SU.c.client_user_id)  # the mirror's key order (as the licenses below)
        rewritten = any(events.count for events in changed.values())
        if not full and (added or rewritten):
            # one statement over the few staged users (one staged row per user: see above): each
            # new one inserted, each mirrored one that differs updated, found by the primary key's
            # conflict check; an INSERT of the new ones and an UPDATE of the changed ones joined
            # the stage with the mirror once each (1,113 users on PostgreSQL: 5 + 9 ms of server
            # time; this statement 11-12 ms, measured on a busier machine)
            upsert = dialect_insert(session, U).from_select(columns, staged_users.where(SU.c.run_id == run).order_by(*in_key_order))
            session.execute(
                upsert.on_conflict_do_update(
                    index_elements=[U.c.account_id, U.c.client_user_id],
                    set_={f: upsert.excluded[f] for f in (*fields, "updated_at")},
                    where=or_(*(upsert.excluded[f].is_distinct_from(U.c[f]) for f in fields)),
                )
            )
        elif full and added:  # every user is staged: the mirrored ones are skipped by an anti-join
            session.execute(insert(U).from_select(columns, staged_users.where(is_new).order_by(*in_key_order)))
        if full and rewritten:  # UPDATE ... FROM the stage (one staged row per user: see above)
            session.execute(
                update(U)
                .where(U.c.account_id == acc, U.c.client_user_id == SU.c.client_user_id, SU.c.run_id == run)
                .where(or_(*(SU.c[f].is_distinct_from(U.c[f]) for f in fields)))
                .values({**{f: SU.c[f] for f in fields}, "updated_at": now})
            )
        counts["users"] = {"added": added, "changed": changed["vpp_users_changed"].count, "retired": changed["vpp_users_retired"].count, "removed": removed}

    def _apply_licenses(
        self,
        session: Session,
        *,
        full: bool,
        reread: list[str],
        assets: dict[tuple[str, str], dict[str, Any]],
        removed_assets: list[tuple[str, str]],
        counts: dict[str, Any],
        diffed: list[str],
        gone: list[tuple[str, str, str, str]],
        direct: DirectLicenses | None = None,
    ) -> None:
        acc, run = self.account.id, self.run_id
        if direct is not None:  # a first full sync wrote them straight into the mirror, in this transaction
            self._direct_licenses(session, direct, counts)
            return
        columns = (SL.c.adam_id, SL.c.pricing_param, SL.c.kind, SL.c.target)
        is_new = and_(SL.c.run_id == run, ~in_mirror(acc))
        # an incremental sync moves each asset's stored count by the licenses its statements
        # inserted and deleted, summed here and written once (one UPDATE of the assets, not one
        # per statement: every asset row written again is a new row version)
        deltas: Counter[tuple[str, str]] = Counter()
        # a first full sync finds no license to take back: the anti-join of every license just
        # inserted with the stage (300,000 index probes, twice) is skipped
        held_before = not full or session.execute(select(L.c.target).where(L.c.account_id == acc).limit(1)).first() is not None
        # inserted in the mirror's key order (read from the staging index: no sort), each row
        # next to the previous one in the primary key's index, rather than in the staged order
        # (batches sorted on their own): on PostgreSQL, 300,000 licenses took 3.1 s of server CPU
        # in the staged order, 2.9 s in key order (3.7 s vs 2.7 s from an unsorted stage)
        if full:
            # in the staging index's order (no sort); a row Apple sent twice is adjacent and
            # skipped; whether the inventory knows each holder comes with the row (no query per
            # event); streamed: a first full sync's every license is new
            with session.execute(with_known(select(*columns), SL).where(is_new).order_by(SL.c.run_id, *columns), execution_options=STREAMED) as new_rows:
                added = record_license_events(self.host, session, self.account, "vpp_licenses_associated", new_rows, self.batch)
            new_licenses = select(literal(acc), *columns).where(is_new).order_by(SL.c.run_id, *columns)
            inserting = insert_ignoring_duplicates(session, L).from_select(LICENSE_KEY, new_licenses)
            if self.host.db.is_sqlite:
                session.execute(inserting)
            else:  # every count is recounted below
                insert_or_ignore(session, insert(L).from_select(LICENSE_KEY, new_licenses), inserting)
        else:
            # every staged row, the mirrored ones skipped by the conflict check alone: an
            # anti-join with the mirror looked each one up first (1,500 licenses on PostgreSQL:
            # 0.029 -> 0.017-0.026 s of server time; SQLite 0.137-0.144 -> 0.123-0.134 s of CPU
            # for the whole write transaction). The rows it inserted (as many as the change) are
            # the associated licenses, counted per asset: they were read first by a statement of
            # their own, the same anti-join (1,500 licenses on PostgreSQL: 10-11 ms of server time)
            staged = select(literal(acc), *columns).where(SL.c.run_id == run).order_by(SL.c.run_id, *columns)
            inserted = inserted_licenses(session, insert_ignoring_duplicates(session, L).from_select(LICENSE_KEY, staged))
            deltas.update(per_asset(inserted))
            added = record_license_events(self.host, session, self.account, "vpp_licenses_associated", inserted, self.batch)

        removed = 0
        exact = True  # every license deleted below is counted off its asset's stored count
        conditions = []
        in_stage = exists().where(
            SL.c.run_id == run, SL.c.adam_id == L.c.adam_id, SL.c.pricing_param == L.c.pricing_param, SL.c.kind == L.c.kind, SL.c.target == L.c.target
        )
        if full:
            if held_before:
                conditions.append(and_(L.c.account_id == acc, ~in_stage))
        else:  # assets re-read whole: what the stage lacks is gone (the diffed ones named theirs: ``gone``)
            for chunk in in_chunks(sorted(set(reread) - set(diffed))):
                conditions.append(and_(L.c.account_id == acc, L.c.adam_id.in_(chunk), ~in_stage))
        if gone:
            removed += record_license_events(self.host, session, self.account, "vpp_licenses_disassociated", with_known_keys(session, gone), self.batch)
            deleted = delete_rows(session, L, {"account_id": acc}, {c: L.c[c].type for c in LICENSE_KEY[1:]}, gone)
            # one key deletes one row at most: when every key deleted one, the counts move by
            # them; otherwise (another writer took some meanwhile) the check below recounts
            exact = deleted == len(gone)
            if exact:
                deltas.subtract(per_asset(gone))
        for a, p in removed_assets:
            conditions.append(and_(L.c.account_id == acc, L.c.adam_id == a, L.c.pricing_param == p))
        for condition in conditions:
            with session.execute(
                with_known(select(L.c.adam_id, L.c.pricing_param, L.c.kind, L.c.target), L).where(condition).order_by(L.c.adam_id, L.c.pricing_param, L.c.kind),
                execution_options=STREAMED,
            ) as rows:
                removed += record_license_events(self.host, session, self.account, "vpp_licenses_disassociated", rows, self.batch)
            if full:
                session.execute(delete(L).where(condition))
            else:  # the rows this statement deleted, counted off their assets
                deltas.subtract(per_asset(session.execute(delete(L).where(condition).returning(L.c.adam_id, L.c.pricing_param))))
        # the stored counts (license_counts): a full sync recounts them all; an incremental one
        # moved them by the rows it inserted and deleted, and recounts only the assets it read
        # again whose count is not Apple's (the reconcile made the licenses to hold agree with
        # it): a count that was off, Apple's own mismatch, or another writer meanwhile
        again = set(reread)
        keys = [key for key in assets if key[0] in again]
        if full:
            recount_licenses(session, acc, None)
        else:
            write_changed(session, acc, self.changed, deltas)
            recount_licenses(session, acc, keys, only_off=exact)
        counts["licenses"] = {"added": added, "removed": removed, "reread_assets": len(reread)}

    def _direct_licenses(self, session: Session, direct: DirectLicenses, counts: dict[str, Any]) -> None:
        """The licenses of a first full sync, already in the mirror (this transaction): every
        license of the account is new, so each gets its associated event and nothing is removed,
        unless another writer committed one of the account's licenses since the read began
        (then the account holds more rows than the sync wrote: :class:`DirectFallback`)."""
        acc = self.account.id
        held = session.execute(select(func.count()).select_from(L).where(L.c.account_id == acc)).scalar_one()
        if held != direct.rows:
            raise DirectFallback(f"{held - direct.rows} license(s) of the account were mirrored meanwhile")
        with session.execute(
            with_known(select(L.c.adam_id, L.c.pricing_param, L.c.kind, L.c.target), L)
            .where(L.c.account_id == acc)
            .order_by(L.c.adam_id, L.c.pricing_param, L.c.kind, L.c.target),
            execution_options=STREAMED,
        ) as rows:
            added = record_license_events(self.host, session, self.account, "vpp_licenses_associated", rows, self.batch)
        recount_licenses(session, acc)
        counts["licenses"] = {"added": added, "removed": 0, "reread_assets": 0}


def apply_assets(
    host: Host,
    session: Session,
    account: VppAccount,
    assets: dict[tuple[str, str], dict[str, Any]],
    only: set[tuple[str, str]] | None = None,
    *,
    recount: bool = True,
    deferred: list[dict[str, Any]] | None = None,
    batch: EventBatch | None = None,
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Make the mirrored assets Apple's ``assets`` (vpp_asset values by key), in the caller's
    transaction: new ones inserted, changed ones updated, missing ones deleted, with their
    events and the count history. ``only``: the keys Apple was asked about (an asset read
    again on its own); None: ``assets`` is every asset of the account. Returns the removed
    keys (their licenses are the caller's) and the counts. ``recount`` False: the caller sets
    every stored license count afterwards (a full sync), the new assets' are not counted here
    (a first full sync on PostgreSQL already holds its licenses: 300,000 counted twice).
    ``deferred``: the changed assets' values are appended to it, for the caller to write later
    with their license counts (:func:`write_changed`), when they can be written by one statement.
    ``batch``: the transaction's events, where the assets' go (written by its owner); None: written
    here, together."""
    acc, name = account.id, account.name
    query = select(*_MIRRORED).where(A.c.account_id == acc)  # plain rows: no ORM object per asset (1,000 assets: 15 ms)
    if only is not None:
        query = query.where(tuple_(A.c.adam_id, A.c.pricing_param).in_(sorted(only)))
    mirror: dict[tuple[str, str], Any] = {(r[0], r[1]): r for r in session.execute(query)}  # rows: each one's mapping made only when needed
    now = utcnow()
    added = [row for key, row in assets.items() if key not in mirror]
    changed = [row for key, row in assets.items() if key in mirror and asset_differs(mirror[key], row)]
    removed = [key for key in mirror if key not in assets]
    if added:
        session.execute(insert(A), [{**row, "account_id": acc, "updated_at": now} for row in added])
        if recount:
            recount_licenses(session, acc, [(row["adam_id"], row["pricing_param"]) for row in added])  # licenses mirrored before Apple listed it
    if len(changed) > 1 and all(row.keys() == _CHANGED_KEYS for row in changed):
        if deferred is None:
            _update_changed(session, acc, now, changed, {})
        else:
            deferred.extend({**row, "updated_at": now} for row in changed)
    elif changed:
        session.execute(
            update(A).where(A.c.account_id == bindparam("b_account"), A.c.adam_id == bindparam("b_adam"), A.c.pricing_param == bindparam("b_pricing")),
            [
                {
                    **{k: v for k, v in row.items() if k not in ("adam_id", "pricing_param")},
                    "updated_at": now,
                    "b_account": acc,
                    "b_adam": row["adam_id"],
                    "b_pricing": row["pricing_param"],
                }
                for row in changed
            ],
        )
    history = [row for row in added if row.get("total_count") or row.get("assigned_count")]
    history += [row for row in changed if _counts_differ(mirror[(row["adam_id"], row["pricing_param"])]._mapping, row)]
    if history:  # the console's chart of assigned and available licenses over time (COPY on PostgreSQL)
        at = bound_value(session.get_bind().dialect, AC.c.at, now)
        insert_rows(session, AC, HISTORY_COLUMNS, [(acc, r["adam_id"], r["pricing_param"], at, *(r.get(k, 0) for k in COUNT_FIELDS)) for r in history])
    removed_dicts = [apple_asset({**mirror[key]._mapping, "supported_platforms": stored_platforms(mirror[key].supported_platforms)}, name) for key in removed]
    for a, p in removed:
        session.execute(delete(A).where(A.c.account_id == acc, A.c.adam_id == a, A.c.pricing_param == p))
    events = EventBatch(host, session, stored_id(account)) if batch is None else batch
    for event, rows in (("vpp_assets_added", added), ("vpp_assets_changed", changed)):
        record_chunks(host, session, account, event, [apple_asset(r, name) for r in rows], events)
    record_chunks(host, session, account, "vpp_assets_removed", removed_dicts, events)
    if batch is None:
        events.write()
    return removed, {"added": len(added), "changed": len(changed), "removed": len(removed), "total": len(assets)}


#: the values of an asset as Apple gives them (:func:`plugins.vpp.apple.protocol.parse_asset`), besides its key
ASSET_FIELDS = ("product_type", "assigned_count", "available_count", "retired_count", "total_count", "device_assignable", "revocable", "supported_platforms")
_CHANGED_KEYS = {"adam_id", "pricing_param", *ASSET_FIELDS}
AC = table_of(VppAssetCount)
COUNT_FIELDS = ("assigned_count", "available_count", "retired_count", "total_count")
HISTORY_COLUMNS = ("account_id", "adam_id", "pricing_param", "at", *COUNT_FIELDS)
#: the columns of a mirrored asset that :func:`apply_assets` compares with Apple's record: its
#: key, Apple's values and its license count (which :func:`move_counts` passes on), not its
#: account and ``updated_at`` (never compared: 1,000 timestamps converted to Python for
#: nothing); the platforms as the stored JSON text: a few distinct values, each decoded once
#: (:func:`stored_platforms`), not once per asset by the column's type
_PLAIN_FIELDS = tuple(f for f in ASSET_FIELDS if f != "supported_platforms")  # compared as they are
_MIRRORED = (
    A.c.adam_id,
    A.c.pricing_param,
    *(A.c[f] for f in _PLAIN_FIELDS),
    cast(A.c.supported_platforms, Text).label("supported_platforms"),
    A.c.license_count,
)
#: Apple's values but the platforms, as a mirrored row (:data:`_MIRRORED`) holds them and as
#: Apple's record gives them: compared as two tuples, by C code
_STORED_VALUES = slice(2, 2 + len(_PLAIN_FIELDS))
_APPLE_VALUES = itemgetter(*_PLAIN_FIELDS)


@functools.lru_cache(maxsize=256)
def stored_platforms(text: str | None) -> list[str]:
    """A mirrored asset's platforms (its column's JSON text), sorted as Apple's records hold them."""
    return sorted(json.loads(text) if text else [])


def _update_changed(session: Session, acc: int | None, now: Any, changed: list[dict[str, Any]], deltas: Mapping[tuple[str, str], int]) -> None:
    """Set the values of the changed assets (Apple's records: ``_CHANGED_KEYS``) and move their
    stored license counts by ``deltas`` (per asset; none for the others): on PostgreSQL by one
    ``UPDATE ... FROM unnest(...)`` (an executemany runs the UPDATE once per asset on the
    server), elsewhere by the driver's executemany of one prepared statement, each value bound
    as its column's type binds it, the platforms' JSON once per distinct list (SQLAlchemy's
    executemany processed every parameter of every row: that JSON encoded 566 times). On
    PostgreSQL each asset names its platforms by their place in the array of the distinct lists'
    JSON texts: each list sent once (190 JSON texts dumped in the text format, quoted and escaped,
    cost 1.6 ms of CPU; in binary, :class:`~mdm_core.db.bulk.BinaryArray`, 0.1 ms)."""
    platforms = {tuple(row["supported_platforms"]) for row in changed}
    as_json = {p: json.dumps(list(p)) for p in platforms}
    moves = [deltas.get((row["adam_id"], row["pricing_param"]), 0) for row in changed]
    if session.get_bind().dialect.name == "postgresql":
        distinct = sorted(platforms)
        place = {p: i for i, p in enumerate(distinct, 1)}  # PostgreSQL's arrays start at 1
        values = {f"v_{key}": [row[key] for row in changed] for key in ("adam_id", "pricing_param", *ASSET_FIELDS[:-1])}
        values["v_platforms"] = [place[tuple(row["supported_platforms"])] for row in changed]
        session.execute(_update_assets(), {**values, "v_delta": moves, "b_platforms": [as_json[p] for p in distinct], "b_account": acc, "b_now": now})
        return
    fields = ASSET_FIELDS[:-1]
    dialect = session.get_bind().dialect
    processors = [bind_processor(dialect, A.c[f]) for f in fields]  # None: the value as it is
    stored = {p: bound_value(dialect, A.c.supported_platforms, list(p)) for p in platforms}
    at = bound_value(dialect, A.c.updated_at, now)
    rows = [
        (
            *(v if f is None else f(v) for f, v in zip(processors, (row[k] for k in fields), strict=True)),
            stored[tuple(row["supported_platforms"])],
            at,
            move,
            acc,
            row["adam_id"],
            row["pricing_param"],
        )
        for row, move in zip(changed, moves, strict=True)
    ]
    sets = ", ".join(f'"{f}" = ?' for f in (*ASSET_FIELDS, "updated_at"))
    session.connection().exec_driver_sql(
        f'UPDATE "{A.name}" SET {sets}, "license_count" = "license_count" + ? WHERE "account_id" = ? AND "adam_id" = ? AND "pricing_param" = ?', rows
    )


@functools.cache
def _update_assets() -> Any:
    """PostgreSQL: the changed assets' values set, and their license counts moved, by one
    statement, each column passed as an array; the platforms by their place (``v_platforms``)
    in the array of the distinct lists' JSON texts (``b_platforms``: a list is not an array element)."""
    keys = ("adam_id", "pricing_param", *ASSET_FIELDS[:-1])
    rows = unnest_rows("changed", "v_", {**{key: A.c[key].type for key in keys}, "platforms": Integer(), "delta": Integer()})
    platforms = Grouping(bindparam("b_platforms", type_=BinaryArray(Text())))[rows.c.platforms]  # (array)[place]
    values = {key: rows.c[key] for key in ASSET_FIELDS[:-1]} | {"supported_platforms": cast(platforms, A.c.supported_platforms.type)}
    return (
        update(A)
        .where(A.c.account_id == bindparam("b_account"), A.c.adam_id == rows.c.adam_id, A.c.pricing_param == rows.c.pricing_param)
        .values({**values, "license_count": A.c.license_count + rows.c.delta, "updated_at": bindparam("b_now", type_=A.c.updated_at.type)})
    )


def write_changed(session: Session, acc: int | None, changed: list[dict[str, Any]], deltas: Mapping[tuple[str, str], int]) -> None:
    """Write the changed assets ``apply_assets`` left to the caller (``deferred``: each row with
    its ``updated_at``) and move the stored license counts by ``deltas``, the changed assets'
    in the same statement (one row version each, where two statements wrote two)."""
    if changed:
        _update_changed(session, acc, changed[0]["updated_at"], changed, deltas)
    written = {(row["adam_id"], row["pricing_param"]) for row in changed}
    add_license_counts(session, acc, {key: delta for key, delta in deltas.items() if key not in written})


def move_counts(host: Host, session: Session, account: VppAccount, key: tuple[str, str], *, assigned: int = 0, total: int = 0) -> bool:
    """Move a mirrored asset's counts by ``assigned`` and ``total`` (``availableCount``
    follows) through :func:`apply_assets`, so that subscribers hear ``vpp_assets_changed`` and
    the count history grows as after a sync; False if the mirror does not know the asset."""
    asset = session.execute(
        select(VppAsset)
        .where(col(VppAsset.account_id) == account.id, col(VppAsset.adam_id) == key[0], col(VppAsset.pricing_param) == key[1])
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if asset is None:
        return False
    record = {k: v for k, v in asset.model_dump().items() if k not in ("account_id", "updated_at")}
    record.update(
        assigned_count=asset.assigned_count + assigned, total_count=asset.total_count + total, available_count=asset.available_count + total - assigned
    )
    apply_assets(host, session, account, {key: record}, only={key})
    return True


LICENSE_KEY = ["account_id", "adam_id", "pricing_param", "kind", "target"]


def inserted_licenses(session: Session, inserting: Any) -> list[tuple[str, str, str, str, bool]]:
    """Run ``inserting`` (an ``INSERT ... SELECT`` into the mirrored licenses) and return the
    (adamId, pricingParam, kind, target, known) rows it inserted, sorted by key, ``known`` as
    :func:`~.events.with_known` gives it: on PostgreSQL by the one statement (its ``RETURNING``
    joined with the inventory and sorted by the server, in the database's collation as a read of
    the stage sorted them); on SQLite its ``RETURNING``, then one lookup of the holders
    (:func:`~.events.with_known_keys`), sorted by Python (SQLite's ``BINARY`` collation is the
    code points' order, Python's)."""
    returning = inserting.returning(L.c.adam_id, L.c.pricing_param, L.c.kind, L.c.target)
    if session.get_bind().dialect.name != "postgresql":
        return with_known_keys(session, [(a, p, k, t) for a, p, k, t in session.execute(returning)])
    new = returning.cte("inserted")
    keys = (new.c.adam_id, new.c.pricing_param, new.c.kind, new.c.target)
    return [(a, p, k, t, bool(known)) for a, p, k, t, known in session.execute(with_known(select(*keys), new).order_by(*keys))]


def insert_or_ignore(session: Session, plain: Any, ignoring: Any) -> None:
    """Run ``plain`` (an ``INSERT ... SELECT``) in a savepoint; if a row's key exists already
    (the select repeats one, or another writer committed it meanwhile), run ``ignoring`` (the
    same with ``ON CONFLICT DO NOTHING``) instead. On PostgreSQL the conflict check of every
    row (a speculative insertion, confirmed afterwards) costs a quarter of the insert: 300,000
    licenses took 2.0-2.1 s of server CPU without it, 2.7 s with it."""
    try:
        with session.begin_nested():
            session.execute(plain)
    except IntegrityError:
        session.execute(ignoring)


def dialect_insert(session: Session, table: Any) -> Any:
    """The ``INSERT`` of ``table`` of the session's dialect (SQLite's or PostgreSQL's, the two the
    host runs on), which takes ``ON CONFLICT`` clauses."""
    if session.get_bind().dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    from sqlalchemy.dialects import postgresql

    return postgresql.insert(table)


def insert_ignoring_duplicates(session: Session, table: Any) -> Any:
    """``INSERT`` that skips rows whose key already exists (SQLite and PostgreSQL dialects)."""
    return dialect_insert(session, table).on_conflict_do_nothing()


def _counts_differ(row: Any, new: dict[str, Any]) -> bool:
    return any(row[k] != new.get(k, 0) for k in COUNT_FIELDS)


def asset_differs(row: Any, new: dict[str, Any]) -> bool:
    """The mirrored asset (a row read by :data:`_MIRRORED`, its platforms as the stored JSON
    text) differs from Apple's record (``new``: vpp_asset values, platforms sorted). A record
    of every field (``_CHANGED_KEYS``: all of Apple's) is compared as a tuple of its values, by
    C code (1,000 assets: a generator and a lookup by name per value and asset took 3-5 ms)."""
    if new.keys() == _CHANGED_KEYS:
        values_differ = row[_STORED_VALUES] != _APPLE_VALUES(new)
    else:
        values_differ = any(row._mapping[key] != value for key, value in new.items() if key != "supported_platforms")
    return values_differ or stored_platforms(row.supported_platforms) != new["supported_platforms"]


class UserEvents:
    """User events of one kind recorded as the rows stream, ``EVENT_RECORDS`` users each;
    ``count``: the rows added."""

    def __init__(self, mirror: MirrorUpdate, session: Session, event: str):
        self.mirror, self.session, self.event = mirror, session, event
        #: the rows' mappings as read (a row is immutable: kept as it is, not copied into a
        #: dict, which cost 3-4 ms of CPU for an incremental sync's 1,113 users)
        self.rows: list[Mapping[str, Any]] = []
        self.linked: set[str] = set()
        self.count = 0

    def add(self, row: Any) -> None:
        """One user row (with ``mdm_user``: its MDM user id, or None)."""
        self.rows.append(row)
        if row["mdm_user"] is not None:
            self.linked.add(row["mdm_user"])
        self.count += 1
        if len(self.rows) >= EVENT_RECORDS:
            self.flush()

    def flush(self) -> None:
        """Record the event of the rows added since the last one."""
        if self.rows:
            record_chunks(self.mirror.host, self.session, self.mirror.account, self.event, [apple_user(r, self.linked) for r in self.rows], self.mirror.batch)
            self.rows.clear()
            self.linked.clear()
