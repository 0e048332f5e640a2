"""The JSON API, ``/api/v1``: the same records as ``tapir ... --json``.

Session-authenticated for now (the login guard answers 401 without a session);
token authentication and the OpenAPI document come with the full panel.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from ...cli.records import job_listing, pool_listing, run_listing
from ..auth import appliance

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_LIMIT = 1000


@bp.get("/runs")
def runs() -> Response:
    """Recent runs, newest first; ``?limit=N`` (1..1000, default 50) and ``?job=NAME``."""
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        return _bad_request("limit must be a whole number")
    if not 1 <= limit <= MAX_LIMIT:
        return _bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    job = request.args.get("job") or None
    return jsonify(run_listing(appliance(), limit=limit, job=job))


@bp.get("/pools")
def pools() -> Response:
    """Every pool with its usage."""
    return jsonify(pool_listing(appliance()))


@bp.get("/jobs")
def jobs() -> Response:
    """Every job with its schedules and next run."""
    return jsonify(job_listing(appliance()))


def _bad_request(message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = 400
    return response
