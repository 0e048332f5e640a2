"""``tapir plugins``: what is loaded, from which distribution, doing what; and what failed."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..plugin_api.roles import ApplicationPlugin, HypervisorPlugin, MediaPlugin
from ..plugin_manager import LoadedPlugin, PluginRegistry
from .output import print_json, print_table, stdout_console
from .state import CliState, pass_state


def _package_of(module_name: str) -> str:
    module = sys.modules.get(module_name)
    if module is not None and hasattr(module, "__path__"):
        return module_name
    return module_name.rpartition(".")[0] or module_name


def _role(obj: object) -> str:
    if isinstance(obj, MediaPlugin):
        return "media"
    if isinstance(obj, HypervisorPlugin):
        return "hypervisor"
    if isinstance(obj, ApplicationPlugin):
        return "application"
    return "source"


def roles_of(plugin: LoadedPlugin, registry: PluginRegistry) -> list[str]:
    """``role:name`` for each role object that comes from ``plugin``'s package."""
    package = _package_of(plugin.module)
    found = []
    for obj in [*registry.media.values(), *registry.sources.values()]:
        module = type(obj).__module__
        if module == package or module.startswith(package + "."):
            found.append(f"{_role(obj)}:{obj.name}")
    return sorted(found)


def plugin_records(registry: PluginRegistry) -> dict[str, list[dict[str, Any]]]:
    """The ``--json`` shape: ``{"plugins": [...], "failures": [...]}``."""
    return {
        "plugins": [
            {
                "name": p.name,
                "version": p.version,
                "distribution": p.distribution,
                "module": p.module,
                "hooks": list(p.hooks),
                "roles": roles_of(p, registry),
            }
            for p in registry.loaded
        ],
        "failures": [
            {"name": f.name, "stage": f.stage, "error": f.error} for f in registry.failures
        ],
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def plugins(state: CliState, as_json: bool) -> None:
    """List loaded plugins (version, distribution, hooks, roles) and plugins that failed."""
    records = plugin_records(state.registry)
    if as_json:
        print_json(records)
        return
    print_table(
        ["name", "version", "distribution", "roles", "hooks"],
        [
            [
                p["name"],
                p["version"],
                p["distribution"],
                ", ".join(p["roles"]) or "-",
                ", ".join(h.removeprefix("tapir_") for h in p["hooks"]),
            ]
            for p in records["plugins"]
        ],
        empty="no plugins loaded",
    )
    if records["failures"]:
        stdout_console().print()
        print_table(
            ["failed plugin", "stage", "error"],
            [[f["name"], f["stage"], f["error"]] for f in records["failures"]],
        )
