"""The dashboard: runs of the last 24 hours (failures first), pools with their usage and
dedup ratio, the tape library's status where a tape pool exists, jobs and the next
scheduled runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, render_template

from ...catalog.models import RunState
from ...cli.records import job_listing, pool_listing, run_listing
from ..auth import appliance

bp = Blueprint("dashboard", __name__)

RECENT = timedelta(hours=24)


@bp.get("/")
def index() -> str:
    """The landing page after login."""
    app = appliance()
    since = datetime.now(UTC) - RECENT
    runs = run_listing(app, limit=500, since=since)
    # Failures first: they are what the operator came to see (newest first within each).
    runs.sort(key=lambda r: r["state"] != RunState.FAILED)
    jobs = job_listing(app)
    upcoming = sorted((j for j in jobs if j["next_run_at"]), key=lambda j: j["next_run_at"])
    return render_template(
        "dashboard.html",
        runs=runs,
        pools=pool_listing(app),
        jobs=jobs,
        upcoming=upcoming,
        unprotected=app.unprotected_assets(),
        library=app.library_status(),
    )
