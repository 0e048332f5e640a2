"""Entry point of the bundled ``imagefile`` plugin (group ``tapir``)."""

from __future__ import annotations

from tapir.appliance.plugin_api import HypervisorPlugin, hookimpl

from .role import ImageFilePlugin

__version__ = "0.1.0"


@hookimpl
def tapir_hypervisor_plugins() -> list[HypervisorPlugin]:
    """The ``imagefile`` source."""
    return [ImageFilePlugin()]
