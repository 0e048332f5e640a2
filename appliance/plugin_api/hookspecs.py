"""Every hook a Tapir plugin can implement, as documented function signatures.

Plugins mark their implementations with :data:`hookimpl` and are found through the
``tapir`` entry-point group. Registration hooks return role objects; event hooks
are called with keyword arguments and their results are ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    import click
    import flask

    from .context import AssetInfo, PluginContext
    from .roles import ApplicationPlugin, HypervisorPlugin, MediaPlugin

PROJECT = "tapir"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# Registration: each returns zero or more role objects.


@hookspec
def tapir_media_plugins() -> list[MediaPlugin]:
    """Return the media backends (pool types) this plugin provides."""


@hookspec
def tapir_application_plugins() -> list[ApplicationPlugin]:
    """Return the application sources (files, databases, mail...) this plugin provides."""


@hookspec
def tapir_hypervisor_plugins() -> list[HypervisorPlugin]:
    """Return the hypervisor sources (vSphere, XenServer, libvirt...) this plugin provides."""


# Events.


@hookspec
def tapir_run_started(run: dict[str, Any]) -> None:
    """A run moved to 'running'. ``run`` holds id, job, plugin, level and pool names."""


@hookspec
def tapir_run_finished(run: dict[str, Any]) -> None:
    """A run ended. ``run`` adds state, error, byte counts and the recovery point ids."""


@hookspec
def tapir_before_snapshot(asset: AssetInfo, run: dict[str, Any]) -> None:
    """Called before a snapshot or backup start point is taken (quiesce here)."""


@hookspec
def tapir_after_snapshot(asset: AssetInfo, run: dict[str, Any], ok: bool) -> None:
    """Called after the snapshot, also when it failed (``ok`` False)."""


@hookspec
def tapir_notify(event: str, subject: str, body: str, details: dict[str, Any]) -> None:
    """Deliver a notification (run failed, tape needed...). Mail and webhooks hook in here."""


# Extensions.


@hookspec
def tapir_cli_commands(cli: click.Group, plugin_context: Callable[[str], PluginContext]) -> None:
    """Add commands or groups to the ``tapir`` command line.

    A command that needs the appliance calls ``plugin_context(name)`` with its
    plugin's role name (e.g. ``"tape"``) when it runs: it opens the appliance and
    returns the same narrow context a job would give that role (for a media plugin
    with ``volumes`` and ``devices``). Implementations may omit the argument.
    """


@hookspec
def tapir_web_blueprints() -> list[flask.Blueprint]:
    """Return Flask blueprints to mount in the web panel."""


@hookspec
def tapir_web_menu_items() -> list[dict[str, str]]:
    """Return menu entries for the web panel: {"label": ..., "endpoint": ...}."""
