"""The JSON API, ``/api/v1``: everything the pages do, for scripts and the panel's JS.

Authenticated by an API token (``Authorization: Bearer``) or the panel's session
(then changes need the ``X-CSRFToken`` header). Errors are ``{"error": "..."}``:
400 malformed input, 401 no login, 403 role too low, 404 unknown name, 409 refused
by the engine; nothing is changed by a request that fails.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.wrappers import Response

from ...cli.records import job_listing, pool_listing, retention_record
from ...plugin_api.errors import TapirError
from .. import actions, option_forms, progress, retention_preview
from ..auth import appliance, json_error
from ..openapi import body, document, query
from ..roles import requires

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_LIMIT = 1000

_RULES = {name: {"type": "integer", "minimum": 0} for name in actions.RULE_NAMES}
_STR = {"type": "string"}


@bp.errorhandler(ValueError)
def _bad_input(exc: ValueError) -> Response:
    return json_error(str(exc), 400)


@bp.errorhandler(KeyError)
def _unknown(exc: KeyError) -> Response:
    return json_error(str(exc.args[0]) if exc.args else "not found", 404)


@bp.errorhandler(TapirError)
def _refused(exc: TapirError) -> Response:
    return json_error(str(exc), 409)


def _json_object() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object")
    return data


def _limit() -> int:
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        raise ValueError("limit must be a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


@bp.get("/openapi.json")
def openapi() -> Response:
    """This API's OpenAPI 3 document."""
    return jsonify(document(current_app))


@bp.get("/runs")
@query(("limit", "integer", "1..1000, default 50"), ("job", "string", "only this job's runs"))
def runs() -> Response:
    """Recent runs, newest first, with progress, rate (bytes/s) and eta (seconds)."""
    return jsonify(progress.runs(appliance(), limit=_limit(), job=request.args.get("job") or None))


@bp.get("/runs/<int:run_id>")
def run(run_id: int) -> Response:
    """One run with its progress and log."""
    return jsonify(progress.run(appliance(), run_id))


@bp.post("/runs/<int:run_id>/cancel")
@requires("operator")
def run_cancel(run_id: int) -> Response:
    """Cancel a run: a queued one at once, a running one at its next item."""
    appliance().cancel_run(run_id)
    return jsonify(progress.run(appliance(), run_id))


@bp.get("/pools")
def pools() -> Response:
    """Every pool with its usage."""
    return jsonify(pool_listing(appliance()))


@bp.post("/pools")
@requires("admin")
@body(
    {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": _STR,
            "media": {"type": "string", "default": "disk"},
            "encrypted": {"type": "boolean"},
            "compression": {"type": "string", "enum": list(actions.COMPRESSIONS)},
            "retention": _STR,
            "options": {"type": "object", "description": "the media plugin's pool options"},
        },
    }
)
def pool_create() -> tuple[Response, int]:
    """Create a pool (its medium too)."""
    data = _json_object()
    specs = actions.pool_specs(appliance(), actions.text(data, "media") or "disk")
    record = actions.create_pool(
        appliance(), data, option_forms.from_json(specs, data.get("options"))
    )
    return jsonify(record), 201


@bp.get("/retention-policies")
def retention_policies() -> Response:
    """Every retention policy."""
    return jsonify([retention_record(p) for p in appliance().retention_policies()])


@bp.post("/retention-policies")
@requires("admin")
@body({"type": "object", "required": ["name"], "properties": {"name": _STR, **_RULES}})
def retention_create() -> tuple[Response, int]:
    """Create a retention policy (at least one rule)."""
    return jsonify(actions.create_retention(appliance(), _json_object())), 201


@bp.post("/retention-policies/preview")
@requires("read-only")
@body({"type": "object", "properties": {"pool": _STR, **_RULES}})
def retention_preview_api() -> Response:
    """What these rules would keep and delete on today's recovery points (nothing changes)."""
    data = _json_object()
    rows = retention_preview.preview(
        appliance(), actions.retention_rules(data), pool=actions.text(data, "pool")
    )
    return jsonify([row.__dict__ for row in rows])


@bp.get("/jobs")
def jobs() -> Response:
    """Every job with its schedules and next run."""
    return jsonify(job_listing(appliance()))


@bp.post("/jobs")
@requires("operator")
@body(
    {
        "type": "object",
        "required": ["name", "plugin", "pool"],
        "properties": {
            "name": _STR,
            "plugin": _STR,
            "pool": _STR,
            "schedule": {"type": "string", "description": "cron: m h dom mon dow"},
            "timezone": _STR,
            "retention": _STR,
            "options": {"type": "object", "description": "the plugin's job options"},
        },
    }
)
def job_create() -> tuple[Response, int]:
    """Create a backup job."""
    data = _json_object()
    specs = actions.job_specs(appliance(), actions.text(data, "plugin", required=True) or "")
    record = actions.create_job(
        appliance(), data, option_forms.from_json(specs, data.get("options"))
    )
    return jsonify(record), 201


@bp.get("/jobs/<name>")
def job(name: str) -> Response:
    """One job with its next five run times."""
    for record in job_listing(appliance()):
        if record["name"] == name:
            record["next_runs"] = appliance().next_runs(name, 5)
            return jsonify(record)
    raise KeyError(f"no job named {name!r}")


@bp.post("/jobs/<name>/run")
@requires("operator")
@body({"type": "object", "properties": {"level": {"type": "string", "enum": list(actions.LEVELS)}}})
def job_run(name: str) -> tuple[Response, int]:
    """Queue a run of the job now; a worker of `tapir serve` executes it."""
    data = request.get_json(silent=True)
    if data is None and not request.get_data():
        data = {}
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object")
    run_id = actions.queue_run(appliance(), name, data)
    return jsonify(progress.run(appliance(), run_id)), 202


@bp.get("/plugins/<name>/job-options")
def plugin_job_options(name: str) -> Response:
    """The job options a source plugin declares (a client builds its form from them)."""
    return jsonify(
        [
            {
                "name": s.name,
                "type": s.type,
                "help": s.help,
                "required": s.required,
                "default": s.default,
                "choices": list(s.choices),
            }
            for s in actions.job_specs(appliance(), name)
        ]
    )


@bp.get("/schedule-preview")
@query(("cron", "string", "m h dom mon dow"), ("timezone", "string", "default: the appliance's"))
def schedule_preview() -> Response:
    """A cron expression in words and its next five run times."""
    cron = request.args.get("cron", "")
    if not cron.strip():
        raise ValueError("cron is required")
    preview = actions.schedule_preview(
        cron, request.args.get("timezone") or appliance().timezone(), datetime.now(UTC)
    )
    return jsonify(preview)


@bp.get("/audit")
@requires("admin")
@query(("limit", "integer", "1..1000, default 50"))
def audit() -> Response:
    """The newest audit events: who changed or restored what, when, from where."""
    return jsonify(
        [
            {
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "remote_addr": e.remote_addr,
                "details": e.details,
            }
            for e in appliance().audit_events(limit=_limit())
        ]
    )
