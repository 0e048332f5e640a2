"""The in-memory medium behaves like a real one."""

from __future__ import annotations

import threading

import pytest

from tapir.appliance.plugin_api.errors import ChunkMissing, MediaFull, TapirError
from tapir.appliance.plugin_api.testing.memory_store import MemoryStore


def cid(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_session_chunks_are_invisible_until_commit() -> None:
    store = MemoryStore()
    session = store.begin()
    session.put_chunk(cid(1), b"blob")
    assert not store.has_chunk(cid(1))
    assert list(store.chunk_ids()) == []
    with pytest.raises(ChunkMissing):
        store.get_chunk(cid(1))
    session.commit()
    assert store.has_chunk(cid(1))
    assert store.get_chunk(cid(1)) == b"blob"
    with pytest.raises(TapirError, match="committed"):
        session.put_chunk(cid(2), b"late")


def test_abort_drops_the_session() -> None:
    store = MemoryStore()
    session = store.begin()
    session.put_chunk(cid(1), b"blob")
    session.abort()
    session.abort()  # idempotent
    assert not store.has_chunk(cid(1))
    assert store.capacity().used == 0
    with pytest.raises(TapirError, match="aborted"):
        session.commit()


def test_manifests_and_config() -> None:
    store = MemoryStore()
    assert store.get_config("x") is None
    store.put_config("x", b"1")
    assert store.get_config("x") == b"1"
    store.put_manifest("b", b"mb")
    store.put_manifest("a", b"ma")
    assert store.manifests() == ["a", "b"]
    assert store.get_manifest("a") == b"ma"
    store.delete_manifest("a")
    with pytest.raises(FileNotFoundError):
        store.get_manifest("a")
    with pytest.raises(FileNotFoundError):
        store.delete_manifest("a")


def test_delete_chunks_reports_bytes_and_capacity() -> None:
    store = MemoryStore(capacity_bytes=100)
    session = store.begin()
    session.put_chunk(cid(1), b"x" * 30)
    session.put_chunk(cid(2), b"y" * 20)
    session.commit()
    assert store.capacity().used == 50 and store.capacity().free == 50
    assert store.delete_chunks([cid(1), cid(9)]) == 30
    assert store.capacity().used == 20


def test_full_medium_raises_media_full_and_keeps_nothing_partial() -> None:
    store = MemoryStore(capacity_bytes=100)
    session = store.begin()
    session.put_chunk(cid(1), b"x" * 80)
    with pytest.raises(MediaFull):
        session.put_chunk(cid(2), b"y" * 30)
    session.abort()
    assert list(store.chunk_ids()) == []


def test_concurrent_sessions_are_thread_safe() -> None:
    store = MemoryStore()

    def work(base: int) -> None:
        session = store.begin()
        for n in range(200):
            session.put_chunk(cid(base + n), b"%d" % n)
        session.commit()

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(store.chunk_ids())) == 1600


def test_fault_injection() -> None:
    store = MemoryStore()
    session = store.begin()
    session.put_chunk(cid(1), b"good")
    session.commit()
    store.tamper_chunk(cid(1), b"evil")
    assert store.get_chunk(cid(1)) == b"evil"
    store.remove_chunk(cid(1))
    assert not store.has_chunk(cid(1))
    with pytest.raises(ChunkMissing):
        store.tamper_chunk(cid(1), b"x")
