"""Disk images: fixed aligned chunks, holes, incremental synthetic fulls."""

from __future__ import annotations

import random

import pytest

from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.datapath.repository import Repository
from tapir.appliance.plugin_api.errors import ChunkCorrupt, PluginError
from tapir.appliance.plugin_api.items import ChunkRef, Extent, Item, ItemKind
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore

from .conftest import SMALL_DISK_CHUNK
from .helpers import RecordingProgress, writer

CS = SMALL_DISK_CHUNK
SIZE = 40 * CS + 1234  # a last, partial chunk


class Disk:
    """A snapshot being read: records every read."""

    def __init__(self, data: bytearray) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return bytes(self.data[offset : offset + length])

    def read_chunks(self) -> set[int]:
        return {off // CS for off, _ in self.reads}


def make_disk(rng: random.Random) -> tuple[bytearray, list[Extent]]:
    data = bytearray(SIZE)
    allocated = [Extent(0, 3 * CS), Extent(10 * CS + 100, 5000), Extent(20 * CS, 6 * CS)]
    allocated.append(Extent(40 * CS, 1234))
    for ext in allocated:
        data[ext.offset : ext.end] = rng.randbytes(ext.length)
    data[CS : 2 * CS] = bytes(CS)  # allocated but all zeros: a hole
    return data, allocated


def backup_disk(repo, disk: Disk, extents, parent_manifest=None, parent_item=None, **kw):
    sink = writer(repo, parent_manifest, **kw)
    sink.add_disk(
        Item(path=b"scsi0:0", kind=ItemKind.DISK, size=len(disk.data)),
        disk.read,
        extents,
        parent=parent_item,
    )
    return sink, sink.finish()


def disk_item(repo: Repository, manifest) -> Item:
    return next(iter(repo.iter_items(manifest)))


def test_full_disk_reads_only_allocated_extents(repo: Repository) -> None:
    data, allocated = make_disk(random.Random(1))
    disk = Disk(data)
    progress = RecordingProgress()
    _, manifest = backup_disk(repo, disk, allocated, progress=progress)
    item = disk_item(repo, manifest)
    assert item.extra["chunk_size"] == CS
    assert len(item.chunks) == 41
    assert all(c.length == CS for c in item.chunks[:-1]) and item.chunks[-1].length == 1234
    holes = {i for i, c in enumerate(item.chunks) if c.id is None}
    assert holes == set(range(41)) - {0, 2, 10, 20, 21, 22, 23, 24, 25, 40}
    assert all(
        off >= e.offset and off + n <= e.end
        for off, n in disk.reads
        for e in allocated
        if e.offset <= off < e.end
    )
    assert disk.read_chunks() == {0, 1, 2, 10, 20, 21, 22, 23, 24, 25, 40}
    assert progress.bytes_done == SIZE
    reader = RecoveryPointReader(repo, manifest)
    assert reader.open(item).read() == bytes(data)


def test_unallocated_areas_are_zero_even_if_the_source_holds_data(repo: Repository) -> None:
    data = bytearray(random.Random(2).randbytes(4 * CS))
    _, manifest = backup_disk(repo, Disk(data), [Extent(CS + 10, 20)])
    item = disk_item(repo, manifest)
    restored = RecoveryPointReader(repo, manifest).open(item).read()
    expected = bytearray(4 * CS)
    expected[CS + 10 : CS + 30] = data[CS + 10 : CS + 30]
    assert restored == bytes(expected)


def test_whole_disk_when_no_extents(repo: Repository) -> None:
    data = bytearray(random.Random(3).randbytes(3 * CS + 7))
    disk = Disk(data)
    _, manifest = backup_disk(repo, disk, None)
    item = disk_item(repo, manifest)
    assert RecoveryPointReader(repo, manifest).open(item).read() == bytes(data)
    assert disk.reads == [(0, CS), (CS, CS), (2 * CS, CS), (3 * CS, 7)]


def test_incremental_is_a_synthetic_full(repo: Repository, store: MemoryStore) -> None:
    rng = random.Random(4)
    data, allocated = make_disk(rng)
    _, full = backup_disk(repo, Disk(data), allocated)
    parent_item = disk_item(repo, full)
    changed = bytearray(data)
    changes = [Extent(5, 10), Extent(21 * CS - 3, 6), Extent(33 * CS, 100)]
    for ext in changes:
        changed[ext.offset : ext.end] = rng.randbytes(ext.length)
    chunks_before = set(store.chunk_ids())
    disk = Disk(changed)
    sink, incremental = backup_disk(repo, disk, changes, full, parent_item)
    item = disk_item(repo, incremental)
    # Only the chunks overlapping a change were read and stored.
    assert disk.read_chunks() == {0, 20, 21, 33}
    data_chunks = {c.id for c in item.chunks if c.id} - {c.id for c in parent_item.chunks if c.id}
    assert len(data_chunks) == 4
    assert sink.chunks_new - len(incremental.item_stream) <= 4
    new_ids = set(store.chunk_ids()) - chunks_before
    assert data_chunks <= new_ids
    for i in set(range(41)) - {0, 20, 21, 33}:
        assert item.chunks[i] == parent_item.chunks[i]
    reader = RecoveryPointReader(repo, incremental)
    assert reader.open(item).read() == bytes(changed)
    # Pruning the parent never breaks the newer point.
    repo.delete_manifest(full.id)
    report = repo.gc()
    assert report.chunks_unreferenced >= 1  # the replaced chunks went
    assert RecoveryPointReader(repo, incremental.id).open(item).read() == bytes(changed)
    assert repo.verify().ok


def _changed_disk(repo: Repository, seed: int):
    rng = random.Random(seed)
    data, allocated = make_disk(rng)
    _, full = backup_disk(repo, Disk(data), allocated)
    changed = bytearray(data)
    # Inside one chunk, across a chunk boundary, and in a chunk that was a hole.
    changes = [Extent(5, 10), Extent(21 * CS - 3, 6), Extent(33 * CS, 100)]
    for ext in changes:
        changed[ext.offset : ext.end] = rng.randbytes(ext.length)
    return full, changed, changes


def test_incremental_reads_only_the_changed_bytes(repo: Repository) -> None:
    full, changed, changes = _changed_disk(repo, 14)
    disk = Disk(changed)
    sink, incremental = backup_disk(repo, disk, changes, full, disk_item(repo, full))
    # The parent's copy of each touched chunk (from the pool, verified) completes it.
    assert sorted(disk.reads) == [(5, 10), (21 * CS - 3, 3), (21 * CS, 3), (33 * CS, 100)]
    assert sink.bytes_read == 10 + 6 + 100
    item = disk_item(repo, incremental)
    assert RecoveryPointReader(repo, incremental).open(item).read() == bytes(changed)


def test_on_a_medium_without_random_reads_changed_chunks_are_read_whole(
    repo: Repository, store: MemoryStore
) -> None:
    full, changed, changes = _changed_disk(repo, 15)
    store.random_reads = False  # as a tape pool: no parent chunk read mid-backup
    disk = Disk(changed)
    _, incremental = backup_disk(repo, disk, changes, full, disk_item(repo, full))
    # Chunk 33 was a hole in the parent: zeros complete it, no medium read needed.
    assert sorted(disk.reads) == [(0, CS), (20 * CS, CS), (21 * CS, CS), (33 * CS, 100)]
    item = disk_item(repo, incremental)
    assert RecoveryPointReader(repo, incremental).open(item).read() == bytes(changed)


def test_a_damaged_parent_chunk_fails_the_incremental_naming_it(
    repo: Repository, store: MemoryStore
) -> None:
    full, changed, changes = _changed_disk(repo, 16)
    parent_item = disk_item(repo, full)
    damaged = parent_item.chunks[0].id
    assert damaged is not None
    blob = bytearray(store.get_chunk(damaged))
    blob[-1] ^= 0xFF
    store._chunks[damaged] = bytes(blob)
    sink = writer(repo, full)
    item = Item(path=b"scsi0:0", kind=ItemKind.DISK, size=len(changed))
    with pytest.raises(ChunkCorrupt) as caught:
        sink.add_disk(item, Disk(changed).read, changes, parent=parent_item)
    sink.abort()  # what the engine does with a failed backup: nothing is kept
    assert caught.value.chunk_id == damaged
    assert repo.manifest_ids() == [full.id]


def test_incremental_with_resized_disk_rereads_what_moved(repo: Repository) -> None:
    rng = random.Random(5)
    data = bytearray(rng.randbytes(3 * CS + 100))
    _, full = backup_disk(repo, Disk(data), None)
    grown = data + bytearray(rng.randbytes(2 * CS))
    disk = Disk(grown)
    _, incremental = backup_disk(
        repo, disk, [Extent(len(data), 2 * CS)], full, disk_item(repo, full)
    )
    item = disk_item(repo, incremental)
    assert disk.read_chunks() == {3, 4, 5}  # the old partial last chunk and the new area
    assert RecoveryPointReader(repo, incremental).open(item).read() == bytes(grown)


def test_incremental_with_other_chunk_layout_reads_everything(repo: Repository) -> None:
    data = bytearray(random.Random(6).randbytes(2 * CS))
    _, full = backup_disk(repo, Disk(data), None)
    parent = disk_item(repo, full)
    parent.extra["chunk_size"] = CS * 2
    disk = Disk(data)
    _sink, incremental = backup_disk(repo, disk, [], full, parent)
    assert disk.read_chunks() == {0, 1}
    assert "another chunk layout" in incremental.warnings[0]


def test_bad_disk_input(repo: Repository) -> None:
    sink = writer(repo)
    item = Item(path=b"d", kind=ItemKind.DISK, size=CS)
    with pytest.raises(PluginError, match="outside the disk"):
        sink.add_disk(item, lambda o, n: bytes(n), [Extent(0, CS + 1)])
    with pytest.raises(PluginError, match="returned 10 bytes, expected"):
        sink.add_disk(item, lambda o, n: bytes(10))
    with pytest.raises(PluginError, match="needs a disk item"):
        sink.add_disk(Item(path=b"f", kind=ItemKind.FILE), lambda o, n: b"")
    sink.abort()


def test_unchanged_disk_added_from_parent(repo: Repository) -> None:
    data = bytearray(random.Random(7).randbytes(2 * CS))
    _, full = backup_disk(repo, Disk(data), None)
    sink = writer(repo, full)
    sink.add(disk_item(repo, full))
    manifest = sink.finish()
    assert disk_item(repo, manifest).chunks == disk_item(repo, full).chunks
    assert sink.chunks_new == 0


def test_empty_disk(repo: Repository) -> None:
    _, manifest = backup_disk(repo, Disk(bytearray()), None)
    item = disk_item(repo, manifest)
    assert item.chunks == [] and item.size == 0
    assert RecoveryPointReader(repo, manifest).open_disk(item).pread(0, 10) == b""


def test_disk_chunk_refs_are_holes_for_zero_data(repo: Repository) -> None:
    _, manifest = backup_disk(repo, Disk(bytearray(2 * CS)), None)
    assert disk_item(repo, manifest).chunks == [ChunkRef(None, CS), ChunkRef(None, CS)]
    assert manifest.bytes_new > 0  # only the item stream
