"""The user's own account: changing the password (forced on first run) and API tokens."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ..auth import appliance, authenticate, current_user, password_changed
from ..roles import requires
from ..tokens import create_token, revoke_token, user_tokens

bp = Blueprint("account", __name__, url_prefix="/account")

MIN_PASSWORD = 12


def check_new_password(username: str, new: str, repeat: str) -> str | None:
    """Why ``new`` cannot be the password, or None."""
    if new != repeat:
        return "The two new passwords differ."
    if len(new) < MIN_PASSWORD:
        return f"A password needs at least {MIN_PASSWORD} characters."
    if new.lower() == username.lower():
        return "The password cannot be the user name."
    return None


@bp.route("/password", methods=["GET", "POST"])
@requires("read-only")
def password() -> str | Response | tuple[str, int]:
    """Change one's own password; the only page a first-run admin can reach."""
    user = current_user()
    assert user is not None
    if request.method == "GET":
        return render_template("password.html", forced=user.must_change_password)
    current = request.form.get("current", "")
    new = request.form.get("new", "")
    problem = None
    if authenticate(user.username, current) is None:
        problem = "The current password is wrong."
    else:
        problem = check_new_password(user.username, new, request.form.get("repeat", ""))
        if problem is None and new == current:
            problem = "The new password must differ from the current one."
    if problem:
        flash(problem, "error")
        return render_template("password.html", forced=user.must_change_password), 400
    appliance().set_password(user.username, new)
    password_changed()
    flash("Password changed.", "ok")
    return redirect(url_for("dashboard.index"))


@bp.get("/tokens")
@requires("read-only")
def tokens() -> str:
    """The user's API tokens."""
    user = current_user()
    assert user is not None
    return render_template("tokens.html", tokens=user_tokens(appliance(), user.id), new=None)


@bp.post("/tokens")
@requires("read-only")
def token_create() -> str | tuple[str, int]:
    """Create a token; its text is shown on this response only."""
    user = current_user()
    assert user is not None
    try:
        token = create_token(appliance(), user.id, user.username, request.form.get("name", ""))
    except ValueError as exc:
        flash(str(exc), "error")
        return render_template("tokens.html", tokens=user_tokens(appliance(), user.id)), 400
    return render_template("tokens.html", tokens=user_tokens(appliance(), user.id), new=token)


@bp.post("/tokens/<int:token_id>/revoke")
@requires("read-only")
def token_revoke(token_id: int) -> Response | tuple[str, int]:
    """Revoke one of the user's own tokens."""
    user = current_user()
    assert user is not None
    try:
        revoke_token(appliance(), user.id, user.username, token_id)
    except KeyError:
        return "no such token", 404
    flash("Token revoked.", "ok")
    return redirect(url_for("account.tokens"))
