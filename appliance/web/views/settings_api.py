"""The scheduling and monitoring part of /api/v1: notification targets, the appliance's
time zone, job concurrency limits and retries, pool usage over time and the tape
library's status. Same conventions as :mod:`.api` (errors as ``{"error": ...}``:
400 malformed, 404 unknown, 409 refused; nothing changed on error).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from ...plugin_api.errors import TapirError
from ..auth import appliance, json_error
from ..openapi import body, query
from ..roles import requires

bp = Blueprint("settings_api", __name__, url_prefix="/api/v1")

JOB_LIMITS = ("max_concurrent_runs", "max_retries", "retry_delay", "retry_delay_max")
_COUNT = {"type": "integer", "minimum": 0}


@bp.errorhandler(ValueError)
def _bad_input(exc: ValueError) -> Response:
    return json_error(str(exc), 400)


@bp.errorhandler(KeyError)
def _unknown(exc: KeyError) -> Response:
    return json_error(str(exc.args[0]) if exc.args else "not found", 404)


@bp.errorhandler(TapirError)
def _refused(exc: TapirError) -> Response:
    return json_error(str(exc), 409)


def _json_object(allowed: tuple[str, ...]) -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"unknown field {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return data


def target_record(target: Any) -> dict[str, Any]:
    """A notification target as the API shows it: never its secret, only whether it has one."""
    return {
        "name": target.name,
        "kind": target.kind,
        "events": list(target.events),
        "config": dict(target.config),
        "secret": bool(target.secret_name),
        "enabled": bool(target.enabled),
        "last_sent_at": target.last_sent_at,
        "last_error": target.last_error,
    }


# Notification targets


@bp.get("/notification-targets")
@requires("admin")
def notification_targets() -> Response:
    """Every notification target with its events and how its last delivery went."""
    return jsonify([target_record(t) for t in appliance().notification_targets()])


@bp.post("/notification-targets")
@requires("admin")
@body(
    {
        "type": "object",
        "required": ["name", "kind", "config"],
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["email", "webhook"]},
            "config": {
                "type": "object",
                "description": "email: host, port, starttls, ca_file, username, sender, to "
                "(list); webhook: url, ca_file",
            },
            "events": {
                "type": "array",
                "items": {"type": "string"},
                "description": "failure, warning, success, operator-request",
            },
            "secret": {"type": "string", "description": "SMTP password or webhook secret"},
        },
    }
)
def notification_target_create() -> tuple[Response, int]:
    """Add an email or webhook target; its secret is sealed and never shown again."""
    data = _json_object(("name", "kind", "config", "events", "secret"))
    name, kind, config = data.get("name"), data.get("kind"), data.get("config")
    events, secret = data.get("events"), data.get("secret")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name is required")
    if not isinstance(kind, str):
        raise ValueError("kind is required (email or webhook)")
    if not isinstance(config, dict):
        raise ValueError("config must be a JSON object")
    if events is not None and (
        not isinstance(events, list) or not all(isinstance(e, str) for e in events)
    ):
        raise ValueError("events must be a list of event names")
    if secret is not None and not isinstance(secret, str):
        raise ValueError("secret must be text")
    target = appliance().add_notification_target(
        name.strip(), kind, config, events=events, secret=secret or None
    )
    return jsonify(target_record(target)), 201


@bp.post("/notification-targets/<name>/test")
@requires("admin")
def notification_target_test(name: str) -> Response:
    """Send a test message now: ``{"delivered": true}`` or the delivery error."""
    delivery = appliance().test_notification_target(name)
    return jsonify({"target": name, "delivered": delivery.error is None, "error": delivery.error})


@bp.delete("/notification-targets/<name>")
@requires("admin")
def notification_target_delete(name: str) -> Response:
    """Delete a target and its sealed secret."""
    appliance().remove_notification_target(name)
    return jsonify({"deleted": name})


# The appliance's time zone


@bp.get("/timezone")
def timezone() -> Response:
    """The time zone schedules without a zone of their own are evaluated in."""
    return jsonify({"timezone": appliance().timezone()})


@bp.put("/timezone")
@requires("admin")
@body({"type": "object", "required": ["timezone"], "properties": {"timezone": {"type": "string"}}})
def timezone_set() -> Response:
    """Set the appliance's time zone (an IANA name); schedules following it move with it."""
    zone = _json_object(("timezone",)).get("timezone")
    if not isinstance(zone, str) or not zone.strip():
        raise ValueError("timezone is required (an IANA name such as Europe/Berlin)")
    moved = appliance().set_timezone(zone)
    return jsonify({"timezone": appliance().timezone(), "schedules_moved": moved})


# Job concurrency limits and retries


def _limits_record(job: Any) -> dict[str, Any]:
    return {"job": job.name, **{key: getattr(job, key) for key in JOB_LIMITS}}


@bp.get("/jobs/<name>/limits")
def job_limits(name: str) -> Response:
    """A job's concurrency limit and retry policy."""
    job = next((j for j in appliance().jobs() if j.name == name), None)
    if job is None:
        raise KeyError(f"no job named {name!r}")
    return jsonify(_limits_record(job))


@bp.patch("/jobs/<name>/limits")
@requires("operator")
@body({"type": "object", "properties": {key: _COUNT for key in JOB_LIMITS}})
def job_limits_set(name: str) -> Response:
    """Change a job's limits: runs at once (0: no limit), retries, back-off and its cap (s).

    The back-off before retry N is retry_delay * 2**(N-1) seconds, at most retry_delay_max.
    """
    data = _json_object(JOB_LIMITS)
    if not data:
        raise ValueError(f"nothing to change: give one of {', '.join(JOB_LIMITS)}")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a whole number of at least 0, not {value!r}")
    return jsonify(_limits_record(appliance().set_job_limits(name, **data)))


# Pool usage over time and the tape library


@bp.get("/pools/<name>/usage-history")
@query(("days", "integer", "1..3660, default 90"))
def pool_usage_history(name: str) -> Response:
    """A pool's usage samples (at most one an hour), oldest first."""
    try:
        days = int(request.args.get("days", "90"))
    except ValueError:
        raise ValueError("days must be a whole number") from None
    return jsonify({"pool": name, "samples": appliance().pool_usage_history(name, days)})


@bp.get("/library")
def library() -> Response:
    """Tape drives (busy, loaded, idle), cartridges by state, TapeAlerts last seen."""
    return jsonify(appliance().library_status().as_record())
