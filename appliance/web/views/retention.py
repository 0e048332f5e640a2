"""Retention policy pages: the list, a new or changed policy previewed on today's points
first, and deleting a policy nothing uses."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ...cli.records import retention_summary
from ...plugin_api.errors import TapirError
from .. import actions, admin_actions, retention_preview
from ..auth import appliance
from ..roles import requires

bp = Blueprint("retention", __name__, url_prefix="/retention")

RULES = actions.RULE_NAMES


@bp.get("/")
def index() -> str:
    """Every retention policy and which pools and jobs use it."""
    app = appliance()
    policies = app.retention_policies()
    return render_template(
        "retention.html",
        policies=[(p, retention_summary(p)) for p in policies],
        pools=app.pools(),
        jobs=app.jobs(),
    )


@bp.route("/new", methods=["GET", "POST"])
@requires("admin")
def new() -> str | Response | tuple[str, int]:
    """Create a policy; "Preview" shows what it would keep and delete without saving."""
    app = appliance()
    page = {"form": request.form, "rules": actions.RULE_NAMES, "pools": app.pools(), "rows": None}
    if request.method == "GET":
        return render_template("retention_new.html", **page)
    try:
        if request.form.get("action") == "preview":
            rules = actions.retention_rules(request.form)
            pool = actions.text(request.form, "pool")
            page["rows"] = retention_preview.preview(app, rules, pool=pool)
            return render_template("retention_new.html", **page)
        record = actions.create_retention(app, request.form)
    except (ValueError, KeyError) as exc:
        flash(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), "error")
        return render_template("retention_new.html", **page), 400
    flash(f"Retention policy {record['name']} created.", "ok")
    return redirect(url_for("retention.index"))


@bp.route("/<name>/edit", methods=["GET", "POST"])
@requires("admin")
def edit(name: str) -> str | Response | tuple[str, int]:
    """Change a policy's rules; "Preview" shows their effect on today's points first."""
    app = appliance()
    policy = next((p for p in app.retention_policies() if p.name == name), None)
    if policy is None:
        return f"no retention policy named {name!r}", 404
    current = {r: "" if getattr(policy, r) is None else str(getattr(policy, r)) for r in RULES}
    form = request.form if request.method == "POST" else current
    page = {
        "policy": policy,
        "form": form,
        "rules": actions.RULE_NAMES,
        "pools": app.pools(),
        "users": [p.name for p in app.pools() if p.retention_policy_id == policy.id]
        + [j.name for j in app.jobs() if j.retention_policy_id == policy.id],
        "rows": None,
    }
    if request.method == "GET":
        return render_template("retention_edit.html", **page)
    try:
        if request.form.get("action") == "preview":
            rules = actions.retention_rules(request.form)
            pool = actions.text(request.form, "pool")
            page["rows"] = retention_preview.preview(app, rules, pool=pool)
            return render_template("retention_edit.html", **page)
        admin_actions.update_retention(app, name, request.form)
    except (ValueError, KeyError) as exc:
        flash(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), "error")
        return render_template("retention_edit.html", **page), 400
    flash(f"Retention policy {name} saved.", "ok")
    return redirect(url_for("retention.index"))


@bp.post("/<name>/delete")
@requires("admin")
def delete(name: str) -> Response:
    """Delete a policy no pool or job uses."""
    try:
        appliance().delete_retention_policy(name)
    except (KeyError, TapirError) as exc:
        flash(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), "error")
        return redirect(url_for("retention.edit", name=name))
    flash(f"Retention policy {name} deleted.", "ok")
    return redirect(url_for("retention.index"))
