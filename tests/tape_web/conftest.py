"""Fixtures: a real tgt tape library, an appliance with its changer and drives
registered and one user per role, the panel (Flask) on it, and for the browser test
the real ``tapir serve`` of tests/web (chromium is started by the test itself: see
``in_browser`` in test_library_pages.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from vtl import Cartridge, VirtualLibrary, start_library
from web.conftest import PASSWORD, log_in, served  # noqa: F401 (fixture)

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_manager import load_plugins
from tapir.appliance.web.app import create_app

#: Data cartridges in slots 1-4, a cleaning cartridge in slot 12, a new one in mail slot 1.
CARTRIDGES = [
    *[Cartridge(f"TAP00{i}L8", slot=i, size_mb=16) for i in range(1, 5)],
    Cartridge("CLN001L1", slot=12, size_mb=1, kind="clean"),
    Cartridge("NEW001L8", mail_slot=1, size_mb=16),
]


@pytest.fixture
def vtl(tmp_path: Path) -> Iterator[VirtualLibrary]:
    """The tgt library with the cartridges above."""
    lib, stop = start_library(tmp_path / "vtl", cartridges=CARTRIDGES)
    try:
        yield lib
    finally:
        stop()


def register_library(app: Appliance, vtl: VirtualLibrary, name: str = "lib1") -> None:
    """Register the changer ``name`` and its drives ``name``-d0, ``name``-d1."""
    app.register_device(name, "changer", vtl.changer_url)
    for number, url in enumerate(vtl.drive_urls):
        app.register_device(f"{name}-d{number}", "drive", url, changer=name, drive_number=number)


@pytest.fixture
def appliance(tmp_path: Path, vtl: VirtualLibrary) -> Iterator[Appliance]:
    """A new appliance with lib1 registered and one user per role."""
    app = Appliance.open(load_settings(tmp_path / "home"), registry=load_plugins())
    app.initialize()
    app.set_password("admin", PASSWORD)
    app.create_user("operator", PASSWORD, "operator")
    app.create_user("readonly", PASSWORD, "read-only")
    register_library(app, vtl)
    yield app
    app.close()


@pytest.fixture
def flask_app(appliance: Appliance) -> Flask:
    return create_app(appliance, TESTING=True)


@pytest.fixture
def login(flask_app: Flask) -> Callable[[str], FlaskClient]:
    """A client logged in as the user of that role ("admin", "operator", "read-only")."""

    def make(role: str) -> FlaskClient:
        client = flask_app.test_client()
        response = log_in(client, role.replace("-", ""))
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return make
