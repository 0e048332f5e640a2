"""Who is asking, and may they: sessions, API tokens, roles, expiry and first-run.

Every endpoint needs a logged-in user unless it is listed in :data:`PUBLIC_ENDPOINTS`,
so a plugin's blueprint is protected without doing anything. A request is
authenticated by the session cookie (pages, and the panel's own JavaScript) or by
``Authorization: Bearer <token>`` (API clients). Changing requests made with the
cookie must carry the CSRF token; token requests need none, since a browser never
adds the header by itself.

Sessions expire after ``TAPIR_SESSION_IDLE`` without a request and, in any case,
``TAPIR_SESSION_MAX`` after the login. A user who must change their password (the
generated admin password of a new appliance) reaches nothing but that page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, g, jsonify, redirect, request, session, url_for
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response

from ..catalog.models import User
from ..engine.service import Appliance
from . import roles
from .tokens import token_owner

PUBLIC_ENDPOINTS = {"auth.login", "health.healthz", "static", "api.openapi"}
# Reachable while the password must still be changed.
FIRST_RUN_ENDPOINTS = {"account.password", "auth.logout"}


@dataclass(frozen=True)
class CurrentUser:
    """The user a request acts as."""

    id: int
    username: str
    role: str
    must_change_password: bool = False


def appliance() -> Appliance:
    """The facade this app was created with."""
    return current_app.extensions["tapir.appliance"]


def _now() -> float:
    return current_app.config["TAPIR_CLOCK"]()


def authenticate(username: str, password: str) -> CurrentUser | None:
    """The user when the password matches, else None (the facade does the same work
    for unknown names, so timing does not reveal which names exist)."""
    user = appliance().authenticate(username, password)
    if user is None:
        return None
    return CurrentUser(user.id, user.username, user.role, bool(user.must_change_password))


def login_user(user: CurrentUser) -> None:
    """Start a fresh session for ``user`` (a new session defeats fixation)."""
    session.clear()
    session["user"] = {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "must_change_password": user.must_change_password,
    }
    session["login_at"] = session["seen_at"] = _now()
    session.permanent = True


def password_changed() -> None:
    """The session's user has set their own password: the first-run lock is lifted."""
    data = dict(session.get("user") or {})
    data["must_change_password"] = False
    session["user"] = data


def current_user() -> CurrentUser | None:
    """The request's user (session or token), or None."""
    user = g.get("user")
    if user is not None:
        return user
    return _session_user()


def _session_user() -> CurrentUser | None:
    data = session.get("user")
    if not isinstance(data, dict):
        return None
    try:
        return CurrentUser(
            int(data["id"]),
            str(data["username"]),
            str(data["role"]),
            bool(data.get("must_change_password", False)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _reloaded(user: CurrentUser) -> CurrentUser | None:
    with appliance().catalog.session() as s:
        row = s.get(User, user.id)
        if row is None or row.username != user.username:
            return None
        return CurrentUser(row.id, row.username, row.role, bool(row.must_change_password))


def _session_expired() -> bool:
    now = _now()
    cfg = current_app.config
    try:
        login_at = float(session["login_at"])
        seen_at = float(session["seen_at"])
    except (KeyError, TypeError, ValueError):
        return True
    return now - login_at > cfg["TAPIR_SESSION_MAX"] or now - seen_at > cfg["TAPIR_SESSION_IDLE"]


def wants_json() -> bool:
    """API requests get JSON errors, pages get pages."""
    return request.path.startswith("/api/")


def json_error(message: str, status: int, **extra: Any) -> Response:
    """``{"error": message}`` with ``status``."""
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _guard() -> Response | None:
    token = _bearer()
    public = request.endpoint in PUBLIC_ENDPOINTS
    if request.method not in roles.SAFE_METHODS and (token is None or public):
        # Raises CSRFError (answered 400) when the form or X-CSRFToken header lacks it.
        current_app.extensions["csrf"].protect()
    if public:
        return None
    if token is not None:
        owner = token_owner(appliance(), token)
        if owner is None:
            return json_error("invalid API token", 401)
        user = CurrentUser(owner.user_id, owner.username, owner.role, owner.must_change_password)
    else:
        user = _session_user()
        if user is not None:
            # The catalog's word, not the cookie's: a demoted or deleted user loses
            # their rights at the next request, not when the session ends.
            user = None if _session_expired() else _reloaded(user)
            if user is None:
                session.clear()
        if user is None:
            if wants_json():
                return json_error("login required", 401)
            return redirect(url_for("auth.login", next=request.full_path))
        session["seen_at"] = _now()
    g.user = user
    if user.must_change_password and request.endpoint not in FIRST_RUN_ENDPOINTS:
        if wants_json():
            return json_error("change the generated password first", 403)
        return redirect(url_for("account.password"))
    view = current_app.view_functions.get(request.endpoint or "")
    needed = roles.needed_role(view, request.method)
    if not roles.allows(user.role, needed):
        message = f"this needs the {needed} role (you are {user.role})"
        if wants_json():
            return json_error(message, 403)
        return Response(message, status=403, mimetype="text/plain")
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
    """Install CSRF protection (checked by the guard) and the guard on ``app``."""
    app.config.setdefault("TAPIR_CLOCK", time.time)
    app.config.setdefault("TAPIR_SESSION_IDLE", 30 * 60)
    app.config.setdefault("TAPIR_SESSION_MAX", 12 * 3600)
    # The guard decides when to check (not for bearer tokens), so no automatic check.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    CSRFProtect(app)
    app.before_request(_guard)
    app.teardown_request(_end_acting)
