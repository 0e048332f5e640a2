"""Fixtures of the copy job tests: an appliance with the bundled plugins (files,
imagefile, disk) on SQLite, with a second disk pool to copy into."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def app(home: Path) -> Iterator[Appliance]:
    """An initialised appliance: the 'default' disk pool, and an empty 'offsite' disk pool."""
    appliance = Appliance.open(load_settings(home))
    appliance.initialize()
    appliance.create_pool("offsite", "disk", path=home.parent / "offsite")
    yield appliance
    appliance.close()
