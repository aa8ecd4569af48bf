"""This database's installation id and the ``mdmInfo`` it claims locations with.

Apple's ``mdmInfo`` holds ``id``, ``name`` and ``metadata`` (docs/apple-api.md, "Client config
and mdmInfo"). ``metadata`` names this machine and this database's installation id
(table ``vpp_installation``, vpp migration 0012): a location is this installation's own when
its metadata carries that id, so two installations on one machine (two databases) never take
each other's location silently.
"""

from __future__ import annotations

import socket
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session, col

from .models import VppInstallation

if TYPE_CHECKING:
    from mdm_core.host import Host

KEY = "installation"  # the row
MARK = " installation "  # between the host name and the id in the metadata


def installation_id(host: Host) -> str:
    """This database's installation id, made at the first claim and kept (two processes making
    it at once agree on the first one written)."""
    return host.db.read_or_add(_read_id, lambda: VppInstallation(key=KEY, installation_id=str(uuid.uuid4()))) or ""


def stored_installation_id(host: Host) -> str | None:
    """This database's installation id, None before its first claim (read only)."""
    with host.db.session() as session:
        return _read_id(session)


def _read_id(session: Session) -> str | None:
    return session.execute(select(col(VppInstallation.installation_id)).where(col(VppInstallation.key) == KEY)).scalar_one_or_none()


def metadata(here: str) -> str:
    """The ``mdmInfo`` metadata of the claims of installation ``here`` (:func:`installation_id`):
    the host name, then the id (at most 255 characters: the host name is cut, never the id)."""
    suffix = MARK + here
    return socket.getfqdn()[: 255 - len(suffix)] + suffix


def claimed_here(host: Host, mdm_info: Any) -> bool:
    """``mdmInfo`` this installation wrote: its metadata ends with this database's id. A check:
    it writes nothing (a database without an id has claimed nothing yet)."""
    here = stored_installation_id(host)
    return here is not None and claimed_by(mdm_info, here)


def claimed_by(mdm_info: Any, here: str) -> bool:
    """``mdmInfo`` that installation ``here`` (its id) wrote: its metadata ends with that id."""
    if not isinstance(mdm_info, dict) or not mdm_info.get("id"):
        return False
    value = mdm_info.get("metadata")
    return isinstance(value, str) and value.endswith(MARK + here)


def claimed_from_this_machine(mdm_info: Any) -> bool:
    """``mdmInfo`` naming this machine as an earlier release wrote it (the host name alone): this
    installation before its upgrade, or another installation on this machine."""
    return isinstance(mdm_info, dict) and mdm_info.get("metadata") == socket.getfqdn()[:255]
