"""Who is logged in: password checks against the users table and the login guard.

Every endpoint needs a logged-in user unless it is listed in :data:`PUBLIC_ENDPOINTS`,
so a plugin's blueprint is protected without doing anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, g, jsonify, redirect, request, session, url_for
from werkzeug.wrappers import Response

from ..engine.service import Appliance

PUBLIC_ENDPOINTS = {"auth.login", "health.healthz", "static"}


@dataclass(frozen=True)
class CurrentUser:
    """The logged-in user as the session knows it."""

    id: int
    username: str
    role: str


def appliance() -> Appliance:
    """The facade this app was created with."""
    return current_app.extensions["tapir.appliance"]


def authenticate(username: str, password: str) -> CurrentUser | None:
    """The user when the password matches, else None (the facade does the same work
    for unknown names, so timing does not reveal which names exist)."""
    user = appliance().authenticate(username, password)
    return CurrentUser(user.id, user.username, user.role) if user is not None else None


def login_user(user: CurrentUser) -> None:
    """Start a fresh session for ``user`` (a new session defeats fixation)."""
    session.clear()
    session["user"] = {"id": user.id, "username": user.username, "role": user.role}
    session.permanent = True


def current_user() -> CurrentUser | None:
    """The session's user, or None."""
    data = session.get("user")
    if not isinstance(data, dict):
        return None
    try:
        return CurrentUser(int(data["id"]), str(data["username"]), str(data["role"]))
    except (KeyError, TypeError, ValueError):
        return None


def _guard() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    user = current_user()
    if user is None:
        if request.path.startswith("/api/"):
            response = jsonify({"error": "login required"})
            response.status_code = 401
            return response
        return redirect(url_for("auth.login", next=request.full_path))
    g.user = user
    # Changes made while handling the request are audited as this user.
    acting = appliance().acting_as(user.username, request.remote_addr)
    acting.__enter__()
    g.tapir_acting = acting
    return None


def _end_acting(exc: BaseException | None) -> None:
    acting = g.pop("tapir_acting", None)
    if acting is not None:
        acting.__exit__(None, None, None)


def install(app: Flask) -> None:
    """Install the login guard on ``app``."""
    app.before_request(_guard)
    app.teardown_request(_end_acting)
