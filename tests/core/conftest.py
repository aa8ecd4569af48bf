"""Fixtures of the core tests: plugin modules written on the fly, the `mdm` command in-process."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mdm_core.plugins
from mdm_core.testing import MdmRunner


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for the plugin modules a test writes."""
    folder = tmp_path / "pluginsrc"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("mdmtest_"):
            del sys.modules[name]


@pytest.fixture
def write_plugin(plugin_dir: Path) -> Callable[..., str]:
    """``write_plugin(source) -> module name``: an importable plugin module with a unique name."""

    def write(source: str = "", name: str | None = None) -> str:
        name = name or f"mdmtest_{uuid.uuid4().hex[:10]}"
        header = "from mdm_core import hookimpl, hookspec\n"
        (plugin_dir / f"{name}.py").write_text(header + textwrap.dedent(source))
        importlib.invalidate_caches()
        return name

    return write


@pytest.fixture
def load_plugin(write_plugin: Callable[..., str]) -> Callable[..., Any]:
    """``load_plugin(source) -> module``: write and import a plugin module."""

    def load(source: str = "", name: str | None = None) -> Any:
        return importlib.import_module(write_plugin(source, name))

    return load


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """``fake_entry_points({"name": "module.path"})`` replaces the ``mdm.plugins`` group."""

    def install(mapping: dict[str, str]) -> None:
        eps = [importlib.metadata.EntryPoint(name=n, value=v, group="mdm.plugins") for n, v in mapping.items()]
        real = importlib.metadata.entry_points

        def entry_points(**params: Any) -> Any:
            if params.get("group") != "mdm.plugins":  # Alembic's own plugins, say
                return real(**params)
            return list(eps)

        monkeypatch.setattr(mdm_core.plugins.importlib.metadata, "entry_points", entry_points)

    return install


@pytest.fixture
def mdm(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> MdmRunner:
    """``mdm("devices", "list", config="toml")`` -> (exit code, stdout, stderr), run in-process
    from the project folder, with the built-in plugins only (no entry points)."""
    return MdmRunner(project_dir, monkeypatch, capsys, config="", environ={"MDM_PLUGIN_AUTOLOAD": "0"}, unset=("MDM_DISABLED_PLUGINS",), chdir=True)
