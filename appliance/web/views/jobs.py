"""Job pages: the list, creating a job with its plugin's own option form, one job with
its schedule and history, run now and cancel."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ...cli.records import job_listing
from ...engine.service import local_timezone
from ...plugin_api.errors import TapirError
from .. import actions, option_forms, progress
from ..auth import appliance
from ..roles import requires

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


@bp.get("/")
def index() -> str:
    """Every job, its schedule and its next run."""
    return render_template("jobs.html", jobs=job_listing(appliance()))


@bp.route("/new", methods=["GET", "POST"])
@requires("operator")
def new() -> str | Response | tuple[str, int]:
    """Create a backup job. "Preview schedule" shows the next five runs without saving."""
    app = appliance()
    form = request.form if request.method == "POST" else request.args
    plugins = sorted(app.registry.sources)
    plugin = form.get("plugin") or (plugins[0] if plugins else "")
    try:
        specs = actions.job_specs(app, plugin)
    except KeyError as exc:
        return _message(exc), 404
    page = {
        "plugins": plugins,
        "plugin": plugin,
        "fields": option_forms.fields(specs, request.form if request.method == "POST" else None),
        "pools": app.pools(),
        "policies": app.retention_policies(),
        "form": form,
        "default_timezone": local_timezone(),
        "schedule": None,
    }
    if request.method == "GET" or request.form.get("action") == "refresh":
        return render_template("job_new.html", **page)
    try:
        cron = actions.text(request.form, "schedule")
        if cron:
            page["schedule"] = actions.schedule_preview(
                cron, actions.text(request.form, "timezone"), datetime.now(UTC)
            )
        if request.form.get("action") == "preview":
            return render_template("job_new.html", **page)
        options = option_forms.from_form(specs, request.form)
        record = actions.create_job(app, request.form, options)
    except (ValueError, KeyError, TapirError) as exc:
        flash(_message(exc), "error")
        return render_template("job_new.html", **page), 400
    flash(f"Job {record['name']} created.", "ok")
    return redirect(url_for("jobs.show", name=record["name"]))


@bp.get("/<name>")
def show(name: str) -> str | tuple[str, int]:
    """One job: options, schedules with the next five runs, history with live progress."""
    app = appliance()
    record = next((j for j in job_listing(app) if j["name"] == name), None)
    if record is None:
        return f"no job named {name!r}", 404
    return render_template(
        "job.html",
        job=record,
        next_runs=app.next_runs(name, 5),
        runs=progress.runs(app, limit=20, job=name),
        levels=actions.LEVELS,
    )


@bp.post("/<name>/run")
@requires("operator")
def run_now(name: str) -> Response | tuple[str, int]:
    """Queue a run now; the page then follows its progress."""
    try:
        run_id = actions.queue_run(appliance(), name, request.form)
    except (ValueError, KeyError, TapirError) as exc:
        flash(_message(exc), "error")
        return redirect(url_for("jobs.show", name=name))
    flash(f"Run {run_id} queued.", "ok")
    return redirect(url_for("jobs.run", run_id=run_id))


@bp.get("/runs/<int:run_id>")
def run(run_id: int) -> str | tuple[str, int]:
    """One run: live progress (bytes, rate, time left) and its log."""
    try:
        record = progress.run(appliance(), run_id)
    except KeyError as exc:
        return _message(exc), 404
    return render_template("run.html", run=record)


@bp.post("/runs/<int:run_id>/cancel")
@requires("operator")
def cancel(run_id: int) -> Response | tuple[str, int]:
    """Cancel a queued or running run."""
    try:
        appliance().cancel_run(run_id)
    except (KeyError, TapirError, ValueError) as exc:
        flash(_message(exc), "error")
    else:
        flash(f"Cancel of run {run_id} requested.", "ok")
    return redirect(url_for("jobs.run", run_id=run_id))
