"""The plugin-manager factory: built-ins, then ``[plugins] enabled``, then entry points.

Nothing loads at import time. Names in ``[plugins] disabled`` or ``MDM_DISABLED_PLUGINS=a,b``
are blocked before anything loads (and listed as ``disabled``). ``check_pending()`` runs last,
so an implementation of a hook nobody declared (a misspelt name) stops the host with the
plugin's name and how to disable it. With ``tolerate_broken`` (the ``mdm`` command) a plugin
that cannot be loaded is left out and listed as ``broken`` instead, so that ``mdm --help``,
``mdm plugins`` and ``mdm hooks`` still work; every other command stops with its error.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import sys
import types
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pluggy

from mdm_core import ENTRY_POINT_GROUP, PROJECT_NAME, hookspecs
from mdm_core.collector import freeze_startup_objects
from mdm_core.config import Config
from mdm_core.errors import MdmError, PluginError, describe
from mdm_core.plugin_fit import FittingManager, UnfitHook, unmarked_or_misspelt

BUILTIN_PLUGINS: tuple[str, ...] = ("mdm_core.inventory.plugin", "mdm_core.web")

#: ``observer(hook_name, kwargs, implementations)`` for every hook call (see ``observe_hook_calls``).
HookObserver = Callable[[str, Mapping[str, Any], int], None]
_HOOK_OBSERVERS: list[HookObserver] = []


@dataclass(frozen=True)
class PluginRecord:
    """Where a plugin came from, and whether it is loaded."""

    name: str
    source: str  # "built-in", "conf", "entry point", "given", or "configuration" (a disabled name nothing provides)
    module: str
    version: str
    state: str = "enabled"  # "enabled", "disabled" (blocked by name) or "broken" (left out: see error)
    error: str | None = None


def disable_hint(name: str) -> str:
    """How to switch a plugin off."""
    return f'disable it with [plugins] disabled = ["{name}"] in the configuration or MDM_DISABLED_PLUGINS={name}'


def observe_hook_calls(observer: HookObserver) -> Callable[[], None]:
    """Tell ``observer`` about every hook call of the managers made from now on: the hook's name,
    its keyword arguments and how many implementations it had (also for hooks whose
    implementations are called one by one, like events). Returns the function that stops it.

    Used by :mod:`mdm_core.testing` to check that the suite exercises every hook; observers
    must be quick and must not raise.
    """
    _HOOK_OBSERVERS.append(observer)
    return lambda: _HOOK_OBSERVERS.remove(observer) if observer in _HOOK_OBSERVERS else None


def _monitor(pm: pluggy.PluginManager) -> None:
    def before(hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
        for observer in list(_HOOK_OBSERVERS):
            observer(hook_name, kwargs, len(impls))

    pm.add_hookcall_monitoring(before, lambda outcome, hook_name, impls, kwargs: None)


def get_plugin_manager() -> pluggy.PluginManager:
    """A fresh manager with the core hookspecs and the historic ``mdm_add_hookspecs`` call armed."""
    pm = FittingManager(PROJECT_NAME)
    if _HOOK_OBSERVERS:
        _monitor(pm)
    pm.add_hookspecs(hookspecs)
    pm.hook.mdm_add_hookspecs.call_historic(kwargs={"pluginmanager": pm})
    return pm


def blocked_names(config: Config, environ: Mapping[str, str]) -> set[str]:
    """Plugin names blocked by the configuration or ``MDM_DISABLED_PLUGINS``."""
    names = set(config.plugins.disabled)
    names |= {n.strip() for n in environ.get("MDM_DISABLED_PLUGINS", "").split(",") if n.strip()}
    return names


def load_plugins(
    pm: pluggy.PluginManager,
    config: Config,
    environ: Mapping[str, str],
    *,
    given: Iterable[Any] | None = None,
    autoload: bool | None = None,
    tolerate_broken: bool = False,
) -> list[PluginRecord]:
    """Register plugins in order and check every implementation has a spec; returns a record
    of each plugin, the disabled and broken ones included.

    ``given`` (tests, embedding) replaces the entry-point discovery with these modules or objects.
    """
    records: list[PluginRecord] = []
    blocked = blocked_names(config, environ)
    for name in blocked:
        pm.set_blocked(name)

    def attempt(name: str, source: str, module: str, load: Any) -> None:
        try:
            load()
        except PluginError as exc:
            if not tolerate_broken:
                raise
            records.append(PluginRecord(name, source, module, "unknown", "broken", str(exc)))

    for dotted in BUILTIN_PLUGINS:
        module = _import(dotted, "built-in")
        name = getattr(module, "PLUGIN_NAME", dotted.rsplit(".", 1)[-1])
        if pm.is_blocked(name):
            records.append(PluginRecord(name, "built-in", dotted, core_version(), "disabled"))
            continue
        _register(pm, records, module, name, "built-in", core_version())
    by_module = _entry_points_by_module() if config.plugins.enabled else {}
    for dotted in config.plugins.enabled:
        ep = by_module.get(dotted)
        # a module also registered as an entry point takes the entry point's name, so that
        # `disabled = ["vpp"]` blocks it and it is registered once
        name = ep.name if ep is not None else dotted
        if pm.is_blocked(name) or pm.is_blocked(dotted):
            records.append(PluginRecord(name, "conf", dotted, _dist_version(ep) if ep is not None else "unknown", "disabled"))
            continue  # blocked before anything is imported
        if pm.has_plugin(name):
            continue

        def load_conf(dotted: str = dotted, ep: Any = ep, name: str = name) -> None:
            module = _import(dotted, f"enabled in {config.source}", name, listed_in=str(config.source), folder=config.base_dir)
            version = _dist_version(ep) if ep is not None else str(getattr(module, "__version__", "unknown"))
            _register(pm, records, module, getattr(module, "PLUGIN_NAME", None) or name, "conf", version)

        attempt(name, "conf", dotted, load_conf)
    if given is not None:
        for plugin in given:
            name = getattr(plugin, "PLUGIN_NAME", None) or getattr(plugin, "__name__", None) or type(plugin).__name__
            _register(pm, records, plugin, name, "given", str(getattr(plugin, "__version__", core_version())))
    else:
        if autoload is None:
            autoload = config.plugins.autoload and environ.get("MDM_PLUGIN_AUTOLOAD", "1") != "0"
        if autoload:
            for ep in sorted(_group_entry_points(), key=lambda e: e.name):
                if pm.is_blocked(ep.name):
                    if not any(r.name == ep.name for r in records):
                        records.append(PluginRecord(ep.name, "entry point", ep.value.split(":", 1)[0], _dist_version(ep), "disabled"))
                    continue
                if pm.has_plugin(ep.name):
                    continue

                def load_ep(ep: Any = ep) -> None:
                    try:
                        module = ep.load()
                    except Exception as exc:
                        raise PluginError(_unloadable(ep, exc)) from None
                    if not pm.is_registered(module):  # else: also enabled by module path in the configuration
                        _register(pm, records, module, ep.name, "entry point", _dist_version(ep))

                attempt(ep.name, "entry point", ep.value.split(":", 1)[0], load_ep)
    for name in sorted(blocked - {r.name for r in records}):
        records.append(PluginRecord(name, "configuration", "-", "-", "disabled", "no plugin of this name is installed"))
    _check_pending(pm, records, tolerate_broken)
    _check_fit(pm, records, tolerate_broken)
    freeze_startup_objects()
    return records


def _check_fit(pm: pluggy.PluginManager, records: list[PluginRecord], tolerate_broken: bool) -> None:
    """Every hook implementation is called as its author meant (:mod:`mdm_core.plugin_fit`):
    a plugin left out by another's hookspecs, or with a hook that would never be called, is an
    error (or, when tolerated, unregistered and recorded as broken)."""
    unfit = list(getattr(pm, "unfit", []))
    for plugin in list(pm.get_plugins()):
        why = unmarked_or_misspelt(pm, plugin)
        if why is not None:
            unfit.append((plugin, pm.get_name(plugin) or "", why))
    for plugin, name, why in unfit:
        _leave_out(pm, records, plugin, name, f"plugin '{name}' is broken: {why}, or {disable_hint(name)}", tolerate_broken)


def _leave_out(pm: pluggy.PluginManager, records: list[PluginRecord], plugin: Any, name: str, error: str, tolerate_broken: bool) -> None:
    """Raise ``error``, or (tolerated) unregister the plugin and record it as broken."""
    if not tolerate_broken:
        raise PluginError(error) from None
    if pm.is_registered(plugin):
        pm.unregister(plugin)
    for i, record in enumerate(records):
        if record.name == name:
            records[i] = PluginRecord(record.name, record.source, record.module, record.version, "broken", error)


def _check_pending(pm: pluggy.PluginManager, records: list[PluginRecord], tolerate_broken: bool) -> None:
    """Every implementation has a spec; a plugin with a misspelt hook is an error (or, when
    tolerated, unregistered and recorded as broken)."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or str(getattr(exc.plugin, "__name__", repr(exc.plugin)))
            message = str(exc).replace(repr(exc.plugin), f"'{name}'")
            error = f"plugin '{name}' is broken: {' '.join(message.split())} (a misspelt hook name?): fix it, or {disable_hint(name)}"
            _leave_out(pm, records, exc.plugin, name, error, tolerate_broken)


def _entry_points_by_module() -> dict[str, Any]:
    """Entry points of our group keyed by the module they load (``pkg.mod`` of ``pkg.mod:attr``)."""
    try:
        eps = _group_entry_points()
    except Exception:  # broken metadata must not hide the configuration's own plugins
        return {}
    return {ep.value.split(":", 1)[0].strip(): ep for ep in eps}


_FIND_ENTRY_POINTS = importlib.metadata.entry_points
_FOUND: dict[tuple[str, ...], tuple[Any, ...]] = {}


def _group_entry_points() -> tuple[Any, ...]:
    """The installed entry points of the ``mdm.plugins`` group. Finding them reads the metadata
    of every installed distribution (milliseconds, at each host made in a process: in-process
    commands, tests): they are found once per ``sys.path``. A replaced
    ``importlib.metadata.entry_points`` (tests) is asked each time."""
    find = importlib.metadata.entry_points
    if find is not _FIND_ENTRY_POINTS:
        return tuple(find(group=ENTRY_POINT_GROUP))
    key = tuple(sys.path)
    if key not in _FOUND:
        _FOUND[key] = tuple(find(group=ENTRY_POINT_GROUP))
    return _FOUND[key]


def _dist_version(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown"
    where = getattr(dist, "_path", None)  # parsing a distribution's metadata is slow: once per metadata folder
    if where is None:
        return str(dist.version)
    key = str(where)
    if key not in _VERSIONS:
        _VERSIONS[key] = str(dist.version)
    return _VERSIONS[key]


_VERSIONS: dict[str, str] = {}

_Built = TypeVar("_Built")


class PerPluginSet(Generic[_Built]):
    """What ``build(host)`` makes from every plugin's hooks, built once per process for the same
    plugins (the ``mdm`` parser, the web console's routes): a process that makes many hosts (the
    tests, the demo) pays for it once per set of plugins. What is built must not depend on the
    host's configuration, only on its plugins."""

    def __init__(self, build: Callable[[Any], _Built], kept: int = 8):
        self._build = build
        self._kept = kept
        self._built: dict[tuple[tuple[str, int], ...], tuple[list[object], _Built]] = {}

    def __call__(self, host: Any) -> _Built:
        plugins = sorted(host.pm.list_name_plugin(), key=lambda item: item[0])
        key = tuple((name, id(plugin)) for name, plugin in plugins)
        found = self._built.get(key)
        if found is not None:
            return found[1]
        built = self._build(host)
        if len(self._built) >= self._kept:
            self._built.pop(next(iter(self._built)))
        # the plugin objects are kept with what they built, so no other object can reuse their ids
        self._built[key] = ([plugin for _, plugin in plugins], built)
        return built


def call_hook(pm: pluggy.PluginManager, hook_name: str, *, historic: bool = False, **kwargs: Any) -> Any:
    """Call a fail-fast hook; an unexpected exception becomes a one-line ``PluginError`` naming the plugin.

    ``MdmError`` raised by a plugin (a ``ConfigError``, say) is already a message for the user
    and passes through unchanged.
    """
    caller = getattr(pm.hook, hook_name)
    try:
        if historic:
            caller.call_historic(kwargs=kwargs)
            return None
        return caller(**kwargs)
    except MdmError:
        raise
    except Exception as exc:
        name = blame(pm, caller, exc)
        who = f"plugin '{name}'" if name else "a plugin"
        raise PluginError(f"{who} failed in {hook_name}: {describe(exc)}") from exc


def blame(pm: pluggy.PluginManager, caller: Any, exc: BaseException) -> str | None:
    """The name of the plugin whose implementation of ``caller`` raised ``exc`` (from its traceback)."""
    codes = {}
    for impl in caller.get_hookimpls():
        code = getattr(getattr(impl.function, "__wrapped__", impl.function), "__code__", None)
        if code is not None:
            codes[code] = impl
    tb = exc.__traceback__
    found = None
    while tb is not None:  # the innermost implementation frame wins
        impl = codes.get(tb.tb_frame.f_code)
        if impl is not None:
            found = impl
        tb = tb.tb_next
    if found is None:
        return None
    return pm.get_name(found.plugin) or found.plugin_name


def _missing_module(dotted: str, exc: BaseException) -> str | None:
    """The module (``dotted`` or a package on its path) whose absence ``exc`` reports, or
    ``None`` when it is another one (a module the plugin itself imports)."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    return missing if missing and (dotted == missing or dotted.startswith(missing + ".")) else None


def _unloadable(ep: Any, exc: BaseException) -> str:
    """Why an entry point cannot be loaded: a module its package lacks is the entry point to
    correct (a typo in ``pyproject.toml``), anything else the error itself."""
    missing = _missing_module(ep.value.split(":", 1)[0].strip(), exc)
    if missing is None:
        return f"plugin '{ep.name}' (entry point {ep.value}) cannot be loaded: {describe(exc)}: {disable_hint(ep.name)}"
    dist = getattr(getattr(ep, "dist", None), "name", None)
    return (
        f"plugin '{ep.name}' (entry point {ep.value}{f' of package {dist}' if dist else ''}) cannot be loaded: there is no module {missing}: "
        f'correct the entry point {ep.name} under [project.entry-points."mdm.plugins"] in its pyproject.toml (a typo?) and install '
        f"the package again, or {disable_hint(ep.name)}"
    )


def _import(dotted: str, why: str, name: str | None = None, listed_in: str | None = None, folder: Path | None = None) -> types.ModuleType:
    """Import a plugin's module; ``listed_in``: the configuration whose ``[plugins] enabled``
    names it (a module of that name not installed is then a name to correct there, or, when the
    project ``folder`` holds it, a module Python does not see)."""
    try:
        return importlib.import_module(dotted)
    except Exception as exc:
        missing = _missing_module(dotted, exc)
        local = [p for p in (folder / f"{dotted.replace('.', '/')}.py", folder / dotted.replace(".", "/")) if p.exists()] if folder and missing else []
        if listed_in is not None and local:
            raise PluginError(
                f"plugin '{dotted}' ({why}) cannot be imported: {local[0]} is in the project folder, but Python does not import "
                f"from that folder: install it as a package (pip install -e), or run mdm with PYTHONPATH={folder}"
            ) from None
        if listed_in is not None and missing:  # the name, not a module it imports
            raise PluginError(
                f"plugin '{dotted}' ({why}) cannot be imported: there is no module {missing}: correct the module path in "
                f"[plugins] enabled in {listed_in} (a typo?), or remove it from that list"
            ) from None
        raise PluginError(f"plugin '{dotted}' ({why}) cannot be imported: {describe(exc)}: {disable_hint(name or dotted)}") from None


def _register(pm: pluggy.PluginManager, records: list[PluginRecord], plugin: Any, name: str, source: str, version: str) -> None:
    if pm.is_blocked(name):  # by its PLUGIN_NAME (a module enabled by path): listed disabled, not "no plugin of this name"
        records.append(PluginRecord(name, source, getattr(plugin, "__name__", type(plugin).__name__), version, "disabled"))
        return
    if pm.is_registered(plugin):
        return
    try:
        pm.register(plugin, name=name)
    except UnfitHook as exc:
        raise PluginError(f"plugin '{name}' is broken: {exc}, or {disable_hint(name)}") from None
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin '{name}' cannot be registered: {describe(exc)}: {disable_hint(name)}") from None
    except Exception as exc:
        if isinstance(exc, ValueError) and _raised_by_pluggy(exc):
            # pluggy's own refusal: the name or the object is already registered
            raise PluginError(f"plugin '{name}' cannot be registered: {describe(exc)}: {disable_hint(name)}") from None
        # the plugin's mdm_add_hookspecs raised
        raise PluginError(f"plugin '{name}' failed while registering: {describe(exc)}: {disable_hint(name)}") from None
    module = getattr(plugin, "__name__", type(plugin).__name__)
    records.append(PluginRecord(name=name, source=source, module=module, version=version))


def _raised_by_pluggy(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("pluggy")


@functools.cache
def core_version() -> str:
    """The installed mdm-host's version (read once per process)."""
    try:
        return importlib.metadata.version("mdm-host")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def hooks_of(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """Names of the hooks a plugin implements."""
    return sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))


def hooks_observed() -> bool:
    """Whether hook calls are observed (:func:`observe_hook_calls`)."""
    return bool(_HOOK_OBSERVERS)


def hook_impls(caller: Any) -> list[Any]:
    """A hook's implementations in the order pluggy calls them (the last registered first)."""
    return list(reversed(caller.get_hookimpls()))


def call_isolated(
    pm: pluggy.PluginManager,
    caller: Any,
    kwargs: dict[str, Any],
    on_error: Callable[[str, BaseException], None],
    impls: list[Any] | None = None,
) -> list[tuple[str, str]]:
    """Call each implementation of a hook on its own; an exception is reported, not raised.
    ``impls``: the caller's implementations as :func:`hook_impls` lists them, when the caller
    has them already (an event delivery: once per batch, not once per event)."""
    failures = []
    if impls is None:
        impls = hook_impls(caller)
    for observer in list(_HOOK_OBSERVERS):
        observer(caller.name, kwargs, len(impls))
    for impl in impls:
        try:
            impl.function(**(kwargs if len(impl.argnames) == len(kwargs) else {name: kwargs[name] for name in impl.argnames}))
        except Exception as exc:
            plugin = pm.get_name(impl.plugin) or impl.plugin_name
            on_error(plugin, exc)
            failures.append((plugin, describe(exc)))
    return failures


def call_per_plugin(pm: pluggy.PluginManager, hook_name: str, *, isolate: bool = False, skip: Collection[str] = (), **kwargs: Any) -> dict[str, Any]:
    """Call each implementation of a fail-fast hook on its own: ``{plugin name: result}``.

    An unexpected exception becomes a one-line ``PluginError`` naming the plugin; an
    ``MdmError`` passes unchanged. With ``isolate``, nothing raises: a failing plugin's
    result is its ``PluginError`` (or ``MdmError``), and the others still run. The plugins
    named in ``skip`` are not called (and have no result).
    """
    caller = getattr(pm.hook, hook_name)
    impls = [impl for impl in reversed(caller.get_hookimpls()) if (pm.get_name(impl.plugin) or impl.plugin_name) not in skip]
    for observer in list(_HOOK_OBSERVERS):
        observer(hook_name, kwargs, len(impls))
    found: dict[str, Any] = {}
    for impl in impls:
        name = pm.get_name(impl.plugin) or impl.plugin_name
        try:
            found[name] = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except MdmError as exc:
            if not isolate:
                raise
            found[name] = exc
        except Exception as exc:
            error = PluginError(f"plugin '{name}' failed in {hook_name}: {describe(exc)}")
            if not isolate:
                raise error from exc
            found[name] = error
    return found
