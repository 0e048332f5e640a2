"""Block I/O on the emulated drive: archives, spanning, positioning, damage and bad input."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tapir.hardware.cdb import SpaceCode
from tapir.hardware.errors import (
    BlockTooLarge,
    EarlyWarning,
    EndOfData,
    EndOfMedium,
    FilemarkReached,
    WriteProtected,
)
from tapir.plugins.tape.blockio import (
    TapeFileReader,
    TapeFileWriter,
    WriterClosed,
    append_position,
    open_file,
    read_volume_catalog,
    scan_volume,
)
from tapir.plugins.tape.emulated import EmulatedCartridge, EmulatedDrive
from tapir.plugins.tape.format import (
    BadBlock,
    BadChecksum,
    BadEntry,
    ChunkArchiveHeader,
    FileKind,
    ManifestArchiveHeader,
    MediaLabel,
    SequenceGap,
    TruncatedFile,
    WrongFileKind,
    build_index,
    new_uuid,
    payload_capacity,
    utc_now,
)

from .helpers import Volume, chunk, chunks, write_spanning

BS = 64 * 1024


def archive_header(media_set: str | None = None, seq: int = 0) -> ChunkArchiveHeader:
    return ChunkArchiveHeader(media_set or new_uuid(), seq, new_uuid(), 0, new_uuid(), 0, utc_now())


def labelled(cart: EmulatedCartridge, media_set: str, seq: int, block_size: int = BS) -> Volume:
    vol = Volume(EmulatedDrive(cart), cart.barcode, media_set, seq, block_size)
    vol.label()
    return vol


def test_thousands_of_entries_round_trip() -> None:
    cart = EmulatedCartridge(capacity=1 << 30)
    ms, session = new_uuid(), new_uuid()
    vol = labelled(cart, ms, 0)
    data = chunks(5000)
    used, parts = write_spanning(iter([vol]), data, session)
    assert len(used) == 1 and len(parts) == 1 and not parts[0].continues
    assert parts[0].blocks == -(-parts[0].stream_bytes // payload_capacity(BS))

    reader = open_file(vol.drive, 2)
    assert reader.kind == FileKind.CHUNK_ARCHIVE and reader.header.part == 0
    got = [(e.chunk_id, e.blob) for e in reader.chunks()]
    assert got == data
    assert reader.complete and reader.filemark and not reader.continues
    assert vol.drive.position.file == 3  # past the filemark, at the catalog

    catalog, files = read_volume_catalog(vol.drive)
    assert [f.header.kind for f in files if f.header] == [
        FileKind.MEDIA_LABEL,
        FileKind.MEDIA_SET_LABEL,
        FileKind.CHUNK_ARCHIVE,
        FileKind.CATALOG,
    ]
    locations = catalog.chunk_locations()
    assert len(locations) == 5000
    # The catalog's offsets find an entry without reading the entries before it.
    reader = open_file(vol.drive, 2)
    offsets = [e.offset for e in reader.chunks()]
    assert [locations[cid][1] for cid, _ in data] == offsets


def test_spanning_across_two_cartridges_reads_back_whole(tmp_path: Path) -> None:
    ms, session = new_uuid(), new_uuid()
    first = EmulatedCartridge("TAP001L8", capacity=4 << 20, early_warning_at=1 << 20)
    second = EmulatedCartridge("TAP002L8", capacity=64 << 20, path=tmp_path / "TAP002L8")
    vols = iter([labelled(first, ms, 0), labelled(second, ms, 1)])
    data = chunks(600, size=4000)
    used, parts = write_spanning(vols, data, session)
    assert len(used) == 2
    assert parts[0].continues and parts[0].early_warning and not parts[1].continues
    assert parts[0].header.archive == parts[1].header.archive
    assert (parts[0].header.part, parts[1].header.part) == (0, 1)
    assert 0 < parts[0].entries < len(data)

    # Read both parts back, checking the continuation signals on tape.
    entries = []
    for vol, part in zip(used, (0, 1), strict=True):
        reader = open_file(vol.drive, 2)
        assert reader.header.part == part and reader.header.volume_seq == vol.seq
        entries += [(e.chunk_id, e.blob) for e in reader.chunks()]
        assert reader.continues == (part == 0)
    assert entries == data

    # The second cartridge lives in a file: a fresh drive on the reopened file reads it.
    second.close()
    drive = EmulatedDrive(EmulatedCartridge("TAP002L8", path=tmp_path / "TAP002L8"))
    catalogs = [read_volume_catalog(used[0].drive)[0], read_volume_catalog(drive)[0]]
    index = build_index(catalogs)
    assert index.incomplete_archives() == [] and len(index.chunks) == len(data)
    assert [p.volume_seq for p in index.archives[parts[0].header.archive]] == [0, 1]


def test_early_warning_is_reported_once_at_an_entry_boundary() -> None:
    cart = EmulatedCartridge(capacity=8 << 20, early_warning_at=200_000)
    drive = EmulatedDrive(cart)
    writer = TapeFileWriter(drive, archive_header(), BS)
    big = chunks(1, size=1_000_000)[0]  # one entry spans many blocks, EW inside it
    with pytest.raises(EarlyWarning):
        writer.add_chunk(*big)
    assert writer.early_warning
    extra = chunks(3)
    for cid, blob in extra:  # later entries still go on; no second report
        writer.add_chunk(cid, blob)
    summary = writer.close(continues=True)
    drive.rewind()
    reader = TapeFileReader(drive, BS)
    assert [(e.chunk_id, e.blob) for e in reader.chunks()] == [big, *extra]
    assert reader.continues and summary.entries == 4


def test_manifest_archive_and_wrong_kind() -> None:
    drive = EmulatedDrive(EmulatedCartridge())
    head = ManifestArchiveHeader(new_uuid(), 0, new_uuid(), 0, new_uuid(), 1, utc_now())
    with TapeFileWriter(drive, head, BS) as writer:
        writer.add_manifest("rp-1", b"\x01" * 300)
        writer.add_manifest("point é 2", b"\x02" * 200_000)
        with pytest.raises(WrongFileKind):
            writer.add_chunk(bytes(32), b"x")
    drive.rewind()
    reader = TapeFileReader(drive, BS)
    with pytest.raises(WrongFileKind, match="not a chunk-archive"):
        next(reader.chunks())
    assert [(m.name, len(m.blob)) for m in reader.manifests()] == [
        ("rp-1", 300),
        ("point é 2", 200_000),
    ]


def test_reader_positioned_at_file_n_directly() -> None:
    drive = EmulatedDrive(EmulatedCartridge())
    heads = [archive_header() for _ in range(5)]
    for i, head in enumerate(heads):
        with TapeFileWriter(drive, head, BS) as writer:
            writer.add_chunk(*chunks(i + 1)[i])
    for n in (3, 0, 4, 1):
        reader = open_file(drive, n)
        assert reader.header == heads[n]
        assert [e.chunk_id for e in reader.chunks()] == [chunks(n + 1)[n][0]]
    with pytest.raises(EndOfData):
        open_file(drive, 9)
    assert [f.header for f in scan_volume(drive)] == heads


def test_block_size_is_found_from_the_tape() -> None:
    drive = EmulatedDrive(EmulatedCartridge())
    data = chunks(40, size=30_000)
    with TapeFileWriter(drive, archive_header(), 512 * 1024) as writer:
        for item in data:
            writer.add_chunk(*item)
    drive.rewind()
    reader = TapeFileReader(drive, BS)  # asks for less than the block holds
    assert reader.block_size == 512 * 1024
    assert [(e.chunk_id, e.blob) for e in reader.chunks()] == data


def test_fixed_block_mode_drive() -> None:
    drive = EmulatedDrive(EmulatedCartridge(), block_size=BS)
    data = chunks(50)
    with TapeFileWriter(drive, archive_header(), BS) as writer:
        for item in data:
            writer.add_chunk(*item)
    drive.rewind()
    assert [(e.chunk_id, e.blob) for e in TapeFileReader(drive, BS).chunks()] == data


def _written(n: int = 200) -> tuple[EmulatedDrive, EmulatedCartridge]:
    cart = EmulatedCartridge()
    drive = EmulatedDrive(cart)
    with TapeFileWriter(drive, archive_header(), BS) as writer:
        for item in chunks(n):
            writer.add_chunk(*item)
    drive.rewind()
    return drive, cart


def test_damaged_block_on_tape_is_detected() -> None:
    drive, cart = _written()
    cart.corrupt(2, 5000)
    with pytest.raises(BadChecksum):
        list(TapeFileReader(drive, BS).chunks())


def test_lost_block_is_a_sequence_gap() -> None:
    drive, cart = _written()
    blocks = [cart.read_data(i) for i in range(cart.objects - 1)]
    cart.truncate(0)
    for i, block in enumerate(blocks):
        if i != 2:
            cart.append(1, block)
    drive.rewind()
    with pytest.raises(SequenceGap, match="sequence 3 where 2 was expected"):
        list(TapeFileReader(drive, BS).chunks())


def test_aborted_file_reads_as_truncated_and_the_tape_goes_on() -> None:
    drive = EmulatedDrive(EmulatedCartridge())
    with pytest.raises(RuntimeError), TapeFileWriter(drive, archive_header(), BS) as writer:
        for item in chunks(100):
            writer.add_chunk(*item)
        raise RuntimeError("source failed")
    good = archive_header()
    with TapeFileWriter(drive, good, BS) as writer:
        writer.add_chunk(*chunks(1)[0])
    drive.rewind()
    reader = TapeFileReader(drive, BS)
    with pytest.raises(TruncatedFile, match="without its end-of-stream block"):
        list(reader.chunks())
    assert drive.position.file == 1  # the reader stopped past the filemark
    assert TapeFileReader(drive, BS).header == good
    scan = scan_volume(drive)
    assert [f.header for f in scan] == [scan[0].header, good] and scan[0].error is None


def test_write_protected_cartridge_loses_nothing() -> None:
    drive, cart = _written(10)
    before = [cart.read_data(i) for i in range(cart.objects - 1)]
    drive.space_to_end_of_data()
    cart.write_protected = True
    writer = TapeFileWriter(drive, archive_header(), 4096)
    with pytest.raises(WriteProtected):
        for item in chunks(30):
            writer.add_chunk(*item)
    with pytest.raises(WriterClosed):
        writer.close()
    drive.rewind()
    assert [cart.read_data(i) for i in range(cart.objects - 1)] == before
    assert len(list(TapeFileReader(drive, BS).chunks())) == 10
    # Like tgt, the protected drive refuses SPACE: positioning reads through instead.
    with pytest.raises(WriteProtected):
        drive.space(SpaceCode.FILEMARKS, 1)
    assert [e.chunk_id for e in open_file(drive, 0, BS).chunks()] == [c for c, _ in chunks(10)]
    assert len(scan_volume(drive, BS)) == 1


def test_hard_end_of_medium_fails_the_file_clearly() -> None:
    drive = EmulatedDrive(EmulatedCartridge(capacity=1 << 20, early_warning_at=1 << 19))
    writer = TapeFileWriter(drive, archive_header(), BS)
    with pytest.raises(EndOfMedium):
        for item in (chunk(i, 20_000) for i in itertools.count()):
            try:
                writer.add_chunk(*item)
            except EarlyWarning:
                continue  # a careless caller that ignores the warning
    with pytest.raises(WriterClosed):
        writer.add_chunk(*chunks(1)[0])
    drive.rewind()
    with pytest.raises(TruncatedFile, match="end of data"):
        list(TapeFileReader(drive, BS).chunks())


def test_bad_writer_input_is_refused_before_anything_is_written() -> None:
    drive = EmulatedDrive(EmulatedCartridge())
    writer = TapeFileWriter(drive, archive_header(), BS)
    with pytest.raises(ValueError, match="32 bytes"):
        writer.add_chunk(b"short", b"blob")
    with pytest.raises(ValueError, match="blob length"):
        writer.add_chunk(bytes(32), b"")
    with pytest.raises(ValueError, match="cannot continue"):
        TapeFileWriter(drive, _label(), BS).close(continues=True)
    with pytest.raises(ValueError, match="block size"):
        TapeFileWriter(drive, archive_header(), 1000)
    assert drive.cartridge is not None and drive.cartridge.objects == 0


def _label() -> MediaLabel:
    return MediaLabel(None, None, "TAP001L8", new_uuid(), "pool", utc_now(), BS)


def test_data_after_the_end_of_stream_block_is_refused() -> None:
    drive, cart = _written(3)
    last = cart.read_data(cart.objects - 2)
    cart.truncate(cart.objects - 1)  # drop the filemark, put a stray block there
    cart.append(1, last)
    drive.rewind()
    with pytest.raises(BadBlock, match="follows the end-of-stream"):
        list(TapeFileReader(drive, BS).chunks())


def test_entry_cut_short_is_a_bad_entry() -> None:
    drive = EmulatedDrive(EmulatedCartridge())
    writer = TapeFileWriter(drive, archive_header(), BS)
    writer.add_chunk(*chunks(1)[0])
    writer._append(bytes(32) + (5000).to_bytes(4, "big") + b"only a bit")  # a buggy writer
    writer.close()
    drive.rewind()
    with pytest.raises(BadEntry, match="stream ends inside an entry"):
        list(TapeFileReader(drive, BS).chunks())


def test_emulated_drive_matches_the_drive_layer_on_tgt() -> None:
    cart = EmulatedCartridge(capacity=2 << 20, early_warning_at=3 * 256 * 1024)
    drive = EmulatedDrive(cart)
    block = bytes(256 * 1024)
    for _ in range(3):
        drive.write(block)
    with pytest.raises(EarlyWarning):
        drive.write(block)  # written all the same
    drive.write_filemarks(1)  # tgt: GOOD past early warning
    assert drive.early_warning and drive.position.file == 1 and drive.position.logical == 5
    drive.rewind()
    assert not drive.early_warning
    with pytest.raises(EndOfData):  # blocks up to the filemark: tgt's 00/05
        drive.space(SpaceCode.BLOCKS, 9)
    drive.rewind()
    with pytest.raises(BlockTooLarge) as exc:
        drive.read(1000)
    assert exc.value.block_size == 256 * 1024 and drive.position.block == 1  # skipped
    for _ in range(3):
        drive.read(256 * 1024)
    with pytest.raises(FilemarkReached):
        drive.read(256 * 1024)
    with pytest.raises(EndOfData):
        drive.read(256 * 1024)
    drive.space_to_end_of_data()
    assert not drive.position.known
    drive.locate_file(1)
    assert drive.position.file == 1
    with pytest.raises(EndOfData):
        drive.locate_file(2)
    assert drive.position.file == 0  # rewound, as the drive layer does


def test_append_a_second_session_after_the_last_file() -> None:
    cart = EmulatedCartridge(capacity=1 << 30)
    ms = new_uuid()
    vol = labelled(cart, ms, 0)
    first = chunks(50)
    write_spanning(iter([vol]), first, new_uuid())
    drive = vol.drive
    drive.rewind()
    assert append_position(drive, BS) == 4
    vol.next_file = 4
    second = [chunk(i) for i in range(1000, 1030)]
    write_spanning(iter([vol]), second, new_uuid())
    catalog, files = read_volume_catalog(drive)
    assert catalog.header.file_number == 5 and len(files) == 6
    assert len(catalog.chunk_locations()) == 80  # the last catalog covers both sessions
    assert [e.chunk_id for e in open_file(drive, 4).chunks()] == [c for c, _ in second]


def test_append_refused_after_a_file_without_filemark() -> None:
    drive = EmulatedDrive(EmulatedCartridge())
    writer = TapeFileWriter(drive, archive_header(), BS)
    for item in chunks(30, size=10_000):
        writer.add_chunk(*item)
    writer.abort(filemark=False)  # the writer died before closing its file
    drive.rewind()
    with pytest.raises(TruncatedFile, match="no closing filemark"):
        append_position(drive, BS)
