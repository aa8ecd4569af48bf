"""Whether an install of a license event's asset waits in a status, read for a run of events.

A sync delivers a license event per asset and kind (1,374 after the benchmark's 1% change), and
mobile_apps asks for each whether an install of its asset is ``pending`` (associated licenses)
or ``queued`` (disassociated ones); almost always none is. The first such event of a delivery
batch reads the answer for every license event after it in the batch at once; the next event
uses that answer only if the event just before it was answered from it, and found nothing (so
mobile_apps wrote nothing in between). Any other event in between, or an answer that leads to a
write, and the next one reads again. An install another process puts in ``pending`` while the
batch is delivered is found by the ``mobile_apps.installs`` job, as one put in ``pending`` just
after its license's event always was.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mdm_core.db.bulk import one_of
from mdm_core.db.typed import table_of

from ..models import Install

if TYPE_CHECKING:
    from mdm_core.events import Event
    from mdm_core.host import Host

Key = tuple[str, str, str]  # account, adamId, pricingParam
LICENSE_EVENTS = frozenset({"vpp_licenses_associated", "vpp_licenses_disassociated", "vpp_licenses_refused"})
_memo = threading.local()  # run: (weak reference to the batch, index answered last, {key: statuses})


def _key(payload: Any) -> Key:
    return (str(payload["account"]), str(payload["adamId"]), str(payload["pricingParam"]))


def install_waits(host: Host, status: str, event: Event) -> bool:
    """Whether an install of the asset of license ``event`` is in ``status`` (a read: most license
    events of a sync find none, and skip the write transaction)."""
    key = _key(event.payload)
    batch = host.events.delivering()
    run = getattr(_memo, "run", None)
    _memo.run = None
    if run is not None and run[0]() is batch and run[1] + 1 < len(batch) and batch[run[1] + 1] is event:
        index, found = run[1] + 1, run[2]
    else:
        index = next((i for i, e in enumerate(batch) if e is event), -1)
        if index < 0:  # delivered on its own (a redelivery): this event's asset alone
            return status in _statuses(host, {key}).get(key, ())
        found = _statuses(host, {_key(e.payload) for e in batch[index:] if e.name in LICENSE_EVENTS})
    waits = status in found.get(key, ())
    if not waits:  # nothing written for this event: the next one may use the same read
        _memo.run = (weakref.ref(batch), index, found)
    return waits


def _statuses(host: Host, keys: set[Key]) -> dict[Key, set[str]]:
    """The statuses (``pending``, ``queued``) of the installs of these assets, in one read."""
    installs, postgres = table_of(Install), not host.db.is_sqlite
    query = select(installs.c.account, installs.c.adam_id, installs.c.pricing_param, installs.c.status).where(
        installs.c.status.in_(("pending", "queued")),
        one_of(installs.c.account, "accounts", postgres),
        one_of(installs.c.adam_id, "adam_ids", postgres),  # a delivery batch's assets: up to ~2,000 (SQLite takes 32,766)
    )
    found: dict[Key, set[str]] = {}
    with host.db.reading() as conn:  # one round trip on PostgreSQL (no BEGIN, no ROLLBACK)
        for account, adam_id, pricing, status in conn.execute(query, {"accounts": sorted({k[0] for k in keys}), "adam_ids": sorted({k[1] for k in keys})}):
            if (account, adam_id, pricing) in keys:
                found.setdefault((account, adam_id, pricing), set()).add(status)
    return found
