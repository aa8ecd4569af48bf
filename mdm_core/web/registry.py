"""What plugins give the console through ``mdm_register_web``: routers, pages, navigation.

A plugin never mounts anything itself: it hands its FastAPI ``APIRouter``s to the registry,
and the host mounts them behind the one access check every route goes through
(``mdm_core.web.app``). Only ``add_public`` routes skip it, for endpoints that carry their
own authentication (Apple's notification endpoint with its bearer secret, for example).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .wording import Rewording

if TYPE_CHECKING:
    from fastapi import APIRouter


@dataclass(frozen=True)
class NavEntry:
    """A link in the console's navigation bar."""

    label: str
    path: str
    order: int = 100
    plugin: str = ""


@dataclass
class WebRegistry:
    """Collects every plugin's contribution to the web application."""

    api: list[tuple[APIRouter, str]] = field(default_factory=list)
    pages: list[tuple[APIRouter, str]] = field(default_factory=list)
    public: list[tuple[APIRouter, str]] = field(default_factory=list)
    nav: list[NavEntry] = field(default_factory=list)
    template_dirs: list[Path] = field(default_factory=list)
    wording: list[Rewording] = field(default_factory=list)

    def add_api(self, router: APIRouter, *, plugin: str) -> None:
        """REST routes, mounted under ``/api/v1``: a bearer token or a console session is
        required, and methods other than GET/HEAD need the ``admin`` role (403 otherwise)."""
        self.api.append((router, plugin))

    def add_pages(self, router: APIRouter, *, plugin: str, templates: str | Path | None = None) -> None:
        """Console pages at the root: anonymous requests are sent to sign in; forms must carry
        the CSRF token (``{{ csrf_field(request) }}``); POSTs need the ``admin`` role. ``templates``:
        the plugin's template folder (its templates extend ``base.html``)."""
        self.pages.append((router, plugin))
        if templates is not None:
            self.template_dirs.append(Path(templates))

    def add_public(self, router: APIRouter, *, plugin: str) -> None:
        """Routes that carry their own authentication (each must check it itself, and is
        listed in the anonymous-access test's exceptions)."""
        self.public.append((router, plugin))

    def add_nav(self, label: str, path: str, *, order: int = 100, plugin: str = "") -> None:
        """A navigation entry (lower ``order`` first)."""
        self.nav.append(NavEntry(label, path, order, plugin))

    def add_wording(self, cli: str, console: str, api: str | None = None) -> None:
        """Say a piece of the command line's advice in an error (``cli``, a regular expression)
        as ``console`` on the console's pages and ``api`` (default: ``console``) in the API's
        error bodies (``mdm_core.web.wording``)."""
        self.wording.append(Rewording(re.compile(cli), console, console if api is None else api))

    def add_wordings(self, rules: Iterable[tuple[str, str, str]]) -> None:
        """:meth:`add_wording` for each (cli, console, api) of a plugin's list."""
        for cli, console, api in rules:
            self.add_wording(cli, console, api)

    def sorted_nav(self) -> list[NavEntry]:
        """Navigation entries in display order."""
        return sorted(self.nav, key=lambda e: (e.order, e.label))

    def public_paths(self) -> set[str]:
        """Paths of the public routes (for checks and tests)."""
        return {getattr(route, "path", "") for router, _ in self.public for route in router.routes}

    def describe(self) -> dict[str, Any]:
        """Which plugin added what (for ``mdm plugins`` and tests)."""
        return {
            "api": [(p, [getattr(r, "path", "") for r in router.routes]) for router, p in self.api],
            "pages": [(p, [getattr(r, "path", "") for r in router.routes]) for router, p in self.pages],
            "public": [(p, [getattr(r, "path", "") for r in router.routes]) for router, p in self.public],
        }
