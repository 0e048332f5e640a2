"""The server-rendered pages: roles on every page, pool and job forms built from the
plugins' declared options, the retention preview on real recovery points, the
schedule preview, run now and cancel, and the audit page."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from flask import Blueprint

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import hookimpl
from tapir.appliance.plugin_manager import load_plugins
from tapir.appliance.web.app import create_app

from .conftest import log_in, page_csrf


def _form(client, path: str, **data: str):
    return client.post(path, data={"csrf_token": page_csrf(client, "/"), **data})


def test_every_page_checks_the_role(login) -> None:
    reader, operator, admin = login("read-only"), login("operator"), login("admin")
    for path in ("/", "/jobs/", "/pools/", "/retention/", "/account/tokens"):
        assert reader.get(path).status_code == 200, path
    for path in ("/pools/new", "/retention/new", "/jobs/new", "/audit/"):
        assert reader.get(path).status_code == 403, path
    assert operator.get("/jobs/new").status_code == 200
    for path in ("/pools/new", "/retention/new", "/audit/"):
        assert operator.get(path).status_code == 403, path
        assert admin.get(path).status_code == 200, path
    refused = _form(reader, "/jobs/new", name="j", plugin="files", pool="default")
    assert refused.status_code == 403
    # The menu offers only what the role can open.
    assert "Audit log" not in reader.get("/").get_data(as_text=True)
    assert "Audit log" in admin.get("/").get_data(as_text=True)


def test_a_plugin_page_needs_operator_to_change_anything(tmp_path: Path) -> None:
    bp = Blueprint("acme", __name__, url_prefix="/acme")

    @bp.route("/", methods=["GET", "POST"])
    def index() -> str:
        return "acme page"

    plugin = SimpleNamespace(__name__="acme", tapir_web_blueprints=hookimpl(lambda: [bp]))
    app = Appliance.open(load_settings(tmp_path / "home"), registry=load_plugins(extra=[plugin]))
    try:
        app.create_user("reader", "correct horse battery staple", "read-only")
        client = create_app(app, TESTING=True).test_client()
        log_in(client, "reader")
        assert client.get("/acme/").get_data(as_text=True) == "acme page"
        assert _form(client, "/acme/").status_code == 403
    finally:
        app.close()


def test_pool_form_follows_the_media_plugin(login, appliance: Appliance, tmp_path: Path) -> None:
    admin = login("admin")
    page = admin.get("/pools/new").get_data(as_text=True)
    assert 'name="opt.path"' in page  # the disk plugin's declared option
    bad = _form(
        admin,
        "/pools/new",
        name="p1",
        media="disk",
        action="save",
        **{"opt.path": "relative/folder"},
    )
    assert bad.status_code == 400
    assert "absolute" in bad.get_data(as_text=True)
    assert [p.name for p in appliance.pools()] == ["default"]
    good = _form(
        admin,
        "/pools/new",
        name="p1",
        media="disk",
        action="save",
        compression="zstd:1",
        **{"opt.path": str(tmp_path / "p1")},
    )
    assert good.status_code == 302
    (pool,) = [p for p in appliance.pools() if p.name == "p1"]
    assert pool.options["path"] == str(tmp_path / "p1") and pool.compression == "zstd:1"
    assert "p1" in admin.get("/pools/").get_data(as_text=True)


def test_retention_preview_on_todays_points_saves_nothing(
    login, appliance: Appliance, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    appliance.create_job("docs", "files", "default", options={"paths": [str(src)]})
    first = appliance.run_job("docs")
    second = appliance.run_job("docs")
    assert first.state == second.state == "succeeded"
    newest = appliance.recovery_points(job="docs")[0].id
    admin = login("admin")
    page = _form(
        admin, "/retention/new", name="one", keep_last="1", pool="default", action="preview"
    )
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "1 kept, 1 deleted" in text
    assert re.search(rf'<tr class="keep"><td><code>{newest[:12]}', text)
    assert appliance.retention_policies() == []
    assert len(appliance.recovery_points()) == 2
    empty = _form(admin, "/retention/new", name="none", action="preview")
    assert empty.status_code == 400 and "at least one rule" in empty.get_data(as_text=True)
    saved = _form(admin, "/retention/new", name="one", keep_last="1", action="save")
    assert saved.status_code == 302
    assert [p.name for p in appliance.retention_policies()] == ["one"]


def test_job_form_schedule_preview_run_now_and_cancel(
    login, appliance: Appliance, tmp_path: Path
) -> None:
    operator = login("operator")
    page = operator.get("/jobs/new?plugin=files").get_data(as_text=True)
    for field in ("opt.paths", "opt.include", "opt.exclude", "opt.one_file_system"):
        assert f'name="{field}"' in page, field
    assert 'name="opt.exclude_caches" checked' in page  # the plugin's default
    form = {
        "name": "docs",
        "plugin": "files",
        "pool": "default",
        "opt.paths": f"{tmp_path}\n",
        "schedule": "0 4 * * 0",
        "timezone": "UTC",
    }
    preview = _form(operator, "/jobs/new", action="preview", **form)
    text = preview.get_data(as_text=True)
    assert "At 04:00 AM, only on Sunday" in text
    assert len(re.findall(r"<li>Sun \d{4}-\d\d-\d\d 04:00 UTC</li>", text)) == 5
    assert appliance.jobs() == []
    bad = _form(operator, "/jobs/new", action="save", **{**form, "schedule": "0 25 * * *"})
    assert bad.status_code == 400 and "invalid cron" in bad.get_data(as_text=True)
    assert appliance.jobs() == []
    created = _form(operator, "/jobs/new", action="save", **form)
    assert created.headers["Location"] == "/jobs/docs"
    (job,) = appliance.jobs()
    assert job.options == {
        "paths": [str(tmp_path)],
        "one_file_system": False,
        "exclude_caches": False,
    }
    assert len(appliance.next_runs("docs")) == 5

    queued = _form(operator, "/jobs/docs/run", level="full")
    run_id = int(queued.headers["Location"].rsplit("/", 1)[1])
    run_page = operator.get(f"/jobs/runs/{run_id}").get_data(as_text=True)
    assert 'id="cancel-form"' in run_page and "runs.js" in run_page
    _form(operator, f"/jobs/runs/{run_id}/cancel")
    assert appliance.run(run_id).state == "canceled"
    assert "Cancel run" not in operator.get(f"/jobs/runs/{run_id}").get_data(as_text=True)
    assert operator.get("/jobs/runs/999").status_code == 404


def test_audit_page_shows_who_what_when_where(login, appliance: Appliance) -> None:
    admin = login("admin")
    _form(admin, "/retention/new", name="weekly", keep_weekly="4", action="save")
    page = admin.get("/audit/").get_data(as_text=True)
    row = re.search(
        r"<tr><td>[^<]+</td><td>admin</td><td>127\.0\.0\.1</td>"
        r"<td>retention\.create</td>\s*<td>weekly</td>",
        page,
    )
    assert row, page


def test_dashboard_puts_failures_first_and_lists_next_runs(
    login, appliance: Appliance, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    appliance.create_job(
        "good",
        "files",
        "default",
        options={"paths": [str(src)]},
        schedule="0 1 * * *",
        timezone="UTC",
    )
    appliance.create_job("bad", "files", "default", options={"paths": [str(tmp_path / "gone")]})
    assert appliance.run_job("bad").state == "failed"
    assert appliance.run_job("good").state == "succeeded"
    page = login("read-only").get("/").get_data(as_text=True)
    assert page.index('class="state-failed"') < page.index('class="state-succeeded"')
    assert re.search(r'<ol id="upcoming"><li>[^<]+: <a href="/jobs/good">good</a></li></ol>', page)
