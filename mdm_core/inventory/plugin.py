"""The inventory's hook implementations (a built-in plugin named ``inventory``): its tables and commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mdm_core import hookimpl
from mdm_core.models import CORE_TABLES

if TYPE_CHECKING:
    from mdm_core.host import Host

PLUGIN_NAME = "inventory"


@hookimpl
def mdm_register_tables() -> list[type]:
    """The core's own tables."""
    return list(CORE_TABLES)


@hookimpl
def mdm_register_cli(subparsers: Any, host: Host) -> None:
    """``mdm devices``, ``mdm users``, ``mdm commands``."""
    from mdm_core.inventory import cli

    cli.register(subparsers)
