"""Shared fixtures: every test builds its own host, database and configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

from mdm_core.host import Host, create_host


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A project folder with conf/ and var/ of its own."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "var").mkdir()
    return tmp_path


@pytest.fixture
def make_host(project_dir: Path) -> Iterator[Callable[..., Host]]:
    """Build a host on a real SQLite file under the test's own folder.

    ``make_host(plugins=[module, ...], config="toml text", environ={...})``; ``plugins=None``
    loads the installed entry points like ``mdm`` does.
    """
    hosts: list[Host] = []

    def make(plugins: Iterable[Any] | None = None, config: str = "", environ: dict[str, str] | None = None, database_url: str | None = None) -> Host:
        conf = project_dir / "conf" / "mdm.toml"
        conf.write_text(config)
        env = {"MDM_SECRET_KEY": "test-secret-key"}
        env.update(environ or {})
        host = create_host(conf, environ=env, plugins=plugins, database_url=database_url or f"sqlite:///{project_dir / 'var' / 'mdm.sqlite3'}")
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()
