"""The administration API (PATCH/PUT/DELETE on pools, policies, jobs and users, key export,
plugins, appliance information): token authentication, roles, CSRF for the session,
malformed input and refusals answered with a clear 4xx and nothing changed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

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


def files_job(app: Appliance, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "a.txt").write_text("hello\n")
    app.create_job("docs", "files", "default", options={"paths": [str(src)]}, timezone="UTC")


def test_pools_are_changed_and_deleted_by_admins_only(
    appliance: Appliance, client: FlaskClient, token: Headers, tmp_path: Path
) -> None:
    admin, operator = token("admin"), token("operator")
    appliance.create_retention_policy("week", keep_within_days=7)
    body = {"retention": "week", "max_concurrent_runs": 3}
    assert client.patch("/api/v1/pools/default", json=body, headers=operator).status_code == 403
    r = client.patch("/api/v1/pools/default", json=body, headers=admin)
    assert r.status_code == 200 and r.get_json()["retention"] == "week"
    r = client.patch("/api/v1/pools/default", json={"retention": None}, headers=admin)
    assert r.get_json()["retention"] is None
    assert appliance.pools()[0].max_concurrent_runs == 3  # left out: unchanged
    for bad, status in (
        ({"max_concurrent_runs": -1}, 400),
        ({"max_concurrent_runs": "many"}, 400),
        ({"retention": 5}, 400),
        ({"retention": "nope"}, 404),
    ):
        r = client.patch("/api/v1/pools/default", json=bad, headers=admin)
        assert r.status_code == status, (bad, r.get_json())
        assert "error" in r.get_json()
    assert client.patch("/api/v1/pools/default", data="x", headers=admin).status_code == 400
    assert client.patch("/api/v1/pools/nope", json={}, headers=admin).status_code == 404
    assert appliance.pools()[0].max_concurrent_runs == 3
    files_job(appliance, tmp_path)
    r = client.delete("/api/v1/pools/default", headers=admin)
    assert r.status_code == 409 and "job(s) docs write to it" in r.get_json()["error"]
    appliance.create_pool("spare", "disk", path=tmp_path / "spare")
    assert client.delete("/api/v1/pools/spare", headers=operator).status_code == 403
    assert client.delete("/api/v1/pools/spare", headers=admin).get_json() == {"deleted": "spare"}
    assert [p.name for p in appliance.pools()] == ["default"]


def test_session_changes_need_the_csrf_header(
    appliance: Appliance, login: Callable[[str], FlaskClient]
) -> None:
    admin = login("admin")
    appliance.create_pool("spare", "disk", path=appliance.settings.home / "spare")
    r = admin.delete("/api/v1/pools/spare")
    assert r.status_code == 400 and "CSRF" in r.get_json()["error"]
    assert [p.name for p in appliance.pools()] == ["default", "spare"]
    r = admin.delete("/api/v1/pools/spare", headers={"X-CSRFToken": page_csrf(admin, "/")})
    assert r.status_code == 200


def test_retention_policies_are_replaced_and_deleted(
    appliance: Appliance, client: FlaskClient, token: Headers
) -> None:
    admin = token("admin")
    appliance.create_retention_policy("gfs", keep_daily=7)
    r = client.put("/api/v1/retention-policies/gfs", json={"keep_last": 4}, headers=admin)
    assert r.status_code == 200
    assert (r.get_json()["keep_last"], r.get_json()["keep_daily"]) == (4, None)
    for bad in ({}, {"keep_last": -2}, {"keep_last": "x"}):
        r = client.put("/api/v1/retention-policies/gfs", json=bad, headers=admin)
        assert r.status_code == 400, bad
    assert appliance.retention_policies()[0].keep_last == 4
    headers = token("operator")
    assert client.delete("/api/v1/retention-policies/gfs", headers=headers).status_code == 403
    appliance.update_pool("default", retention="gfs")
    r = client.delete("/api/v1/retention-policies/gfs", headers=admin)
    assert r.status_code == 409 and "pool default" in r.get_json()["error"]
    appliance.update_pool("default", retention=None)
    assert client.delete("/api/v1/retention-policies/gfs", headers=admin).status_code == 200
    assert client.delete("/api/v1/retention-policies/gfs", headers=admin).status_code == 404


def test_jobs_are_changed_disabled_and_deleted(
    appliance: Appliance, client: FlaskClient, token: Headers, tmp_path: Path
) -> None:
    files_job(appliance, tmp_path)
    operator, readonly = token("operator"), token("read-only")
    body = {"schedule": "0 4 * * 0", "timezone": "UTC", "options": {"paths": ["/srv"]}}
    assert client.patch("/api/v1/jobs/docs", json=body, headers=readonly).status_code == 403
    r = client.patch("/api/v1/jobs/docs", json=body, headers=operator)
    assert r.status_code == 200
    record = r.get_json()
    assert record["options"] == {"paths": ["/srv"]}
    assert [s["cron"] for s in record["schedules"]] == ["0 4 * * 0"]
    for bad, status in (
        ({"options": {"paths": "/srv"}}, 400),
        ({"options": {"nope": True}}, 400),
        ({"schedule": "every day"}, 400),
        ({"pool": "nope"}, 404),
        ({"pool": None}, 400),
    ):
        r = client.patch("/api/v1/jobs/docs", json=bad, headers=operator)
        assert r.status_code == status, (bad, r.get_json())
    job = appliance.jobs()[0]
    assert job.options == {"paths": ["/srv"]} and job.pool.name == "default"
    r = client.patch("/api/v1/jobs/docs", json={"schedule": None}, headers=operator)
    assert r.get_json()["schedules"] == []
    r = client.post("/api/v1/jobs/docs/disable", headers=operator)
    assert r.get_json()["enabled"] is False
    r = client.post("/api/v1/jobs/docs/run", json={}, headers=operator)
    assert r.status_code == 409 and "disabled" in r.get_json()["error"]
    assert client.post("/api/v1/jobs/docs/enable", headers=operator).get_json()["enabled"]
    run = client.post("/api/v1/jobs/docs/run", json={}, headers=operator).get_json()
    r = client.delete("/api/v1/jobs/docs", headers=operator)
    assert r.status_code == 409 and "cancel them first" in r.get_json()["error"]
    appliance.cancel_run(run["id"])
    assert client.delete("/api/v1/jobs/docs", headers=readonly).status_code == 403
    r = client.delete("/api/v1/jobs/docs", headers=operator)
    assert r.get_json() == {"deleted": "docs", "recovery_points_kept": 0}
    assert client.get("/api/v1/jobs/docs/rules", headers=readonly).status_code == 404


def test_users_through_the_api(appliance: Appliance, client: FlaskClient, token: Headers) -> None:
    admin = token("admin")
    assert client.get("/api/v1/users", headers=token("operator")).status_code == 403
    names = [u["username"] for u in client.get("/api/v1/users", headers=admin).get_json()]
    assert names == ["admin", "operator", "readonly"]
    body = {"username": "dave", "password": "d" * 12, "role": "operator"}
    for bad, status in (
        ({**body, "password": "short"}, 400),
        ({**body, "role": "root"}, 400),
        ({**body, "username": "operator"}, 400),
        ({"username": "dave"}, 400),
    ):
        assert client.post("/api/v1/users", json=bad, headers=admin).status_code == status, bad
    r = client.post("/api/v1/users", json=body, headers=admin)
    assert r.status_code == 201 and r.get_json()["role"] == "operator"
    r = client.patch("/api/v1/users/admin", json={"role": "operator"}, headers=admin)
    assert r.status_code == 409 and "last admin" in r.get_json()["error"]
    r = client.patch("/api/v1/users/dave", json={"role": "read-only"}, headers=admin)
    assert r.get_json()["role"] == "read-only"
    r = client.delete("/api/v1/users/admin", headers=admin)
    assert r.status_code == 409
    assert client.delete("/api/v1/users/dave", headers=admin).get_json() == {"deleted": "dave"}
    assert client.delete("/api/v1/users/dave", headers=admin).status_code == 404
    roles = {u.username: u.role for u in appliance.users()}
    assert roles == {"admin": "admin", "operator": "operator", "readonly": "read-only"}


def test_key_export_plugins_and_appliance(
    appliance: Appliance, client: FlaskClient, token: Headers, tmp_path: Path
) -> None:
    admin = token("admin")
    appliance.create_pool("vault", "disk", path=tmp_path / "vault", encrypted=True)
    phrase = "a long key passphrase"
    r = client.post("/api/v1/pools/vault/key-export", json={"passphrase": phrase}, headers=admin)
    assert r.status_code == 200 and r.mimetype == "application/octet-stream"
    appliance.import_pool_key("vault", r.data, phrase)
    headers = token("operator")
    body = {"passphrase": phrase}
    assert (
        client.post("/api/v1/pools/vault/key-export", json=body, headers=headers).status_code == 403
    )
    r = client.post("/api/v1/pools/vault/key-export", json={"passphrase": "x"}, headers=admin)
    assert r.status_code == 400
    r = client.post("/api/v1/pools/nope/key-export", json=body, headers=admin)
    assert r.status_code == 404
    exports = [e for e in appliance.audit_events() if e.action == "pool.key.export"]
    assert len(exports) == 1 and exports[0].actor == "admin"
    readonly = token("read-only")
    plugins = client.get("/api/v1/plugins", headers=readonly).get_json()
    files = next(p for p in plugins["plugins"] if p["name"] == "files")
    assert files["version"] and files["hooks"]
    about = client.get("/api/v1/appliance", headers=readonly).get_json()
    assert about["home"] == str(appliance.settings.home) and about["timezone"]


def test_the_openapi_document_lists_the_administration_endpoints(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert paths["/pools/{name}"]["delete"]["x-tapir-role"] == "admin"
    assert paths["/jobs/{name}"]["patch"]["x-tapir-role"] == "operator"
    assert paths["/jobs/{name}/rules/preview"]["post"]["x-tapir-role"] == "read-only"
    assert paths["/users/{username}"]["patch"]["x-tapir-role"] == "admin"
    assert "requestBody" in paths["/retention-policies/{name}"]["put"]
    for path in ("/assets", "/assets/unprotected", "/endpoints", "/plugins", "/appliance"):
        assert "get" in paths[path], path
