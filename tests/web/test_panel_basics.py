"""The web panel on a real catalog: health, login with CSRF, dashboard, JSON API, plugins."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Blueprint
from flask.testing import FlaskClient

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import hookimpl
from tapir.appliance.plugin_manager import load_plugins
from tapir.appliance.web.app import create_app

PASSWORD = "correct horse battery staple"


def _panel_plugin() -> object:
    bp = Blueprint("acme", __name__, url_prefix="/acme")

    @bp.get("/")
    def index() -> str:
        return "acme page"

    @hookimpl
    def tapir_web_blueprints() -> list[Blueprint]:
        return [bp]

    @hookimpl
    def tapir_web_menu_items() -> list[dict[str, str]]:
        return [
            {"label": "Acme", "endpoint": "acme.index"},
            {"label": "Ghost", "endpoint": "acme.missing"},
        ]

    return SimpleNamespace(
        __name__="acme",
        tapir_web_blueprints=tapir_web_blueprints,
        tapir_web_menu_items=tapir_web_menu_items,
    )


def _broken_panel_plugin() -> object:
    @hookimpl
    def tapir_web_blueprints() -> list[Blueprint]:
        raise RuntimeError("no blueprint today")

    return SimpleNamespace(__name__="broken", tapir_web_blueprints=tapir_web_blueprints)


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    registry = load_plugins(extra=[_panel_plugin(), _broken_panel_plugin()], entry_points=False)
    app = Appliance.open(load_settings(tmp_path / "home"), registry=registry)
    app.create_user("admin", PASSWORD, "admin")
    yield app
    app.close()


@pytest.fixture
def client(appliance: Appliance) -> FlaskClient:
    return create_app(appliance, TESTING=True).test_client()


def csrf_token(client: FlaskClient) -> str:
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def login(client: FlaskClient, password: str = PASSWORD, token: str | None = None):
    token = csrf_token(client) if token is None else token
    return client.post(
        "/login",
        data={"username": "admin", "password": password, "csrf_token": token, "next": ""},
    )


def test_healthz_needs_no_login(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "catalog": "ok"}


def test_pages_and_api_need_a_login(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    for path in ("/api/v1/runs", "/api/v1/pools", "/api/v1/jobs"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.get_json() == {"error": "login required"}
    # A plugin's blueprint is guarded too, without doing anything itself.
    assert client.get("/acme/").status_code == 302


def test_login_logout(client: FlaskClient, appliance: Appliance) -> None:
    response = login(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "Runs of the last 24 hours" in page
    assert "admin (admin)" in page
    events = [(e.actor, e.action) for e in appliance.audit_events()]
    assert ("admin", "login") in events
    client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert client.get("/").status_code == 302


def test_wrong_password_is_refused_and_audited(client: FlaskClient, appliance: Appliance) -> None:
    response = login(client, password="wrong")
    assert response.status_code == 401
    assert "Wrong user name or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302
    assert ("admin", "login.failed") in [(e.actor, e.action) for e in appliance.audit_events()]


def test_login_without_csrf_token_is_refused(client: FlaskClient) -> None:
    client.get("/login")
    response = login(client, token="forged")
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_next_never_redirects_off_site(client: FlaskClient) -> None:
    token = csrf_token(client)
    response = client.post(
        "/login",
        data={
            "username": "admin",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/",
        },
    )
    assert response.headers["Location"] == "/"


def test_api_returns_records(client: FlaskClient, appliance: Appliance, tmp_path: Path) -> None:
    login(client)
    assert client.get("/api/v1/runs").get_json() == []
    assert client.get("/api/v1/jobs").get_json() == []
    assert client.get("/api/v1/pools").get_json() == []
    assert client.get("/api/v1/runs?limit=zero").status_code == 400
    assert client.get("/api/v1/runs?limit=5000").status_code == 400


def test_plugin_blueprint_and_menu(client: FlaskClient, appliance: Appliance) -> None:
    login(client)
    assert client.get("/acme/").get_data(as_text=True) == "acme page"
    page = client.get("/").get_data(as_text=True)
    assert '<a href="/acme/">Acme</a>' in page
    assert "Ghost" not in page  # names an endpoint that does not exist
    failure = next(f for f in appliance.registry.failures if f.name == "broken")
    assert failure.stage == "hook tapir_web_blueprints"


def test_static_assets_are_local(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    assert "http://" not in page and "https://" not in page
    assert client.get("/static/tapir.css").status_code == 200
