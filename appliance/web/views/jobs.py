"""Job pages: the list, creating and editing a job with its plugin's own option form, one
job with its schedule and history, run now and cancel, enable, disable and delete, and
its selection rules with a live preview of the assets they match."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ...cli.records import job_listing
from ...engine.admin import KEEP
from ...engine.copy import COPY_KIND
from ...engine.selection import RULE_KINDS
from ...plugin_api.errors import TapirError
from .. import actions, admin_actions, option_forms, progress
from ..auth import appliance
from ..roles import requires
from .settings_api import JOB_LIMITS

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
        "default_timezone": app.timezone(),
        "schedule": None,
    }
    if request.method == "GET" or request.form.get("action") == "refresh":
        return render_template("job_new.html", **page)
    try:
        cron = actions.text(request.form, "schedule")
        if cron:
            page["schedule"] = actions.schedule_preview(
                cron, actions.text(request.form, "timezone") or app.timezone(), datetime.now(UTC)
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
        limits=next(j for j in app.jobs() if j.name == name),
    )


@bp.post("/<name>/limits")
@requires("operator")
def limits(name: str) -> Response:
    """Change the job's concurrency limit and retry policy (every field is posted)."""
    try:
        values = {key: actions.count(request.form, key) for key in JOB_LIMITS}
        missing = [key for key, value in values.items() if value is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} required")
        appliance().set_job_limits(name, **values)
    except (ValueError, KeyError) as exc:
        flash(_message(exc), "error")
    else:
        flash(f"Limits of job {name} saved.", "ok")
    return redirect(url_for("jobs.show", name=name))


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


def _follows_appliance_zone(name: str) -> bool:
    job = next((j for j in appliance().jobs() if j.name == name), None)
    return bool(job and job.schedules and job.schedules[0].zone_from_appliance)


def _option_form(options: dict[str, Any]) -> dict[str, str]:
    """A job's stored options as the posted form that would give them (to prefill it)."""
    form = {}
    for key, value in options.items():
        name = option_forms.FIELD_PREFIX + key
        if isinstance(value, bool):
            if value:
                form[name] = "on"
        elif isinstance(value, list | tuple):
            form[name] = "\n".join(str(v) for v in value)
        elif value is not None:
            form[name] = str(value)
    return form


@bp.route("/<name>/edit", methods=["GET", "POST"])
@requires("operator")
def edit(name: str) -> str | Response | tuple[str, int]:
    """Change a job's plugin options, schedule, pool and retention policy."""
    app = appliance()
    record = next((j for j in job_listing(app) if j["name"] == name), None)
    if record is None:
        return f"no job named {name!r}", 404
    copy = record["kind"] == COPY_KIND
    specs = [] if copy else actions.job_specs(app, record["plugin"])
    schedule = record["schedules"][0] if record["schedules"] else None
    if request.method == "POST":
        form: Any = request.form
        fields = option_forms.fields(specs, request.form)
    else:
        form = {
            "pool": record["pool"],
            "retention": record["retention"] or "",
            "schedule": schedule["cron"] if schedule else "",
            # Empty when the schedule follows the appliance's zone, so saving keeps that.
            "timezone": schedule["timezone"]
            if schedule and not _follows_appliance_zone(name)
            else "",
        }
        fields = option_forms.fields(specs, _option_form(record["options"]))
    page = {
        "job": record,
        "copy": copy,
        "fields": fields,
        "pools": app.pools(),
        "policies": app.retention_policies(),
        "form": form,
        "default_timezone": app.timezone(),
        "schedule": None,
    }
    if request.method == "GET":
        return render_template("job_edit.html", **page)
    try:
        cron = actions.text(request.form, "schedule")
        if cron:
            page["schedule"] = actions.schedule_preview(
                cron, actions.text(request.form, "timezone") or app.timezone(), datetime.now(UTC)
            )
        if request.form.get("action") == "preview":
            return render_template("job_edit.html", **page)
        options: Any = KEEP if copy else option_forms.from_form(specs, request.form)
        admin_actions.update_job(app, name, request.form, options, partial=False)
    except (ValueError, KeyError, TapirError) as exc:
        flash(_message(exc), "error")
        return render_template("job_edit.html", **page), 400
    flash(f"Job {name} saved.", "ok")
    return redirect(url_for("jobs.show", name=name))


@bp.post("/<name>/enable")
@requires("operator")
def enable(name: str) -> Response:
    """Enable the job again."""
    return _set_enabled(name, True)


@bp.post("/<name>/disable")
@requires("operator")
def disable(name: str) -> Response:
    """Disable the job: no scheduled runs, no manual start; its points stay."""
    return _set_enabled(name, False)


def _set_enabled(name: str, enabled: bool) -> Response:
    try:
        appliance().set_job_enabled(name, enabled)
    except KeyError as exc:
        flash(_message(exc), "error")
        return redirect(url_for("jobs.index"))
    flash(f"Job {name} {'enabled' if enabled else 'disabled'}.", "ok")
    return redirect(url_for("jobs.show", name=name))


@bp.post("/<name>/delete")
@requires("operator")
def delete(name: str) -> Response:
    """Delete the job; its recovery points stay, listed under their asset."""
    try:
        kept = appliance().delete_job(name)
    except (KeyError, TapirError) as exc:
        flash(_message(exc), "error")
        return redirect(url_for("jobs.show", name=name))
    flash(f"Job {name} deleted; its {kept} recovery point(s) stay.", "ok")
    return redirect(url_for("jobs.index"))


@bp.get("/<name>/rules")
def rules(name: str) -> str | tuple[str, int]:
    """The job's selection rules and which rule matches each asset; the preview follows
    the rules as they are typed (static/rules.js calls the JSON API)."""
    return _rules_page(name, None)


@bp.post("/<name>/rules")
@requires("operator")
def rules_save(name: str) -> str | Response | tuple[str, int]:
    """Save the job's selection rules (a bad rule is named; nothing is saved then)."""
    try:
        admin_actions.set_rules(appliance(), name, request.form)
    except (ValueError, KeyError) as exc:
        flash(_message(exc), "error")
        page = _rules_page(name, request.form)
        return page if isinstance(page, tuple) else (page, 400)
    flash(f"Selection rules of {name} saved.", "ok")
    return redirect(url_for("jobs.rules", name=name))


def _rules_page(name: str, form: Any) -> str | tuple[str, int]:
    app = appliance()
    record = next((j for j in job_listing(app) if j["name"] == name), None)
    if record is None:
        return f"no job named {name!r}", 404
    if record["kind"] == COPY_KIND:
        return f"job {name!r} copies recovery points: it has no selection rules", 404
    saved = admin_actions.rules_record(app.job_rules(name))
    include = form.get("include", "") if form else "\n".join(saved["include"])
    exclude = form.get("exclude", "") if form else "\n".join(saved["exclude"])
    draft = {"include": include, "exclude": exclude}
    try:
        preview, preview_error = admin_actions.preview_rules(app, name, draft), None
    except ValueError as exc:
        preview, preview_error = None, str(exc)
    return render_template(
        "job_rules.html",
        job=record,
        include=include,
        exclude=exclude,
        discover=saved["discover"] is not False,
        preview=preview,
        preview_error=preview_error,
        kinds=RULE_KINDS,
    )
