"""Pool pages: the list with usage, creating a pool with its media plugin's options,
editing what may change and deleting an unused pool."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ...cli.records import pool_listing
from ...plugin_api.errors import TapirError
from .. import actions, admin_actions, option_forms, usage_chart
from ..auth import appliance
from ..roles import requires

bp = Blueprint("pools", __name__, url_prefix="/pools")


@bp.get("/")
def index() -> str:
    """Every pool with its usage, dedup ratio and usage over the last 90 days."""
    app = appliance()
    pools = pool_listing(app)
    charts = {p["name"]: usage_chart.chart(app.pool_usage_history(p["name"])) for p in pools}
    return render_template("pools.html", pools=pools, charts=charts)


@bp.route("/new", methods=["GET", "POST"])
@requires("admin")
def new() -> str | Response | tuple[str, int]:
    """Create a pool; the form shows the chosen media plugin's own options."""
    app = appliance()
    form = request.form if request.method == "POST" else request.args
    media = form.get("media") or "disk"
    try:
        specs = actions.pool_specs(app, media)
    except KeyError as exc:
        return str(exc.args[0]), 404
    page = {
        "media_plugins": sorted(app.registry.media),
        "media": media,
        "fields": option_forms.fields(specs, request.form if request.method == "POST" else None),
        "policies": app.retention_policies(),
        "compressions": actions.COMPRESSIONS,
        "form": form,
    }
    if request.method == "GET" or request.form.get("action") == "refresh":
        return render_template("pool_new.html", **page)
    try:
        record = actions.create_pool(app, request.form, option_forms.from_form(specs, request.form))
    except (ValueError, KeyError, TapirError, OSError) as exc:
        flash(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), "error")
        return render_template("pool_new.html", **page), 400
    flash(f"Pool {record['name']} created.", "ok")
    return redirect(url_for("pools.index"))


@bp.route("/<name>/edit", methods=["GET", "POST"])
@requires("admin")
def edit(name: str) -> str | Response | tuple[str, int]:
    """Change what may change on a pool (retention, concurrency); delete it when unused."""
    app = appliance()
    records = [p for p in pool_listing(app) if p["name"] == name]
    if not records:
        return f"no pool named {name!r}", 404
    pool = next(p for p in app.pools() if p.name == name)
    page = {
        "pool": records[0],
        "max_concurrent_runs": pool.max_concurrent_runs,
        "policies": app.retention_policies(),
        "refusals": app.pool_delete_refusals(name),
    }
    if request.method == "GET":
        return render_template("pool_edit.html", **page)
    try:
        admin_actions.update_pool(app, name, request.form, partial=False)
    except (ValueError, KeyError, TapirError) as exc:
        flash(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), "error")
        return render_template("pool_edit.html", **page), 400
    flash(f"Pool {name} saved.", "ok")
    return redirect(url_for("pools.index"))


@bp.post("/<name>/delete")
@requires("admin")
def delete(name: str) -> Response:
    """Delete an empty, unused pool (its medium's files stay)."""
    try:
        appliance().delete_pool(name)
    except (KeyError, TapirError) as exc:
        flash(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), "error")
        return redirect(url_for("pools.edit", name=name))
    flash(f"Pool {name} deleted; its medium was left as it is.", "ok")
    return redirect(url_for("pools.index"))
