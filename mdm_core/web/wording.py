"""The console's and the REST API's words for the advice of errors shared with the command line.

Errors raised below the web layer (Apple's client, the accounts, the plugins) tell the command
line's user what to type: "check --service-url", "(see `mdm plugins`)". An admin in the console
or calling the API has no flag to pass: :func:`reword` replaces each such piece of advice with
the page, button or field (``console``) or the API's parameter (``api``) that does the same. The
core and every plugin add their rewordings to the registry (``web.add_wording``) beside the
errors they raise; the command line's messages stay as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request

    from .registry import WebRegistry


@dataclass(frozen=True)
class Rewording:
    """A piece of the command line's advice (a regular expression) and what replaces it in the
    console and in the API (``\\1`` and the like refer to the expression's groups)."""

    cli: re.Pattern[str]
    console: str
    api: str


#: the core's own: the plugins listing and the secret key's status are the host operator's
CORE = [
    (r"\(see `mdm plugins`\)", "(it is disabled or failed to load on this host: the host's operator enables it in the configuration)"),
    (r" \(see `mdm secrets status`\)", ""),
]


def reword(text: str, rewordings: list[Rewording], surface: str) -> str:
    """``text`` with each command-line piece of advice in the words of ``surface`` (``console``
    or ``api``), in the order they were added."""
    for r in rewordings:
        text = r.cli.sub(r.console if surface == "console" else r.api, text)  # no match: the text as it was
    return text


def for_request(request: Request, text: str) -> str:
    """``text`` in the words of the surface ``request`` came through (the API under
    ``/api/``, else the console)."""
    registry: WebRegistry = request.app.state.registry
    surface = "api" if request.url.path.startswith("/api/") else "console"
    return reword(text, registry.wording, surface)


def with_error_reworded(request: Request, row: dict[str, Any], key: str = "error") -> dict[str, Any]:
    """A row the API answers (an install, a sync run, a subscriber's failure, a reclaim's
    ``last_error``) with its recorded error (``key``) in the words of ``request``'s surface (the
    rest as the command line's ``--json``)."""
    return {**row, key: for_request(request, row[key])} if row.get(key) else row
