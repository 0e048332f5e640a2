"""What every command receives: the settings, the loaded plugins and a lazily opened appliance."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from ..config import Settings
from ..engine.service import Appliance
from ..plugin_manager import PluginRegistry


@dataclass
class CliState:
    """The root command's context object.

    The appliance is opened on first use, so ``--help``, ``tapir plugins`` and
    ``tapir db upgrade`` work before there is a catalog, and it is closed when the
    command ends.
    """

    settings: Settings
    registry: PluginRegistry
    _appliance: Appliance | None = field(default=None, repr=False)

    def appliance(self) -> Appliance:
        """The opened facade (opened once per command, closed when the command ends)."""
        if self._appliance is None:
            app = Appliance.open(self.settings, registry=self.registry)
            self._appliance = app
            click.get_current_context().find_root().call_on_close(self._close)
        return self._appliance

    def _close(self) -> None:
        app, self._appliance = self._appliance, None
        if app is not None:
            app.close()


pass_state = click.make_pass_decorator(CliState)
