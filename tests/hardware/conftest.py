"""Fixtures: a fresh tgt virtual tape library per test (it starts in ~0.2 s)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vtl import VirtualLibrary, start_library

from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive


@pytest.fixture
def vtl(tmp_path: Path) -> Iterator[VirtualLibrary]:
    """The default library: 12 slots, 2 mail slots, 2 drives, barcoded cartridges."""
    lib, stop = start_library(tmp_path / "vtl")
    try:
        yield lib
    finally:
        stop()


@pytest.fixture
def changer(vtl: VirtualLibrary) -> Iterator[MediaChanger]:
    """The library's changer over iSCSI."""
    with MediaChanger.open(vtl.changer_url) as ch:
        yield ch


@pytest.fixture
def loaded_drive(vtl: VirtualLibrary, changer: MediaChanger) -> Iterator[TapeDrive]:
    """Drive 0 with TAP001L8 loaded, ready, at BOT, variable-block mode."""
    changer.load(1, 0)
    with TapeDrive.open(vtl.drive_urls[0], block_size=0) as drive:
        drive.wait_ready(timeout=10)
        drive.set_block_size(0)
        drive.rewind()
        yield drive
