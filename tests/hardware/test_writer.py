"""The streaming writer thread against tgt."""

from __future__ import annotations

import os
import threading
import time

import pytest
from vtl import VirtualLibrary

from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.hardware.errors import EarlyWarning, FilemarkReached, WriteProtected
from tapir.hardware.writer import StreamingWriter, WriterFailed


def test_round_trip_through_the_writer(loaded_drive: TapeDrive) -> None:
    blocks = [os.urandom(64 * 1024) for _ in range(20)]
    with StreamingWriter(loaded_drive, depth=4) as w:
        for b in blocks:
            w.write(bytearray(b))  # mutable buffers are copied before queueing
    assert w.stats.blocks == 20 and w.stats.bytes == 20 * 64 * 1024
    loaded_drive.rewind()
    assert [loaded_drive.read(64 * 1024) for _ in blocks] == blocks
    with pytest.raises(FilemarkReached):
        loaded_drive.read()


def test_the_buffer_is_bounded(loaded_drive: TapeDrive) -> None:
    gate = threading.Event()
    real_write = loaded_drive.write

    def slow_write(data: bytes) -> None:
        gate.wait(5)
        real_write(data)

    loaded_drive.write = slow_write  # type: ignore[method-assign]
    w = StreamingWriter(loaded_drive, depth=2)
    done = threading.Event()

    def produce() -> None:
        for _ in range(6):
            w.write(b"z" * 1024)
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(0.3)
    assert not done.is_set()  # producer is held back by the full queue
    gate.set()
    t.join(5)
    assert done.is_set()
    assert w.close().blocks == 6


def test_early_warning_reaches_the_producer_once(vtl: VirtualLibrary, changer: MediaChanger):
    changer.load(9, 0)  # 1 MB cartridge
    with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
        d.wait_ready(timeout=10)
        d.set_block_size(0)
        d.rewind()
        w = StreamingWriter(d, depth=2)
        warnings = 0
        accepted = 0
        block = os.urandom(256 * 1024)
        for _ in range(12):
            try:
                w.write(block)
            except EarlyWarning:
                warnings += 1
            accepted += 1
        stats = w.close()
        assert warnings == 1 and stats.early_warning and stats.blocks == accepted
        d.rewind()
        for _ in range(accepted):
            assert d.read(len(block)) == block


def test_errors_surface_and_nothing_is_silently_dropped(vtl: VirtualLibrary, changer):
    changer.load(2, 0)
    vtl.set_lun_params(vtl.drive_luns[0], "readonly=1")
    with TapeDrive.open(vtl.drive_urls[0], block_size=0) as d:
        d.wait_ready(timeout=10)
        w = StreamingWriter(d, depth=2)
        with pytest.raises(WriterFailed) as exc:
            for _ in range(50):
                w.write(b"q" * 4096)
            w.close()
        assert isinstance(exc.value.__cause__, WriteProtected)
        with pytest.raises(WriterFailed):
            w.close()
        assert w.stats.blocks == 0


def test_bad_depth() -> None:
    with pytest.raises(ValueError):
        StreamingWriter(None, depth=0)  # type: ignore[arg-type]
