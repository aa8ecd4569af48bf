"""What the core's events carry (see :mod:`mdm_core.hookspecs`): plain JSON values, typed."""

from typing import TypedDict


class DevicePayload(TypedDict):
    """``device_enrolled``, ``device_removed``."""

    serial_number: str
    udid: str | None
    platform: str
    model: str | None
    owner: str | None


class UserPayload(TypedDict):
    """``user_added``, ``user_removed``: ``id`` is Apple's ``clientUserId``."""

    id: str
    email: str | None
    managed_apple_id: str | None
    name: str | None


class CommandQueuedPayload(TypedDict):
    """``command_queued``: an MDM command waits in a device's queue."""

    command_uuid: str
    device_serial: str
    request_type: str


#: Event name (the hook is ``mdm_<name>``) -> its payload type.
EVENT_PAYLOADS: dict[str, type] = {
    "device_enrolled": DevicePayload,
    "device_removed": DevicePayload,
    "user_added": UserPayload,
    "user_removed": UserPayload,
    "command_queued": CommandQueuedPayload,
}
