"""The MDM command queue: commands queued for devices, and their status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import Session, col

from mdm_core.db.stream import stream_rows
from mdm_core.db.typed import values_of
from mdm_core.errors import MdmError, NotFound, UsageError
from mdm_core.models import Command, Device, utcnow
from mdm_core.payloads import CommandQueuedPayload

if TYPE_CHECKING:
    from mdm_core.host import Host


def queue_command(host: Host, session: Session, device_serial: str, request_type: str, payload: dict[str, Any]) -> Command:
    """Queue an MDM command for a device in the caller's transaction."""
    command = Command(device_serial=device_serial, request_type=request_type, payload={"RequestType": request_type, **payload})
    session.add(command)
    queued: CommandQueuedPayload = {"command_uuid": command.uuid, "device_serial": device_serial, "request_type": request_type}
    host.events.record(session, "command_queued", queued)
    return command


def iter_commands(host: Host, device: str | None = None, *, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Queued and past commands, oldest first, optionally for one device; streamed (constant memory).

    A device neither enrolled nor with a command is :class:`NotFound` (checked now, before any row
    is read), not an empty list."""
    query = select(Command).order_by(col(Command.created_at), col(Command.uuid))
    if device is not None:
        serial = device.strip().upper()
        if not serial:
            raise UsageError("--device is empty: give a device's serial number (`mdm devices list` lists the enrolled ones)")
        with host.db.session() as session:
            queued = select(col(Command.uuid)).where(col(Command.device_serial) == serial).limit(1)
            known = session.get(Device, serial) is not None or session.execute(queued).first() is not None
        if not known:
            raise NotFound(f"device {device.strip()[:50]} is neither enrolled nor has commands (`mdm devices list` lists the enrolled ones)")
        query = query.where(col(Command.device_serial) == serial)
    return (values_of(row[0]) for row in stream_rows(host.db, query, offset=offset, limit=limit))


def list_commands(host: Host, device: str | None = None) -> list[dict[str, Any]]:
    """Queued and past commands, oldest first, optionally for one device."""
    return list(iter_commands(host, device))


def set_command_status(host: Host, command_uuid: str, status: str, error: str | None = None) -> None:
    """Move a command along queued → sent → acknowledged / error."""

    def work(session: Session) -> None:
        command = session.get(Command, command_uuid)
        if command is None:
            raise MdmError(f"command {command_uuid} does not exist")
        command.status, command.error, command.updated_at = status, error, utcnow()
        session.add(command)

    host.db.run_write(work)
