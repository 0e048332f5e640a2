"""The plugin test kit's MemorySink is strict: plugin bugs must not pass silently."""

from __future__ import annotations

import pytest

from tapir.appliance.plugin_api import ChunkCorrupt, ChunkRef, Extent, Item, ItemKind
from tapir.appliance.plugin_api.testing.memory_sink import MemoryRestoreSource, MemorySink


def test_file_data_round_trip_with_holes():
    sink = MemorySink(chunk_size=4)
    writer = sink.open_file(Item(b"f", ItemKind.FILE, size=15))
    writer.write(b"abcdef")
    writer.hole(3)
    writer.hole(2)
    writer.write(b"xyzw")
    writer.flag("changed-while-read")
    writer.close()
    item = sink.item(b"f")
    assert [c.length for c in item.chunks] == [4, 2, 5, 4]
    assert item.chunks[2] == ChunkRef(None, 5)
    assert item.flags == ["changed-while-read"]
    source = MemoryRestoreSource(sink)
    assert source.open(item).read() == b"abcdef" + b"\0" * 5 + b"xyzw"


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda s: s.add(Item(b"/abs", ItemKind.DIRECTORY)), "relative"),
        (lambda s: s.add(Item(b"a/../b", ItemKind.DIRECTORY)), "'..'"),
        (lambda s: s.add(Item("str", ItemKind.DIRECTORY)), "bytes"),  # type: ignore[arg-type]
        (lambda s: [s.add(Item(b"d", ItemKind.DIRECTORY)) for _ in range(2)], "twice"),
        (lambda s: s.add(Item(b"h", ItemKind.HARDLINK, target=b"nope")), "not stored before"),
        (lambda s: s.add(Item(b"l", ItemKind.SYMLINK)), "without a target"),
        (lambda s: s.add(Item(b"f", ItemKind.FILE, size=3)), "chunks hold 0 bytes"),
        (
            lambda s: s.add(Item(b"f", ItemKind.FILE, size=1, chunks=[ChunkRef(b"x" * 32, 1)])),
            "exists neither",
        ),
        (lambda s: s.open_file(Item(b"f", ItemKind.FILE, size=2)).close(), "0 bytes written"),
        (lambda s: s.open_file(Item(b"d", ItemKind.DIRECTORY)), "needs a file item"),
    ],
)
def test_sink_rejects_mistakes(action, message):
    with pytest.raises(ValueError, match=message):
        action(MemorySink())


def test_writer_used_after_close_and_unclosed_files():
    sink = MemorySink()
    writer = sink.open_file(Item(b"f", ItemKind.FILE, size=0))
    with pytest.raises(ValueError, match="never closed"):
        sink.check_complete()
    writer.close()
    with pytest.raises(ValueError, match="after close"):
        writer.write(b"x")


def test_parent_chunks_are_adopted_and_damage_is_detected():
    full = MemorySink()
    w = full.open_file(Item(b"f", ItemKind.FILE, size=3))
    w.write(b"abc")
    w.close()
    incr = MemorySink(parent=full.as_parent())
    incr.add(Item(b"f", ItemKind.FILE, size=3, chunks=list(full.item(b"f").chunks)))
    source = MemoryRestoreSource(incr)
    chunk = incr.item(b"f").chunks[0].id
    assert source.read_chunk(chunk) == b"abc"
    source.corrupt_chunk(chunk)
    with pytest.raises(ChunkCorrupt):
        source.read_chunk(chunk)
    assert MemoryRestoreSource(incr).read_chunk(chunk) == b"abc"  # the sink was not damaged


def test_disk_items_are_synthetic_fulls():
    disk = bytearray(b"A" * 40)
    full = MemorySink()
    full.add_disk(
        Item(b"disk0", ItemKind.DISK, size=40, extra={"chunk_size": 16}),
        lambda off, n: bytes(disk[off : off + n]),
        extents=[Extent(0, 10)],
    )
    assert [c.id is None for c in full.item(b"disk0").chunks] == [False, True, True]
    disk[20:24] = b"BBBB"
    incr = MemorySink(parent=full.as_parent())
    incr.add_disk(
        Item(b"disk0", ItemKind.DISK, size=40, extra={"chunk_size": 16}),
        lambda off, n: bytes(disk[off : off + n]),
        extents=[Extent(20, 4)],
        parent=full.item(b"disk0"),
    )
    image = MemoryRestoreSource(incr).open_disk(incr.item(b"disk0"))
    # Chunk 0 comes from the parent, chunk 1 is read again, chunk 2 stays a hole.
    assert image.pread(0, 40) == bytes(disk[:32]) + b"\0" * 8
    assert image.pread(30, 100) == b"AA" + b"\0" * 8


def test_items_filter_by_path():
    sink = MemorySink()
    for path in (b"a", b"a/b", b"ab", b"c"):
        sink.add(Item(path, ItemKind.DIRECTORY))
    source = MemoryRestoreSource(sink)
    assert [i.path for i in source.items([b"a"])] == [b"a", b"a/b"]
    assert [i.path for i in source.items()] == [b"a", b"a/b", b"ab", b"c"]
