"""The tape plugin's panel pages against a real tgt library: the picture, move, load,
unload, inventory, import, labelling (with the audited overwrite of another pool's
tape), cleaning, export to the mail slots, roles, CSRF, bad input and a dead library;
then "move a cartridge in the test library" in Debian's chromium."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from vtl import VirtualLibrary
from web.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, Served, page_csrf

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins

from .conftest import register_library


def post(client: FlaskClient, path: str, **data: object):
    return client.post(path, data={"csrf_token": page_csrf(client, "/"), **data})


def place(page: str, ref: str) -> str:
    """The HTML of one element box of the picture (``slot:3``)."""
    match = re.search(rf'<div class="place [^"]*" data-place="{ref}".*?</div>', page, re.S)
    assert match, f"no {ref} in the page"
    return match.group(0)


def volume(app: Appliance, barcode: str):  # type: ignore[no-untyped-def]
    ctx = app.plugin_context("tape")
    assert ctx.volumes is not None
    return ctx.volumes.get(barcode)


def make_tape_pool(app: Appliance, name: str) -> None:
    app.create_pool(
        name,
        "tape",
        options={"changer": "lib1", "drives": ["lib1-d0", "lib1-d1"], "block_size": 65536},
    )


def test_picture_inventory_and_the_menu(login, appliance: Appliance) -> None:
    reader = login("read-only")
    assert "/tape/" in reader.get("/").get_data(as_text=True)  # the plugin's menu entry
    page = reader.get("/tape/lib1").get_data(as_text=True)
    # Before an inventory the catalog does not know the cartridges yet.
    assert "TAP001L8" in place(page, "slot:1") and "not in the catalog" in place(page, "slot:1")
    assert "empty" in place(page, "slot:5")
    assert "NEW001L8" in place(page, "mail:1")
    assert "idle" in page and "lib1-d0" in page and "lib1-d1" in page
    operator = login("operator")
    result = post(operator, "/tape/lib1/inventory").get_data(as_text=True)
    assert "new volume TAP001L8 (unlabelled scratch)" in result
    assert "new cleaning cartridge CLN001L1" in result
    page = reader.get("/tape/lib1").get_data(as_text=True)
    assert "state-scratch" in place(page, "slot:1") and "unlabelled" in place(page, "slot:1")
    assert "state-cleaning" in place(page, "slot:12")
    assert volume(appliance, "NEW001L8").location == "mail 1"
    # With one tape pool on lib1 holding volumes, /tape/ opens that library directly.
    make_tape_pool(appliance, "tp")
    post(operator, "/tape/lib1/label", barcodes="TAP004L8", pool="tp", step="write")
    assert reader.get("/tape/").headers["Location"].endswith("/tape/lib1")


def test_move_a_cartridge_between_slots(login, appliance: Appliance) -> None:
    operator = login("operator")
    post(operator, "/tape/lib1/inventory")
    response = post(operator, "/tape/lib1/move", source="slot:1", target="slot:6")
    assert response.status_code == 302
    page = operator.get("/tape/lib1").get_data(as_text=True)
    assert "Moved TAP001L8 from slot 1 to slot 6." in page
    assert "TAP001L8" in place(page, "slot:6") and "empty" in place(page, "slot:1")
    assert volume(appliance, "TAP001L8").location == "slot 6"
    event = next(e for e in appliance.audit_events() if e.action == "tape.move")
    assert (event.actor, event.details) == (
        "operator",
        {"source": "slot:1", "destination": "slot:6"},
    )
    # Refusals say why and move nothing.
    for source, target, reason in (
        ("slot:1", "slot:7", "slot 1 is empty"),
        ("slot:2", "slot:3", "slot 3"),
        ("slot:2", "drive:0", "load or unload the drive"),
        ("shelf:9", "slot:7", "not a library element"),
        ("slot:99", "slot:7", "99"),
    ):
        post(operator, "/tape/lib1/move", source=source, target=target)
        page = operator.get("/tape/lib1").get_data(as_text=True)
        assert "Move refused:" in page and reason in page, (source, target)
    assert volume(appliance, "TAP002L8").location == "slot 2"


def test_load_and_unload_a_drive(login, appliance: Appliance) -> None:
    operator = login("operator")
    post(operator, "/tape/lib1/inventory")
    post(operator, "/tape/lib1/load", barcode="TAP002L8", drive="1")
    page = operator.get("/tape/lib1").get_data(as_text=True)
    assert "Loaded TAP002L8 into lib1-d1." in page
    assert "TAP002L8" in place(page, "drive:1") and "empty" in place(page, "slot:2")
    assert volume(appliance, "TAP002L8").location == "drive 1"
    post(operator, "/tape/lib1/unload", drive="1")
    page = operator.get("/tape/lib1").get_data(as_text=True)
    assert "Unloaded TAP002L8 from lib1-d1." in page
    assert "TAP002L8" in place(page, "slot:2")
    assert volume(appliance, "TAP002L8").location == "slot 2"
    post(operator, "/tape/lib1/unload", drive="1")
    assert "Unload refused: lib1-d1 is empty" in operator.get("/tape/lib1").get_data(as_text=True)
    post(operator, "/tape/lib1/load", barcode="NOPE01L8", drive="0")
    page = operator.get("/tape/lib1").get_data(as_text=True)
    assert "Load refused:" in page and "NOPE01L8" in page
    post(operator, "/tape/lib1/load", barcode="TAP002L8", drive="x")
    assert "Load refused:" in operator.get("/tape/lib1").get_data(as_text=True)


def test_a_drive_held_by_a_job_is_not_touched(login, appliance: Appliance) -> None:
    from tapir.plugins.tape.reservation import named_lock

    operator = login("operator")
    post(operator, "/tape/lib1/inventory")
    ctx = appliance.plugin_context("tape")
    lock = named_lock(ctx, "drive", "lib1-d0", "backup run 42")
    assert lock.try_acquire()
    try:
        page = operator.get("/tape/lib1").get_data(as_text=True)
        assert re.search(r"busy</strong>: \d+ backup run 42", page)
        post(operator, "/tape/lib1/load", barcode="TAP003L8", drive="0")
        page = operator.get("/tape/lib1").get_data(as_text=True)
        assert re.search(r"Load refused: drive lib1-d0 is in use \(\d+ backup run 42\)", page)
        assert "TAP003L8" in place(page, "slot:3")
    finally:
        lock.release()


def test_import_from_the_mail_slots(login, appliance: Appliance) -> None:
    operator = login("operator")
    result = post(operator, "/tape/lib1/import").get_data(as_text=True)
    assert "NEW001L8 -&gt; slot 5" in result
    page = operator.get("/tape/lib1").get_data(as_text=True)
    assert "NEW001L8" in place(page, "slot:5") and "empty" in place(page, "mail:1")
    assert volume(appliance, "NEW001L8").location == "slot 5"
    assert "the mail slots are empty" in post(operator, "/tape/lib1/import").get_data(as_text=True)


def test_label_confirm_write_and_audited_overwrite(
    login, appliance: Appliance, vtl: VirtualLibrary
) -> None:
    make_tape_pool(appliance, "alpha")
    make_tape_pool(appliance, "beta")
    operator = login("operator")
    post(operator, "/tape/lib1/inventory")
    # Step one only shows what will happen.
    confirm = post(operator, "/tape/lib1/label", barcodes=["TAP001L8", "TAP002L8"], pool="alpha")
    text = confirm.get_data(as_text=True)
    assert "Label 2 cartridge(s) for pool alpha" in text and "never labelled" in text
    assert not volume(appliance, "TAP001L8").labeled
    done = post(
        operator, "/tape/lib1/label", barcodes=["TAP001L8", "TAP002L8"], pool="alpha", step="write"
    ).get_data(as_text=True)
    assert done.count("labelled for pool alpha") == 2
    assert volume(appliance, "TAP001L8").pool == "alpha"
    # Another pool's tape is refused, then offered by name for an audited overwrite.
    refused = post(
        operator, "/tape/lib1/label", barcodes="TAP001L8", pool="beta", step="write"
    ).get_data(as_text=True)
    assert "refused" in refused and "labelled for pool alpha" in refused
    assert 'id="overwrite-form"' in refused
    assert volume(appliance, "TAP001L8").pool == "alpha"
    assert not [e for e in appliance.audit_events() if e.action == "tape.label.overwrite"]
    forced = post(
        operator, "/tape/lib1/label", barcodes="TAP001L8", pool="beta", step="overwrite"
    ).get_data(as_text=True)
    assert "(overwritten, audited)" in forced
    assert volume(appliance, "TAP001L8").pool == "beta"
    event = next(e for e in appliance.audit_events() if e.action == "tape.label.overwrite")
    assert event.actor == "operator" and event.target == "TAP001L8"
    assert event.details["pool"] == "beta" and "pool alpha" in event.details["reason"]
    # Nothing chosen, or an unknown pool: a clear refusal.
    post(operator, "/tape/lib1/label", pool="beta", step="write")
    assert "choose at least one cartridge" in operator.get("/tape/lib1").get_data(as_text=True)
    post(operator, "/tape/lib1/label", barcodes="TAP003L8", pool="nosuch", step="write")
    page = operator.get("/tape/lib1").get_data(as_text=True)
    assert "Labelling failed:" in page and "nosuch" in page


def test_clean_a_drive(login, appliance: Appliance) -> None:
    operator = login("operator")
    post(operator, "/tape/lib1/inventory")
    post(operator, "/tape/lib1/clean", drive="0")
    page = operator.get("/tape/lib1").get_data(as_text=True)
    assert "Cleaned lib1-d0 with CLN001L1 (use 1 of 50)." in page
    assert volume(appliance, "CLN001L1").cleaning_uses == 1
    assert "CLN001L1" in place(page, "slot:12")


def test_tape_alerts_are_read_on_request(login) -> None:
    operator = login("operator")
    post(operator, "/tape/lib1/alerts", drive="0")
    page = operator.get("/tape/lib1").get_data(as_text=True)
    # tgt's drives do not implement LOG SENSE: the refusal is shown as the drive gave it.
    assert "TapeAlert read failed: cannot read the TapeAlert flags of lib1-d0" in page
    assert "invalid command operation code" in page
    post(operator, "/tape/lib1/alerts", drive="5")
    assert "drive 5 of lib1 is not registered" in operator.get("/tape/lib1").get_data(as_text=True)


def test_export_a_media_set_to_the_mail_slots(login, appliance: Appliance, tmp_path: Path) -> None:
    make_tape_pool(appliance, "tp")
    operator = login("operator")
    post(operator, "/tape/lib1/inventory")
    post(operator, "/tape/lib1/import")  # the mail slots must have room
    post(operator, "/tape/lib1/label", barcodes=["TAP001L8", "TAP002L8"], pool="tp", step="write")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("to tape\n")
    appliance.create_job("t", "files", "tp", options={"paths": [str(src)]})
    assert appliance.run_job("t").state == "succeeded"
    (written,) = [v for v in appliance.plugin_context("tape").volumes.list() if v.media_set]
    ref = f"tp|{written.media_set}"
    confirm = post(operator, "/tape/lib1/export", media_set_ref=ref, note="Bank vault")
    text = confirm.get_data(as_text=True)
    assert written.label in text and "Bank vault" in text
    assert volume(appliance, written.label).location.startswith(("slot", "drive"))
    done = post(
        operator,
        "/tape/lib1/export",
        pool="tp",
        media_set=written.media_set,
        note="Bank vault",
        confirmed="yes",
    ).get_data(as_text=True)
    assert f"{written.label} -&gt; mail slot" in done
    page = operator.get("/tape/lib1").get_data(as_text=True)
    assert written.label in page[page.index('id="mail-slots"') :]
    vault = operator.get("/tape/vault").get_data(as_text=True)
    assert written.label in vault


def test_roles_csrf_and_unknown_changer(login, appliance: Appliance) -> None:
    reader = login("read-only")
    assert reader.get("/tape/lib1").status_code == 200
    refused = post(reader, "/tape/lib1/move", source="slot:1", target="slot:6")
    assert refused.status_code == 403
    operator = login("operator")
    no_csrf = operator.post("/tape/lib1/move", data={"source": "slot:1", "target": "slot:6"})
    assert no_csrf.status_code == 400
    page = operator.get("/tape/lib1").get_data(as_text=True)
    assert "TAP001L8" in place(page, "slot:1")
    unknown = operator.get("/tape/nolib")
    assert unknown.status_code == 404
    assert "no device named" in unknown.get_data(as_text=True)
    drive = operator.get("/tape/lib1-d0")
    assert drive.status_code == 404 and "not a changer" in drive.get_data(as_text=True)


def test_a_dead_library_is_reported(login, appliance: Appliance) -> None:
    appliance.register_device("gone", "changer", "iscsi://127.0.0.1:1/iqn.none/1", check=False)
    reader = login("read-only")
    response = reader.get("/tape/gone")
    assert response.status_code == 503
    assert "The library did not answer" in response.get_data(as_text=True)


# --- the browser ------------------------------------------------------------------------

BROWSER_USER = "tape-operator"


@pytest.fixture
def served_library(served: Served, vtl: VirtualLibrary, tmp_path: Path) -> str:
    """The test library registered (under a name of its own) on the served appliance."""
    name = f"web{tmp_path.name[-12:]}".replace("_", "")
    app = Appliance.open(load_settings(served.home), registry=load_plugins())
    try:
        register_library(app, vtl, name)
        with contextlib.suppress(Exception):  # created by an earlier test of this session
            app.create_user(BROWSER_USER, PASSWORD, "operator")
    finally:
        app.close()
    return name


def in_browser(scenario: Callable[[Any], None]) -> None:
    """Run ``scenario(page)`` in a chromium of its own, in a thread of its own.

    Playwright's sync API allows one instance per thread, and tests/web holds its
    session-wide one on the main thread when both folders run together.
    """
    from playwright.sync_api import sync_playwright

    failure: list[BaseException] = []

    def run() -> None:
        try:
            with sync_playwright() as pw:
                chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    context = chromium.new_context(viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    page.set_default_timeout(30_000)
                    scenario(page)
                finally:
                    chromium.close()
        except BaseException as exc:
            failure.append(exc)

    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    thread = threading.Thread(target=run, name="tape-browser")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def test_move_a_cartridge_in_the_browser(served: Served, served_library: str) -> None:
    from playwright.sync_api import expect

    def scenario(page: Any) -> None:
        page.goto(served.base + "/login")
        page.fill("input[name=username]", BROWSER_USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.click("header nav >> text=Tape library")
        page.fill("input[name=changer]", served_library)
        page.click("text=Open")
        expect(page.locator("[data-place='slot:3']")).to_contain_text("TAP003L8")
        page.click("#inventory")
        expect(page.locator("#result")).to_contain_text("new volume TAP003L8")
        page.click("text=Back to the library")
        page.select_option("#move-form select[name=source]", "slot:3")
        page.select_option("#move-form select[name=target]", "slot:9")
        page.click("#move-form button[type=submit]")
        expect(page.locator("p.flash.ok")).to_have_text("Moved TAP003L8 from slot 3 to slot 9.")
        expect(page.locator("[data-place='slot:9']")).to_contain_text("TAP003L8")
        expect(page.locator("[data-place='slot:9']")).to_contain_text("scratch")
        expect(page.locator("[data-place='slot:3']")).to_contain_text("empty")
        # Screenshots for the docs: TAPIR_SCREENSHOTS=docs/images pytest ...
        shots = Path(os.environ.get("TAPIR_SCREENSHOTS") or served.home.parent)
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=shots / "tape-library.png", full_page=True)

    in_browser(scenario)
