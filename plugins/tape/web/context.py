"""The tape plugin's context inside a panel request.

The panel offers plugins ``current_app.extensions["tapir.plugin_context"]``, a
callable giving the same narrow :class:`PluginContext` a job or a CLI command
receives; its audit events are attributed to the logged-in user.
"""

from __future__ import annotations

from flask import current_app

from tapir.appliance.plugin_api import PluginContext, TapirError


def tape_context() -> PluginContext:
    """The ``tape`` role's context, with its volume registry and device look-up."""
    factory = current_app.extensions.get("tapir.plugin_context")
    if factory is None:
        raise TapirError("this panel offers plugins no context (tapir.plugin_context)")
    ctx: PluginContext = factory("tape")
    if ctx.volumes is None or ctx.devices is None:
        raise TapirError("the tape plugin received no volume registry or device look-up")
    return ctx
