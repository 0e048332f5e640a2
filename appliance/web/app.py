"""The web panel's app factory: ``create_app(appliance)``.

Built-in pages are blueprints in :mod:`.views`; plugins add theirs through the
``tapir_web_blueprints`` and ``tapir_web_menu_items`` hooks. A plugin whose hook
raises is left out and recorded in the registry's failures; the panel still starts.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, render_template, url_for
from flask.json.provider import DefaultJSONProvider
from flask_wtf.csrf import CSRFError
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response

from ..engine.service import Appliance
from ..plugin_manager import PluginFailure, PluginRegistry
from . import auth, filters, roles
from .ratelimit import LoginLimiter
from .views import (
    account,
    admin_api,
    api,
    audit,
    dashboard,
    health,
    inventory,
    jobs,
    plugins_page,
    pools,
    restore,
    retention,
    settings,
)
from .views import auth as auth_views

log = logging.getLogger(__name__)

SECRET_KEY_FILE = "web-session.key"


class _JSON(DefaultJSONProvider):
    """Times as ISO 8601 (Flask's default is the HTTP date format)."""

    sort_keys = True

    @staticmethod
    def default(o: Any) -> Any:
        from ..cli.output import json_default

        try:
            return json_default(o)
        except TypeError:
            return DefaultJSONProvider.default(o)


def session_secret(secrets_dir: Path) -> bytes:
    """The session-signing key, created once (0600) so sessions survive restarts and
    are shared by every panel process of the appliance."""
    path = secrets_dir / SECRET_KEY_FILE
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = -1
    if fd < 0:
        key = path.read_bytes()
        if len(key) < 32:
            raise ValueError(f"{path} is too short to be a session key; delete it to renew it")
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def create_app(appliance: Appliance, **config: Any) -> Flask:
    """The panel for ``appliance``; ``config`` overrides Flask settings (tests)."""
    app = Flask(__name__)
    app.json = _JSON(app)
    app.config.update(
        SECRET_KEY=session_secret(appliance.settings.secrets_dir),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.config.update(config)
    app.extensions["tapir.appliance"] = appliance
    app.extensions.setdefault("tapir.login_limiter", LoginLimiter())
    auth.install(app)
    filters.install(app)
    blueprints = (health.bp, auth_views.bp, account.bp, dashboard.bp, api.bp)
    for bp in (*blueprints, jobs.bp, pools.bp, retention.bp, audit.bp, restore.bp, restore.api_bp):
        app.register_blueprint(bp)
    for bp in (inventory.bp, settings.bp, plugins_page.bp, admin_api.bp):
        app.register_blueprint(bp)
    from .views import notifications  # Settings → Notifications (engine/notifications.py)

    app.register_blueprint(notifications.bp)
    from .views import image_files  # files inside image backups (appliance/imagefs)

    app.register_blueprint(image_files.bp)
    from .views import settings_api  # notifications, time zone, limits, usage, library

    app.register_blueprint(settings_api.bp)
    # A plugin's pages get their narrow context here (e.g. "tape"), never the facade.
    app.extensions["tapir.plugin_context"] = appliance.plugin_context
    _add_plugin_blueprints(app, appliance.registry)
    menu = [
        {"label": "Dashboard", "endpoint": "dashboard.index"},
        {"label": "Jobs", "endpoint": "jobs.index"},
        {"label": "Pools", "endpoint": "pools.index"},
        {"label": "Retention", "endpoint": "retention.index"},
        {"label": "Restore", "endpoint": "restore.index"},
        {"label": "Inventory", "endpoint": "inventory.index"},
        {"label": "Audit log", "endpoint": "audit.index"},
        {"label": "Settings", "endpoint": "settings.index"},
    ]
    menu += _plugin_menu_items(appliance.registry)
    app.extensions["tapir.menu"] = menu

    @app.errorhandler(CSRFError)
    def _csrf_failed(exc: CSRFError) -> tuple[Response | str, int]:
        if auth.wants_json():
            return auth.json_error(f"CSRF check failed: {exc.description}", 400), 400
        return render_template("error.html", message=exc.description), 400

    @app.context_processor
    def _menu() -> dict[str, Any]:
        user = auth.current_user()
        return {"menu": _resolved_menu(app, user), "current_user": user}

    return app


def _hook_results(registry: PluginRegistry, hook: str) -> list[tuple[str, list[Any]]]:
    results = []
    for impl in getattr(registry.pm.hook, hook).get_hookimpls():
        name = registry.pm.get_name(impl.plugin) or "?"
        try:
            results.append((name, list(impl.function() or [])))
        except Exception as exc:  # a plugin's bug must not keep the panel down
            log.warning("plugin %s failed in %s: %s", name, hook, exc)
            registry.failures.append(PluginFailure(name, f"hook {hook}", repr(exc)))
    return results


def _add_plugin_blueprints(app: Flask, registry: PluginRegistry) -> None:
    for name, blueprints in _hook_results(registry, "tapir_web_blueprints"):
        for bp in blueprints:
            try:
                app.register_blueprint(bp)
            except Exception as exc:  # e.g. a name clash with a built-in blueprint
                log.warning("plugin %s: blueprint refused: %s", name, exc)
                registry.failures.append(
                    PluginFailure(name, "hook tapir_web_blueprints", repr(exc))
                )


def _plugin_menu_items(registry: PluginRegistry) -> list[dict[str, str]]:
    items = []
    for name, entries in _hook_results(registry, "tapir_web_menu_items"):
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("label") or not entry.get("endpoint"):
                registry.failures.append(
                    PluginFailure(name, "hook tapir_web_menu_items", f"bad menu entry {entry!r}")
                )
                continue
            items.append({"label": str(entry["label"]), "endpoint": str(entry["endpoint"])})
    return items


def _resolved_menu(app: Flask, user: auth.CurrentUser | None) -> list[dict[str, str]]:
    resolved = []
    for item in app.extensions["tapir.menu"]:
        try:
            url = url_for(item["endpoint"])
        except BuildError:
            # An entry naming an endpoint that does not exist is left out, not fatal.
            continue
        # A page the user's role cannot open is not offered.
        needed = roles.needed_role(app.view_functions.get(item["endpoint"]), "GET")
        if user is not None and roles.allows(user.role, needed):
            resolved.append({"label": item["label"], "url": url})
    return resolved
