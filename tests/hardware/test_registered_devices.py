"""Changers and drives registered in the catalog by name, then used as --device NAME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from vtl import VirtualLibrary

from tapir.appliance.cli.main import build_cli
from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import TapirError


@pytest.fixture
def app(tmp_path: Path):
    a = Appliance.open(Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path}/c.db"))
    yield a
    a.close()


def test_register_probes_and_refuses_mistakes(app: Appliance, vtl: VirtualLibrary) -> None:
    ch = app.register_device("lib1", "changer", vtl.changer_url)
    assert ch.model and ch.vendor
    d0 = app.register_device("lib1-d0", "drive", vtl.drive_urls[0], changer="lib1", drive_number=0)
    assert d0.serial
    assert app.resolve_device("lib1-d0") == vtl.drive_urls[0]

    with pytest.raises(TapirError, match="not a changer"):
        app.register_device("oops", "changer", vtl.drive_urls[1])
    with pytest.raises(ValueError, match="already registered as 'lib1'"):
        app.register_device("again", "changer", vtl.changer_url)
    with pytest.raises(ValueError, match="drive 0 of lib1 is already 'lib1-d0'"):
        app.register_device("d0b", "drive", vtl.drive_urls[1], changer="lib1", drive_number=0)
    with pytest.raises(KeyError, match="no changer named 'nolib'"):
        app.register_device("d1", "drive", vtl.drive_urls[1], changer="nolib", drive_number=1)
    with pytest.raises(TapirError, match="cannot reach"):
        app.register_device("gone", "drive", "iscsi://127.0.0.1:1/iqn.2026-11.x:none/1")
    with pytest.raises(ValueError, match="still has drives"):
        app.remove_device("lib1")
    assert [d.name for d in app.devices()] == ["lib1", "lib1-d0"]
    app.remove_device("lib1-d0")
    app.remove_device("lib1")
    assert app.devices() == []


def test_device_names_work_in_the_operator_commands(tmp_path: Path, vtl: VirtualLibrary) -> None:
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    add = runner.invoke(
        build_cli(),
        [*home, "device", "add", "lib1", "--kind", "changer", "--device", vtl.changer_url],
    )
    assert add.exit_code == 0, add.output
    listed = runner.invoke(build_cli(), [*home, "device", "list", "--json"])
    assert json.loads(listed.output)[0]["name"] == "lib1"

    status = runner.invoke(
        build_cli(), [*home, "changer", "inventory", "--device", "lib1", "--json"]
    )
    assert status.exit_code == 0, status.output
    by_url = runner.invoke(
        build_cli(), [*home, "changer", "inventory", "--device", vtl.changer_url, "--json"]
    )
    assert json.loads(status.output) == json.loads(by_url.output)

    unknown = runner.invoke(build_cli(), [*home, "changer", "status", "--device", "nolib"])
    assert unknown.exit_code == 2
    assert "no device named 'nolib' (registered: lib1)" in unknown.output
