"""Login and logout pages, with failed logins rate-limited per address and user name."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from ..auth import appliance, authenticate, login_user
from ..ratelimit import LoginLimiter

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    # Only local paths: an absolute or protocol-relative URL would be an open redirect.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("dashboard.index")


def _limiter() -> LoginLimiter:
    return current_app.extensions["tapir.login_limiter"]


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int, dict[str, str]] | tuple[str, int]:
    """The login form; on success, back to where the user was going."""
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    remote = request.remote_addr or ""
    keys = (f"addr:{remote}", f"user:{username.lower()}")
    wait = _limiter().retry_after(*keys)
    if wait:
        appliance().audit(username or "-", "login.blocked", remote_addr=remote)
        flash(f"Too many failed logins; try again in {wait} seconds.", "error")
        page = render_template("login.html", next=request.form.get("next", ""))
        return page, 429, {"Retry-After": str(wait)}
    user = authenticate(username, password) if username and password else None
    if user is None:
        _limiter().failed(*keys)
        appliance().audit(username or "-", "login.failed", remote_addr=remote)
        flash("Wrong user name or password.", "error")
        return render_template("login.html", next=request.form.get("next", "")), 401
    _limiter().succeeded(*keys)
    login_user(user)
    appliance().audit(user.username, "login", remote_addr=remote)
    if user.must_change_password:
        return redirect(url_for("account.password"))
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Response:
    """End the session (a POST, so a link on another site cannot log anyone out)."""
    session.clear()
    return redirect(url_for("auth.login"))
