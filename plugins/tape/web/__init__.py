"""The tape plugin's pages in the web panel: the library picture and its actions.

Mounted through the plugin's ``tapir_web_blueprints`` and ``tapir_web_menu_items``
hooks; the core panel never imports this package.
"""

from __future__ import annotations

from flask import Blueprint


def blueprints() -> list[Blueprint]:
    """The ``tape`` pages (``/tape``) and their JSON API (``/api/v1/tape``)."""
    from .api import api
    from .views import bp

    return [bp, api]


def menu_items() -> list[dict[str, str]]:
    """The panel's menu entry for the library."""
    return [{"label": "Tape library", "endpoint": "tape.index"}]
