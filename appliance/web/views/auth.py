"""Login and logout pages."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..auth import appliance, authenticate, login_user

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    # Only local paths: an absolute or protocol-relative URL would be an open redirect.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    """The login form; on success, back to where the user was going."""
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    user = authenticate(username, password) if username and password else None
    remote = request.remote_addr or ""
    if user is None:
        appliance().audit(username or "-", "login.failed", remote_addr=remote)
        flash("Wrong user name or password.", "error")
        return render_template("login.html", next=request.form.get("next", "")), 401
    login_user(user)
    appliance().audit(user.username, "login", remote_addr=remote)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Response:
    """End the session (a POST, so a link on another site cannot log anyone out)."""
    from flask import session

    session.clear()
    return redirect(url_for("auth.login"))
