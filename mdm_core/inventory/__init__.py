"""The MDM inventory (the built-in plugin ``inventory``): enrolled devices, MDM users and the
MDM command queue. Plugins use the functions re-exported here.

- ``devices``: enrol, remove, list, import devices.
- ``users``: add, remove, list, import MDM users.
- ``commands``: queue MDM commands and follow their status.
- ``presence``: which devices and users are in the inventory now.
- ``csvfile``: the CSV reader of the imports; ``upsert``: their one insert-or-update (and ``set``).
- ``plugin``: the hook implementations; ``cli``: ``mdm devices|users|commands``.
"""

from __future__ import annotations

from .commands import iter_commands, list_commands, queue_command, set_command_status
from .devices import (
    DEVICE_HEADER,
    ENROLLMENT_TYPES,
    PLATFORMS,
    DeviceRow,
    add_device,
    add_devices,
    devices_of,
    import_devices,
    iter_devices,
    list_devices,
    normalize_enrollment_type,
    normalize_platform,
    normalize_serial,
    remove_device,
    remove_device_with_event,
    set_device,
)
from .presence import in_inventory
from .upsert import Counts
from .users import USER_HEADER, UserRow, add_user, add_users, import_users, iter_users, list_users, remove_user, remove_user_with_event, set_user

__all__ = [
    "DEVICE_HEADER",
    "ENROLLMENT_TYPES",
    "PLATFORMS",
    "USER_HEADER",
    "DeviceRow",
    "UserRow",
    "add_device",
    "add_devices",
    "devices_of",
    "add_user",
    "add_users",
    "import_devices",
    "import_users",
    "in_inventory",
    "iter_commands",
    "iter_devices",
    "iter_users",
    "list_commands",
    "list_devices",
    "list_users",
    "normalize_enrollment_type",
    "normalize_platform",
    "normalize_serial",
    "queue_command",
    "remove_device",
    "remove_device_with_event",
    "remove_user",
    "remove_user_with_event",
    "set_command_status",
    "Counts",
    "set_device",
    "set_user",
]
