"""The audit log page: who changed or restored what, when and from where."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from ..auth import appliance
from ..roles import requires

bp = Blueprint("audit", __name__, url_prefix="/audit")


@bp.get("/")
@requires("admin")
def index() -> str:
    """The newest audit events (``?limit=N``, at most 1000)."""
    try:
        limit = max(1, min(1000, int(request.args.get("limit", "200"))))
    except ValueError:
        limit = 200
    return render_template("audit.html", events=appliance().audit_events(limit=limit))
