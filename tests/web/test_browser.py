"""The panel in a real browser (Debian's chromium via Playwright) against a real
``tapir serve``: first-run password change, a pool, a retention policy previewed then
saved, a files job with its schedule previewed, run now, its progress followed by the
page's JavaScript to the end, the audit log, and the job's selection rules previewed
live as they are typed.

Screenshots of each page go to $TAPIR_SCREENSHOTS when set (docs/images/ holds the
ones the user guide shows), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .conftest import Served

NEW_PASSWORD = "a much longer admin password"


@pytest.fixture
def page(browser, served: Served):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def test_first_run_pool_retention_job_run_and_audit(page, served: Served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    shots = Path(os.environ.get("TAPIR_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("first file\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(300_000))

    # Log in with the generated password: the panel insists on a new one first.
    page.goto(served.base + "/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.screenshot(path=shots / "login.png")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", served.admin_password)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/account/password$"))
    expect(page.locator("p.notice")).to_contain_text("generated admin password")
    page.goto(served.base + "/pools/")  # nothing else is reachable yet
    expect(page).to_have_url(re.compile(r"/account/password$"))
    page.fill("input[name=current]", served.admin_password)
    page.fill("input[name=new]", NEW_PASSWORD)
    page.fill("input[name=repeat]", NEW_PASSWORD)
    page.click("form.login button[type=submit]")
    expect(page.locator("p.flash.ok")).to_have_text("Password changed.")

    # A pool, created with the disk plugin's own form (the path left to the default).
    page.goto(served.base + "/pools/new")
    page.fill("input[name=name]", "nightly")
    page.click("button[value=save]")
    expect(page.locator("p.flash.ok")).to_have_text("Pool nightly created.")
    expect(page.locator("table")).to_contain_text("nightly")
    page.screenshot(path=shots / "pools.png", full_page=True)

    # A retention policy: previewed on today's data (none yet), then saved.
    page.goto(served.base + "/retention/new")
    page.fill("input[name=name]", "two-weeks")
    page.fill("input[name=keep_daily]", "14")
    page.fill("input[name=keep_last]", "3")
    page.click("button[value=preview]")
    expect(page.locator("#preview")).to_contain_text("0 kept, 0 deleted")
    page.screenshot(path=shots / "retention-new.png", full_page=True)
    page.click("button[value=save]")
    expect(page.locator("p.flash.ok")).to_have_text("Retention policy two-weeks created.")

    # A files job: the files plugin's options form, the schedule previewed first.
    page.goto(served.base + "/jobs/new?plugin=files")
    page.fill("input[name=name]", "docs")
    page.fill("textarea[name='opt.paths']", str(src))
    page.select_option("select[name=pool]", "nightly")
    page.select_option("select[name=retention]", "two-weeks")
    page.fill("input[name=schedule]", "30 2 * * 1-5")
    page.fill("input[name=timezone]", "Europe/Berlin")
    page.click("button[value=preview]")
    preview = page.locator("#schedule-preview")
    expect(preview).to_contain_text("At 02:30 AM, Monday through Friday")
    expect(preview.locator("li")).to_have_count(5)
    page.screenshot(path=shots / "job-new.png", full_page=True)
    page.click("button[value=save]")
    expect(page.locator("p.flash.ok")).to_have_text("Job docs created.")
    expect(page.locator("#next-runs li")).to_have_count(5)
    expect(page.locator("#next-runs li").first).to_contain_text("02:30 Europe/Berlin")
    expect(page.locator("dl.facts")).to_contain_text("At 02:30 AM, Monday through Friday")

    # Run now: the worker of `tapir serve` executes it; runs.js follows it to the end.
    page.click("text=Run now")
    expect(page).to_have_url(re.compile(r"/jobs/runs/\d+$"))
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#run-bytes")).to_contain_text("KiB")
    expect(page.locator("#run-log")).to_contain_text("queued")
    page.screenshot(path=shots / "run.png", full_page=True)
    page.goto(served.base + "/jobs/docs")
    expect(page.locator("#runs tbody tr").first).to_contain_text("succeeded")
    page.screenshot(path=shots / "job.png", full_page=True)

    page.goto(served.base + "/")
    page.screenshot(path=shots / "dashboard.png", full_page=True)

    # Every change above is in the audit log, as admin from the browser's address.
    page.goto(served.base + "/audit/")
    audit = page.locator("#audit")
    for action in ("user.password", "pool.create", "retention.create", "job.create", "run.queue"):
        expect(audit).to_contain_text(action)
    created = audit.locator("tr").filter(has_text="pool.create").filter(has_text="nightly")
    expect(created.locator("td").nth(1)).to_have_text("admin")
    expect(created.locator("td").nth(2)).to_have_text("127.0.0.1")
    page.screenshot(path=shots / "audit.png", full_page=True)

    # Selection rules of the job: the preview follows the rules as they are typed
    # (rules.js posts the draft to the JSON API), naming the rule behind each asset.
    page.goto(served.base + "/jobs/docs/rules")
    page.fill("#rules-include", "name=no-such-host-*")
    expect(page.locator("#rules-count")).to_have_text("0 selected, 0 excluded")
    page.fill("#rules-include", "name=*")
    expect(page.locator("#rules-count")).to_have_text("1 selected, 0 excluded")
    expect(page.locator("#rules-assets tr.selected")).to_contain_text("rule name=*")
    page.fill("#rules-include", "colour=red")
    expect(page.locator("#rules-error")).to_contain_text("invalid selection rule 'colour=red'")
    page.fill("#rules-include", "name=*")
    expect(page.locator("#rules-error")).to_be_hidden()
    page.screenshot(path=shots / "job-rules.png", full_page=True)
    page.click("text=Save rules")
    expect(page.locator("p.flash.ok")).to_have_text("Selection rules of docs saved.")
