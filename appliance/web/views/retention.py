"""Retention policy pages: the list, and a new policy previewed on today's points first."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ...cli.records import retention_summary
from .. import actions, retention_preview
from ..auth import appliance
from ..roles import requires

bp = Blueprint("retention", __name__, url_prefix="/retention")


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
