"""A bulk reclaim retried (Apple down, a job stopped) settles its licenses the mirror shows
released without reading the mirror once per license: the job read every pending reclaim's
licenses one by one, in its turn, and thousands of them made thousands of reads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from mdm_core.errors import TemporaryError
from plugins.mobile_apps import reclaims
from plugins.mobile_apps.jobs import reclaim_job
from plugins.mobile_apps.models import Reclaim
from plugins.mobile_apps.reclaims import ALREADY_MIRRORED, list_reclaims
from plugins.mobile_apps.vpp_port import VppPort

from .conftest import read_sizes

DOWN = "Apple is down for maintenance"


def _retried(host: Any, held: list[dict[str, Any]], tag: str, n: int) -> dict[int, tuple[str, str | None]]:
    """``n`` pending reclaims an earlier attempt asked Apple for: of the ``held`` licenses (the
    mirror still holds them), and released ones of the same assets (targets it shows no license
    of, or of another pricingParam), with a removed device's revoke whose license is released.
    Returns the status and error each should be left with (the still held are asked again,
    and Apple is down)."""
    rows: list[tuple[Reclaim, tuple[str, str | None]]] = []
    for lic in held:
        kind, target = ("device", lic["serialNumber"]) if "serialNumber" in lic else ("user", lic["clientUserId"])
        row = Reclaim(account="school", adam_id=lic["adamId"], pricing_param=lic["pricingParam"], kind=kind, target=target, reason="manual")
        rows.append((row, ("pending", DOWN)))
    done = ("done", ALREADY_MIRRORED)
    for i in range(n - len(held) - 1):
        lic = held[i % len(held)]
        kind = ("device", "user")[i % 2]
        if i % 3 == 0:  # its target holds a license of the asset, of another pricingParam
            kind, target = ("device", lic["serialNumber"]) if "serialNumber" in lic else ("user", lic["clientUserId"])
            row = Reclaim(account="school", adam_id=lic["adamId"], pricing_param="OTHR", kind=kind, target=target, reason="manual")
        else:
            row = Reclaim(account="school", adam_id=lic["adamId"], pricing_param=lic["pricingParam"], kind=kind, target=f"GONE-{tag}-{i}", reason="manual")
        rows.append((row, done))
    serial = f"GONE-{tag}-REMOVED"
    rider = Reclaim(account="school", adam_id=held[0]["adamId"], pricing_param=held[0]["pricingParam"], kind="device", target=serial, reason="device_removed")
    rows.append((rider, done))
    rows.append((Reclaim(account="school", adam_id="*", pricing_param="*", kind="device", target=serial, reason="device_removed"), done))
    for row, _ in rows:
        row.attempts, row.event_ids = 1, ["an-earlier-attempt"]

    def add(session: Any) -> None:
        session.add_all([row for row, _ in rows])
        session.flush()

    host.db.run_write(add)
    return {int(row.id or 0): expected for row, expected in rows}


def _settled(host: Any, expected: dict[int, tuple[str, str | None]]) -> None:
    shown = {r["id"]: (r["status"], r["last_error"]) for r in list_reclaims(host, everything=True) if r["id"] in expected}
    assert shown == expected


def test_a_retried_bulk_reclaim_reads_the_mirror_in_as_many_statements_for_20_or_50(on_both, monkeypatch):
    host, mdm = on_both
    by_asset: dict[str, list[Any]] = {}
    for lic in VppPort(host).licenses("school"):
        by_asset.setdefault(lic["adamId"], []).append(lic)
    a, b = sorted(by_asset.values(), key=len)[-2:]  # the two assets with the most licenses: both rounds ask for these
    assert len(a) + len(b) >= 17 and any("clientUserId" in lic for lic in a + b)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise TemporaryError(DOWN)

    monkeypatch.setattr(VppPort, "disassociate", down)
    monkeypatch.setattr(VppPort, "revoke", down)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    real = reclaims._known_released

    def counted(*args: Any) -> Any:  # the step that settles what the mirror shows released
        engines = {id(e): e for e in (host.db.engine, host.db.write_engine)}.values()
        for engine in engines:
            event.listen(engine, "before_cursor_execute", count)
        try:
            return real(*args)
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", count)

    monkeypatch.setattr(reclaims, "_known_released", counted)
    few = _retried(host, [a[0], b[0]], "few", 20)  # about ten of each asset
    reclaim_job(host)
    _settled(host, few)
    for_few = len(statements)
    statements.clear()
    many = _retried(host, [*a[1:], *b[1:]][:15], "many", 50)
    reclaim_job(host)
    _settled(host, many)
    assert len(statements) == for_few, (for_few, len(statements))
    code, out, _ = mdm("apps", "reclaims")
    assert code == 0 and "GONE-many" not in out and DOWN in out, out


def test_a_few_retried_reclaims_read_their_own_licenses_not_the_whole_asset(on_both, monkeypatch):
    """A handful of retried reclaims of an asset that may hold 100,000 licenses read their targets'
    licenses, not every license of the asset (a list the size of the asset, every turn of the job
    while Apple is down); they settle as the many do."""
    host, _ = on_both
    by_asset: dict[str, list[Any]] = {}
    for lic in VppPort(host).licenses("school"):
        by_asset.setdefault(lic["adamId"], []).append(lic)
    a = max(by_asset.values(), key=len)
    assert len(a) > 4

    def down(*args: Any, **kwargs: Any) -> Any:
        raise TemporaryError(DOWN)

    monkeypatch.setattr(VppPort, "disassociate", down)
    monkeypatch.setattr(VppPort, "revoke", down)
    few = _retried(host, [a[0]], "few", 4)
    returned = read_sizes(monkeypatch, "licenses")
    reclaim_job(host)
    _settled(host, few)
    assert returned and max(returned) < len(a), (returned, len(a))


def test_many_retried_reclaims_read_their_own_licenses_not_the_whole_asset(on_both, monkeypatch):
    """Past eight retried reclaims of one asset the job read every license of the asset (a list
    the size of the asset, 100,000 for a district's app, at every turn while Apple is down); now
    the targets' own licenses (``mdm_vpp_licenses`` of many serial numbers and clientUserIds, by
    chunks), and they settle as before."""
    host, _ = on_both
    port = VppPort(host)
    by_asset: dict[str, list[Any]] = {}
    for lic in port.licenses("school"):
        by_asset.setdefault(lic["adamId"], []).append(lic)
    a = max(by_asset.values(), key=len)
    assert len(a) > 4
    devices = [lic["serialNumber"] for lic in a if "serialNumber" in lic][:2]
    users = [lic["clientUserId"] for lic in a if "clientUserId" in lic][:2]
    mine = port.licenses("school", a[0]["adamId"], serial_numbers=[s.lower() for s in devices] + ["NOT-A-HOLDER"], client_user_ids=users)
    assert mine == [lic for lic in a if lic.get("serialNumber") in devices or lic.get("clientUserId") in users]

    def down(*args: Any, **kwargs: Any) -> Any:
        raise TemporaryError(DOWN)

    monkeypatch.setattr(VppPort, "disassociate", down)
    monkeypatch.setattr(VppPort, "revoke", down)
    many = _retried(host, a[:2], "many", 12)  # past the eight whose licenses the job read one by one
    returned = read_sizes(monkeypatch, "licenses")
    reclaim_job(host)
    _settled(host, many)
    assert returned and max(returned) < len(a), (returned, len(a))
