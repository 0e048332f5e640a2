"""Files inside disk images in the restore wizard (issues #8 and #10): the what-and-where
page of an image point, the summary of chosen addresses, the restore into a folder
(kept or replaced as asked), the tar or zip download through the image endpoint,
errors shown clearly (unknown address, damaged file system) with nothing written,
roles and CSRF, and one run in Debian's chromium against a real ``tapir serve``.

The disk is built by ``tests/imagefs`` (its own file system tools, no mount) and
backed up through the imagefile plugin, as the imagefs tests do.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient
from imagefs.conftest import back_up
from imagefs.content import UNICODE, file_sha256, make_tree, sha256
from imagefs.disks import MiB, Part, build_disk

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins

from .conftest import PASSWORD, Served, page_csrf

EXT4_AT = MiB  # the ext4 partition's offset in the test disk


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A small MBR disk with one ext4 partition (built once), and its files' sha256."""
    work = tmp_path_factory.mktemp("image-wizard")
    src = work / "src"
    src.mkdir()
    sums = make_tree(src)
    raw = build_disk(work / "d.raw", 40 * MiB, [Part("ext4", 32 * MiB, src)], table="dos")
    return raw, sums


@pytest.fixture
def point(appliance: Appliance, disk: tuple[Path, dict[str, str]]) -> str:
    return back_up(appliance, disk[0], "guest")


def _form(client: FlaskClient, paths: list[str], **where: str) -> dict[str, object]:
    return {
        "csrf_token": page_csrf(client, "/"),
        "what": "items",
        "paths": paths,
        "overwrite": "never",
        **where,
    }


def _events(appliance: Appliance, action: str) -> list:
    return [e for e in appliance.audit_events() if e.action == action]


def test_the_choose_page_of_an_image_point_loads_the_image_tree(
    login, point: str, appliance: Appliance
) -> None:
    operator = login("operator")
    page = operator.get(f"/restore/points/{point}").get_data(as_text=True)
    assert "image-tree.js" in page and 'name="archive"' in page
    assert 'data-kind="image"' in page
    # The disks sit in a folder the plugin implies (it stores no item for "disks");
    # restore.js hands a disk to the "disk" expander.
    items = operator.get(f"/api/v1/recovery-points/{point}/items").get_json()
    assert [(i["path"], i["kind"], i["folder"]) for i in items] == [("disks", "dir", True)]
    items = operator.get(f"/api/v1/recovery-points/{point}/items?path=disks").get_json()
    assert [(i["path"], i["kind"], i["folder"]) for i in items] == [
        ("disks/0-d.raw", "disk", False)
    ]
    assert operator.get("/static/image-tree.js").status_code == 200
    reader = login("read-only")
    assert reader.get(f"/restore/points/{point}").status_code == 403
    # Read-only may browse what the tree shows.
    volumes = reader.get(f"/api/v1/recovery-points/{point}/image/disks/0/volumes").get_json()
    assert [(v["address"], v["fs"]) for v in volumes["volumes"]] == [("0:1/", "ext")]


def test_summary_shows_the_addresses_then_restores_into_a_folder(
    login, point: str, appliance: Appliance, disk, tmp_path: Path
) -> None:
    _, sums = disk
    client = login("operator")
    target = tmp_path / "restored"
    chosen = ["0:1/report.bin", "0:1/etc", f"0:1/{UNICODE}"]
    form = _form(client, chosen, destination="folder", target=str(target))
    summary = client.post(f"/restore/points/{point}", data=form)
    assert summary.status_code == 200, summary.get_data(as_text=True)
    text = summary.get_data(as_text=True)
    for address in chosen:
        assert f"<code>{address}</code>" in text
    assert str(target) in text
    assert not target.exists()  # a summary writes nothing
    assert _events(appliance, "restore.image_files") == []
    started = client.post(f"/restore/points/{point}", data={**form, "action": "start"})
    assert started.status_code == 303
    assert started.headers["Location"].endswith(f"/restore/points/{point}")
    after = client.get(started.headers["Location"]).get_data(as_text=True)
    assert "Restored 4 file(s), 2 folder(s)" in after and str(target) in after
    assert file_sha256(target / "report.bin") == sums["report.bin"]
    assert file_sha256(target / "etc" / "app" / "config.ini") == sums["etc/app/config.ini"]
    assert (target / UNICODE).read_bytes() == "unicode content ✓\n".encode()
    assert not (target / "hello.txt").exists()
    (event,) = _events(appliance, "restore.image_files")
    assert (event.actor, event.target) == ("operator", point)
    assert event.details["paths"] == chosen
    assert event.details["destination"] == str(target)
    assert event.details["overwrite"] is False
    assert [r for r in appliance.runs() if r.kind == "restore"] == []


def test_existing_files_are_kept_unless_always_is_chosen(
    login, point: str, disk, tmp_path: Path
) -> None:
    _, sums = disk
    client = login("operator")
    target = tmp_path / "out"
    target.mkdir()
    (target / "hello.txt").write_text("mine\n")
    form = _form(client, ["0:1/hello.txt"], destination="folder", target=str(target))
    kept = client.post(f"/restore/points/{point}", data={**form, "action": "start"})
    assert kept.status_code == 409
    assert "hello.txt" in kept.get_data(as_text=True)
    assert (target / "hello.txt").read_text() == "mine\n"
    older = client.post(f"/restore/points/{point}", data={**form, "overwrite": "older"})
    assert older.status_code == 400
    assert "never) or replaced (always)" in older.get_data(as_text=True)
    replaced = client.post(
        f"/restore/points/{point}", data={**form, "overwrite": "always", "action": "start"}
    )
    assert replaced.status_code == 303
    assert sha256((target / "hello.txt").read_bytes()) == sums["hello.txt"]


@pytest.mark.parametrize("archive", ["tar", "zip"])
def test_download_through_the_image_endpoint(
    login, point: str, appliance: Appliance, disk, archive: str
) -> None:
    _, sums = disk
    client = login("operator")
    form = _form(client, ["0:1/etc", "0:1/report.bin"], destination="download", archive=archive)
    summary = client.post(f"/restore/points/{point}", data=form)
    assert summary.status_code == 200
    assert f"a {archive} archive downloaded by your browser" in summary.get_data(as_text=True)
    started = client.post(f"/restore/points/{point}", data={**form, "action": "start"})
    assert started.status_code == 303
    location = urlsplit(started.headers["Location"])
    assert location.path == f"/api/v1/recovery-points/{point}/image/download"
    assert parse_qs(location.query) == {
        "address": ["0:1/etc", "0:1/report.bin"],
        "format": [archive],
    }
    assert _events(appliance, "download.image_files") == []  # the endpoint audits
    response = client.get(started.headers["Location"])
    assert response.status_code == 200
    if archive == "zip":
        with zipfile.ZipFile(io.BytesIO(response.data)) as z:
            assert sha256(z.read("report.bin")) == sums["report.bin"]
            assert z.read("etc/hostname") == b"web1\n"
    else:
        with tarfile.open(fileobj=io.BytesIO(response.data)) as tar:
            report = tar.extractfile("report.bin")
            assert report is not None and sha256(report.read()) == sums["report.bin"]
            assert "etc/app/config.ini" in tar.getnames()
    (event,) = _events(appliance, "download.image_files")
    assert event.actor == "operator" and event.details["format"] == archive


def test_bad_choices_are_shown_and_change_nothing(
    login, point: str, appliance: Appliance, tmp_path: Path
) -> None:
    client = login("operator")
    target = tmp_path / "never-made"
    cases = [
        (["3:1/etc"], {}, 404, "has no disk &#39;3&#39;"),
        (["0:9/"], {}, 404, "has no volume &#39;9&#39;"),
        (["0:1/no/such/file"], {}, 404, "no such file or folder"),
        (["0:"], {}, 400, "is not a file or folder address"),
        (["disks/0-d.raw", "0:1/etc"], {}, 400, "one at a time"),
        (["0:1/etc", "0:1/etc/../etc/"], {}, 200, "<li><code>0:1/etc</code></li></ul>"),
        (["0:1/etc"], {"destination": "original"}, 400, "not in place"),
        (["0:1/etc"], {"destination": "download", "archive": "rar"}, 400, "archive must be"),
        (["0:1/etc"], {"target": "relative"}, 400, "absolute path"),
    ]
    for paths, where, status, message in cases:
        form = _form(client, paths, destination="folder", target=str(target))
        form.update(where)
        response = client.post(f"/restore/points/{point}", data=form)
        assert response.status_code == status, (paths, where, response.get_data(as_text=True))
        assert message in response.get_data(as_text=True), (paths, where)
    # Two choices that would get the same name are refused when started.
    form = _form(client, ["0:1/etc/hostname", "0:1/hostname"], destination="folder")
    form["target"] = str(target)
    response = client.post(f"/restore/points/{point}", data={**form, "action": "start"})
    assert response.status_code == 400
    assert "restore them one at a time" in response.get_data(as_text=True)
    assert not target.exists()
    assert _events(appliance, "restore.image_files") == []
    assert [r for r in appliance.runs() if r.kind == "restore"] == []


def test_a_damaged_file_system_is_shown_clearly(
    login, appliance: Appliance, disk, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.raw"
    subprocess.run(["cp", "--sparse=always", str(disk[0]), str(damaged)], check=True)
    fd = os.open(damaged, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(1024), EXT4_AT + 1024)  # the primary superblock
    finally:
        os.close(fd)
    point = back_up(appliance, damaged, "damaged")
    client = login("operator")
    target = tmp_path / "out"
    form = _form(client, ["0:1/hello.txt"], destination="folder", target=str(target))
    response = client.post(f"/restore/points/{point}", data={**form, "action": "start"})
    assert response.status_code == 400
    assert "no file system Tapir can read" in response.get_data(as_text=True)
    assert not target.exists()
    # The tree shows the volume with its reason; opening it answers the same error.
    volumes = client.get(f"/api/v1/recovery-points/{point}/image/disks/0/volumes").get_json()
    assert "no file system Tapir can read" in volumes["volumes"][0]["error"]
    assert _events(appliance, "restore.image_files") == []


def test_roles_and_csrf(login, point: str, appliance: Appliance, tmp_path: Path) -> None:
    target = tmp_path / "out"
    reader = login("read-only")
    form = _form(reader, ["0:1/hello.txt"], destination="folder", target=str(target))
    started = reader.post(f"/restore/points/{point}", data={**form, "action": "start"})
    assert started.status_code == 403
    download = f"/api/v1/recovery-points/{point}/image/download?address=0:1/hello.txt"
    assert reader.get(download).status_code == 403
    operator = login("operator")
    no_csrf = {k: v for k, v in form.items() if k != "csrf_token"}
    response = operator.post(f"/restore/points/{point}", data={**no_csrf, "action": "start"})
    assert response.status_code == 400
    h = {"X-CSRFToken": page_csrf(operator, "/")}
    body = {"paths": ["0:1/hello.txt"], "destination": "folder", "target": str(target)}
    assert operator.post(f"/api/v1/recovery-points/{point}/restore", json=body).status_code == 400
    refused = reader.post(
        f"/api/v1/recovery-points/{point}/restore",
        json=body,
        headers={"X-CSRFToken": page_csrf(reader, "/")},
    )
    assert refused.status_code == 403
    assert not target.exists()
    assert _events(appliance, "restore.image_files") == []
    with_options = operator.post(
        f"/api/v1/recovery-points/{point}/restore",
        json={**body, "options": {"name": "x"}},
        headers=h,
    )
    assert with_options.status_code == 400
    assert "do not apply to files inside disk images" in with_options.get_json()["error"]
    # The JSON restore API takes the same addresses (and answers what it wrote).
    done = operator.post(f"/api/v1/recovery-points/{point}/restore", json=body, headers=h)
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["files"] == 1 and done.get_json()["target"] == str(target)
    assert (target / "hello.txt").read_bytes() == b"hello from the guest\n"
    missing = operator.post(
        f"/api/v1/recovery-points/{point}/download",
        json={"paths": ["0:1/nope"], "archive": "zip"},
        headers=h,
    )
    assert missing.status_code == 404 and "no such file" in missing.get_json()["error"]


# --- the browser ------------------------------------------------------------------------

BROWSER_USER = "image-restorer"


@pytest.fixture
def served_image_point(served: Served, disk, tmp_path: Path) -> str:
    """An operator of its own and one image backup on the served appliance."""
    from sqlalchemy import select

    from tapir.appliance.catalog.models import User

    app = Appliance.open(load_settings(served.home), registry=load_plugins())
    try:
        with app.catalog.session() as s:
            known = {u.username for u in s.scalars(select(User))}
        if BROWSER_USER not in known:
            app.create_user(BROWSER_USER, PASSWORD, "operator")
        image = shutil.copy(disk[0], tmp_path / "d.raw")
        # Named to sort last: test_restore_wizard's browser test opens the first asset.
        return back_up(app, Path(image), f"zz-image-{tmp_path.name}"[:60])
    finally:
        app.close()


def test_expand_a_disk_tick_a_file_and_restore_it(  # type: ignore[no-untyped-def]
    browser, served: Served, served_image_point: str, disk, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    point = served_image_point
    target = tmp_path / "restored"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(served.base + "/login")
        page.fill("input[name=username]", BROWSER_USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(served.base + f"/restore/points/{point}")
        page.locator("li.item[data-path='disks'] > button.toggle").click()
        page.locator("li.item[data-path='disks/0-d.raw'] > button.toggle").click()
        volume = page.locator("li.item[data-path='0:1/']")
        expect(volume).to_contain_text("ext")
        volume.locator("> button.toggle").click()
        page.locator("li.item[data-path='0:1/report.bin'] input[type=checkbox]").check()
        expect(page.locator("input[name=what][value=items]")).to_be_checked()
        page.check("input[name=destination][value=folder]")
        page.fill("input[name=target]", str(target))
        page.click("button[value=summary]")
        expect(page.locator("#summary-what")).to_have_text(re.compile(r"^\s*0:1/report\.bin\s*$"))
        expect(page.locator("#summary-where")).to_contain_text(str(target))
        page.click("#start")
        expect(page.locator("p.flash.ok")).to_contain_text("Restored 1 file(s)")
        assert file_sha256(target / "report.bin") == disk[1]["report.bin"]
    finally:
        context.close()
