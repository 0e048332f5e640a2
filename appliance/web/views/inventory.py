"""Inventory pages: registered endpoints (connection test, rediscovery, discovery
interval, last error) and discovered assets with their protection state."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ...catalog.models import Endpoint
from ...plugin_api.errors import TapirError
from .. import admin_actions, option_forms
from ..auth import appliance
from ..roles import requires

bp = Blueprint("inventory", __name__, url_prefix="/inventory")


def endpoint_record(row: Endpoint) -> dict[str, Any]:
    """An endpoint as the pages and the API show it (never its password)."""
    return {
        "name": row.name,
        "plugin": row.plugin,
        "address": row.address,
        "options": dict(row.options or {}),
        "has_password": row.secret_name is not None,
        "created_at": row.created_at,
        "last_discovery_at": row.last_discovery_at,
        "discovery_interval": row.discovery_interval,
        "next_discovery_at": row.next_discovery_at if row.discovery_interval else None,
        "last_discovery_error": row.last_discovery_error,
    }


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


@bp.get("/")
def index() -> str:
    """Every endpoint and every discovered asset with the jobs protecting it."""
    app = appliance()
    return render_template(
        "inventory.html",
        endpoints=[endpoint_record(e) for e in app.endpoints()],
        assets=app.asset_protection(),
    )


@bp.route("/endpoints/new", methods=["GET", "POST"])
@requires("admin")
def new_endpoint() -> str | Response | tuple[str, int]:
    """Register an endpoint; the form shows the chosen plugin's endpoint options."""
    app = appliance()
    form = request.form if request.method == "POST" else request.args
    plugins = sorted(n for n, p in app.registry.sources.items() if p.endpoint_options())
    plugin = form.get("plugin") or (plugins[0] if plugins else "")
    try:
        specs = admin_actions.endpoint_specs(app, plugin) if plugin else []
    except KeyError as exc:
        return _message(exc), 404
    page = {
        "plugins": plugins,
        "plugin": plugin,
        "fields": option_forms.fields(specs, request.form if request.method == "POST" else None),
        "form": form,
    }
    if request.method == "GET" or request.form.get("action") == "refresh":
        return render_template("endpoint_new.html", **page)
    try:
        options = option_forms.from_form(specs, request.form)
        name = admin_actions.register_endpoint(app, request.form, options)
    except (ValueError, KeyError, TapirError) as exc:
        flash(_message(exc), "error")
        return render_template("endpoint_new.html", **page), 400
    flash(f"Endpoint {name} registered.", "ok")
    return redirect(url_for("inventory.endpoint", name=name))


@bp.get("/endpoints/<name>")
def endpoint(name: str) -> str | tuple[str, int]:
    """One endpoint, its discovery state and its assets."""
    app = appliance()
    try:
        row = app.endpoint(name)
        assets = app.asset_protection(name)
    except KeyError as exc:
        return _message(exc), 404
    return render_template("endpoint.html", endpoint=endpoint_record(row), assets=assets)


@bp.post("/endpoints/<name>/test")
@requires("operator")
def test(name: str) -> Response:
    """Log in to the endpoint once and say whether it worked."""
    try:
        appliance().test_endpoint(name)
    except Exception as exc:  # the plugin's reason is the answer
        flash(f"Connection to {name} failed: {_message(exc) or type(exc).__name__}", "error")
    else:
        flash(f"Connection to {name} works.", "ok")
    return redirect(url_for("inventory.endpoint", name=name))


@bp.post("/endpoints/<name>/discover")
@requires("operator")
def discover(name: str) -> Response:
    """Rediscover the endpoint now."""
    try:
        report = appliance().discover_endpoint(name)
    except Exception as exc:  # recorded as the endpoint's last discovery error too
        flash(f"Discovery of {name} failed: {_message(exc) or type(exc).__name__}", "error")
    else:
        flash(
            f"Discovered {report.found} asset(s): {len(report.added)} new, "
            f"{len(report.gone)} gone.",
            "ok",
        )
    return redirect(url_for("inventory.endpoint", name=name))


@bp.post("/endpoints/<name>/interval")
@requires("operator")
def interval(name: str) -> Response:
    """Set how often the scheduler rediscovers the endpoint."""
    try:
        seconds = admin_actions.discovery_interval(request.form)
        if seconds is None:
            raise ValueError("discovery_interval is required")
        appliance().set_discovery_interval(name, seconds)
    except (ValueError, KeyError) as exc:
        flash(_message(exc), "error")
    else:
        flash(f"Discovery interval of {name} set.", "ok")
    return redirect(url_for("inventory.endpoint", name=name))
