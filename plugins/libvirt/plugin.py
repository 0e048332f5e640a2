"""Entry point of the bundled ``libvirt`` plugin (group ``tapir``)."""

from __future__ import annotations

from tapir.appliance.plugin_api import HypervisorPlugin, hookimpl

from .role import LibvirtPlugin

__version__ = "0.1.0"


@hookimpl
def tapir_hypervisor_plugins() -> list[HypervisorPlugin]:
    """The ``libvirt`` source."""
    return [LibvirtPlugin()]
