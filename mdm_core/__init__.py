"""mdm_core: a small pluggable MDM host.

Plugins import what they need from here and nothing else of the core:

- ``hookimpl`` / ``hookspec``: the pluggy markers of the ``mdm`` project.
- ``Event``: the plain-value event that plugins record and receive.
- ``MdmError`` / ``UsageError``: failures the command line shows as one line.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "mdm"
ENTRY_POINT_GROUP = "mdm.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

from mdm_core.errors import ConfigError, MdmError, PluginError, TemporaryError, UsageError  # noqa: E402
from mdm_core.events import Event  # noqa: E402

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "ConfigError",
    "Event",
    "MdmError",
    "PluginError",
    "TemporaryError",
    "UsageError",
    "hookimpl",
    "hookspec",
]
