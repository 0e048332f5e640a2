"""Settings → Notifications in the panel: admins add, test and delete targets and set the
time zone; other roles are refused; bad input changes nothing; CSRF is enforced."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.web.app import create_app

from .servers import Hook

PASSWORD = "correct horse battery staple"
BASE = "/settings/notifications/"


@pytest.fixture
def panel(tmp_path: Path) -> Iterator[tuple[Appliance, FlaskClient, FlaskClient]]:
    """The appliance, and clients logged in as an admin and as an operator."""
    app = Appliance.open(load_settings(tmp_path / "home"))
    app.initialize()
    app.set_password("admin", PASSWORD)
    app.create_user("operator", PASSWORD, "operator")
    flask_app = create_app(app, TESTING=True)
    clients = []
    for user in ("admin", "operator"):
        client = flask_app.test_client()
        response = client.post(
            "/login",
            data={"username": user, "password": PASSWORD, "csrf_token": _csrf(client, "/login")},
        )
        assert response.status_code == 302, response.get_data(as_text=True)
        clients.append(client)
    yield app, clients[0], clients[1]
    app.close()


def _csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def _post(client: FlaskClient, path: str, **data: object):
    return client.post(path, data={**data, "csrf_token": _csrf(client, BASE)})


def test_admin_adds_tests_and_deletes_a_webhook(
    panel: tuple[Appliance, FlaskClient, FlaskClient], webhook: tuple[str, Hook]
) -> None:
    app, admin, _ = panel
    url, hook = webhook
    assert "Notifications" in admin.get("/settings/").get_data(as_text=True)
    response = _post(
        admin,
        BASE,
        kind="webhook",
        name="chat",
        url=url,
        events=["failure", "success"],
        secret="s1",
    )
    assert response.status_code == 302
    (target,) = app.notification_targets()
    assert (target.name, target.events, target.secret_name) == (
        "chat",
        ["failure", "success"],
        "notification.chat",
    )
    page = admin.get(BASE).get_data(as_text=True)
    assert 'data-target="chat"' in page and "s1" not in page

    _post(admin, f"{BASE}chat/test")
    assert hook.json()["event"] == "test"
    assert "Test notification delivered to chat." in admin.get(BASE).get_data(as_text=True)
    hook.status = 500
    _post(admin, f"{BASE}chat/test")
    assert "Delivery to chat failed" in admin.get(BASE).get_data(as_text=True)

    assert _post(admin, f"{BASE}chat/delete").status_code == 302
    assert app.notification_targets() == []


def test_an_email_target_from_the_form(panel: tuple[Appliance, FlaskClient, FlaskClient]) -> None:
    app, admin, _ = panel
    response = _post(
        admin,
        BASE,
        kind="email",
        name="ops",
        host="127.0.0.1",
        port="2525",
        starttls="on",
        to="ops@example.com, noc@example.com",
        events=["operator-request"],
    )
    assert response.status_code == 302
    (target,) = app.notification_targets()
    assert target.config["to"] == ["ops@example.com", "noc@example.com"]
    assert (target.config["port"], target.config["starttls"]) == (2525, True)
    assert target.events == ["operator-request"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "webhook", "name": "x", "url": "ftp://nope"}, "invalid webhook URL"),
        ({"kind": "email", "name": "x", "host": "h", "to": "not-an-address"}, "invalid email"),
        (
            {"kind": "email", "name": "x", "host": "h", "port": "abc", "to": "a@b.example"},
            "port must be a number",
        ),
        ({"kind": "webhook", "name": "", "url": "http://h/x"}, "name is required"),
    ],
)
def test_bad_input_is_a_400_and_saves_nothing(
    panel: tuple[Appliance, FlaskClient, FlaskClient], data: dict, message: str
) -> None:
    app, admin, _ = panel
    response = _post(admin, BASE, **data)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert app.notification_targets() == []


def test_time_zone_form(panel: tuple[Appliance, FlaskClient, FlaskClient]) -> None:
    app, admin, _ = panel
    assert _post(admin, f"{BASE}timezone", timezone="Europe/Berlin").status_code == 302
    assert app.timezone() == "Europe/Berlin"
    response = _post(admin, f"{BASE}timezone", timezone="Atlantis/Capital")
    assert response.status_code == 400 and "unknown time zone" in response.get_data(as_text=True)
    assert app.timezone() == "Europe/Berlin"


def test_operators_and_forged_requests_are_refused(
    panel: tuple[Appliance, FlaskClient, FlaskClient],
) -> None:
    app, admin, operator = panel
    assert operator.get(BASE).status_code == 403
    response = operator.post(
        BASE,
        data={
            "kind": "webhook",
            "name": "x",
            "url": "http://h/x",
            "csrf_token": _csrf(operator, "/"),
        },
    )
    assert response.status_code == 403
    forged = admin.post(BASE, data={"kind": "webhook", "name": "x", "url": "http://h/x"})
    assert forged.status_code == 400
    assert app.notification_targets() == []
