"""Fixtures: a real tgt tape library, an appliance with its changer and drives registered,
scratch volumes in the catalog, and source trees for the files plugin."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from trees import make_tree as make_tree  # re-exported for the tests here
from trees import tree as tree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vtl import Cartridge, VirtualLibrary, start_library

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.appliance.plugin_api import VolumeInfo

#: Data cartridges (slots 1-4, 24 MB), small ones that reach early warning fast
#: (slots 5-7, 2 MB), a spare (slot 8), a cleaning cartridge (slot 12).
CARTRIDGES = [
    *[Cartridge(f"TAP00{i}L8", slot=i, size_mb=24) for i in range(1, 5)],
    *[Cartridge(f"SML00{i}L8", slot=4 + i, size_mb=2) for i in range(1, 4)],
    Cartridge("FOR001L8", slot=8, size_mb=8),
    Cartridge("CLN001L1", slot=12, size_mb=1, kind="clean"),
]


@pytest.fixture
def vtl(tmp_path: Path) -> Iterator[VirtualLibrary]:
    """The tgt library with the cartridges above."""
    lib, stop = start_library(tmp_path / "vtl", cartridges=CARTRIDGES)
    try:
        yield lib
    finally:
        stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The appliance's home folder."""
    return tmp_path / "home"


@pytest.fixture
def app(home: Path, vtl: VirtualLibrary) -> Iterator[Appliance]:
    """An initialised appliance with changer lib1 and drives lib1-d0, lib1-d1 registered."""
    appliance = Appliance.open(load_settings(home))
    appliance.initialize()
    appliance.register_device("lib1", "changer", vtl.changer_url)
    for number, url in enumerate(vtl.drive_urls):
        appliance.register_device(
            f"lib1-d{number}", "drive", url, changer="lib1", drive_number=number
        )
    yield appliance
    appliance.close()


def add_volumes(app: Appliance, labels: list[str], pool: str | None = None) -> None:
    """Record cartridges as scratch volumes (what an inventory would do)."""
    volumes = app.plugin_context("tape").volumes
    assert volumes is not None
    for label in labels:
        slot = next(c.slot for c in CARTRIDGES if c.barcode == label)
        volumes.save(VolumeInfo(label=label, pool=pool, state="scratch", location=f"slot {slot}"))


MakePool = Callable[..., str]


@pytest.fixture
def make_pool(app: Appliance) -> MakePool:
    """Create a tape pool on lib1; options override the defaults."""

    def make(name: str, drives: str = "lib1-d0,lib1-d1", **options: object) -> str:
        opts: dict[str, object] = {"changer": "lib1", "drives": drives, "block_size": 65536}
        opts.update(options)
        app.create_pool(name, "tape", options=opts)
        return name

    return make


def restored(app: Appliance, rp: str, target: Path, source: Path) -> dict[str, bytes]:
    """Restore a recovery point below ``target``; the tree found where ``source`` went."""
    result = app.restore(rp, target=target)
    assert not result.failed, result.failed
    found = [p.parent for p in target.rglob("data.bin")]
    assert len(found) == 1, found
    return tree(found[0])
