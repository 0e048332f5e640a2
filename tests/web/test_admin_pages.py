"""Administration pages: editing and deleting pools, retention policies and jobs, users and
roles, key export, plugins and appliance information. Every change is audited as the
web user; every refusal (role, CSRF, bad input, data at stake) leaves things as they were."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tapir.appliance.engine.about import safe_catalog_url
from tapir.appliance.engine.service import Appliance

from .conftest import page_csrf

Login = Callable[[str], FlaskClient]


def post(client: FlaskClient, path: str, data: dict[str, str] | None = None, page: str = "/"):
    return client.post(path, data={**(data or {}), "csrf_token": page_csrf(client, page)})


def flashes(client: FlaskClient, path: str) -> str:
    return client.get(path).get_data(as_text=True)


def last_audit(app: Appliance) -> tuple[str, str, str]:
    e = app.audit_events(limit=1)[0]
    return e.actor, e.action, e.target


def files_job(app: Appliance, tmp_path: Path, name: str = "docs", pool: str = "default") -> None:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "a.txt").write_text("hello\n")
    app.create_job(name, "files", pool, options={"paths": [str(src)]}, timezone="UTC")


def test_admin_sets_a_pools_retention_and_deletes_an_unused_pool(
    appliance: Appliance, login: Login, tmp_path: Path
) -> None:
    appliance.create_retention_policy("month", keep_within_days=30)
    appliance.create_pool("spare", "disk", path=tmp_path / "spare")
    admin = login("admin")
    page = admin.get("/pools/spare/edit").get_data(as_text=True)
    assert "Delete pool" in page and "cannot be deleted" not in page
    r = post(admin, "/pools/spare/edit", {"retention": "month", "max_concurrent_runs": "2"})
    assert r.status_code == 302
    pool = next(p for p in appliance.pools() if p.name == "spare")
    assert pool.retention_policy.name == "month" and pool.max_concurrent_runs == 2
    assert last_audit(appliance) == ("admin", "pool.update", "spare")
    r = post(admin, "/pools/spare/delete")
    assert r.status_code == 302 and r.headers["Location"].endswith("/pools/")
    assert "Pool spare deleted" in flashes(admin, "/pools/")
    assert [p.name for p in appliance.pools()] == ["default"]
    assert last_audit(appliance) == ("admin", "pool.delete", "spare")
    assert (tmp_path / "spare").is_dir()  # the medium is left as it was


def test_a_pool_in_use_is_not_deleted_and_says_why(
    appliance: Appliance, login: Login, tmp_path: Path
) -> None:
    files_job(appliance, tmp_path)
    admin = login("admin")
    page = admin.get("/pools/default/edit").get_data(as_text=True)
    assert "cannot be deleted: job(s) docs write to it" in page
    r = post(admin, "/pools/default/delete")
    assert r.status_code == 302
    assert "job(s) docs write to it" in flashes(admin, "/pools/default/edit")
    assert [p.name for p in appliance.pools()] == ["default"]


def test_bad_pool_input_and_low_roles_change_nothing(appliance: Appliance, login: Login) -> None:
    admin = login("admin")
    r = post(admin, "/pools/default/edit", {"retention": "", "max_concurrent_runs": "0"})
    assert r.status_code == 400 and "at least 1" in r.get_data(as_text=True)
    r = post(admin, "/pools/default/edit", {"retention": "nope", "max_concurrent_runs": ""})
    assert r.status_code == 400 and "no retention policy named" in r.get_data(as_text=True)
    operator = login("operator")
    assert post(operator, "/pools/default/delete").status_code == 403
    assert operator.get("/pools/default/edit").status_code == 403
    # No CSRF token: refused before anything happens.
    assert admin.post("/pools/default/delete").status_code == 400
    assert [p.name for p in appliance.pools()] == ["default"]
    assert appliance.pools()[0].max_concurrent_runs is None
    assert not any(e.action.startswith("pool.") for e in appliance.audit_events(limit=20)[:3])


def test_a_retention_policy_is_previewed_edited_and_deleted_once_unused(
    appliance: Appliance, login: Login
) -> None:
    appliance.create_retention_policy("gfs", keep_daily=7)
    appliance.update_pool("default", retention="gfs")
    admin = login("admin")
    page = admin.get("/retention/gfs/edit").get_data(as_text=True)
    assert 'name="keep_daily" value="7"' in page and "Used by default" in page
    r = post(admin, "/retention/gfs/edit", {"keep_last": "5", "action": "preview"})
    assert r.status_code == 200 and "0 kept, 0 deleted" in r.get_data(as_text=True)
    assert appliance.retention_policies()[0].keep_daily == 7  # a preview saves nothing
    r = post(admin, "/retention/gfs/edit", {"keep_last": "5", "action": "save"})
    assert r.status_code == 302
    policy = appliance.retention_policies()[0]
    assert (policy.keep_last, policy.keep_daily) == (5, None)
    r = post(admin, "/retention/gfs/edit", {"keep_last": "", "action": "save"})
    assert r.status_code == 400 and "at least one rule" in r.get_data(as_text=True)
    post(admin, "/retention/gfs/delete")
    assert "in use by pool default" in flashes(admin, "/retention/gfs/edit")
    assert len(appliance.retention_policies()) == 1
    appliance.update_pool("default", retention=None)
    assert post(admin, "/retention/gfs/delete").status_code == 302
    assert appliance.retention_policies() == []
    assert last_audit(appliance) == ("admin", "retention.delete", "gfs")


def test_an_operator_edits_a_job_with_its_plugins_option_form(
    appliance: Appliance, login: Login, tmp_path: Path
) -> None:
    files_job(appliance, tmp_path)
    appliance.create_retention_policy("week", keep_within_days=7)
    operator = login("operator")
    page = operator.get("/jobs/docs/edit").get_data(as_text=True)
    assert str(tmp_path / "src") in page  # the current options fill the plugin's form
    form = {
        "opt.paths": "/srv/a\n/srv/b",
        "pool": "default",
        "retention": "week",
        "schedule": "15 3 * * *",
        "timezone": "Europe/Berlin",
    }
    r = post(operator, "/jobs/docs/edit", {**form, "action": "preview"})
    assert "At 03:15 AM" in r.get_data(as_text=True)
    assert appliance.jobs()[0].schedules == []  # previewing saves nothing
    r = post(operator, "/jobs/docs/edit", {**form, "action": "save"})
    assert r.status_code == 302
    job = appliance.jobs()[0]
    assert job.options["paths"] == ["/srv/a", "/srv/b"]
    assert job.retention_policy.name == "week"
    assert [(s.cron, s.timezone) for s in job.schedules] == [("15 3 * * *", "Europe/Berlin")]
    assert last_audit(appliance) == ("operator", "job.update", "docs")
    r = post(operator, "/jobs/docs/edit", {**form, "schedule": "99 * * * *", "action": "save"})
    assert r.status_code == 400 and "invalid cron" in r.get_data(as_text=True)
    assert [s.cron for s in appliance.jobs()[0].schedules] == ["15 3 * * *"]
    readonly = login("read-only")
    assert post(readonly, "/jobs/docs/edit", {**form, "action": "save"}).status_code == 403


def test_a_job_is_disabled_enabled_and_deleted_keeping_its_points(
    appliance: Appliance, login: Login, tmp_path: Path
) -> None:
    files_job(appliance, tmp_path)
    assert appliance.run_job("docs").state == "succeeded"
    operator = login("operator")
    assert post(operator, "/jobs/docs/disable").status_code == 302
    assert "This job is disabled" in operator.get("/jobs/docs").get_data(as_text=True)
    r = post(operator, "/jobs/docs/run", {"level": "auto"})
    assert "disabled" in flashes(operator, r.headers["Location"])
    assert len(appliance.runs(job="docs")) == 1  # nothing queued
    post(operator, "/jobs/docs/enable")
    assert appliance.jobs()[0].enabled
    readonly = login("read-only")
    assert post(readonly, "/jobs/docs/delete").status_code == 403
    r = post(operator, "/jobs/docs/delete")
    assert "its 1 recovery point(s) stay" in flashes(operator, r.headers["Location"])
    assert appliance.jobs() == [] and len(appliance.recovery_points()) == 1
    assert last_audit(appliance) == ("operator", "job.delete", "docs")


def test_admin_manages_users_but_never_the_last_admin(appliance: Appliance, login: Login) -> None:
    admin = login("admin")
    page = admin.get("/settings/users").get_data(as_text=True)
    assert 'data-user="operator"' in page
    r = post(
        admin,
        "/settings/users",
        {"username": "carol", "role": "operator", "password": "short", "repeat": "short"},
    )
    assert r.status_code == 400 and "at least 12 characters" in r.get_data(as_text=True)
    new = {"username": "carol", "role": "operator", "password": "x" * 14, "repeat": "x" * 14}
    assert post(admin, "/settings/users", new).status_code == 302
    assert ("carol", "operator") in [(u.username, u.role) for u in appliance.users()]
    post(admin, "/settings/users/admin/role", {"role": "operator"})
    assert "last admin" in flashes(admin, "/settings/users")
    post(admin, "/settings/users/admin/delete")
    assert "cannot delete yourself" in flashes(admin, "/settings/users")
    post(admin, "/settings/users/carol/role", {"role": "read-only"})
    post(admin, "/settings/users/operator/delete")
    roles = {u.username: u.role for u in appliance.users()}
    assert roles == {"admin": "admin", "carol": "read-only", "readonly": "read-only"}
    assert [e.action for e in appliance.audit_events(limit=3)] == [
        "user.delete",
        "user.role",
        "user.create",
    ]
    readonly = login("read-only")
    assert readonly.get("/settings/users").status_code == 403
    assert post(readonly, "/settings/users", {**new, "username": "dave"}).status_code == 403
    assert "dave" not in {u.username for u in appliance.users()}


def test_the_deleted_users_session_ends(appliance: Appliance, login: Login) -> None:
    operator = login("operator")
    admin = login("admin")
    post(admin, "/settings/users/operator/delete")
    assert operator.get("/jobs/").status_code == 302  # back to the login page


def test_a_pool_key_is_exported_for_disaster_recovery(
    appliance: Appliance, login: Login, tmp_path: Path
) -> None:
    appliance.create_pool("vault", "disk", path=tmp_path / "vault", encrypted=True)
    admin = login("admin")
    page = admin.get("/settings/keys").get_data(as_text=True)
    assert 'id="export-vault"' in page and 'id="export-default"' not in page
    r = post(
        admin, "/settings/keys/vault", {"passphrase": "short", "repeat": "short"}, "/settings/"
    )
    assert r.status_code == 400 and "at least 12 characters" in r.get_data(as_text=True)
    phrase = "a long key passphrase"
    r = post(admin, "/settings/keys/vault", {"passphrase": phrase, "repeat": phrase + "!"})
    assert r.status_code == 400 and "differ" in r.get_data(as_text=True)
    r = post(admin, "/settings/keys/vault", {"passphrase": phrase, "repeat": phrase})
    assert r.status_code == 200
    assert r.headers["Content-Disposition"] == 'attachment; filename="vault.tapir-key"'
    assert last_audit(appliance) == ("admin", "pool.key.export", "vault")
    # The file is what `tapir pool key import` takes back.
    appliance.import_pool_key("vault", r.data, phrase)
    r = post(admin, "/settings/keys/default", {"passphrase": phrase, "repeat": phrase})
    assert r.status_code == 400 and "not encrypted" in r.get_data(as_text=True)
    assert (
        post(login("operator"), "/settings/keys/vault", {"passphrase": phrase}).status_code == 403
    )


def test_plugins_and_appliance_information(appliance: Appliance, login: Login) -> None:
    page = login("read-only").get("/plugins/").get_data(as_text=True)
    assert re.search(r"<td>files</td><td>[^<]+</td>", page)
    assert "application:files" in page or "source:files" in page
    assert "Every plugin loaded." in page
    admin = login("admin")
    about = admin.get("/settings/").get_data(as_text=True)
    assert str(appliance.settings.home) in about and "Time zone" in about
    assert login("operator").get("/settings/").status_code == 403
    menu = admin.get("/").get_data(as_text=True)
    assert ">Inventory</a>" in menu and ">Settings</a>" in menu
    assert ">Settings</a>" not in login("operator").get("/").get_data(as_text=True)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://tapir:s3cret@db.example/tapir", "postgresql://tapir:***@db.example/tapir"),
        ("sqlite:////var/lib/tapir/catalog.db", "sqlite:////var/lib/tapir/catalog.db"),
        ("::not a url::", "(unparsable URL)"),
    ],
)
def test_the_catalog_url_never_shows_a_password(url: str, shown: str) -> None:
    assert safe_catalog_url(url) == shown
