"""The tape format on the REAL tgt library: spanning, positioning, the catalog alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from vtl import VirtualLibrary

from tapir.hardware.changer import MediaChanger
from tapir.hardware.drive import TapeDrive
from tapir.hardware.errors import WriteProtected
from tapir.plugins.tape.blockio import (
    TapeFileReader,
    TapeFileWriter,
    append_position,
    open_file,
    read_volume_catalog,
    scan_volume,
)
from tapir.plugins.tape.format import (
    BadBlock,
    ChunkArchiveHeader,
    FileKind,
    build_index,
    new_uuid,
    utc_now,
)

from .helpers import Volume, chunks, write_spanning

BS = 64 * 1024


@contextmanager
def drive(vtl: VirtualLibrary, number: int, block_size: int = 0) -> Iterator[TapeDrive]:
    with TapeDrive.open(vtl.drive_urls[number], block_size=block_size) as d:
        d.wait_ready(timeout=10)
        d.set_block_size(block_size)
        d.rewind()
        yield d


def test_spanning_write_and_read_on_tgt(vtl: VirtualLibrary, changer: MediaChanger) -> None:
    changer.load(9, 0)  # TAP009L8, 1 MB: early warning after a few blocks
    changer.load(1, 1)  # TAP001L8
    ms, session = new_uuid(), new_uuid()
    data = chunks(400)  # about 1.8 MB of blobs: more than the small cartridge takes
    with drive(vtl, 0) as d0, drive(vtl, 1) as d1:
        first = Volume(d0, "TAP009L8", ms, 0, BS)
        second = Volume(d1, "TAP001L8", ms, 1, BS)
        first.label()
        second.label()
        used, parts = write_spanning(iter([first, second]), data, session)
        assert [v.barcode for v in used] == ["TAP009L8", "TAP001L8"]
        assert parts[0].continues and parts[0].early_warning and d0.early_warning
        assert not parts[1].continues and not d1.early_warning
        assert (parts[0].header.part, parts[1].header.part) == (0, 1)
        assert parts[0].header.archive == parts[1].header.archive
        assert 0 < parts[0].entries < len(data)

        # Read back across both cartridges, in order, positioned at file 2 directly.
        got = []
        for d, part in ((d0, 0), (d1, 1)):
            reader = open_file(d, 2)
            assert reader.kind == FileKind.CHUNK_ARCHIVE and reader.header.part == part
            got += [(e.chunk_id, e.blob) for e in reader.chunks()]
            assert reader.complete and reader.continues == (part == 0)
        assert got == data

    # Each cartridge's catalog read alone, in the other drive, after the changer moved them.
    changer.unload(0)
    changer.unload(1)
    changer.load(9, 1)
    changer.load(1, 0)
    catalogs = []
    for number, barcode in ((1, "TAP009L8"), (0, "TAP001L8")):
        with drive(vtl, number) as d:
            label = TapeFileReader(d, BS).header
            assert label.kind == FileKind.MEDIA_LABEL and label.barcode == barcode
            catalog, files = read_volume_catalog(d)
            assert catalog.header.file_number == 3 and len(files) == 4
            assert [r.kind for r in catalog.records] == [
                FileKind.MEDIA_LABEL,
                FileKind.MEDIA_SET_LABEL,
                FileKind.CHUNK_ARCHIVE,
            ]
            catalogs.append(catalog)
    index = build_index(catalogs)
    assert index.incomplete_archives() == [] and index.missing_volumes() == []
    assert len(index.chunks) == len(data)
    assert {loc.volume_seq for loc in index.chunks.values()} == {0, 1}


def test_fixed_block_mode_and_block_size_discovery_on_tgt(
    vtl: VirtualLibrary, changer: MediaChanger
) -> None:
    changer.load(2, 0)
    data = chunks(60)
    heads = [
        ChunkArchiveHeader(new_uuid(), 0, new_uuid(), 0, new_uuid(), i, utc_now()) for i in range(3)
    ]
    with drive(vtl, 0, block_size=256 * 1024) as d:
        for head in heads:
            with TapeFileWriter(d, head, 256 * 1024) as writer:
                for item in data:
                    writer.add_chunk(*item)
        assert d.position.file == 3
        reader = open_file(d, 1, block_size=256 * 1024)
        assert reader.header == heads[1]
        assert [(e.chunk_id, e.blob) for e in reader.chunks()] == data
    # Variable mode, asking for smaller blocks than the tape holds: tgt skips the
    # longer block, the reader steps back and re-reads it whole.
    with drive(vtl, 0) as d:
        reader = open_file(d, 2, block_size=BS)
        assert reader.block_size == 256 * 1024 and reader.header == heads[2]
        assert [(e.chunk_id, e.blob) for e in reader.chunks()] == data
        assert [f.header for f in scan_volume(d, BS)] == heads
        # Appending finds the end by file number, so the next file's number is known.
        assert append_position(d, BS) == 3
        extra = ChunkArchiveHeader(new_uuid(), 0, new_uuid(), 0, new_uuid(), 9, utc_now())
        with TapeFileWriter(d, extra, 256 * 1024) as writer:
            writer.add_chunk(*data[0])
        assert writer.summary.file_number == 3
        assert open_file(d, 3, BS).header == extra
    # A write-protected drive refuses the write and the tape keeps what it had.
    vtl.set_lun_params(vtl.drive_luns[0], "readonly=1")
    # (tgt then refuses even SPACE: positioning falls back to reading.)
    with drive(vtl, 0) as d:
        assert append_position(d, 256 * 1024) == 4
        writer = TapeFileWriter(d, extra, BS)
        with pytest.raises(WriteProtected):
            for item in data:
                writer.add_chunk(*item)
        assert [f.header for f in scan_volume(d, 256 * 1024)] == [*heads, extra]
        reader = open_file(d, 1, 256 * 1024)
        assert [(e.chunk_id, e.blob) for e in reader.chunks()] == data
        with pytest.raises(BadBlock, match="read with block_size=262144"):
            open_file(d, 2, BS)
