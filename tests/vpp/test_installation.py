"""This database's installation id (``vpp_installation``): made at the first claim only, read once
by an add."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlmodel import col

from mdm_core.host import Host
from plugins.vpp import installation
from plugins.vpp.models import VppInstallation


def _stored(host: Host) -> list[str]:
    with host.db.session() as session:
        return list(session.execute(select(col(VppInstallation.installation_id))).scalars())


@contextmanager
def _reads_of_the_id(host: Host) -> Iterator[list[str]]:
    """The statements that read ``vpp_installation`` meanwhile."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "vpp_installation" in statement:
            seen.append(statement)

    event.listen(host.db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(host.db.engine, "before_cursor_execute", before)


@pytest.mark.parametrize("written", [None, "another installation", "no metadata"])
def test_checking_a_claim_writes_no_installation_id(host: Host, written: str | None) -> None:
    """`claimed_here` made the id on a database that had none (`mdm vpp account set NAME
    --service-url URL` checking that the location is still ours wrote one): a check writes nothing
    now; a database without an id has claimed nothing."""
    mdm_info: Any = {"id": "x", "name": "MDM", "metadata": "elsewhere installation 1234"} if written == "another installation" else {"id": "x"}
    if written is None:
        mdm_info = None
    assert installation.claimed_here(host, mdm_info) is False
    assert _stored(host) == []


def test_a_claim_is_ours_once_the_id_is_made(host: Host) -> None:
    here = installation.installation_id(host)
    assert _stored(host) == [here]
    assert installation.claimed_here(host, {"id": "x", "metadata": installation.metadata(here)})
    assert not installation.claimed_here(host, {"id": "x", "metadata": installation.metadata(here + "0")})


def test_adding_an_account_reads_the_installation_id_once(host: Host, simulator: Any, project_dir: Path) -> None:
    """The add read the id for its check (is the location's claim ours? here an earlier claim of
    this database, taken back) and again for its claim."""
    from plugins.vpp.testing import add_simulated_account

    here = installation.installation_id(host)
    simulator.claim_by_other_mdm(id="earlier-claim", name="MDM", metadata=installation.metadata(here))
    with _reads_of_the_id(host) as reads:
        add_simulated_account(host, simulator, project_dir)  # taken back without take_over: ours
    assert len(reads) == 1, reads
    assert simulator.state.mdm_info["id"] == "earlier-claim" and simulator.state.mdm_info["metadata"].endswith(here)
