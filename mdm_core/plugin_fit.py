"""Whether a plugin's functions fit the hooks they are meant to implement, said in one line
naming the plugin, the function and the fix.

pluggy checks an implementation against its hook when both are known. A plugin enabled by
module path is registered before the entry-point plugins whose hooks it implements with
``optionalhook=True`` (the VPP plugin's events): pluggy then checks it when the VPP plugin
declares them, and its error stopped the VPP plugin's registration, naming the VPP plugin (which
``mdm`` then left out, with the advice to disable it). :class:`FittingManager` checks such an
implementation itself and leaves out the plugin it belongs to. What pluggy accepts silently is
checked too: an argument with a default value (pluggy never passes it), a function named as a
hook but not marked ``@hookimpl`` (never called), and an ``optionalhook`` whose name is a
misspelling of a hook of a loaded plugin (never called either).
"""

from __future__ import annotations

import difflib
import inspect
import types
from typing import Any

import pluggy


class UnfitHook(pluggy.PluginValidationError):
    """A plugin's function does not fit its hook; the message says how, and the fix."""


def _argnames(function: Any) -> list[str]:
    return [p.name for p in inspect.signature(function).parameters.values() if p.name != "self"]


def _misfit(impl: Any, hook: str, spec_function: Any) -> str | None:
    """Why ``impl`` does not fit the hook declared by ``spec_function`` (None when it does)."""
    given = _argnames(spec_function)
    shown = f"{hook}({', '.join(_argnames(impl.function))})"
    defaulted = [p.name for p in inspect.signature(impl.function).parameters.values() if p.default is not inspect.Parameter.empty]
    if defaulted:
        return f"its {shown} gives {', '.join(defaulted)} a default value, so the hook never passes it: remove the default"
    unknown = [a for a in impl.argnames if a not in given]
    if unknown:
        return f"its {shown} takes {', '.join(unknown)}, which the hook does not give (it gives {', '.join(given)}): rename the argument"
    return None


class FittingManager(pluggy.PluginManager):
    """pluggy's manager, which checks implementations itself (see the module docstring):
    a plugin registered before a hook it implements was declared, that does not fit it, is
    unregistered and kept in :attr:`unfit` (plugin, why) instead of failing the declaring plugin."""

    def __init__(self, project_name: str):
        super().__init__(project_name)
        self.unfit: list[tuple[Any, str, str]] = []  # (plugin, its name, why)

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register ``plugin``; ``UnfitHook`` (nothing registered) when one of its implementations
        does not fit a hook declared already."""
        for attr in dir(plugin):
            opts = self.parse_hookimpl_opts(plugin, attr)
            spec = getattr(getattr(self.hook, attr, None), "spec", None)
            if opts is not None and spec is not None:
                why = _misfit(pluggy.HookImpl(plugin, name or "", getattr(plugin, attr), opts), attr, spec.function)
                if why is not None:
                    raise UnfitHook(plugin, why)
        return super().register(plugin, name)

    def add_hookspecs(self, module_or_class: Any) -> None:
        for attr in dir(module_or_class):
            caller = getattr(self.hook, attr, None)
            if self.parse_hookspec_opts(module_or_class, attr) is None or caller is None or caller.spec is not None:
                continue
            for impl in caller.get_hookimpls():
                why = _misfit(impl, attr, getattr(module_or_class, attr))
                if why is not None and self.is_registered(impl.plugin):
                    self.unfit.append((impl.plugin, self.get_name(impl.plugin) or impl.plugin_name, why))
                    self.unregister(impl.plugin)
        super().add_hookspecs(module_or_class)


def unmarked_or_misspelt(pm: pluggy.PluginManager, plugin: Any) -> str | None:
    """Why a registered plugin's hook would never be called, once every plugin is loaded: a
    function of its module named as a hook but not marked ``@hookimpl``, or an
    ``optionalhook`` of no hook whose name is close to a hook of the same plugin prefix
    (``mdm_vpp_licences_associated``: the VPP plugin is loaded and declares no such hook)."""
    declared = {name for name, caller in vars(pm.hook).items() if getattr(caller, "spec", None) is not None}
    if isinstance(plugin, types.ModuleType):
        for attr, value in vars(plugin).items():
            if (
                attr in declared
                and inspect.isfunction(value)
                and value.__module__ == plugin.__name__
                and pm.parse_hookimpl_opts(plugin, attr) is None
                and pm.parse_hookspec_opts(plugin, attr) is None  # the plugin declares it
            ):
                return f"its function {attr} is not marked @hookimpl, so it is never called: put @hookimpl (from mdm_core import hookimpl) above it"
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.name in declared:
            continue
        prefix = "_".join(caller.name.split("_")[:2]) + "_"
        close = difflib.get_close_matches(caller.name, [d for d in declared if d.startswith(prefix)], n=1, cutoff=0.8)
        if close:
            return f"its {caller.name} is no hook, so it is never called: did you mean {close[0]}? (`mdm hooks` lists them)"
    return None
