"""Loading plugins: the `tapir` entry-point group, with every failure contained.

Bundled plugins are found through the same entry points as third-party ones. A
plugin that fails to import, or whose registration hook raises, is recorded in
:attr:`PluginRegistry.failures` and left out; the appliance keeps running.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from .plugin_api import hookspecs
from .plugin_api.roles import ApplicationPlugin, HypervisorPlugin, MediaPlugin, SourcePlugin

log = logging.getLogger(__name__)


@dataclass
class PluginFailure:
    name: str
    stage: str  # import, register, hook
    error: str


@dataclass
class LoadedPlugin:
    name: str
    module: str
    version: str
    distribution: str
    hooks: list[str] = field(default_factory=list)


class PluginRegistry:
    """The plugin manager plus the role objects its plugins registered."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.failures: list[PluginFailure] = []
        self.loaded: list[LoadedPlugin] = []
        self.media: dict[str, MediaPlugin] = {}
        self.sources: dict[str, SourcePlugin] = {}

    def media_plugin(self, name: str) -> MediaPlugin:
        try:
            return self.media[name]
        except KeyError:
            raise KeyError(
                f"no media plugin named {name!r} (loaded: {sorted(self.media)})"
            ) from None

    def source_plugin(self, name: str) -> SourcePlugin:
        try:
            return self.sources[name]
        except KeyError:
            raise KeyError(
                f"no source plugin named {name!r} (loaded: {sorted(self.sources)})"
            ) from None

    def call_event(self, hook: str, **kwargs: Any) -> None:
        """Call an event hook on every plugin; one that raises is logged, not propagated."""
        caller = getattr(self.pm.hook, hook)
        for impl in caller.get_hookimpls():
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as exc:  # a plugin's bug must not fail the run
                name = self.pm.get_name(impl.plugin) or "?"
                log.warning("plugin %s failed in %s: %s", name, hook, exc)
                self.failures.append(PluginFailure(name, f"hook {hook}", repr(exc)))


def _collect_roles(registry: PluginRegistry, name: str, plugin: object) -> None:
    role_hooks: list[tuple[str, type]] = [
        ("tapir_media_plugins", MediaPlugin),
        ("tapir_application_plugins", ApplicationPlugin),
        ("tapir_hypervisor_plugins", HypervisorPlugin),
    ]
    for hook, cls in role_hooks:
        fn = getattr(plugin, hook, None)
        if fn is None:
            continue
        try:
            objs = fn() or []
            for obj in objs:
                if not isinstance(obj, cls):
                    raise TypeError(f"{hook} returned {type(obj).__name__}, not a {cls.__name__}")
                if not getattr(obj, "name", ""):
                    raise TypeError(f"{type(obj).__name__} has no name")
                target: dict[str, Any] = registry.media if cls is MediaPlugin else registry.sources
                if obj.name in target:
                    raise ValueError(f"{cls.__name__} name {obj.name!r} is already registered")
                target[obj.name] = obj
        except Exception as exc:
            log.warning("plugin %s failed to register through %s: %s", name, hook, exc)
            registry.failures.append(PluginFailure(name, "register", f"{hook}: {exc}"))


def _hooks_of(module: object) -> list[str]:
    return sorted(
        n for n in dir(module) if n.startswith("tapir_") and callable(getattr(module, n, None))
    )


def load_plugins(
    extra: list[ModuleType | object] | None = None, entry_points: bool = True
) -> PluginRegistry:
    """Build the plugin manager from the `tapir` entry points (and ``extra`` objects, for tests)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(pm)
    candidates: list[tuple[str, object, str, str]] = []
    if entry_points:
        for ep in metadata.entry_points(group=hookspecs.PROJECT):
            dist = ep.dist
            try:
                module = ep.load()
            except Exception as exc:
                log.warning("plugin %s could not be imported: %s", ep.name, exc)
                registry.failures.append(PluginFailure(ep.name, "import", repr(exc)))
                continue
            version = getattr(module, "__version__", None) or (dist.version if dist else "?")
            candidates.append((ep.name, module, version, dist.name if dist else "?"))
    for obj in extra or []:
        name = getattr(obj, "__name__", type(obj).__name__)
        candidates.append((name, obj, getattr(obj, "__version__", "?"), "(registered in code)"))
    for name, module, version, dist_name in candidates:
        if pm.has_plugin(name):
            registry.failures.append(PluginFailure(name, "register", "duplicate plugin name"))
            continue
        try:
            pm.register(module, name=name)
        except Exception as exc:
            log.warning("plugin %s was refused: %s", name, exc)
            registry.failures.append(PluginFailure(name, "register", repr(exc)))
            continue
        registry.loaded.append(
            LoadedPlugin(
                name, getattr(module, "__name__", "?"), str(version), dist_name, _hooks_of(module)
            )
        )
        _collect_roles(registry, name, module)
    return registry
