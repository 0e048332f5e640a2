"""The tape drive against tgt: I/O round trips, positioning and tape conditions."""

from __future__ import annotations

import contextlib
import os

import pytest
from vtl import VirtualLibrary

from tapir.hardware.cdb import SpaceCode
from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import BOT, Position, TapeDrive
from tapir.hardware.errors import (
    BlockTooLarge,
    EarlyWarning,
    EndOfData,
    FilemarkReached,
    MediumNotPresent,
    PositionUnknown,
    UnsupportedCommand,
    WriteProtected,
)


def _blocks(n: int, size: int) -> list[bytes]:
    return [os.urandom(size) for _ in range(n)]


def test_empty_drive_reports_no_medium(vtl: VirtualLibrary) -> None:
    with TapeDrive.open(vtl.drive_urls[1]) as drive:
        with pytest.raises(MediumNotPresent):
            drive.wait_ready(timeout=2)
        st = drive.status()
        assert not st.ready and not st.medium_present
        info = drive.inquiry()
        assert info.kind == "tape" and info.serial == "VDRV0001"


def test_variable_blocks_filemarks_and_end_of_data(loaded_drive: TapeDrive) -> None:
    d = loaded_drive
    file0, file1 = [*_blocks(3, 1000), os.urandom(70000)], _blocks(2, 5000)
    for b in file0:
        d.write(b)
    d.write_filemarks(1)
    for b in file1:
        d.write(b)
    d.write_filemarks(1)
    assert d.position == Position(2, 0, 8)
    d.rewind()
    assert d.position == BOT
    assert [d.read(100_000) for _ in file0] == file0
    with pytest.raises(FilemarkReached):
        d.read()
    assert d.position == Position(1, 0, 5)
    assert [d.read(8192) for _ in file1] == file1
    with pytest.raises(FilemarkReached):
        d.read()
    with pytest.raises(EndOfData):
        d.read()


def test_fixed_block_round_trip(loaded_drive: TapeDrive) -> None:
    d = loaded_drive
    d.set_block_size(4096)
    assert d.status().block_size == 4096
    data = _blocks(5, 4096)
    d.write(b"".join(data[:3]))  # three blocks in one command
    d.write(data[3])
    d.write(data[4])
    d.write_filemarks()
    assert d.position == Position(1, 0, 6)
    with pytest.raises(ValueError, match="multiple"):
        d.write(b"x" * 100)
    d.rewind()
    assert [d.read() for _ in range(5)] == data
    with pytest.raises(FilemarkReached):
        d.read()


def test_short_and_oversized_variable_reads(loaded_drive: TapeDrive) -> None:
    d = loaded_drive
    d.write(b"a" * 1000)
    d.write(b"b" * 5000)
    d.write(b"c" * 10)
    d.rewind()
    assert d.read(2000) == b"a" * 1000  # short block: ILI with the residue
    with pytest.raises(BlockTooLarge) as exc:
        d.read(100)
    assert exc.value.block_size == 5000
    assert d.read(100) == b"c" * 10  # the oversized block was skipped, not re-read
    assert d.position == Position(0, 3, 3)


def test_positioning_by_filemark_counting(loaded_drive: TapeDrive) -> None:
    d = loaded_drive
    for f in range(4):
        d.write(f"file {f} block 0".encode())
        d.write(f"file {f} block 1".encode())
        d.write_filemarks()
    for f in (2, 0, 3, 1):
        d.locate_file(f)
        assert d.position == Position(f, 0, d.position.logical)
        assert d.read(64) == f"file {f} block 0".encode()
    with pytest.raises(EndOfData):
        d.locate_file(9)
    assert d.position == BOT  # a failed locate leaves the tape rewound, not lost
    d.space(SpaceCode.FILEMARKS, 2)
    assert d.read(64) == b"file 2 block 0"
    d.space(SpaceCode.BLOCKS, 1)
    with pytest.raises(FilemarkReached):
        d.read(64)
    assert d.position.file == 3


def test_append_after_end_of_data(loaded_drive: TapeDrive) -> None:
    d = loaded_drive
    d.write(b"first")
    d.write_filemarks()
    d.rewind()
    d.space_to_end_of_data()
    with pytest.raises(PositionUnknown):
        d.ensure_position()
    d.write(b"second")
    d.write_filemarks()
    d.locate_file(1)
    assert d.read(64) == b"second"


def test_device_position_stub_and_refused_commands(loaded_drive: TapeDrive) -> None:
    d = loaded_drive
    for _ in range(3):
        d.write(b"x" * 512)
    # tgt answers READ POSITION with zeros and the "location unknown" bit set;
    # the tracked position is the truth.
    assert d.read_position() is None
    assert d.position.logical == 3
    with pytest.raises(UnsupportedCommand):
        d.locate(1)
    assert d.position.logical == 3  # refused, so nothing moved
    with pytest.raises(UnsupportedCommand):
        d.erase()


def test_early_warning_is_distinct_and_non_fatal(vtl: VirtualLibrary, changer: MediaChanger):
    changer.load(9, 0)  # TAP009L8: a 1 MB cartridge
    block = os.urandom(256 * 1024)
    with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
        d.wait_ready(timeout=10)
        d.set_block_size(0)
        d.rewind()
        written = 0
        with pytest.raises(EarlyWarning):
            for _ in range(40):
                d.write(block)
                written += 1
        written += 1  # the block that raised EarlyWarning is on tape
        assert d.early_warning
        # Filemarks are still accepted past early warning (tgt reports it on
        # WRITE only; a real drive may report it here too, equally non-fatal).
        with contextlib.suppress(EarlyWarning):
            d.write_filemarks()
        assert d.early_warning and d.position == Position(1, 0, written + 1)
        d.rewind()
        for _ in range(written):
            assert d.read(len(block)) == block
        with pytest.raises(FilemarkReached):
            d.read(len(block))


def test_write_protected_drive(vtl: VirtualLibrary, changer: MediaChanger) -> None:
    changer.load(2, 0)
    vtl.set_lun_params(vtl.drive_luns[0], "readonly=1")
    with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
        d.wait_ready(timeout=10)
        assert d.is_write_protected() and d.status().write_protected
        d.set_block_size(0)
        d.rewind()
        with pytest.raises(WriteProtected, match="write protected"):
            d.write(b"nope")
        with pytest.raises(WriteProtected):
            d.write_filemarks()
        assert d.position == BOT
        with pytest.raises(EndOfData):
            d.read()  # blank tape: nothing was written


def test_blank_tape_reads_end_of_data(loaded_drive: TapeDrive) -> None:
    with pytest.raises(EndOfData):
        loaded_drive.read()


def test_unload_then_changer_returns_cartridge(vtl: VirtualLibrary, changer: MediaChanger):
    changer.load(1, 0)
    with TapeDrive.open(vtl.drive_urls[0]) as d:
        d.wait_ready(timeout=10)
        d.unload()
        assert not d.position.known
    assert changer.unload(0) == 1
