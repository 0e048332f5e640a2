"""Verification and garbage collection, including damaged pools."""

from __future__ import annotations

import random

import pytest

from tapir.appliance.datapath.reader import RecoveryPointReader
from tapir.appliance.datapath.repository import Repository
from tapir.appliance.plugin_api.errors import ChunkCorrupt, ChunkMissing, RunCanceled, TapirError
from tapir.appliance.plugin_api.items import Item
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore

from .helpers import RecordingProgress, Tree, backup, restore


def tree_of(seed: int, files: int = 6) -> Tree:
    rng = random.Random(seed)
    tree: Tree = {b"d": None}
    for n in range(files):
        tree[b"d/file%d" % n] = rng.randbytes(rng.choice([100, 30000, 120000]))
    return tree


def item_at(repo: Repository, manifest, path: bytes) -> Item:
    return next(i for i in repo.iter_items(manifest) if i.path == path)


def flip(store: MemoryStore, chunk_id: bytes, position: int = -1) -> None:
    blob = bytearray(store.get_chunk(chunk_id))
    blob[position] ^= 0x20
    store.tamper_chunk(chunk_id, bytes(blob))


def test_verify_clean_pool(repo: Repository, store: MemoryStore) -> None:
    backup(repo, tree_of(1))
    backup(repo, tree_of(2))
    progress = RecordingProgress()
    report = repo.verify(progress=progress)
    assert report.ok
    assert report.manifests_checked == 2
    assert report.chunks_checked == len(list(store.chunk_ids()))
    assert progress.bytes_done == report.bytes_checked > 0


def test_corrupt_chunk_is_reported_with_points_and_paths(
    repo: Repository, store: MemoryStore
) -> None:
    tree = tree_of(3)
    first = backup(repo, tree)
    second = backup(repo, tree)  # shares every data chunk with the first
    other = backup(repo, tree_of(4))
    victim = item_at(repo, first, b"d/file1")
    chunk = victim.chunks[0].id
    flip(store, chunk)
    with pytest.raises(ChunkCorrupt) as info:
        restore(repo, first)
    assert info.value.chunk_id == chunk and chunk.hex() in str(info.value)
    report = repo.verify()
    assert not report.ok
    [problem] = report.problems
    assert problem.chunk_id == chunk
    assert "corrupt" in problem.message
    assert sorted(problem.recovery_points) == sorted([first.id, second.id])
    assert problem.paths == ["d/file1"]
    assert repo.verify([other.id]).ok
    only_first = repo.verify([first.id])
    assert only_first.problems[0].recovery_points == [first.id]


def test_missing_chunk_is_reported(repo: Repository, store: MemoryStore) -> None:
    manifest = backup(repo, tree_of(5))
    chunk = item_at(repo, manifest, b"d/file2").chunks[-1].id
    store.remove_chunk(chunk)
    reader = RecoveryPointReader(repo, manifest)
    with pytest.raises(ChunkMissing):
        reader.open(item_at(repo, manifest, b"d/file2")).read()
    [problem] = repo.verify().problems
    assert problem.chunk_id == chunk and "missing" in problem.message
    assert problem.paths == ["d/file2"] and problem.recovery_points == [manifest.id]


def test_blob_swapped_between_ids_fails(repo: Repository, store: MemoryStore) -> None:
    manifest = backup(repo, tree_of(6))
    a = item_at(repo, manifest, b"d/file0").chunks[0].id
    b = item_at(repo, manifest, b"d/file1").chunks[0].id
    blob_a, blob_b = store.get_chunk(a), store.get_chunk(b)
    store.tamper_chunk(a, blob_b)
    store.tamper_chunk(b, blob_a)
    for cid in (a, b):
        with pytest.raises(ChunkCorrupt) as info:
            repo.load_chunk(cid)
        assert info.value.chunk_id == cid
    assert {p.chunk_id for p in repo.verify().problems} == {a, b}


def test_damaged_item_stream_and_manifest(repo: Repository, store: MemoryStore) -> None:
    manifest = backup(repo, tree_of(7))
    flip(store, manifest.item_stream[0], position=5)
    report = repo.verify()
    messages = [p.message for p in report.problems]
    assert any("item list" in m and "could not be listed" in m for m in messages)
    chunk_problem = next(p for p in report.problems if p.chunk_id == manifest.item_stream[0])
    assert chunk_problem.recovery_points == [manifest.id]
    assert chunk_problem.paths == ["(item list)"]
    store.put_manifest(manifest.id, b"\x00" * 40)
    report = repo.verify()
    assert any(p.chunk_id is None and manifest.id in p.recovery_points for p in report.problems)
    assert not repo.verify(["no-such-point"]).ok


def test_verify_whole_pool_checks_unreferenced_chunks(repo: Repository, store: MemoryStore) -> None:
    manifest = backup(repo, tree_of(8))
    repo.delete_manifest(manifest.id)
    orphan = next(iter(store.chunk_ids()))
    flip(store, orphan)
    [problem] = repo.verify().problems
    assert problem.chunk_id == orphan
    assert "not referenced" in problem.message and problem.recovery_points == []


def test_verify_can_be_canceled(repo: Repository) -> None:
    backup(repo, tree_of(9))

    def cancel() -> None:
        raise RunCanceled("stop")

    with pytest.raises(RunCanceled):
        repo.verify(check_canceled=cancel)


def test_gc_deletes_only_unreferenced_chunks(repo: Repository, store: MemoryStore) -> None:
    keep = backup(repo, tree_of(10))
    drop = backup(repo, tree_of(11))
    total = len(list(store.chunk_ids()))
    assert repo.gc().chunks_unreferenced == 0
    repo.delete_manifest(drop.id)
    dry = repo.gc(dry_run=True)
    assert dry.dry_run and dry.chunks_total == total
    assert dry.chunks_unreferenced > 0 and dry.bytes_reclaimed > 0
    assert len(list(store.chunk_ids())) == total  # a dry run only counts
    real = repo.gc()
    assert real.chunks_unreferenced == dry.chunks_unreferenced
    assert real.bytes_reclaimed == dry.bytes_reclaimed
    assert len(list(store.chunk_ids())) == total - real.chunks_unreferenced
    assert restore(repo, keep) == tree_of(10)
    assert repo.verify().ok


def test_gc_keeps_item_stream_chunks(repo: Repository) -> None:
    manifest = backup(repo, tree_of(12))
    assert repo.gc().chunks_unreferenced == 0
    assert len(list(repo.iter_items(manifest))) == 7


def test_gc_refuses_when_a_manifest_is_unreadable(repo: Repository, store: MemoryStore) -> None:
    manifest = backup(repo, tree_of(13))
    other = backup(repo, tree_of(14))
    repo.delete_manifest(other.id)
    before = set(store.chunk_ids())
    flip(store, manifest.item_stream[0])
    with pytest.raises(TapirError, match="garbage collection refused"):
        repo.gc()
    assert set(store.chunk_ids()) == before  # nothing deleted
