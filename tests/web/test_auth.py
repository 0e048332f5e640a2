"""Logging in: hashed passwords, the first-run password change, session expiry, login
rate limiting, CSRF on every form, and logging out."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import select

from tapir.appliance.catalog.models import User
from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins
from tapir.appliance.web.app import create_app

from .conftest import PASSWORD, FakeClock, csrf_token, log_in


def test_passwords_are_stored_hashed(appliance: Appliance) -> None:
    with appliance.catalog.session() as s:
        hashes = list(s.scalars(select(User.password_hash)))
    assert len(hashes) == 3
    assert all(PASSWORD not in h and h.startswith("scrypt") for h in hashes), hashes


def test_first_run_forces_the_generated_password_to_be_changed(tmp_path: Path) -> None:
    app = Appliance.open(load_settings(tmp_path / "fresh"), registry=load_plugins())
    try:
        generated = app.initialize()
        assert generated
        client = create_app(app, TESTING=True).test_client()
        response = log_in(client, "admin", generated)
        assert response.headers["Location"] == "/account/password"
        # Every page and the API are closed until the password is changed.
        assert client.get("/pools/").headers["Location"] == "/account/password"
        assert client.get("/api/v1/pools").status_code == 403
        token = csrf_token(client)
        refused = client.post(
            "/account/password",
            data={"current": generated, "new": "short", "repeat": "short", "csrf_token": token},
        )
        assert refused.status_code == 400
        assert "at least 12 characters" in refused.get_data(as_text=True)
        wrong = client.post(
            "/account/password",
            data={"current": "nope", "new": PASSWORD, "repeat": PASSWORD, "csrf_token": token},
        )
        assert wrong.status_code == 400
        assert app.authenticate("admin", generated) is not None  # nothing changed yet
        done = client.post(
            "/account/password",
            data={"current": generated, "new": PASSWORD, "repeat": PASSWORD, "csrf_token": token},
        )
        assert done.status_code == 302
        assert client.get("/pools/").status_code == 200
        assert app.authenticate("admin", generated) is None
        user = app.authenticate("admin", PASSWORD)
        assert user is not None and not user.must_change_password
        assert ("admin", "user.password") in [(e.actor, e.action) for e in app.audit_events()]
    finally:
        app.close()


def test_session_expires_when_idle_and_after_its_maximum(
    flask_app: Flask, clock: FakeClock
) -> None:
    client = flask_app.test_client()
    log_in(client, "admin")
    idle = flask_app.config["TAPIR_SESSION_IDLE"]
    clock.now += idle - 1
    assert client.get("/").status_code == 200  # a request renews the idle timer
    clock.now += idle - 1
    assert client.get("/").status_code == 200
    clock.now += idle + 1
    assert client.get("/").headers["Location"].startswith("/login")
    assert client.get("/api/v1/runs").status_code == 401

    log_in(client, "admin")
    steps = flask_app.config["TAPIR_SESSION_MAX"] // (idle - 1)
    for _ in range(steps):  # never idle too long, up to the maximum
        clock.now += idle - 1
        assert client.get("/").status_code == 200
    clock.now += idle - 1
    assert client.get("/").headers["Location"].startswith("/login")


def test_failed_logins_are_rate_limited(
    flask_app: Flask, clock: FakeClock, appliance: Appliance
) -> None:
    client = flask_app.test_client()
    for _ in range(3):
        assert log_in(client, "operator", "wrong").status_code == 401
    blocked = log_in(client, "operator")  # even the right password waits now
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert "Too many failed logins" in blocked.get_data(as_text=True)
    assert "login.blocked" in [e.action for e in appliance.audit_events()]
    clock.now += 61
    assert log_in(client, "operator").status_code == 302


def test_a_success_clears_the_failures(flask_app: Flask) -> None:
    client = flask_app.test_client()
    for _ in range(2):
        log_in(client, "readonly", "wrong")
    assert log_in(client, "readonly").status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    for _ in range(2):
        log_in(client, "readonly", "wrong")
    assert log_in(client, "readonly").status_code == 302


def test_forms_without_csrf_token_are_refused(flask_app: Flask, appliance: Appliance) -> None:
    client = flask_app.test_client()
    response = client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert response.status_code == 400
    log_in(client, "admin")
    before = [p.name for p in appliance.pools()]
    for path, data in (
        ("/pools/new", {"name": "forged", "action": "save"}),
        ("/retention/new", {"name": "forged", "keep_last": "1", "action": "save"}),
        ("/logout", {}),
        ("/account/tokens", {"name": "forged"}),
    ):
        response = client.post(path, data=data)
        assert response.status_code == 400, path
        assert "CSRF" in response.get_data(as_text=True)
        wrong = client.post(path, data={**data, "csrf_token": "not-the-token"})
        assert wrong.status_code == 400, path
    assert [p.name for p in appliance.pools()] == before
    assert appliance.retention_policies() == []
    assert client.get("/").status_code == 200  # the forged logout did nothing


def test_logout_ends_the_session(flask_app: Flask) -> None:
    client = flask_app.test_client()
    log_in(client, "admin")
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert client.get("/").status_code == 302


def test_a_role_change_applies_to_open_sessions(login, appliance: Appliance) -> None:
    client = login("admin")
    assert client.get("/audit/").status_code == 200
    with appliance.catalog.session() as s:
        s.scalar(select(User).where(User.username == "admin")).role = "read-only"
    assert client.get("/audit/").status_code == 403
    with appliance.catalog.session() as s:
        s.delete(s.scalar(select(User).where(User.username == "admin")))
    assert client.get("/").headers["Location"].startswith("/login")
