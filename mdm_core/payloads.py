"""What the core's events carry (see :mod:`mdm_core.hookspecs`): plain JSON values, typed."""

from typing import TypedDict


class DevicePayload(TypedDict):
    """``device_enrolled``, ``device_removed``."""

    serial_number: str
    udid: str | None
    platform: str
    model: str | None
    owner: str | None
    enrollment_type: str  # "device", "automated" or "user" (User Enrollment)


class UserPayload(TypedDict):
    """``user_added``, ``user_removed``: ``id`` is Apple's ``clientUserId``."""

    id: str
    email: str | None
    managed_apple_id: str | None
    name: str | None


class PreviousUser(TypedDict):
    """The fields of an MDM user that Apple keeps too, before a change."""

    email: str | None
    managed_apple_id: str | None


class UserChangedPayload(UserPayload):
    """``user_changed``: the user's new values and, in ``previous``, its e-mail and Managed Apple
    ID before the change."""

    previous: PreviousUser


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
    "user_changed": UserChangedPayload,
    "user_removed": UserPayload,
    "command_queued": CommandQueuedPayload,
}
