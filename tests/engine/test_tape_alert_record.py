"""A media plugin records the TapeAlert flags it read; the library status shows them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Appliance]:
    appliance = Appliance.open(load_settings(tmp_path / "home"))
    appliance.initialize()
    appliance.register_device("lib", "changer", "iscsi://127.0.0.1/iqn.x/0", check=False)
    appliance.register_device(
        "lib-d0", "drive", "iscsi://127.0.0.1/iqn.x/1", changer="lib", drive_number=0, check=False
    )
    appliance.create_pool("tp", "tape", options={"changer": "lib", "drives": "lib-d0"})
    yield appliance
    appliance.close()


def test_the_tape_plugin_context_records_tape_alerts(app: Appliance) -> None:
    ctx = app.plugin_context("tape")
    ctx.catalog["record_tape_alerts"]("lib-d0", ["20: Clean now"])
    (drive,) = app.library_status().drives
    assert drive.name == "lib-d0" and drive.alerts == ["20: Clean now"]
    assert drive.alerts_seen_at is not None
    # A later reading with nothing active replaces it.
    ctx.catalog["record_tape_alerts"]("lib-d0", [])
    assert app.library_status().drives[0].alerts == []
    with pytest.raises(KeyError, match="no tape drive named 'nope'"):
        ctx.catalog["record_tape_alerts"]("nope", [])
    # Source plugins get no such call: it is a media plugin's business.
    assert "record_tape_alerts" not in app.plugin_context("files").catalog
