"""Fixtures for the web panel: an appliance on a fresh home, Flask clients per role,
and (for the browser tests) a real ``tapir serve`` process and Debian's chromium."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins
from tapir.appliance.web.app import create_app
from tapir.appliance.web.ratelimit import LoginLimiter

TAPIR = Path(sys.executable).parent / "tapir"
PASSWORD = "correct horse battery staple"
ROLES = ("admin", "operator", "read-only")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class FakeClock:
    """A clock the tests move by hand (session expiry, rate limiting)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    """A new appliance with the bundled plugins and one user per role."""
    app = Appliance.open(load_settings(tmp_path / "home"), registry=load_plugins())
    app.initialize()
    app.set_password("admin", PASSWORD)  # the first-run lock has its own test
    app.create_user("operator", PASSWORD, "operator")
    app.create_user("readonly", PASSWORD, "read-only")
    yield app
    app.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def flask_app(appliance: Appliance, clock: FakeClock) -> Flask:
    app = create_app(appliance, TESTING=True, TAPIR_CLOCK=clock)
    app.extensions["tapir.login_limiter"] = LoginLimiter(max_failures=3, window=60, clock=clock)
    return app


def csrf_token(client: FlaskClient) -> str:
    """The CSRF token of the client's session, read from a page like a browser would."""
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def page_csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert match, page
    return match.group(1)


def log_in(client: FlaskClient, username: str, password: str = PASSWORD):
    return client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": csrf_token(client),
            "next": "",
        },
    )


@pytest.fixture
def login(flask_app: Flask) -> Callable[[str], FlaskClient]:
    """A client logged in as the user of that role ("admin", "operator", "read-only")."""

    def make(role: str) -> FlaskClient:
        client = flask_app.test_client()
        response = log_in(client, role.replace("-", ""))
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return make


# Browser tests: one real `tapir serve` and one chromium for the whole session.


@dataclass
class Served:
    base: str
    home: Path
    admin_password: str
    proc: subprocess.Popen[str]


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "tapir serve printed nothing in time"
    return proc.stdout.readline()


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``tapir init`` then ``tapir serve`` (panel, scheduler, one worker) on a fresh home."""
    home = tmp_path_factory.mktemp("served") / "home"
    env = {**os.environ, "TAPIR_HOME": str(home)}
    env.pop("TAPIR_DATABASE_URL", None)
    init = subprocess.run(
        [str(TAPIR), "init"], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    password = re.search(r"admin password: (\S+)", init.stdout).group(1)
    # The service log goes to a file: an unread pipe would block the server once full.
    log = (home.parent / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            str(TAPIR),
            "serve",
            "--port",
            "0",
            "--workers",
            "1",
            "--tick-seconds",
            "1",
            "--poll-seconds",
            "0.3",
            "--stop-timeout",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        line = _read_line(proc, 60)
        match = re.search(r"web panel on (http://127\.0\.0\.1:\d+)/", line)
        assert match, line
        yield Served(match.group(1), home, password, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's chromium driven by Playwright (never a downloaded browser)."""
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
