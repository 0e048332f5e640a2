"""``/healthz``: is the panel up and can it reach the catalog (for systemd and monitors)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text
from werkzeug.wrappers import Response

from ..auth import appliance

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 with ``{"status": "ok"}`` when the catalog answers, 503 otherwise."""
    try:
        with appliance().catalog.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any catalog failure means unhealthy, with the reason
        return jsonify({"status": "error", "catalog": str(exc)}), 503
    return jsonify({"status": "ok", "catalog": "ok"}), 200
