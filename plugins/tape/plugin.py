"""The bundled ``tape`` plugin: tape pools on SCSI tape libraries (docs/design/tape.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tapir.appliance.plugin_api import MediaPlugin, PluginContext, hookimpl

__version__ = "0.1.0"


@hookimpl
def tapir_media_plugins() -> list[MediaPlugin]:
    """The tape media backend."""
    from .store import TapeMediaPlugin

    return [TapeMediaPlugin()]


@hookimpl
def tapir_cli_commands(cli: Any, plugin_context: Callable[[str], PluginContext]) -> None:
    """The ``tapir tape`` commands: labelling, volumes, inventory, vaulting, catalog rebuild."""
    from .cli import register

    register(cli, plugin_context)


@hookimpl
def tapir_web_blueprints() -> list[Any]:
    """The library pages of the web panel (``/tape``)."""
    from .web import blueprints

    return blueprints()


@hookimpl
def tapir_web_menu_items() -> list[dict[str, str]]:
    """The panel's "Tape library" menu entry."""
    from .web import menu_items

    return menu_items()
