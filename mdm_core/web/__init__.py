"""The web console and REST API of the host (a built-in plugin, like the inventory).

``mdm run`` serves it beside the scheduler (``[web] listen``, ``--listen``, ``--no-web``).
Plugins add their API routes, console pages and navigation entries through the
``mdm_register_web`` hook (see ``mdm_core.web.registry``); their route code uses
``mdm_core.web.helpers`` and ``mdm_core.web.paging``. This module stays light: FastAPI is imported only when the
application is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdm_core import hookimpl

if TYPE_CHECKING:
    from mdm_core.db.migrate import MigrationSet
    from mdm_core.host import Host

PLUGIN_NAME = "web"


@hookimpl
def mdm_config_sections() -> dict[str, type]:
    """``[web]``."""
    from mdm_core.web.settings import WebSettings

    return {"web": WebSettings}


@hookimpl
def mdm_register_tables() -> list[type]:
    """Admins, API tokens and failed sign-ins."""
    from mdm_core.web.models import WEB_TABLES

    return list(WEB_TABLES)


@hookimpl
def mdm_register_migrations() -> MigrationSet:
    """The ``web`` migration history: ``mdm_core/web/migrations/``."""
    from mdm_core.db.migrate import MigrationSet

    return MigrationSet("web", Path(__file__).with_name("migrations"))


@hookimpl
def mdm_register_cli(subparsers: Any, host: Host) -> None:
    """``mdm admins ...`` and ``mdm api-tokens ...``."""
    from mdm_core.web import cli

    cli.register(subparsers)
