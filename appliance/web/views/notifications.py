"""Settings → Notifications (admin): email and webhook targets, the events each wants,
a test send, and the time zone schedules are evaluated in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ...engine.notifications import DEFAULT_EVENTS, EVENTS
from ..actions import text
from ..auth import appliance
from ..roles import requires

bp = Blueprint("notifications", __name__, url_prefix="/settings/notifications")


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _page(form: Mapping[str, Any] | None = None) -> str:
    app = appliance()
    return render_template(
        "notifications.html",
        targets=app.notification_targets(),
        events=EVENTS,
        default_events=DEFAULT_EVENTS,
        timezone=app.timezone(),
        form=form or {},
    )


def target_config(form: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The kind and configuration a target form describes (checked by the engine)."""
    kind = text(form, "kind", required=True) or ""
    if kind == "webhook":
        return kind, {"url": text(form, "url", required=True), "ca_file": text(form, "ca_file")}
    port = text(form, "port")
    try:
        port_number = int(port) if port else 25
    except ValueError:
        raise ValueError(f"port must be a number, not {port!r}") from None
    recipients = (text(form, "to") or "").replace("\n", ",")
    return kind, {
        "host": text(form, "host", required=True),
        "port": port_number,
        "starttls": form.get("starttls") in ("on", "1", "true"),
        "ca_file": text(form, "ca_file"),
        "username": text(form, "username"),
        "sender": text(form, "sender"),
        "to": [r.strip() for r in recipients.split(",") if r.strip()],
    }


@bp.get("/")
@requires("admin")
def index() -> str:
    """Every target with its events and how its last delivery went; the add forms."""
    return _page()


@bp.post("/")
@requires("admin")
def create() -> Response | tuple[str, int]:
    """Add a target; a bad field re-shows the form with the error, nothing saved."""
    form = request.form
    try:
        name = text(form, "name", required=True) or ""
        kind, config = target_config(form)
        appliance().add_notification_target(
            name,
            kind,
            config,
            events=form.getlist("events"),
            secret=form.get("secret") or None,
        )
    except (ValueError, KeyError) as exc:
        flash(_message(exc), "error")
        return _page(form), 400
    flash(f"Notification target {name} added.", "ok")
    return redirect(url_for("notifications.index"))


@bp.post("/<name>/test")
@requires("admin")
def test(name: str) -> Response:
    """Send a test message now and say whether it arrived."""
    try:
        delivery = appliance().test_notification_target(name)
    except KeyError as exc:
        flash(_message(exc), "error")
    else:
        if delivery.error:
            flash(f"Delivery to {name} failed: {delivery.error}", "error")
        else:
            flash(f"Test notification delivered to {name}.", "ok")
    return redirect(url_for("notifications.index"))


@bp.post("/<name>/delete")
@requires("admin")
def delete(name: str) -> Response:
    """Delete a target and its sealed secret."""
    try:
        appliance().remove_notification_target(name)
    except KeyError as exc:
        flash(_message(exc), "error")
    else:
        flash(f"Notification target {name} removed.", "ok")
    return redirect(url_for("notifications.index"))


@bp.post("/timezone")
@requires("admin")
def timezone() -> Response | tuple[str, int]:
    """Set the appliance's time zone; schedules without a zone of their own follow it."""
    try:
        zone = text(request.form, "timezone", required=True) or ""
        moved = appliance().set_timezone(zone)
    except ValueError as exc:
        flash(str(exc), "error")
        return _page(request.form), 400
    flash(f"Time zone set to {zone}; {moved} schedule(s) moved to it.", "ok")
    return redirect(url_for("notifications.index"))
