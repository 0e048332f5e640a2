"""Entry point of the bundled ``xenserver`` plugin (group ``tapir``)."""

from __future__ import annotations

from tapir.appliance.plugin_api import HypervisorPlugin, hookimpl

from .role import XenServerPlugin

__version__ = "0.1.0"


@hookimpl
def tapir_hypervisor_plugins() -> list[HypervisorPlugin]:
    """The ``xenserver`` source."""
    return [XenServerPlugin()]
