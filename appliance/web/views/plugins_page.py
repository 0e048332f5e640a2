"""The plugins page: every loaded plugin with its version, roles and hooks, and the
plugins that failed to load (or whose panel hooks failed)."""

from __future__ import annotations

from flask import Blueprint, render_template

from ...cli.plugins import plugin_records
from ..auth import appliance

bp = Blueprint("plugins_page", __name__, url_prefix="/plugins")


@bp.get("/")
def index() -> str:
    """Loaded plugins and load failures."""
    return render_template("plugins.html", **plugin_records(appliance().registry))
