"""The restore wizard: its JSON API (assets, timeline, the item tree, restore in the
background with progress, tar download), roles, CSRF, malformed input (a clear 4xx and
nothing restored), the pages step by step, audit, and "browse and restore a file" in
Debian's chromium against a real ``tapir serve``."""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api.errors import ChunkCorrupt, ChunkMissing
from tapir.appliance.plugin_manager import load_plugins

from .conftest import PASSWORD, Served, page_csrf


def make_source(root: Path) -> Path:
    src = root / "src"
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "a.txt").write_text("first file\n")
    (src / "sub" / "b.txt").write_text("second file\n")
    (src / "sub" / "deep" / "c.bin").write_bytes(bytes(range(256)) * 2000)
    (src / "link").symlink_to("a.txt")
    return src


def backed_up(app: Appliance, src: Path, job: str = "docs") -> str:
    """A files job on ``src``, run once; returns its recovery point's id."""
    app.create_job(job, "files", "default", options={"paths": [str(src)]})
    run = app.run_job(job)
    assert run.state == "succeeded", run.error
    return app.recovery_points(job=job)[0].id


def stored(path: Path) -> str:
    """A source path as the files plugin stores it (no leading slash)."""
    return str(path).lstrip("/")


@pytest.fixture
def point(appliance: Appliance, tmp_path: Path) -> tuple[str, Path]:
    src = make_source(tmp_path)
    return backed_up(appliance, src), src


def finished(client: FlaskClient, run_id: int) -> dict:
    """The run once it has ended (the restore thread records its end in the catalog)."""
    while True:
        record = client.get(f"/api/v1/runs/{run_id}").get_json()
        if record["state"] not in ("queued", "running"):
            return record
        time.sleep(0.05)


def logged(client: FlaskClient, run_id: int, text: str) -> list[str]:
    """The run's log once a line holds ``text`` (the summary line follows the end state)."""
    while True:
        lines = [line["message"] for line in client.get(f"/api/v1/runs/{run_id}").get_json()["log"]]
        if any(text in line for line in lines):
            return lines
        time.sleep(0.05)


def headers(client: FlaskClient) -> dict[str, str]:
    return {"X-CSRFToken": page_csrf(client, "/")}


def test_assets_timeline_and_lazy_tree(login, point) -> None:
    rp, src = point
    client = login("read-only")
    assets = client.get("/api/v1/restore/assets").get_json()
    assert [(a["plugin"], a["points"]) for a in assets] == [("files", 1)]
    points = client.get(f"/api/v1/restore/assets/{assets[0]['id']}/points").get_json()
    assert points[0]["id"] == rp
    assert points[0]["level"] == "full" and points[0]["pool"] == "default"
    assert points[0]["bytes"] > 512_000
    detail = client.get(f"/api/v1/recovery-points/{rp}").get_json()
    assert detail["downloadable"] is True and detail["restore_options"] == []
    # One folder at a time: folders first, then files, each with its kind and size.
    listing = client.get(
        f"/api/v1/recovery-points/{rp}/items", query_string={"path": stored(src)}
    ).get_json()
    assert [(i["name"], i["kind"], i["folder"]) for i in listing] == [
        ("sub", "dir", True),
        ("a.txt", "file", False),
        ("link", "symlink", False),
    ]
    deeper = client.get(
        f"/api/v1/recovery-points/{rp}/items", query_string={"path": stored(src / "sub" / "deep")}
    ).get_json()
    assert deeper == [
        {
            "folder": False,
            "kind": "file",
            "mtime": deeper[0]["mtime"],
            "name": "c.bin",
            "path": stored(src / "sub" / "deep" / "c.bin"),
            "size": 512_000,
        }
    ]
    # The pages of steps 1 and 2.
    page = client.get("/restore/").get_data(as_text=True)
    assert f"/restore/assets/{assets[0]['id']}" in page
    timeline = client.get(f"/restore/assets/{assets[0]['id']}").get_data(as_text=True)
    assert f"/restore/points/{rp}" in timeline and "full" in timeline


def test_restore_a_file_to_a_folder_in_the_background(
    login, point, appliance: Appliance, tmp_path: Path
) -> None:
    rp, src = point
    client = login("operator")
    target = tmp_path / "out"
    wanted = stored(src / "sub" / "b.txt")
    response = client.post(
        f"/api/v1/recovery-points/{rp}/restore",
        json={"paths": [wanted], "destination": "folder", "target": str(target)},
        headers=headers(client),
    )
    assert response.status_code == 202, response.get_json()
    run = response.get_json()
    assert run["kind"] == "restore"
    done = finished(client, run["id"])
    assert done["state"] == "succeeded", done
    assert any(line.startswith("restored ") for line in logged(client, run["id"], "restored "))
    assert (target / wanted).read_text() == "second file\n"
    assert not (target / stored(src / "a.txt")).exists()
    event = next(e for e in appliance.audit_events() if e.action == "restore")
    assert (event.actor, event.target) == ("operator", rp)
    assert event.details["run"] == run["id"]
    assert event.details["paths"] == [wanted]
    assert event.details["destination"] == str(target)


def test_restore_in_place_puts_a_deleted_file_back(login, point) -> None:
    rp, src = point
    (src / "a.txt").unlink()
    client = login("operator")
    response = client.post(
        f"/api/v1/recovery-points/{rp}/restore",
        json={"paths": ["/" + stored(src / "a.txt")], "destination": "original"},
        headers=headers(client),
    )
    assert response.status_code == 202
    assert finished(client, response.get_json()["id"])["state"] == "succeeded"
    assert (src / "a.txt").read_text() == "first file\n"


def test_a_failing_restore_is_a_failed_run_with_its_reason(login, point, tmp_path: Path) -> None:
    rp, _ = point
    client = login("operator")
    response = client.post(
        f"/api/v1/recovery-points/{rp}/restore",
        json={"paths": ["no/such/file"], "destination": "folder", "target": str(tmp_path / "o")},
        headers=headers(client),
    )
    assert response.status_code == 202
    done = finished(client, response.get_json()["id"])
    assert done["state"] == "failed"
    assert "not in recovery point" in done["error"] and "no/such/file" in done["error"]
    assert not (tmp_path / "o").exists()


def test_download_is_a_tar_of_the_chosen_items(login, point, appliance: Appliance) -> None:
    rp, src = point
    client = login("operator")
    response = client.post(
        f"/api/v1/recovery-points/{rp}/download",
        json={"paths": [stored(src / "sub"), stored(src / "link")]},
        headers=headers(client),
    )
    assert response.status_code == 200
    assert response.mimetype == "application/x-tar"
    assert "attachment" in response.headers["Content-Disposition"]
    sub = stored(src / "sub")
    with tarfile.open(fileobj=io.BytesIO(response.data)) as archive:
        assert sorted(archive.getnames()) == sorted(
            [sub, f"{sub}/b.txt", f"{sub}/deep", f"{sub}/deep/c.bin", stored(src / "link")]
        )
        assert archive.extractfile(f"{sub}/deep/c.bin").read() == bytes(range(256)) * 2000
        assert archive.getmember(stored(src / "link")).linkname == "a.txt"
    event = next(e for e in appliance.audit_events() if e.action == "restore")
    assert event.details["destination"] == "download"


def test_a_damaged_chunk_cuts_the_download_short(login, point, appliance: Appliance) -> None:
    rp, src = point
    pool = Path(appliance.pools()[0].options["path"])
    packs = sorted((pool / "packs").glob("*/*.pack"))
    assert packs
    for pack in packs:  # damage the middle of every pack: sealed chunks fail their check
        data = bytearray(pack.read_bytes())
        for offset in range(len(data) // 4, len(data) - 64, 2048):
            data[offset] ^= 0x10
        pack.write_bytes(bytes(data))
    client = login("operator")
    with pytest.raises((ChunkCorrupt, ChunkMissing)):
        response = client.post(
            f"/api/v1/recovery-points/{rp}/download",
            json={"paths": [stored(src / "sub" / "deep" / "c.bin")]},
            headers=headers(client),
        )
        response.get_data()


def test_bad_input_is_refused_and_nothing_is_restored(
    login, point, appliance: Appliance, tmp_path: Path
) -> None:
    rp, _ = point
    client = login("operator")
    h = headers(client)
    cases = [
        ({"destination": "mars"}, 400, "destination must be one of"),
        ({"destination": "folder"}, 400, "give the folder"),
        ({"destination": "folder", "target": "relative/dir"}, 400, "absolute path"),
        ({"overwrite": "sometimes"}, 400, "overwrite must be one of"),
        ({"paths": "a.txt"}, 400, "paths must be a list of strings"),
        ({"paths": ["../etc/passwd"]}, 400, "not a path inside"),
        ({"options": {"vm_name": "x"}}, 400, "files has no restore option vm_name"),
        ({"options": []}, 400, "options must be an object"),
        ({"destination": "download"}, 400, "/download"),
    ]
    for body, status, message in cases:
        response = client.post(f"/api/v1/recovery-points/{rp}/restore", json=body, headers=h)
        assert response.status_code == status, body
        assert message in response.get_json()["error"], (body, response.get_json())
    not_json = client.post(f"/api/v1/recovery-points/{rp}/restore", data="x", headers=h)
    assert not_json.status_code == 400
    unknown = client.post("/api/v1/recovery-points/nosuchpoint/restore", json={}, headers=h)
    assert unknown.status_code == 404
    missing = client.post(
        f"/api/v1/recovery-points/{rp}/download", json={"paths": ["no/such"]}, headers=h
    )
    assert missing.status_code == 404 and "no/such" in missing.get_json()["error"]
    assert [r for r in appliance.runs() if r.kind == "restore"] == []
    assert [e for e in appliance.audit_events() if e.action == "restore"] == []


def test_roles_and_csrf(login, point, appliance: Appliance, flask_app) -> None:
    rp, _ = point
    reader = login("read-only")
    body = {"destination": "original"}
    refused = reader.post(
        f"/api/v1/recovery-points/{rp}/restore", json=body, headers=headers(reader)
    )
    assert refused.status_code == 403
    assert reader.get(f"/restore/points/{rp}").status_code == 403
    assert (
        reader.post(
            f"/api/v1/recovery-points/{rp}/download", json={}, headers=headers(reader)
        ).status_code
        == 403
    )
    operator = login("operator")
    no_csrf = operator.post(f"/api/v1/recovery-points/{rp}/restore", json=body)
    assert no_csrf.status_code == 400 and "CSRF" in no_csrf.get_json()["error"]
    anonymous = flask_app.test_client()
    assert anonymous.get("/api/v1/restore/assets").status_code == 401
    assert [r for r in appliance.runs() if r.kind == "restore"] == []
    # The menu offers the wizard; the OpenAPI document names the roles.
    assert "/restore/" in reader.get("/").get_data(as_text=True)
    doc = anonymous.get("/api/v1/openapi.json").get_json()
    assert doc["paths"]["/recovery-points/{point_id}/restore"]["post"]["x-tapir-role"] == (
        "operator"
    )
    assert doc["paths"]["/recovery-points/{point_id}/items"]["get"]["x-tapir-role"] == ("read-only")


def test_wizard_pages_summary_then_start(login, point, tmp_path: Path) -> None:
    rp, src = point
    client = login("operator")
    page = client.get(f"/restore/points/{rp}").get_data(as_text=True)
    assert 'id="tree"' in page and 'value="download"' in page
    csrf = page_csrf(client, "/")
    wanted = stored(src / "a.txt")
    form = {
        "csrf_token": csrf,
        "what": "items",
        "paths": [wanted],
        "destination": "folder",
        "target": str(tmp_path / "restored"),
        "overwrite": "never",
    }
    summary = client.post(f"/restore/points/{rp}", data=form)
    assert summary.status_code == 200
    text = summary.get_data(as_text=True)
    assert wanted in text and str(tmp_path / "restored") in text
    assert not (tmp_path / "restored").exists()  # a summary starts nothing
    started = client.post(f"/restore/points/{rp}", data={**form, "action": "start"})
    assert started.status_code == 302
    run_id = int(re.search(r"/restore/runs/(\d+)$", started.headers["Location"]).group(1))
    assert finished(client, run_id)["state"] == "succeeded"
    assert (tmp_path / "restored" / wanted).read_text() == "first file\n"
    assert "Restore run" in client.get(f"/restore/runs/{run_id}").get_data(as_text=True)
    # "Chosen items" with none chosen is sent back with the reason.
    empty = client.post(f"/restore/points/{rp}", data={**form, "paths": []})
    assert empty.status_code == 400
    assert "choose at least one item" in empty.get_data(as_text=True)


# --- the browser ------------------------------------------------------------------------

BROWSER_USER = "restorer"


@pytest.fixture
def served_point(served: Served, tmp_path: Path) -> tuple[str, Path]:
    """An operator of its own and one files backup on the served appliance."""
    src = make_source(tmp_path)
    app = Appliance.open(load_settings(served.home), registry=load_plugins())
    try:
        if not any(u.username == BROWSER_USER for u in _users(app)):
            app.create_user(BROWSER_USER, PASSWORD, "operator")
        job = f"restore-{tmp_path.name}"[:60]
        return backed_up(app, src, job=job), src
    finally:
        app.close()


def _users(app: Appliance) -> list:
    from sqlalchemy import select

    from tapir.appliance.catalog.models import User

    with app.catalog.session() as s:
        return list(s.scalars(select(User)))


def test_browse_and_restore_a_file(browser, served: Served, served_point, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    rp, src = served_point
    # Screenshots for the user guide: TAPIR_SCREENSHOTS=docs/images pytest ...
    shots = Path(os.environ.get("TAPIR_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(served.base + "/login")
        page.fill("input[name=username]", BROWSER_USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.click("header nav >> text=Restore")
        # The files asset (other tests of this served appliance add assets of their own).
        page.locator("#assets tbody tr", has=page.locator("td", has_text="files")).locator(
            "a"
        ).first.click()
        page.screenshot(path=shots / "restore-points.png", full_page=True)
        page.locator(f"tr[data-point='{rp}'] >> text=Restore from here").click()
        # Open the tree down to the file, one folder at a time.
        for part in (*src.parts[1:], "sub"):
            node = page.locator(f"li.item[data-path$='/{part}'], li.item[data-path='{part}']")
            node.last.locator("> button.toggle").click()
        wanted = stored(src / "sub" / "b.txt")
        page.locator(f"li.item[data-path='{wanted}'] input[type=checkbox]").check()
        expect(page.locator("input[name=what][value=items]")).to_be_checked()
        page.check("input[name=destination][value=folder]")
        page.fill("input[name=target]", str(tmp_path / "restored"))
        page.screenshot(path=shots / "restore-choose.png", full_page=True)
        page.click("button[value=summary]")
        expect(page.locator("#summary-what")).to_contain_text(wanted)
        page.screenshot(path=shots / "restore-summary.png", full_page=True)
        expect(page.locator("#summary-where")).to_contain_text(str(tmp_path / "restored"))
        page.click("#start")
        expect(page).to_have_url(re.compile(r"/restore/runs/\d+$"))
        expect(page.locator("#run-state")).to_have_text("succeeded", timeout=90_000)
        expect(page.locator("#run-log")).to_contain_text("restore of " + rp)
        page.screenshot(path=shots / "restore-run.png", full_page=True)
        assert (tmp_path / "restored" / wanted).read_text() == "second file\n"
    finally:
        context.close()


def test_download_from_the_browser(browser, served: Served, served_point) -> None:  # type: ignore[no-untyped-def]
    rp, src = served_point
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(served.base + "/login")
        page.fill("input[name=username]", BROWSER_USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(served.base + f"/restore/points/{rp}")
        page.check("input[name=destination][value=download]")
        page.click("button[value=summary]")
        with page.expect_download() as info:
            page.click("#start")
        with tarfile.open(info.value.path()) as archive:
            assert archive.extractfile(stored(src / "a.txt")).read() == b"first file\n"
    finally:
        context.close()


def test_legal_hold_from_the_timeline_and_the_api(login, point, appliance: Appliance) -> None:
    rp, _ = point
    asset_id = appliance.recovery_point(rp).asset_id
    reader = login("read-only")
    refused = reader.post(
        f"/api/v1/recovery-points/{rp}/hold", json={"hold": True}, headers=headers(reader)
    )
    assert refused.status_code == 403
    operator = login("operator")
    for bad in ({}, {"hold": "yes"}, {"hold": True, "why": "x"}):
        answer = operator.post(
            f"/api/v1/recovery-points/{rp}/hold", json=bad, headers=headers(operator)
        )
        assert answer.status_code == 400, bad
    assert appliance.recovery_point(rp).legal_hold is False
    placed = operator.post(
        f"/api/v1/recovery-points/{rp}/hold", json={"hold": True}, headers=headers(operator)
    )
    assert placed.status_code == 200 and placed.get_json()["legal_hold"] is True
    assert appliance.recovery_point(rp).legal_hold is True
    # The timeline page lifts it with a form (CSRF-protected), and says so.
    page = operator.get(f"/restore/assets/{asset_id}").get_data(as_text=True)
    assert "Lift hold" in page
    assert operator.post(f"/restore/points/{rp}/hold", data={"hold": "no"}).status_code == 400
    lifted = operator.post(
        f"/restore/points/{rp}/hold",
        data={"hold": "no", "csrf_token": page_csrf(operator, "/")},
    )
    assert lifted.status_code == 303
    assert appliance.recovery_point(rp).legal_hold is False
    actions = [e.action for e in appliance.audit_events() if e.target == rp]
    assert actions.count("hold") == 1 and actions.count("unhold") == 1
