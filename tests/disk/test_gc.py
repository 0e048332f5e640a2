"""Garbage collection, concurrent readers and writers, index rebuild, clean-up of strays."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tapir.plugins.disk import collect as collect_module
from tapir.plugins.disk.locking import PoolBusy
from tapir.plugins.disk.store import DiskStore

from .helpers import chunk


def _commit(store: DiskStore, prefix: str, n: int, size: int = 4000) -> dict[bytes, bytes]:
    chunks = dict(chunk(f"{prefix}-{i}", size) for i in range(n))
    session = store.begin()
    for cid, blob in chunks.items():
        session.put_chunk(cid, blob)
    session.commit()
    return chunks


def _pack_files(store: DiskStore) -> set[str]:
    return {p.name for p in (store.path / "packs").rglob("*.pack")}


def test_gc_rewrites_packs_and_rebuild_gives_the_same_index(
    make_pool: Callable[..., DiskStore],
) -> None:
    store = make_pool()
    chunks: dict[bytes, bytes] = {}
    for s in range(3):
        chunks |= _commit(store, f"s{s}", 40)
    assert len(_pack_files(store)) >= 6
    index = store.index_records()
    store.rebuild_index()
    assert store.index_records() == index
    store.rebuild_index(deep=True)
    assert store.index_records() == index

    ids = list(chunks)
    dead = set(ids[::3]) | set(ids[40:60])  # spread over packs, and some whole packs
    used = store.capacity().used
    freed = store.delete_chunks(dead)
    assert freed >= sum(len(chunks[c]) for c in dead)
    assert store.capacity().used == used - freed
    assert set(store.chunk_ids()) == set(ids) - dead
    for cid, blob in chunks.items():
        assert store.has_chunk(cid) == (cid not in dead)
        if cid not in dead:
            assert store.get_chunk(cid) == blob
    assert store.temporary_files() == []
    assert len(list((store.path / "index").iterdir())) == 1

    after = store.index_records()
    referenced = {store.layout.pack_path(r.pack_id).name for r in after}
    assert referenced == _pack_files(store)  # every pack indexed, no leftover pack
    store.rebuild_index()
    assert store.index_records() == after


def test_gc_with_concurrent_readers(make_pool: Callable[..., DiskStore]) -> None:
    writer = make_pool()
    chunks: dict[bytes, bytes] = {}
    for s in range(4):
        chunks |= _commit(writer, f"r{s}", 30)
    ids = list(chunks)
    rounds = [set(ids[i::4]) for i in range(3)]  # three collections, a quarter each
    live = [c for c in ids if not any(c in r for r in rounds)]
    reader = make_pool(writer.path)
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def read_loop(offset: int) -> None:
        try:
            while not stop.is_set():
                for cid in live[offset::3]:
                    assert reader.get_chunk(cid) == chunks[cid]
                    reads[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read_loop, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for dead in rounds:
            assert writer.delete_chunks(dead) > 0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert reads[0] > len(live)
    assert set(reader.chunk_ids()) == set(live)


def test_gc_waits_for_writers(make_pool: Callable[..., DiskStore]) -> None:
    first = make_pool()
    kept = _commit(first, "k", 10)
    session = first.begin()
    session.put_chunk(*chunk("in flight"))
    other = make_pool(first.path, lock_timeout=0.3)
    with pytest.raises(PoolBusy, match="busy: could not take the exclusive lock"):
        other.delete_chunks(list(kept)[:2])
    assert all(first.get_chunk(c) == b for c, b in kept.items())
    session.commit()
    assert other.delete_chunks(list(kept)[:2]) > 0
    assert not first.has_chunk(next(iter(kept)))


def test_gc_failure_before_publishing_changes_nothing(
    make_pool: Callable[..., DiskStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_pool()
    chunks = _commit(store, "f", 40)
    index, packs = store.index_records(), _pack_files(store)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(collect_module, "write_segment", broken)
    with pytest.raises(OSError, match="Input/output"):
        store.delete_chunks(list(chunks)[::2])
    assert store.index_records() == index
    assert _pack_files(store) == packs
    assert store.temporary_files() == []
    assert all(store.get_chunk(c) == b for c, b in chunks.items())


def test_open_cleans_strays_only_when_no_writer_is_active(
    make_pool: Callable[..., DiskStore],
) -> None:
    store = make_pool()
    kept = _commit(store, "c", 5)
    stray_session = store.path / "tmp" / ("ab" * 16)
    stray_session.mkdir()
    (stray_session / "0123.pack").write_bytes(b"half a pack")
    (store.path / "manifests" / ".tmp-point-xyz").write_bytes(b"half a manifest")
    assert store.manifests() == []

    busy = store.begin()  # a writer is active: the strays could be its own
    make_pool(store.path)
    assert len(store.temporary_files()) == 3
    busy.abort()

    make_pool(store.path)
    assert store.temporary_files() == []
    assert all(store.get_chunk(c) == b for c, b in kept.items())
