"""Entry point of the bundled ``mariadb`` plugin (group ``tapir``)."""

from __future__ import annotations

from tapir.appliance.plugin_api import ApplicationPlugin, hookimpl

from .role import MariaDBPlugin

__version__ = "0.1.0"


@hookimpl
def tapir_application_plugins() -> list[ApplicationPlugin]:
    """The ``mariadb`` source."""
    return [MariaDBPlugin()]
