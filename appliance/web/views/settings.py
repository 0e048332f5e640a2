"""Settings pages (admin): users and roles, pool key export for disaster recovery, and
what the appliance is (version, home, catalog, time zone)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ...engine.service import ROLES
from ...plugin_api.errors import TapirError
from .. import admin_actions
from ..auth import appliance, current_user
from ..roles import requires

bp = Blueprint("settings", __name__, url_prefix="/settings")


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


@bp.get("/")
@requires("admin")
def index() -> str:
    """Appliance information and links to users and keys."""
    return render_template("settings.html", about=appliance().about())


@bp.get("/users")
@requires("admin")
def users() -> str:
    """Every user and role; add, change role, delete."""
    return render_template("users.html", users=appliance().users(), roles=ROLES, form={})


@bp.post("/users")
@requires("admin")
def user_create() -> Response | tuple[str, int]:
    """Add a user."""
    try:
        username = admin_actions.create_user(appliance(), request.form)
    except (ValueError, KeyError) as exc:
        flash(_message(exc), "error")
        page = render_template(
            "users.html", users=appliance().users(), roles=ROLES, form=request.form
        )
        return page, 400
    flash(f"User {username} added.", "ok")
    return redirect(url_for("settings.users"))


@bp.post("/users/<username>/role")
@requires("admin")
def user_role(username: str) -> Response:
    """Change a user's role (the last admin keeps theirs)."""
    try:
        admin_actions.set_role(appliance(), username, request.form)
    except (ValueError, KeyError, TapirError) as exc:
        flash(_message(exc), "error")
    else:
        flash(f"{username} is now {request.form.get('role')}.", "ok")
    return redirect(url_for("settings.users"))


@bp.post("/users/<username>/delete")
@requires("admin")
def user_delete(username: str) -> Response:
    """Delete a user and their API tokens (never the last admin, never oneself)."""
    me = current_user()
    try:
        if me is not None and me.username == username:
            raise TapirError("you cannot delete yourself; ask another admin")
        appliance().delete_user(username)
    except (KeyError, TapirError) as exc:
        flash(_message(exc), "error")
    else:
        flash(f"User {username} deleted.", "ok")
    return redirect(url_for("settings.users"))


@bp.get("/keys")
@requires("admin")
def keys() -> str:
    """The encrypted pools whose keys can be exported."""
    pools = [p for p in appliance().pools() if p.encrypted]
    return render_template("keys.html", pools=pools)


@bp.post("/keys/<pool>")
@requires("admin")
def key_export(pool: str) -> Response | tuple[str, int]:
    """Download the pool's keys sealed with the passphrase (audited as pool.key.export)."""
    try:
        data = admin_actions.export_key(appliance(), pool, request.form)
    except (ValueError, KeyError, TapirError) as exc:
        flash(_message(exc), "error")
        pools = [p for p in appliance().pools() if p.encrypted]
        return render_template("keys.html", pools=pools), 400
    return Response(
        data,
        mimetype="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{pool}.tapir-key"'},
    )
