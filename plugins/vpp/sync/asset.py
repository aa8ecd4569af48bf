"""Re-reading one asset: its record, and its assignments when the counts say the mirror is off.

Used when Apple says an asset changed (an ``ASSET_COUNT`` notification: a purchase, a
transfer, a refund) or names an asset the mirror does not know. Apple's record replaces the
mirrored one; when Apple's ``assignedCount`` differs from the licenses mirrored for the
asset, its assignments are read too and the mirror's licenses of that asset become Apple's.
The changes are the ones a sync would make, with the same events (``vpp_assets_added``,
``_changed``, ``_removed``, ``vpp_licenses_associated``, ``_disassociated`` with source
``sync``), written in the caller's transaction.

The caller holds the account's sync lock: a sync never runs at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, insert, select
from sqlmodel import Session

from mdm_core.db.bulk import in_chunks
from mdm_core.db.typed import rowcount, table_of

from ..apple.client import AppsBooksClient
from ..apple.protocol import page_assets, page_assignments
from ..license_counts import add_license_counts
from ..models import VppAccount, VppLicense
from .apply import apply_assets
from .events import record_license_events, with_known_keys

if TYPE_CHECKING:
    from mdm_core.host import Host

L = table_of(VppLicense)


@dataclass
class AssetRead:
    """Apple's record of one asset (None: Apple has no such asset any more) and, when read,
    its assignments as (kind, target)."""

    key: tuple[str, str]
    record: dict[str, Any] | None
    assignments: set[tuple[str, str]] | None = None
    pages: int = 0


def read_asset(host: Host, account: VppAccount, client: AppsBooksClient, key: tuple[str, str]) -> AssetRead:
    """Apple's record of the asset ``key`` and, if its ``assignedCount`` is not what the mirror
    holds, its assignments (every page)."""
    adam_id, pricing = key
    read = AssetRead(key, None)
    for page in client.iter_assets(adam_id=adam_id, pricing_param=pricing):
        read.pages += 1
        for row in page_assets(page):
            if (row["adam_id"], row["pricing_param"]) == key:
                read.record = row
    with host.db.session() as session:
        held = session.execute(
            select(func.count()).select_from(L).where(L.c.account_id == account.id, L.c.adam_id == adam_id, L.c.pricing_param == pricing)
        ).scalar_one()
    if read.record is not None and read.record["assigned_count"] != held:
        read.assignments = set()
        for page in client.iter_assignments(adam_id=adam_id, pricing_param=pricing):
            read.pages += 1
            read.assignments.update((kind, target) for a, p, kind, target in page_assignments(page) if (a, p) == key)
    return read


def apply_asset(host: Host, session: Session, account: VppAccount, read: AssetRead) -> dict[str, int]:
    """Make the mirror of one asset Apple's, with a sync's events and count history, in the
    caller's transaction; returns what changed (asset added/changed/removed, licenses
    added/removed)."""
    records = {read.key: read.record} if read.record is not None else {}
    licenses = {"licenses_added": 0, "licenses_removed": 0}
    if read.record is None:
        licenses["licenses_removed"] = _remove_licenses(host, session, account, read.key, None)
    elif read.assignments is not None:
        licenses["licenses_removed"] = _remove_licenses(host, session, account, read.key, read.assignments)
        licenses["licenses_added"] = _add_licenses(host, session, account, read.key, read.assignments)
    _, counts = apply_assets(host, session, account, records, only={read.key})
    return {**counts, **licenses}


def _remove_licenses(host: Host, session: Session, account: VppAccount, key: tuple[str, str], keep: set[tuple[str, str]] | None) -> int:
    """Delete the asset's mirrored licenses not in ``keep`` (all of them for None), with events."""
    adam_id, pricing = key
    where = and_(L.c.account_id == account.id, L.c.adam_id == adam_id, L.c.pricing_param == pricing)
    rows = session.execute(select(L.c.kind, L.c.target).where(where).order_by(L.c.kind, L.c.target)).all()
    gone = [(adam_id, pricing, kind, target) for kind, target in rows if keep is None or (kind, target) not in keep]
    deleted = 0
    for kind in ("device", "user"):
        targets = [t for _, _, k, t in gone if k == kind]
        for chunk in in_chunks(targets):
            deleted += rowcount(session.execute(delete(L).where(where, L.c.kind == kind, L.c.target.in_(chunk))))
    add_license_counts(session, account.id, {key: -deleted})
    return record_license_events(host, session, account, "vpp_licenses_disassociated", with_known_keys(session, gone))


def _add_licenses(host: Host, session: Session, account: VppAccount, key: tuple[str, str], apple: set[tuple[str, str]]) -> int:
    """Insert Apple's licenses of the asset that the mirror lacks, with events."""
    adam_id, pricing = key
    held = set(session.execute(select(L.c.kind, L.c.target).where(L.c.account_id == account.id, L.c.adam_id == adam_id, L.c.pricing_param == pricing)).all())
    new = sorted((adam_id, pricing, kind, target) for kind, target in apple if (kind, target) not in held)
    if new:
        session.execute(insert(L), [{"account_id": account.id, "adam_id": a, "pricing_param": p, "kind": k, "target": t} for a, p, k, t in new])
        add_license_counts(session, account.id, {key: len(new)})
    return record_license_events(host, session, account, "vpp_licenses_associated", with_known_keys(session, new))
