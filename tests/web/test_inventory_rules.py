"""Inventory and selection rules in the panel: endpoints registered, tested and
rediscovered; assets with the jobs (and rules) protecting them; the rules page and its
live preview API showing which rule matched each asset.

The hypervisor is tests/selection's scripted plugin (a real HypervisorPlugin whose
inventory the test edits), since no hypervisor runs here for these page tests; the
vCenter simulator covers the VMware plugin itself in tests/selection and tests/vmware.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from selection.conftest import PASSWORD as HV_PASSWORD
from selection.conftest import HvHooks, vm_meta

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins

from .conftest import PASSWORD, page_csrf

Login = Callable[[str], FlaskClient]
PROD = "/DC0/vm/prod"


@pytest.fixture
def hv() -> HvHooks:
    hooks = HvHooks()
    hooks.plugin.vms = {
        "1": ("web-01", vm_meta(PROD + "/web")),
        "2": ("web-02", vm_meta(PROD, "poweredOff")),
        "3": ("test-01", vm_meta("/DC0/vm/test")),
    }
    return hooks


@pytest.fixture
def appliance(tmp_path: Path, hv: HvHooks) -> Iterator[Appliance]:
    """The web fixtures' appliance, with the scripted hypervisor loaded too."""
    app = Appliance.open(load_settings(tmp_path / "home"), registry=load_plugins(extra=[hv]))
    app.initialize()
    app.set_password("admin", PASSWORD)
    app.create_user("operator", PASSWORD, "operator")
    app.create_user("readonly", PASSWORD, "read-only")
    yield app
    app.close()


def post(client: FlaskClient, path: str, data: dict[str, str]):
    return client.post(path, data={**data, "csrf_token": page_csrf(client, "/")})


def api(client: FlaskClient, path: str, body: object, method: str = "POST"):
    token = page_csrf(client, "/")
    return client.open(path, method=method, json=body, headers={"X-CSRFToken": token})


def register(app: Appliance) -> None:
    app.register_endpoint(
        "hv1", "scripthv", "hv1.example", options={"user": "u"}, password=HV_PASSWORD
    )
    app.discover_endpoint("hv1")


def rules_job(app: Appliance) -> None:
    app.create_job(
        "prod",
        "scripthv",
        "default",
        endpoint="hv1",
        selection={"include": [f"folder={PROD}"], "exclude": ["power_state=off"]},
    )


def test_admin_registers_tests_and_rediscovers_an_endpoint(
    appliance: Appliance, login: Login, hv: HvHooks
) -> None:
    admin = login("admin")
    page = admin.get("/inventory/endpoints/new?plugin=scripthv").get_data(as_text=True)
    assert 'name="opt.user"' in page and 'name="opt.password_secret"' not in page
    form = {
        "name": "hv1",
        "plugin": "scripthv",
        "address": "hv1.example",
        "password": "wrong",
        "opt.user": "u",
        "discovery_interval": "5",
        "action": "save",
    }
    r = post(admin, "/inventory/endpoints/new", form)
    assert r.status_code == 400 and "at least 60" in r.get_data(as_text=True)
    assert appliance.endpoints() == []
    r = post(admin, "/inventory/endpoints/new", {**form, "discovery_interval": "600"})
    assert r.status_code == 302
    assert appliance.endpoint("hv1").discovery_interval == 600
    r = post(admin, "/inventory/endpoints/hv1/test", {})
    assert "Connection to hv1 failed: wrong user name or password" in admin.get(
        r.headers["Location"]
    ).get_data(as_text=True)
    appliance.set_secret("endpoint:hv1", HV_PASSWORD)  # the operator fixes the password
    post(admin, "/inventory/endpoints/hv1/test", {})
    assert "Connection to hv1 works." in admin.get("/inventory/endpoints/hv1").get_data(
        as_text=True
    )
    operator = login("operator")
    post(operator, "/inventory/endpoints/hv1/discover", {})
    page = operator.get("/inventory/endpoints/hv1").get_data(as_text=True)
    assert "Discovered 3 asset(s): 3 new, 0 gone." in page
    assert 'data-asset="web-01"' in page and "not protected" in page
    post(operator, "/inventory/endpoints/hv1/interval", {"discovery_interval": "0"})
    assert appliance.endpoint("hv1").discovery_interval == 0
    # Registering stores a credential: admin only.
    r = post(operator, "/inventory/endpoints/new", {**form, "name": "hv2"})
    assert r.status_code == 403 and [e.name for e in appliance.endpoints()] == ["hv1"]
    readonly = login("read-only")
    assert post(readonly, "/inventory/endpoints/hv1/discover", {}).status_code == 403
    hv.plugin.down = True
    post(operator, "/inventory/endpoints/hv1/discover", {})
    page = operator.get("/inventory/endpoints/hv1").get_data(as_text=True)
    assert "Discovery of hv1 failed: cannot reach hv1.example" in page


def test_assets_show_the_rule_that_protects_them_and_gone_ones_are_marked(
    appliance: Appliance, login: Login, hv: HvHooks
) -> None:
    register(appliance)
    rules_job(appliance)
    del hv.plugin.vms["3"]
    appliance.discover_endpoint("hv1")
    page = login("read-only").get("/inventory/").get_data(as_text=True)
    row = page.split('data-asset="web-01"')[1].split("</tr>")[0]
    assert ">prod</a> <small>(rule folder=/DC0/vm/prod)</small>" in row
    row = page.split('data-asset="web-02"')[1].split("</tr>")[0]
    assert "not protected" in row  # excluded: powered off
    assert 'class="gone" data-asset="test-01"' in page
    dashboard = login("read-only").get("/").get_data(as_text=True)
    unprotected = dashboard.split('id="unprotected"')[1].split("</ul>")[0]
    assert "web-02" in unprotected and "web-01" not in unprotected
    assert "test-01" not in unprotected  # gone assets need no protection
    appliance.set_job_enabled("prod", False)
    records = login("read-only").get("/api/v1/assets?endpoint=hv1").get_json()
    web01 = next(r for r in records if r["name"] == "web-01")
    assert web01["protected"] is False and web01["disabled_jobs"] == ["prod"]
    appliance.set_job_enabled("prod", True)
    run = appliance.run_job("prod")
    records = login("read-only").get("/api/v1/assets").get_json()
    web01 = next(r for r in records if r["name"] == "web-01")
    assert web01["jobs"] == [{"job": "prod", "by": "rule folder=/DC0/vm/prod"}]
    assert web01["last_recovery_point"] == appliance.recovery_points(asset="web-01")[0].id
    assert run.state == "succeeded"
    unprotected = login("read-only").get("/api/v1/assets/unprotected").get_json()
    assert [r["name"] for r in unprotected] == ["web-02"]


def test_the_rules_page_shows_which_rule_matched_each_asset(
    appliance: Appliance, login: Login
) -> None:
    register(appliance)
    rules_job(appliance)
    page = login("read-only").get("/jobs/prod/rules").get_data(as_text=True)
    assert "1 selected, 1 excluded" in page
    row = page.split('data-asset="web-02"')[1].split("</tr>")[0]
    assert "excluded by power_state=poweredOff" in row
    assert "Save rules" not in page  # read-only sees, cannot save
    operator = login("operator")
    form = {"include": "name=web-*\nname=test-*", "exclude": "", "discover": "no"}
    assert post(operator, "/jobs/prod/rules", form).status_code == 302
    rules = appliance.job_rules("prod")
    assert [str(r) for r in rules.include] == ["name=web-*", "name=test-*"]
    assert rules.exclude == () and rules.discover is False
    r = post(operator, "/jobs/prod/rules", {"include": "colour=red", "exclude": ""})
    assert r.status_code == 400
    assert "invalid selection rule 'colour=red'" in html.unescape(r.get_data(as_text=True))
    assert [str(r) for r in appliance.job_rules("prod").include] == ["name=web-*", "name=test-*"]
    readonly = login("read-only")
    assert post(readonly, "/jobs/prod/rules", form).status_code == 403


def test_the_live_preview_api_tries_draft_rules_without_saving(
    appliance: Appliance, login: Login
) -> None:
    register(appliance)
    rules_job(appliance)
    readonly = login("read-only")
    r = api(readonly, "/api/v1/jobs/prod/rules/preview", {"include": ["name=*-01"]})
    assert r.status_code == 200, r.get_json()
    result = r.get_json()
    by_name = {a["name"]: a for a in result["assets"]}
    assert by_name["web-01"]["selected"] and by_name["web-01"]["rule"] == "name=*-01"
    assert by_name["test-01"]["reason"] == "rule name=*-01"
    assert by_name["web-02"]["reason"] == "no rule matched"
    assert (result["selected"], result["excluded"]) == (2, 0)
    r = api(readonly, "/api/v1/jobs/prod/rules/preview", {"include": ["asset=nope"]})
    assert r.get_json()["unmatched_rules"] == ["asset=nope"]
    r = api(readonly, "/api/v1/jobs/prod/rules/preview", {"include": ["colour=red"]})
    assert r.status_code == 400 and "colour=red" in r.get_json()["error"]
    r = api(readonly, "/api/v1/jobs/prod/rules/preview", {"include": [5]})
    assert r.status_code == 400
    assert r.get_json()["error"] == "include must be a list of rules (text)"
    r = api(readonly, "/api/v1/jobs/prod/rules/preview", ["name=x"])
    assert r.status_code == 400
    assert api(readonly, "/api/v1/jobs/nope/rules/preview", {}).status_code == 404
    # Nothing was saved by any preview.
    assert [str(r) for r in appliance.job_rules("prod").include] == [f"folder={PROD}"]
    # Saving through the API needs the operator role.
    body = {"include": ["name=web-*"], "exclude": ["power_state=off"]}
    assert api(readonly, "/api/v1/jobs/prod/rules", body, "PUT").status_code == 403
    r = api(login("operator"), "/api/v1/jobs/prod/rules", body, "PUT")
    assert r.get_json() == {
        "job": "prod",
        "include": ["name=web-*"],
        "exclude": ["power_state=poweredOff"],
        "discover": True,
    }
    assert appliance.audit_events(limit=1)[0].action == "job.rules"


def test_endpoints_through_the_api(appliance: Appliance, login: Login, hv: HvHooks) -> None:
    admin = login("admin")
    body = {
        "name": "hv1",
        "plugin": "scripthv",
        "address": "hv1.example",
        "password": HV_PASSWORD,
        "options": {"user": "u"},
    }
    assert api(login("operator"), "/api/v1/endpoints", body).status_code == 403
    assert api(admin, "/api/v1/endpoints", {**body, "options": {"nope": 1}}).status_code == 400
    r = api(admin, "/api/v1/endpoints", body)
    assert r.status_code == 201 and r.get_json()["has_password"] is True
    assert api(admin, "/api/v1/endpoints", body).status_code == 400  # taken name
    assert api(admin, "/api/v1/endpoints/hv1/test", {}).get_json() == {"ok": True, "error": None}
    r = api(admin, "/api/v1/endpoints/hv1/discover", {})
    assert r.get_json()["found"] == 3 and sorted(r.get_json()["added"]) == [
        "test-01",
        "web-01",
        "web-02",
    ]
    r = api(admin, "/api/v1/endpoints/hv1", {"discovery_interval": 30}, "PATCH")
    assert r.status_code == 400
    r = api(admin, "/api/v1/endpoints/hv1", {"discovery_interval": 7200}, "PATCH")
    assert r.get_json()["discovery_interval"] == 7200
    hv.plugin.down = True
    r = api(admin, "/api/v1/endpoints/hv1/test", {})
    assert r.get_json() == {"ok": False, "error": "cannot reach hv1.example: connection refused"}
    assert api(admin, "/api/v1/endpoints/nope/test", {}).status_code == 404
    listed = login("read-only").get("/api/v1/endpoints").get_json()
    assert [e["name"] for e in listed] == ["hv1"]
