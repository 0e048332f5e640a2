"""An appliance on the embedded default (SQLite), with the bundled plugins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tapir.appliance.config import Settings
from tapir.appliance.engine.service import Appliance


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Appliance]:
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'c.db'}")
    appliance = Appliance.open(settings)
    appliance.initialize()
    yield appliance
    appliance.close()
