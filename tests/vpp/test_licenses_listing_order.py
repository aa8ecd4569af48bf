"""`mdm vpp licenses` read every license joined and sorted by account name before its first
row (4.9 s at 300,000 licenses on PostgreSQL, 8.9 s with --offset 250000). It now reads one
account at a time in its primary key's order: the same order as before, the first row at once,
an offset skipping whole accounts by their count."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from mdm_core.host import Host
from mdm_core.testing import MdmRunner
from plugins.vpp.testing import add_simulated_account

from .conftest import FAST_CONFIG, account_row

NAMES = ["school", "zeta", "alpha"]  # ids 1, 2, 3: id order is not name order


@pytest.fixture
def school(make_host: Callable[..., Host], project_dir: Path, database_url: str | None, simulator: Any) -> Host:
    """A host on SQLite or PostgreSQL with the account ``school`` (not synced: no license yet)."""
    import plugins.vpp.plugin

    host = make_host(plugins=[plugins.vpp.plugin], config=FAST_CONFIG, database_url=database_url)
    add_simulated_account(host, simulator, project_dir)
    return host


@pytest.fixture
def cli(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str | None) -> MdmRunner:
    environ = {"MDM_DISABLED_PLUGINS": "mobile_apps,alerts", **({"MDM_DATABASE_URL": database_url} if database_url else {})}
    return MdmRunner(project_dir, monkeypatch, capsys, config=FAST_CONFIG, environ=environ)


def _seed(host: Host) -> list[tuple[str, str, str, str, str]]:
    """Three accounts with device and user licenses; the expected order of the listing."""
    from plugins.vpp.models import VppAccount, VppLicense

    row = account_row(host)
    fields = {k: getattr(row, k) for k in ("service_url", "token_ciphertext", "token_fingerprint", "token_expires_at")}

    def add(session: Any) -> None:
        for name in NAMES[1:]:
            session.add(VppAccount(name=name, uid=f"{name}-uid", mdm_info_id=name, **fields))

    host.db.run_write(add)
    ids = {name: account_row(host, name).id for name in NAMES}
    keys = [(name, adam, "STDQ", kind, f"{kind[0].upper()}{i:03d}") for name in NAMES for adam in ("20", "10") for kind in ("user", "device") for i in (2, 1)]
    host.db.run_write(lambda s: s.add_all(VppLicense(account_id=ids[n], adam_id=a, pricing_param=p, kind=k, target=t) for n, a, p, k, t in keys))
    return sorted(keys)


def _listed(cli: Any, *args: str) -> list[tuple[str, str, str, str, str]]:
    code, out, err = cli("vpp", "licenses", "--json", *args)
    assert code == 0, err
    rows = json.loads(out)
    holder = [("device", r["serialNumber"]) if "serialNumber" in r else ("user", r["clientUserId"]) for r in rows]
    return [(r["account"], r["adamId"], r["pricingParam"], *h) for r, h in zip(rows, holder, strict=True)]


def test_licenses_list_in_account_name_order_with_offsets_across_accounts(school: Host, cli: Any) -> None:
    expected = _seed(school)
    assert _listed(cli) == expected
    for offset, limit in [(0, 3), (5, 10), (8, 8), (7, 100), (24, 5), (30, 5), (16, 1)]:
        assert _listed(cli, "--offset", str(offset), "--limit", str(limit)) == expected[offset : offset + limit], (offset, limit)
    assert _listed(cli, "--account", "zeta", "--offset", "2", "--limit", "3") == [k for k in expected if k[0] == "zeta"][2:5]
    assert _listed(cli, "--user", "U001", "--offset", "3") == [k for k in expected if k[4] == "U001"][3:]


def test_no_statement_sorts_the_licenses_of_every_account_by_account_name(school: Host, cli: Any) -> None:
    """The sort by account name over all joined licenses made the first row wait for all of them."""
    _seed(school)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    from plugins.vpp.views import iter_licenses

    event.listen(school.db.engine, "before_cursor_execute", seen)
    try:
        rows = list(iter_licenses(school, offset=10, limit=4))
    finally:
        event.remove(school.db.engine, "before_cursor_execute", seen)
    assert len(rows) == 4
    reads = [s for s in statements if "FROM vpp_license" in s and "count(" not in s]
    assert reads and all("ORDER BY vpp_account.name" not in s and "WHERE vpp_license.account_id =" in s for s in reads), reads
    if school.db.engine.dialect.name == "postgresql":
        with school.db.engine.connect() as conn:
            for s in reads:
                plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + s, _params(s)))
                assert "Sort" not in plan, plan


def _params(statement: str) -> dict[str, Any]:
    """Placeholder values for EXPLAIN of a captured statement (its plan's shape, not its rows)."""
    import re

    return {name: 1 for name in re.findall(r"%\((\w+)\)s", statement)}


def test_a_listing_of_every_account_is_one_snapshot(school: Host, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each account was read in a transaction of its own: a sync of zeta committing after
    alpha's first row was printed showed up in the same listing, which then mixed two moments.
    The whole listing is now one snapshot; the next listing shows the commit."""
    import plugins.vpp.views
    from plugins.vpp.models import VppLicense

    expected = _seed(school)
    zeta = account_row(school, "zeta").id
    row = plugins.vpp.views.license_row
    committed: list[bool] = []

    def commit_after_first_row(*args: Any, **kwargs: Any) -> Any:
        if not committed:  # another process's sync of zeta commits while alpha is being printed
            school.db.run_write(lambda s: s.add(VppLicense(account_id=zeta, adam_id="10", pricing_param="STDQ", kind="device", target="D999")))
            committed.append(True)
        return row(*args, **kwargs)

    monkeypatch.setattr(plugins.vpp.views, "license_row", commit_after_first_row)
    assert _listed(cli) == expected
    assert committed
    monkeypatch.setattr(plugins.vpp.views, "license_row", row)
    assert _listed(cli) == sorted([*expected, ("zeta", "10", "STDQ", "device", "D999")])
