"""The mirrored licenses an incremental sync compares Apple's rows with, on SQLite and PostgreSQL:
read as the database joined them (one string per chunk of assets on SQLite, one row per asset,
pricingParam and kind on PostgreSQL), split here by one piece of code, and exactly the stored
licenses whatever their values hold."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from mdm_core.db.typed import table_of
from mdm_core.host import Host
from plugins.vpp.models import VppAccount, VppLicense
from plugins.vpp.sync import read
from plugins.vpp.testing import add_simulated_account

from .conftest import FAST_CONFIG

SEPARATORS = {"file": "\x1c", "group": "\x1d", "record": "\x1e", "unit": "\x1f"}


@pytest.fixture
def account(make_host: Callable[..., Host], project_dir: Path, database_url: str | None, simulator: Any) -> tuple[Host, int]:
    """A host on SQLite or PostgreSQL with the account ``school`` (not synced), and its id."""
    import plugins.vpp.plugin

    host = make_host(plugins=[plugins.vpp.plugin], config=FAST_CONFIG, database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    with host.db.session() as session:
        return host, session.execute(select(table_of(VppAccount).c.id)).scalar_one()


def test_the_mirrored_licenses_are_read_exactly_whatever_separator_a_value_holds(account: tuple[Host, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each separator of the joined form in each field of a license (its pricingParam, kind or
    target; each case an asset of its own), and targets whose pieces, split at a separator,
    are licenses of the same asset (as many distinct keys as licenses, one piece too many):
    every asset's licenses and their counts per pricingParam come back exactly, those without
    a separator still as joined strings (read an asset per statement)."""
    host, acc = account
    held: dict[str, set[tuple[str, str, str]]] = {
        # several pricingParams and kinds, no separator: the joined form
        "plain": {("STDQ", "user", "u1"), ("STDQ", "user", "u2"), ("STDQ", "device", "S1"), ("PLUS", "device", "S1")},
        "none": set(),
        # split at the record separator, "a\x1eb" is the licenses a and b: two keys for two licenses
        "pieces": {("STDQ", "user", "a\x1eb"), ("STDQ", "user", "a")},
        # a target that reads as a group of its own (pricingParam, kind and target) after a group separator
        "fake-group": {("STDQ", "user", "x\x1dSTDQ\x1fuser\x1fy"), ("STDQ", "user", "x")},
    }
    for name, sep in SEPARATORS.items():
        held[f"pricing-{name}"] = {(f"P{sep}Q", "user", "t1"), ("STDQ", "user", "t2")}
        held[f"kind-{name}"] = {("STDQ", f"u{sep}", "t1"), ("STDQ", "user", "t2")}
        held[f"target-{name}"] = {("STDQ", "user", f"t{sep}1"), ("STDQ", "user", "t1"), ("STDQ", "user", "1")}
    L = table_of(VppLicense)
    with host.db.write_session() as session:
        rows = [{"account_id": acc, "adam_id": a, "pricing_param": p, "kind": k, "target": t} for a, licenses in held.items() for p, k, t in licenses]
        session.execute(insert(L), rows)
        session.commit()
    order = sorted(held)
    for chunk in (1, len(order)):  # an asset per statement, and every asset in one
        monkeypatch.setattr(read, "MIRROR_CHUNK", chunk)
        with host.db.reading() as conn:
            got = dict(read.mirrored_licenses(conn, acc, order, first=chunk))
        assert list(got) == order
        assert {a: m.licenses() for a, m in got.items() if m is not None} == held
        assert {a: m.per_pricing for a, m in got.items() if m is not None} == {a: dict(Counter(p for p, _, _ in h)) for a, h in held.items()}
        if chunk == 1:  # (with every asset in one statement, SQLite reads them all row by row: a value holds its file separator)
            assert got["plain"] is not None and got["plain"].joined and got["none"] is not None and got["none"].joined
