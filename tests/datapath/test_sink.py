"""RecoveryPointWriter: full and incremental file backups, abort, errors, progress."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from tapir.appliance.datapath.repository import Repository
from tapir.appliance.plugin_api.errors import (
    ChunkMissing,
    MediaFull,
    PluginError,
    RunCanceled,
    TapirError,
)
from tapir.appliance.plugin_api.items import ChunkRef, Item, ItemKind
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore

from .conftest import SMALL_FILE_CHUNKER, SMALL_ITEM_CHUNKER
from .helpers import (
    CountingStore,
    RecordingProgress,
    Tree,
    backup,
    restore,
    write_tree,
    writer,
)


def make_tree(random_bytes: Callable[[int], bytes], files: int = 120) -> Tree:
    rng = random.Random(7)
    tree: Tree = {b"": None, b"dir": None, b"dir/sub": None}
    for n in range(files):
        size = rng.choice([0, 1, 10, 5000, 40000, 150000])
        kind = rng.random()
        if kind < 0.5:
            data = random_bytes(size)
        elif kind < 0.8:
            data = (b"line %d of a log file\n" % n) * (size // 20)
        else:
            data = bytes(size)
        folder = rng.choice([b"", b"dir/", b"dir/sub/"])
        tree[folder + b"file-%03d-\xff\xfe.bin" % n] = data
    return tree


def test_full_backup_of_many_files_reads_back_byte_for_byte(
    repo: Repository, random_bytes: Callable[[int], bytes]
) -> None:
    tree = make_tree(random_bytes)
    manifest = backup(repo, tree)
    assert manifest.items == len(tree)
    assert manifest.bytes_logical == sum(len(d) for d in tree.values() if d)
    assert manifest.bytes_new > 0
    assert manifest.metadata == {"source": "test"}
    assert manifest.warnings == ["plugin warning"]
    assert manifest.job == "job1" and manifest.level == "full" and manifest.parent is None
    assert repo.manifest_ids() == [manifest.id]
    restored = restore(repo, manifest.id)
    assert list(restored) == list(tree)  # stored in the order they were added
    assert restored == tree
    assert repo.verify().ok


def test_incremental_reuses_parent_chunks(
    repo: Repository, store: MemoryStore, random_bytes: Callable[[int], bytes]
) -> None:
    tree = make_tree(random_bytes)
    full = backup(repo, tree)
    chunks_after_full = len(list(store.chunk_ids()))
    changed = dict(tree)
    victim = next(p for p, d in tree.items() if d and len(d) > 100000)
    data = bytearray(changed[victim])
    data[50000:50010] = b"0123456789"
    changed[victim] = bytes(data)
    changed[b"dir/new-file"] = b"brand new"
    sink = writer(repo, full)
    counts = write_tree(sink, changed)
    incremental = sink.finish()
    assert counts["written"] == 2
    assert incremental.parent == full.id and incremental.level == "incremental"
    # Only the chunk around the edit, the new file and a few item-stream chunks are new.
    assert sink.chunks_new <= 8
    assert incremental.bytes_new < full.bytes_new / 4
    assert len(list(store.chunk_ids())) - chunks_after_full == sink.chunks_new
    assert restore(repo, incremental.id) == changed
    assert restore(repo, full.id) == tree


def test_unchanged_backup_adds_almost_nothing(
    repo: Repository, random_bytes: Callable[[int], bytes]
) -> None:
    tree = make_tree(random_bytes)
    full = backup(repo, tree)
    again = writer(repo)  # a second full: everything dedups against the pool
    write_tree(again, tree, seed=99)
    second = again.finish()
    assert second.bytes_new == 0
    assert second.item_stream == full.item_stream


def test_abort_leaves_nothing_visible(
    repo: Repository, store: MemoryStore, random_bytes: Callable[[int], bytes]
) -> None:
    sink = writer(repo)
    write_tree(sink, make_tree(random_bytes))
    sink.abort()
    sink.abort()
    assert repo.manifest_ids() == []
    assert list(store.chunk_ids()) == []
    with pytest.raises(TapirError, match="aborted"):
        sink.add(Item(path=b"x", kind=ItemKind.DIRECTORY))
    with pytest.raises(TapirError, match="aborted"):
        sink.finish()


def test_finish_twice_and_abort_after_finish(repo: Repository) -> None:
    sink = writer(repo)
    sink.add(Item(path=b"d", kind=ItemKind.DIRECTORY))
    manifest = sink.finish()
    sink.abort()  # a no-op once finished
    assert repo.read_manifest(manifest.id) == manifest
    with pytest.raises(TapirError, match="finished"):
        sink.finish()


def test_holes_and_flags_in_files(repo: Repository) -> None:
    sink = writer(repo)
    fw = sink.open_file(Item(path=b"sparse", kind=ItemKind.FILE))
    fw.write(b"head")
    fw.hole(1 << 20)
    fw.hole(10)
    fw.write(b"tail")
    fw.flag("changed-while-read")
    fw.flag("changed-while-read")
    fw.close()
    fw.close()  # idempotent
    manifest = sink.finish()
    item = next(iter(repo.iter_items(manifest)))
    assert item.size == 8 + (1 << 20) + 10
    assert item.chunks[1] == ChunkRef(None, (1 << 20) + 10)
    assert item.flags == ["changed-while-read"]
    assert restore(repo, manifest)[b"sparse"] == b"head" + bytes((1 << 20) + 10) + b"tail"


def test_size_change_while_read_warns(repo: Repository) -> None:
    sink = writer(repo)
    fw = sink.open_file(Item(path=b"grew", kind=ItemKind.FILE, size=3))
    fw.write(b"12345")
    fw.close()
    manifest = sink.finish()
    item = next(iter(repo.iter_items(manifest)))
    assert item.size == 5 and "changed-while-read" in item.flags
    assert manifest.warnings == ["grew: size changed while read (expected 3, read 5)"]


def test_items_keep_add_order_while_chunks_finish_out_of_order(master_key: bytes) -> None:
    store = CountingStore()
    repo = Repository.initialize(
        store,
        master_key=master_key,
        encrypted=False,
        file_chunker=SMALL_FILE_CHUNKER,
        item_chunker=SMALL_ITEM_CHUNKER,
    )
    sink = writer(repo, workers=3)
    paths = []
    rng = random.Random(3)
    for n in range(60):
        path = b"f%02d" % n
        paths.append(path)
        if n % 3 == 0:
            sink.add(Item(path=path, kind=ItemKind.DIRECTORY))
            continue
        fw = sink.open_file(Item(path=path, kind=ItemKind.FILE))
        fw.write(rng.randbytes(rng.choice([10, 200000])))
        fw.close()
    manifest = sink.finish()
    assert [i.path for i in repo.iter_items(manifest)] == paths


def test_bad_plugin_input_is_refused_clearly(repo: Repository) -> None:
    sink = writer(repo)
    with pytest.raises(PluginError, match="path must be bytes"):
        sink.add(Item(path="text", kind=ItemKind.DIRECTORY))  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="open_file needs a file item"):
        sink.open_file(Item(path=b"d", kind=ItemKind.DIRECTORY))
    with pytest.raises(PluginError, match="size 10 but its chunks hold 0"):
        sink.add(Item(path=b"f", kind=ItemKind.FILE, size=10))
    with pytest.raises(ChunkMissing):
        sink.add(Item(path=b"f", kind=ItemKind.FILE, size=3, chunks=[ChunkRef(b"\x01" * 32, 3)]))
    with pytest.raises(PluginError, match="has no data chunks"):
        sink.add(Item(path=b"l", kind=ItemKind.SYMLINK, chunks=[ChunkRef(None, 3)]))
    fw = sink.open_file(Item(path=b"ok", kind=ItemKind.FILE))
    fw.write(b"data")
    fw.close()
    with pytest.raises(PluginError, match="already closed"):
        fw.write(b"more")
    with pytest.raises(PluginError, match="negative hole"):
        sink.open_file(Item(path=b"h", kind=ItemKind.FILE)).hole(-1)
    # The sink still works after refused input: only good items were recorded.
    with pytest.raises(PluginError, match="never closed"):
        sink.finish()
    assert repo.manifest_ids() == []


def test_bytearray_writes_are_copied(repo: Repository) -> None:
    sink = writer(repo)
    fw = sink.open_file(Item(path=b"f", kind=ItemKind.FILE))
    buf = bytearray(300000)
    expected = b""
    for n in range(5):
        buf[:] = bytes([n + 1]) * len(buf)  # the plugin reuses its read buffer
        fw.write(buf)
        expected += bytes(buf)
    fw.close()
    manifest = sink.finish()
    assert restore(repo, manifest)[b"f"] == expected


def test_media_full_fails_the_backup_and_keeps_nothing(
    master_key: bytes, random_bytes: Callable[[int], bytes]
) -> None:
    store = MemoryStore(capacity_bytes=200_000)
    repo = Repository.initialize(
        store, master_key=master_key, encrypted=True, file_chunker=SMALL_FILE_CHUNKER
    )
    sink = writer(repo)
    with pytest.raises(MediaFull):
        fw = sink.open_file(Item(path=b"big", kind=ItemKind.FILE))
        for _ in range(40):
            fw.write(random_bytes(50_000))
        fw.close()
        sink.finish()
    sink.abort()
    assert repo.manifest_ids() == []
    assert list(store.chunk_ids()) == []


def test_cancel_raises_in_the_plugin_and_abort_cleans_up(
    repo: Repository, store: MemoryStore, random_bytes: Callable[[int], bytes]
) -> None:
    calls = 0

    def check_canceled() -> None:
        nonlocal calls
        calls += 1
        if calls > 20:
            raise RunCanceled("canceled by the operator")

    sink = writer(repo, check_canceled=check_canceled)
    with pytest.raises(RunCanceled):
        write_tree(sink, make_tree(random_bytes))
    sink.abort()
    assert repo.manifest_ids() == [] and list(store.chunk_ids()) == []


def test_progress_counts_bytes_and_items(
    repo: Repository, random_bytes: Callable[[int], bytes]
) -> None:
    tree = make_tree(random_bytes, files=30)
    progress = RecordingProgress()
    sink = writer(repo, progress=progress)
    write_tree(sink, tree)
    sink.finish()
    assert progress.bytes_done == sum(len(d) for d in tree.values() if d)
    assert progress.items_done == len(tree)
    assert progress.current[-1] == list(tree)[-1].decode("utf-8", "backslashreplace")


def test_back_pressure_blocks_the_plugin(master_key: bytes) -> None:
    store = CountingStore()
    repo = Repository.initialize(
        store, master_key=master_key, encrypted=False, file_chunker=SMALL_FILE_CHUNKER
    )
    store.gate = threading.Event()
    sink = writer(repo, workers=2, max_inflight_chunks=3)
    rng = random.Random(5)
    done = threading.Event()

    def plugin() -> None:
        fw = sink.open_file(Item(path=b"f", kind=ItemKind.FILE))
        for _ in range(50):
            fw.write(rng.randbytes(65536))
        fw.close()
        done.set()

    thread = threading.Thread(target=plugin)
    thread.start()
    time.sleep(0.5)
    assert not done.is_set()  # the plugin waits for the pool
    assert store.puts_started == 2  # both workers blocked in put_chunk, nothing more
    store.gate.set()
    thread.join(10)
    assert done.is_set()
    manifest = sink.finish()
    assert len(restore(repo, manifest)[b"f"]) == 50 * 65536


def test_parent_items_lookup(repo: Repository, random_bytes: Callable[[int], bytes]) -> None:
    tree = make_tree(random_bytes, files=10)
    full = backup(repo, tree)
    sink = writer(repo, full)
    assert sink.parent is not None and sink.parent.recovery_point_id == full.id
    some = next(p for p, d in tree.items() if d)
    found = sink.parent.lookup(some)
    assert found is not None and found.size == len(tree[some])
    found.chunks.clear()  # editing a looked-up item does not change the index
    assert sink.parent.lookup(some).size == len(tree[some])
    assert sink.parent.lookup(some).stored_size == len(tree[some])
    assert sink.parent.lookup(b"no/such/path") is None
    sink.abort()
