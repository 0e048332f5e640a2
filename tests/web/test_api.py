"""The JSON API: token and session authentication, CSRF, roles, malformed input (a
clear 4xx and nothing changed), every endpoint's happy path, the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tapir.appliance.engine.service import Appliance

from .conftest import page_csrf


@pytest.fixture
def token(login: Callable[[str], FlaskClient]) -> Callable[[str], dict[str, str]]:
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


def _files_job(src: Path) -> dict:
    return {"name": "docs", "plugin": "files", "pool": "default", "options": {"paths": [str(src)]}}


def test_token_authentication(flask_app: Flask, token, appliance: Appliance) -> None:
    client = flask_app.test_client()
    headers = token("read-only")
    assert client.get("/api/v1/pools", headers=headers).status_code == 200
    for bad in ("Bearer tapir_nope", "Bearer ", "Bearer something-else"):
        response = client.get("/api/v1/pools", headers={"Authorization": bad})
        assert response.status_code == 401
        assert response.get_json() == {"error": "invalid API token"}
    assert client.get("/api/v1/pools").get_json() == {"error": "login required"}


def test_revoked_token_stops_working(login, flask_app: Flask) -> None:
    client = login("operator")
    csrf = page_csrf(client, "/")
    page = client.post("/account/tokens", data={"name": "x", "csrf_token": csrf}).get_data(
        as_text=True
    )
    secret = re.search(r'<code id="new-token">([^<]+)</code>', page).group(1)
    headers = {"Authorization": f"Bearer {secret}"}
    anon = flask_app.test_client()
    assert anon.get("/api/v1/jobs", headers=headers).status_code == 200
    token_id = re.search(r"/account/tokens/(\d+)/revoke", page).group(1)
    client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf})
    assert anon.get("/api/v1/jobs", headers=headers).status_code == 401
    # Another user cannot revoke someone else's token.
    other = login("admin")
    refused = other.post(
        f"/account/tokens/{token_id}/revoke", data={"csrf_token": page_csrf(other, "/")}
    )
    assert refused.status_code == 404


def test_session_api_changes_need_the_csrf_header(login, appliance: Appliance) -> None:
    client = login("admin")
    body = {"name": "weekly", "keep_weekly": 4}
    response = client.post("/api/v1/retention-policies", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("CSRF check failed")
    assert appliance.retention_policies() == []
    headers = {"X-CSRFToken": page_csrf(client, "/")}
    response = client.post("/api/v1/retention-policies", json=body, headers=headers)
    assert response.status_code == 201
    assert response.get_json()["keep_weekly"] == 4


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "allowed"),
    [
        ("read-only", "post", "/api/v1/pools", {"name": "p2"}, False),
        ("operator", "post", "/api/v1/pools", {"name": "p2"}, False),
        ("admin", "post", "/api/v1/pools", {"name": "p2"}, True),
        ("operator", "post", "/api/v1/retention-policies", {"name": "r", "keep_last": 1}, False),
        ("read-only", "post", "/api/v1/jobs/docs/run", {}, False),
        ("operator", "post", "/api/v1/jobs/docs/run", {}, True),
        ("read-only", "get", "/api/v1/audit", None, False),
        ("operator", "get", "/api/v1/audit", None, False),
        ("admin", "get", "/api/v1/audit", None, True),
        ("read-only", "post", "/api/v1/retention-policies/preview", {"keep_last": 1}, True),
    ],
)
def test_roles_are_enforced(
    flask_app: Flask, token, appliance: Appliance, tmp_path: Path, role, method, path, body, allowed
) -> None:
    appliance.create_job("docs", "files", "default", options={"paths": [str(tmp_path)]})
    headers = token(role)
    before = (len(appliance.pools()), len(appliance.runs()), len(appliance.retention_policies()))
    client = flask_app.test_client()
    response = getattr(client, method)(path, json=body, headers=headers)
    if allowed:
        assert response.status_code < 300, response.get_json()
    else:
        assert response.status_code == 403
        assert "role" in response.get_json()["error"]
        after = (len(appliance.pools()), len(appliance.runs()), len(appliance.retention_policies()))
        assert after == before


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/v1/pools", "not json", 400, "JSON object"),
        ("/api/v1/pools", [1, 2], 400, "JSON object"),
        ("/api/v1/pools", {}, 400, "name is required"),
        ("/api/v1/pools", {"name": "x", "media": "floppy"}, 404, "no media plugin"),
        ("/api/v1/pools", {"name": "x", "compression": "lzma"}, 400, "compression"),
        ("/api/v1/pools", {"name": "x", "options": {"path": "rel/dir"}}, 400, "absolute"),
        ("/api/v1/pools", {"name": "default"}, 400, "exists"),
        ("/api/v1/pools", {"name": "x", "retention": "nope"}, 404, "nope"),
        ("/api/v1/retention-policies", {"name": "r"}, 400, "at least one rule"),
        ("/api/v1/retention-policies", {"name": "r", "keep_last": -1}, 400, ">= 0"),
        ("/api/v1/retention-policies", {"name": "r", "keep_last": "x"}, 400, "whole number"),
        ("/api/v1/retention-policies", {"name": 5, "keep_last": 1}, 400, "text"),
        ("/api/v1/jobs", {"name": "j", "plugin": "files"}, 400, "pool is required"),
        ("/api/v1/jobs", {"name": "j", "plugin": "nope", "pool": "default"}, 404, "nope"),
        ("/api/v1/jobs", {"name": "j", "plugin": "files", "pool": "default"}, 400, "paths"),
        (
            "/api/v1/jobs",
            {"name": "j", "plugin": "files", "pool": "default", "options": {"paths": "/x"}},
            400,
            "list of strings",
        ),
        (
            "/api/v1/jobs",
            {
                "name": "j",
                "plugin": "files",
                "pool": "default",
                "options": {"paths": ["/x"]},
                "schedule": "every day",
            },
            400,
            "cron",
        ),
        (
            "/api/v1/jobs",
            {
                "name": "j",
                "plugin": "files",
                "pool": "default",
                "options": {"paths": ["/x"], "colour": "red"},
            },
            400,
            "colour",
        ),
        ("/api/v1/jobs/ghost/run", {}, 404, "ghost"),
        ("/api/v1/jobs/ghost/run", {"level": "huge"}, 400, "level"),
        ("/api/v1/runs/999/cancel", None, 404, "999"),
    ],
)
def test_malformed_input_is_refused_and_changes_nothing(
    flask_app: Flask, token, appliance: Appliance, path, body, status, message
) -> None:
    headers = token("admin")
    client = flask_app.test_client()
    before = (
        [p.name for p in appliance.pools()],
        [j.name for j in appliance.jobs()],
        [r.name for r in appliance.retention_policies()],
        len(appliance.runs()),
    )
    if isinstance(body, str):
        response = client.post(path, data=body, headers=headers, content_type="application/json")
    else:
        response = client.post(path, json=body, headers=headers)
    assert response.status_code == status, response.get_json()
    assert message in response.get_json()["error"]
    after = (
        [p.name for p in appliance.pools()],
        [j.name for j in appliance.jobs()],
        [r.name for r in appliance.retention_policies()],
        len(appliance.runs()),
    )
    assert after == before


def test_get_parameters_are_checked(flask_app: Flask, token) -> None:
    client = flask_app.test_client()
    headers = token("read-only")
    for path, message in (
        ("/api/v1/runs?limit=abc", "whole number"),
        ("/api/v1/runs?limit=0", "between"),
        ("/api/v1/runs?job=ghost", "ghost"),
        ("/api/v1/schedule-preview", "cron is required"),
        ("/api/v1/schedule-preview?cron=61+*+*+*+*", "invalid cron"),
        ("/api/v1/schedule-preview?cron=0+2+*+*+*&timezone=Mars/Base", "time zone"),
        ("/api/v1/jobs/ghost", "ghost"),
        ("/api/v1/runs/42", "42"),
        ("/api/v1/plugins/ghost/job-options", "ghost"),
    ):
        response = client.get(path, headers=headers)
        assert 400 <= response.status_code < 500, path
        assert message in response.get_json()["error"], path


def test_pool_retention_job_run_cancel_through_the_api(
    flask_app: Flask, token, appliance: Appliance, tmp_path: Path
) -> None:
    client = flask_app.test_client()
    admin = token("admin")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("api\n")

    pool = client.post(
        "/api/v1/pools",
        json={"name": "api-pool", "options": {"path": str(tmp_path / "pool")}, "encrypted": True},
        headers=admin,
    )
    assert pool.status_code == 201
    assert pool.get_json()["path"] == str(tmp_path / "pool") and pool.get_json()["encrypted"]
    policy = client.post(
        "/api/v1/retention-policies", json={"name": "short", "keep_last": 1}, headers=admin
    )
    assert policy.status_code == 201
    options = client.get("/api/v1/plugins/files/job-options", headers=admin).get_json()
    assert {"paths", "include", "exclude"} <= {o["name"] for o in options}

    created = client.post(
        "/api/v1/jobs",
        json={
            **_files_job(src),
            "pool": "api-pool",
            "retention": "short",
            "schedule": "0 3 * * *",
            "timezone": "UTC",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.get_json()
    job = client.get("/api/v1/jobs/docs", headers=admin).get_json()
    assert job["retention"] == "short" and job["schedules"][0]["cron"] == "0 3 * * *"
    assert len(job["next_runs"]) == 5 and job["next_runs"][0].endswith("03:00:00+00:00")

    # Run now queues; a worker (here: this test) executes it; the API shows the result.
    operator = token("operator")
    queued = client.post("/api/v1/jobs/docs/run", json={"level": "full"}, headers=operator)
    assert queued.status_code == 202 and queued.get_json()["state"] == "queued"
    run_id = queued.get_json()["id"]
    assert appliance.claim_next_run("test-worker") == run_id
    appliance.execute_run(run_id, worker="test-worker")
    run = client.get(f"/api/v1/runs/{run_id}", headers=operator).get_json()
    assert run["state"] == "succeeded" and run["bytes_done"] > 0
    assert run["rate"] is not None and run["eta"] is None
    assert any("queued" in line["message"] for line in run["log"])
    again = client.post(f"/api/v1/runs/{run_id}/cancel", headers=operator)
    assert again.status_code == 400 and "already finished" in again.get_json()["error"]

    second = client.post("/api/v1/jobs/docs/run", headers=operator).get_json()["id"]
    canceled = client.post(f"/api/v1/runs/{second}/cancel", headers=operator)
    assert canceled.status_code == 200 and canceled.get_json()["state"] == "canceled"

    preview = client.post(
        "/api/v1/retention-policies/preview",
        json={"keep_last": 1, "pool": "api-pool"},
        headers=admin,
    ).get_json()
    assert [row["keep"] for row in preview] == [True]

    audit = client.get("/api/v1/audit?limit=100", headers=admin).get_json()
    mine = {(e["actor"], e["action"]) for e in audit}
    assert {
        ("admin", "pool.create"),
        ("admin", "job.create"),
        ("operator", "run.queue"),
        ("operator", "run.cancel"),
    } <= mine


def test_openapi_document_lists_every_api_route(flask_app: Flask) -> None:
    client = flask_app.test_client()
    doc = client.get("/api/v1/openapi.json")  # public, so a client generator can fetch it
    assert doc.status_code == 200
    spec = doc.get_json()
    assert spec["openapi"].startswith("3.")
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule[len("/api/v1") :]), m.lower())
        for r in flask_app.url_map.iter_rules()
        if r.rule.startswith("/api/v1/") and r.endpoint != "api.openapi"
        for m in r.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, m) for path, ops in spec["paths"].items() for m in ops}
    assert routes == documented
    create = spec["paths"]["/pools"]["post"]
    assert create["x-tapir-role"] == "admin"
    assert create["requestBody"]["content"]["application/json"]["schema"]["required"] == ["name"]
    assert spec["paths"]["/runs/{run_id}"]["get"]["parameters"][0]["schema"]["type"] == "integer"
