"""The scheduling part of /api/v1: notification targets (list, add, test, remove), the
appliance's time zone, job limits and retries, pool limits. Roles, CSRF for the session,
malformed input answered with a clear 4xx and nothing changed, and the OpenAPI listing."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from scheduler.servers import webhook_server

from tapir.appliance.engine.service import Appliance

from .conftest import page_csrf

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
def token(login: Callable[[str], FlaskClient]) -> Headers:
    """Bearer headers for a new API token of the user of that role."""

    def make(role: str) -> dict[str, str]:
        client = login(role)
        page = client.post(
            "/account/tokens", data={"name": "ci", "csrf_token": page_csrf(client, "/")}
        ).get_data(as_text=True)
        match = re.search(r'<code id="new-token">([^<]+)</code>', page)
        assert match, page
        return {"Authorization": f"Bearer {match.group(1)}"}

    return make


@pytest.fixture
def client(flask_app: Flask) -> FlaskClient:
    return flask_app.test_client()


def test_notification_targets_are_added_tested_and_removed_by_admins(
    appliance: Appliance, client: FlaskClient, token: Headers
) -> None:
    admin, operator = token("admin"), token("operator")
    with webhook_server() as (url, hook):
        body = {
            "name": "ops",
            "kind": "webhook",
            "config": {"url": url},
            "events": ["failure", "success"],
            "secret": "s3cret-signing-key",
        }
        assert (
            client.post("/api/v1/notification-targets", json=body, headers=operator).status_code
            == 403
        )
        assert client.get("/api/v1/notification-targets", headers=operator).status_code == 403
        r = client.post("/api/v1/notification-targets", json=body, headers=admin)
        assert r.status_code == 201, r.get_json()
        record = r.get_json()
        assert record["name"] == "ops" and record["events"] == ["failure", "success"]
        assert record["secret"] is True and "s3cret" not in r.get_data(as_text=True)
        listed = client.get("/api/v1/notification-targets", headers=admin).get_json()
        assert [t["name"] for t in listed] == ["ops"]

        r = client.post("/api/v1/notification-targets/ops/test", headers=operator)
        assert r.status_code == 403 and hook.requests == []
        r = client.post("/api/v1/notification-targets/ops/test", headers=admin)
        assert r.get_json() == {"target": "ops", "delivered": True, "error": None}
        assert len(hook.requests) == 1
        hook.status = 500
        r = client.post("/api/v1/notification-targets/ops/test", headers=admin)
        assert r.status_code == 200 and r.get_json()["delivered"] is False
        assert "500" in r.get_json()["error"]

    for bad in (
        {**body, "name": "ops"},  # exists
        {**body, "name": "x", "kind": "pigeon"},
        {**body, "name": "x", "config": {"url": "ftp://example.org/"}},
        {**body, "name": "x", "config": "http://127.0.0.1/"},
        {**body, "name": "x", "events": ["lunch"]},
        {**body, "name": "x", "events": "failure"},
        {**body, "name": "", "config": {"url": "http://127.0.0.1:1/"}},
        {**body, "name": "x", "colour": "red"},
        {"name": "x", "kind": "email", "config": {"host": "127.0.0.1"}},  # no recipient
    ):
        r = client.post("/api/v1/notification-targets", json=bad, headers=admin)
        assert r.status_code == 400, (bad, r.get_json())
        assert r.get_json()["error"]
    r = client.post("/api/v1/notification-targets", data="not json", headers=admin)
    assert r.status_code == 400
    assert [t.name for t in appliance.notification_targets()] == ["ops"]

    assert client.post("/api/v1/notification-targets/nope/test", headers=admin).status_code == 404
    assert client.delete("/api/v1/notification-targets/ops", headers=operator).status_code == 403
    assert client.delete("/api/v1/notification-targets/nope", headers=admin).status_code == 404
    r = client.delete("/api/v1/notification-targets/ops", headers=admin)
    assert r.get_json() == {"deleted": "ops"}
    assert appliance.notification_targets() == []
    actions = [e.action for e in appliance.audit_events()]
    assert {"notification.add", "notification.test", "notification.remove"} <= set(actions)


def test_the_time_zone_is_read_by_anyone_and_set_by_admins(
    appliance: Appliance, client: FlaskClient, token: Headers
) -> None:
    admin, reader = token("admin"), token("read-only")
    before = appliance.timezone()
    assert client.get("/api/v1/timezone", headers=reader).get_json() == {"timezone": before}
    r = client.put("/api/v1/timezone", json={"timezone": "Europe/Berlin"}, headers=reader)
    assert r.status_code == 403 and appliance.timezone() == before
    for bad in ({"timezone": "Mars/Olympus"}, {"timezone": ""}, {"timezone": 5}, {}, {"tz": "UTC"}):
        r = client.put("/api/v1/timezone", json=bad, headers=admin)
        assert r.status_code == 400 and r.get_json()["error"], bad
    assert appliance.timezone() == before
    r = client.put("/api/v1/timezone", json={"timezone": "Europe/Berlin"}, headers=admin)
    assert r.status_code == 200
    assert r.get_json() == {"timezone": "Europe/Berlin", "schedules_moved": 0}
    assert appliance.timezone() == "Europe/Berlin"
    assert client.get("/api/v1/timezone", headers=reader).get_json()["timezone"] == "Europe/Berlin"


def _files_job(app: Appliance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    app.create_job("docs", "files", "default", options={"paths": [str(src)]}, timezone="UTC")


def test_job_limits_and_retries_are_changed_by_operators(
    appliance: Appliance, client: FlaskClient, token: Headers, tmp_path: Path
) -> None:
    operator, reader = token("operator"), token("read-only")
    _files_job(appliance, tmp_path)
    r = client.get("/api/v1/jobs/docs/limits", headers=reader)
    assert r.get_json() == {
        "job": "docs",
        "max_concurrent_runs": 1,
        "max_retries": 0,
        "retry_delay": 300,
        "retry_delay_max": 14400,
    }
    change = {"max_retries": 3, "retry_delay": 60}
    assert client.patch("/api/v1/jobs/docs/limits", json=change, headers=reader).status_code == 403
    r = client.patch("/api/v1/jobs/docs/limits", json=change, headers=operator)
    assert r.status_code == 200
    assert r.get_json()["max_retries"] == 3 and r.get_json()["retry_delay"] == 60
    r = client.patch("/api/v1/jobs/docs/limits", json={"max_concurrent_runs": 2}, headers=operator)
    assert r.get_json()["max_concurrent_runs"] == 2 and r.get_json()["max_retries"] == 3
    for bad in (
        {},
        {"max_retries": -1},
        {"max_retries": "3"},
        {"max_retries": True},
        {"max_retries": None},
        {"retry_delay": 20000},  # above the cap
        {"retries": 3},
    ):
        r = client.patch("/api/v1/jobs/docs/limits", json=bad, headers=operator)
        assert r.status_code == 400 and r.get_json()["error"], bad
    assert client.patch("/api/v1/jobs/docs/limits", data="[", headers=operator).status_code == 400
    assert client.get("/api/v1/jobs/nope/limits", headers=reader).status_code == 404
    r = client.patch("/api/v1/jobs/nope/limits", json={"max_retries": 1}, headers=operator)
    assert r.status_code == 404
    job = next(j for j in appliance.jobs() if j.name == "docs")
    assert (job.max_concurrent_runs, job.max_retries, job.retry_delay) == (2, 3, 60)


def test_pool_limits_through_the_pool_api(
    appliance: Appliance, client: FlaskClient, token: Headers
) -> None:
    admin, operator = token("admin"), token("operator")
    body = {"max_concurrent_runs": 2}
    assert client.patch("/api/v1/pools/default", json=body, headers=operator).status_code == 403
    assert client.patch("/api/v1/pools/default", json=body, headers=admin).status_code == 200
    assert appliance.pools()[0].max_concurrent_runs == 2
    r = client.patch("/api/v1/pools/default", json={"max_concurrent_runs": -2}, headers=admin)
    assert r.status_code == 400 and appliance.pools()[0].max_concurrent_runs == 2


def test_session_calls_need_the_csrf_header(
    appliance: Appliance, login: Callable[[str], FlaskClient], tmp_path: Path
) -> None:
    _files_job(appliance, tmp_path)
    admin = login("admin")
    before = appliance.timezone()
    r = admin.put("/api/v1/timezone", json={"timezone": "Asia/Tokyo"})
    assert r.status_code == 400 and "CSRF" in r.get_json()["error"]
    r = admin.patch("/api/v1/jobs/docs/limits", json={"max_retries": 5})
    assert r.status_code == 400
    r = admin.post(
        "/api/v1/notification-targets",
        json={"name": "w", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/"}},
    )
    assert r.status_code == 400 and appliance.notification_targets() == []
    assert appliance.timezone() == before
    assert next(j for j in appliance.jobs() if j.name == "docs").max_retries == 0
    headers = {"X-CSRFToken": page_csrf(admin, "/")}
    r = admin.put("/api/v1/timezone", json={"timezone": "Asia/Tokyo"}, headers=headers)
    assert r.status_code == 200 and appliance.timezone() == "Asia/Tokyo"


def test_no_login_is_401(client: FlaskClient) -> None:
    for method, path in (
        ("get", "/api/v1/notification-targets"),
        ("get", "/api/v1/timezone"),
        ("get", "/api/v1/library"),
        ("get", "/api/v1/pools/default/usage-history"),
        ("get", "/api/v1/jobs/docs/limits"),
    ):
        assert getattr(client, method)(path).status_code == 401, path


def test_the_new_calls_are_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert paths["/notification-targets"]["get"]["x-tapir-role"] == "admin"
    assert "requestBody" in paths["/notification-targets"]["post"]
    assert paths["/notification-targets/{name}/test"]["post"]["x-tapir-role"] == "admin"
    assert paths["/notification-targets/{name}"]["delete"]["x-tapir-role"] == "admin"
    assert paths["/timezone"]["get"]["x-tapir-role"] == "read-only"
    assert paths["/timezone"]["put"]["x-tapir-role"] == "admin"
    assert paths["/jobs/{name}/limits"]["patch"]["x-tapir-role"] == "operator"
    schema = paths["/jobs/{name}/limits"]["patch"]["requestBody"]["content"]["application/json"]
    assert "retry_delay_max" in schema["schema"]["properties"]
    assert paths["/pools/{name}/usage-history"]["get"]["parameters"][1]["name"] == "days"
    assert paths["/library"]["get"]["x-tapir-role"] == "read-only"


def test_the_job_page_changes_limits_for_operators_only(
    appliance: Appliance, login: Callable[[str], FlaskClient], tmp_path: Path
) -> None:
    _files_job(appliance, tmp_path)
    operator, reader = login("operator"), login("read-only")
    page = reader.get("/jobs/docs").get_data(as_text=True)
    assert 'id="limits"' in page and 'name="retry_delay" type="number" min="0" value="300"' in page
    form = {"max_concurrent_runs": "2", "max_retries": "4", "retry_delay": "30"}
    form["retry_delay_max"] = "600"
    assert (
        reader.post(
            "/jobs/docs/limits", data={**form, "csrf_token": page_csrf(reader, "/")}
        ).status_code
        == 403
    )
    assert operator.post("/jobs/docs/limits", data=form).status_code == 400  # no CSRF token
    token = page_csrf(operator, "/")
    r = operator.post(
        "/jobs/docs/limits", data={**form, "retry_delay_max": "10", "csrf_token": token}
    )
    assert r.status_code == 302
    page = operator.get("/jobs/docs").get_data(as_text=True)
    assert "retry_delay_max (10 s) is below retry_delay (30 s)" in page
    assert next(j for j in appliance.jobs() if j.name == "docs").max_retries == 0
    r = operator.post(
        "/jobs/docs/limits", data={**form, "csrf_token": token}, follow_redirects=True
    )
    assert "Limits of job docs saved." in r.get_data(as_text=True)
    job = next(j for j in appliance.jobs() if j.name == "docs")
    assert (job.max_concurrent_runs, job.max_retries, job.retry_delay, job.retry_delay_max) == (
        2,
        4,
        30,
        600,
    )
