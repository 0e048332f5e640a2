"""Fixtures: emulated cartridges, and a real tgt virtual library for the end-to-end tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vtl import Cartridge, VirtualLibrary, start_library

from tapir.hardware.changer import MediaChanger


@pytest.fixture
def vtl(tmp_path: Path) -> Iterator[VirtualLibrary]:
    """A library with a 1 MB cartridge (TAP009L8, slot 9) that reaches early warning fast."""
    carts = [Cartridge(f"TAP00{i}L8", slot=i, size_mb=8) for i in range(1, 4)]
    carts.append(Cartridge("TAP009L8", slot=9, size_mb=1))
    lib, stop = start_library(tmp_path / "vtl", cartridges=carts)
    try:
        yield lib
    finally:
        stop()


@pytest.fixture
def changer(vtl: VirtualLibrary) -> Iterator[MediaChanger]:
    """The library's changer over iSCSI."""
    with MediaChanger.open(vtl.changer_url) as ch:
        yield ch
