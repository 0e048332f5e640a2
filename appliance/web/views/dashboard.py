"""The dashboard: runs of the last 24 hours, pools and their usage, jobs and their next run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, render_template

from ...cli.records import job_listing, pool_listing, run_listing
from ..auth import appliance

bp = Blueprint("dashboard", __name__)

RECENT = timedelta(hours=24)


@bp.get("/")
def index() -> str:
    """The landing page after login."""
    app = appliance()
    since = datetime.now(UTC) - RECENT
    return render_template(
        "dashboard.html",
        runs=run_listing(app, limit=500, since=since),
        pools=pool_listing(app),
        jobs=job_listing(app),
    )
