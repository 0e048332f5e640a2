"""The administration part of /api/v1: editing and deleting pools, policies and jobs,
selection rules with their preview, endpoints and assets, users, key export, plugins
and appliance information. Same conventions as :mod:`.api` (errors as
``{"error": ...}``: 400 malformed, 404 unknown, 409 refused; nothing changed on error).

PATCH requests change only the fields they carry; ``null`` clears an optional one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from ...cli.plugins import plugin_records
from ...cli.records import job_listing, pool_listing, retention_record
from ...engine.admin import KEEP
from ...engine.copy import COPY_KIND
from ...plugin_api.errors import TapirError
from .. import actions, admin_actions, option_forms
from ..auth import appliance, json_error
from ..openapi import body
from ..roles import requires
from .inventory import endpoint_record

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1")

_STR = {"type": "string"}
_NULL_STR = {"type": "string", "nullable": True}
_RULES = {name: {"type": "integer", "minimum": 0, "nullable": True} for name in actions.RULE_NAMES}
_LINES = {"type": "array", "items": {"type": "string"}, "description": "KIND=VALUE rules"}


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


def _one(records: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    for record in records:
        if record["name"] == name:
            return record
    raise KeyError(f"no {what} named {name!r}")


# Pools and retention policies


@bp.patch("/pools/<name>")
@requires("admin")
@body(
    {
        "type": "object",
        "properties": {
            "retention": _NULL_STR,
            "max_concurrent_runs": {"type": "integer", "minimum": 1, "nullable": True},
        },
    }
)
def pool_update(name: str) -> Response:
    """Change a pool's retention policy or concurrency limit (null: none)."""
    admin_actions.update_pool(appliance(), name, _json_object(), partial=True)
    return jsonify(_one(pool_listing(appliance(), name), name, "pool"))


@bp.delete("/pools/<name>")
@requires("admin")
def pool_delete(name: str) -> Response:
    """Delete a pool that holds no recovery point and no job uses (409 otherwise).

    The pool's medium (its folder, its cartridges' data) is left untouched.
    """
    appliance().delete_pool(name)
    return jsonify({"deleted": name})


@bp.put("/retention-policies/<name>")
@requires("admin")
@body({"type": "object", "properties": _RULES})
def retention_update(name: str) -> Response:
    """Replace a retention policy's rules (a rule left out is cleared)."""
    admin_actions.update_retention(appliance(), name, _json_object())
    policy = next(p for p in appliance().retention_policies() if p.name == name)
    return jsonify(retention_record(policy))


@bp.delete("/retention-policies/<name>")
@requires("admin")
def retention_delete(name: str) -> Response:
    """Delete a retention policy no pool or job uses (409 naming them otherwise)."""
    appliance().delete_retention_policy(name)
    return jsonify({"deleted": name})


# Jobs


@bp.patch("/jobs/<name>")
@requires("operator")
@body(
    {
        "type": "object",
        "properties": {
            "options": {"type": "object", "description": "every job option (replaced whole)"},
            "schedule": {"type": "string", "nullable": True, "description": "cron; null: none"},
            "timezone": _STR,
            "pool": _STR,
            "retention": _NULL_STR,
        },
    }
)
def job_update(name: str) -> Response:
    """Change a job's options, schedule, pool or retention policy."""
    data = _json_object()
    app = appliance()
    job = _one(job_listing(app), name, "job")
    options: Any = KEEP
    if "options" in data:
        specs = actions.job_specs(app, job["plugin"]) if job["kind"] != COPY_KIND else []
        options = option_forms.from_json(specs, data["options"])
    admin_actions.update_job(app, name, data, options, partial=True)
    return jsonify(_one(job_listing(app), name, "job"))


@bp.post("/jobs/<name>/enable")
@requires("operator")
def job_enable(name: str) -> Response:
    """Enable a job: its schedule runs it again (from now on)."""
    appliance().set_job_enabled(name, True)
    return jsonify(_one(job_listing(appliance()), name, "job"))


@bp.post("/jobs/<name>/disable")
@requires("operator")
def job_disable(name: str) -> Response:
    """Disable a job: not scheduled, cannot be started; its points stay."""
    appliance().set_job_enabled(name, False)
    return jsonify(_one(job_listing(appliance()), name, "job"))


@bp.delete("/jobs/<name>")
@requires("operator")
def job_delete(name: str) -> Response:
    """Delete a job (409 while a run is queued or running); its recovery points stay."""
    kept = appliance().delete_job(name)
    return jsonify({"deleted": name, "recovery_points_kept": kept})


@bp.get("/jobs/<name>/rules")
def job_rules(name: str) -> Response:
    """A job's selection rules."""
    return jsonify({"job": name, **admin_actions.rules_record(appliance().job_rules(name))})


@bp.put("/jobs/<name>/rules")
@requires("operator")
@body(
    {
        "type": "object",
        "properties": {"include": _LINES, "exclude": _LINES, "discover": {"type": "boolean"}},
    }
)
def job_rules_set(name: str) -> Response:
    """Replace a job's selection rules (none at all: every asset of its endpoint)."""
    return jsonify({"job": name, **admin_actions.set_rules(appliance(), name, _json_object())})


@bp.post("/jobs/<name>/rules/preview")
@requires("read-only")
@body({"type": "object", "properties": {"include": _LINES, "exclude": _LINES}})
def job_rules_preview(name: str) -> Response:
    """What draft rules would select now, with the rule behind each asset (nothing saved).

    Evaluated on the catalog's assets as the last discovery left them.
    """
    return jsonify(admin_actions.preview_rules(appliance(), name, _json_object()))


# Inventory


@bp.get("/endpoints")
def endpoints() -> Response:
    """Registered endpoints with their discovery schedule and last discovery error."""
    return jsonify([endpoint_record(e) for e in appliance().endpoints()])


@bp.post("/endpoints")
@requires("admin")
@body(
    {
        "type": "object",
        "required": ["name", "plugin", "address"],
        "properties": {
            "name": _STR,
            "plugin": _STR,
            "address": _STR,
            "password": {"type": "string", "description": "sealed in the catalog"},
            "discovery_interval": {"type": "integer", "description": "seconds; 0: never"},
            "options": {"type": "object", "description": "the plugin's endpoint options"},
        },
    }
)
def endpoint_create() -> tuple[Response, int]:
    """Register an endpoint (vCenter, hypervisor pool, database server...)."""
    data = _json_object()
    specs = admin_actions.endpoint_specs(appliance(), actions.text(data, "plugin") or "")
    options = option_forms.from_json(specs, data.get("options"))
    created = admin_actions.register_endpoint(appliance(), data, options)
    return jsonify(endpoint_record(appliance().endpoint(created))), 201


@bp.patch("/endpoints/<name>")
@requires("operator")
@body({"type": "object", "properties": {"discovery_interval": {"type": "integer"}}})
def endpoint_update(name: str) -> Response:
    """Change how often the endpoint is discovered (seconds; 0: never)."""
    seconds = admin_actions.discovery_interval(_json_object())
    if seconds is None:
        raise ValueError("discovery_interval is required")
    appliance().set_discovery_interval(name, seconds)
    return jsonify(endpoint_record(appliance().endpoint(name)))


@bp.post("/endpoints/<name>/test")
@requires("operator")
def endpoint_test(name: str) -> Response:
    """Log in to the endpoint once: ``{"ok": true}`` or ``{"ok": false, "error": ...}``."""
    try:
        appliance().test_endpoint(name)
    except KeyError:
        raise
    except Exception as exc:  # any plugin failure is the answer, not a server error
        return jsonify({"ok": False, "error": str(exc) or type(exc).__name__})
    return jsonify({"ok": True, "error": None})


@bp.post("/endpoints/<name>/discover")
@requires("operator")
def endpoint_discover(name: str) -> Response:
    """Rediscover the endpoint now; vanished assets are kept, marked gone."""
    report = appliance().discover_endpoint(name)
    return jsonify(
        {
            "endpoint": name,
            "found": report.found,
            "added": report.added,
            "gone": report.gone,
            "returned": report.returned,
            "renamed": [list(r) for r in report.renamed],
        }
    )


@bp.get("/assets")
def assets() -> Response:
    """Discovered assets with protection state (which jobs, by which rule) and last point."""
    endpoint = request.args.get("endpoint") or None
    return jsonify([p.as_record() for p in appliance().asset_protection(endpoint)])


@bp.get("/assets/unprotected")
def assets_unprotected() -> Response:
    """Present assets no enabled job protects."""
    return jsonify([p.as_record() for p in appliance().unprotected_assets()])


# Settings


@bp.get("/users")
@requires("admin")
def users() -> Response:
    """Every panel user and role."""
    return jsonify([_user_record(u) for u in appliance().users()])


@bp.post("/users")
@requires("admin")
@body(
    {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": _STR,
            "password": {"type": "string", "minLength": 12},
            "role": {"type": "string", "enum": ["admin", "operator", "read-only"]},
        },
    }
)
def user_create() -> tuple[Response, int]:
    """Add a user (12 characters or more of password)."""
    username = admin_actions.create_user(appliance(), _json_object())
    return jsonify(_one_user(username)), 201


@bp.patch("/users/<username>")
@requires("admin")
@body(
    {
        "type": "object",
        "required": ["role"],
        "properties": {"role": {"type": "string", "enum": ["admin", "operator", "read-only"]}},
    }
)
def user_update(username: str) -> Response:
    """Change a user's role (409 for the last admin)."""
    admin_actions.set_role(appliance(), username, _json_object())
    return jsonify(_one_user(username))


@bp.delete("/users/<username>")
@requires("admin")
def user_delete(username: str) -> Response:
    """Delete a user and their API tokens (409 for the last admin)."""
    appliance().delete_user(username)
    return jsonify({"deleted": username})


@bp.post("/pools/<name>/key-export")
@requires("admin")
@body(
    {
        "type": "object",
        "required": ["passphrase"],
        "properties": {"passphrase": {"type": "string", "minLength": 12}},
    }
)
def pool_key_export(name: str) -> Response:
    """The pool's keys sealed with the passphrase, as a file (audited)."""
    data = admin_actions.export_key(appliance(), name, _json_object())
    return Response(
        data,
        mimetype="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}.tapir-key"'},
    )


@bp.get("/plugins")
def plugins() -> Response:
    """Loaded plugins (version, roles, hooks) and plugins that failed to load."""
    return jsonify(plugin_records(appliance().registry))


@bp.get("/appliance")
def about() -> Response:
    """Version, home, catalog URL (password masked) and time zone."""
    return jsonify(appliance().about())


def _user_record(user: Any) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "must_change_password": bool(user.must_change_password),
        "created_at": user.created_at,
    }


def _one_user(username: str) -> dict[str, Any]:
    for user in appliance().users():
        if user.username == username:
            return _user_record(user)
    raise KeyError(f"no user named {username!r}")
