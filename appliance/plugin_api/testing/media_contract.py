"""Contract tests every :class:`~tapir.appliance.plugin_api.MediaStore` must pass.

A media plugin author subclasses :class:`MediaStoreContract` in a test module and
provides a ``store`` fixture returning a freshly created, empty medium::

    import pytest
    from tapir.appliance.plugin_api.testing.media_contract import MediaStoreContract

    class TestMyStore(MediaStoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            store = MyMediaPlugin().create(pool_info(tmp_path), context())
            yield store
            store.close()

pytest then runs every ``test_*`` method below against that store. Media that
cannot delete chunks (write-once tape) set ``supports_delete = False``.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator

import pytest

from ..errors import ChunkMissing, TapirError
from ..roles import MediaStore, WriteSession


def make_chunk(seed: int | str, size: int = 1000) -> tuple[bytes, bytes]:
    """A deterministic (chunk id, blob) pair; the id is 32 bytes, like Tapir's content ids."""
    blob = random.Random(str(seed)).randbytes(size)
    return hashlib.blake2b(blob, digest_size=32).digest(), blob


def _write(store: MediaStore, chunks: list[tuple[bytes, bytes]]) -> WriteSession:
    session = store.begin()
    for cid, blob in chunks:
        session.put_chunk(cid, blob)
    return session


class MediaStoreContract:
    """Base class of the contract tests; the subclass provides the ``store`` fixture."""

    #: Set False for media that cannot remove chunks (delete_chunks reclaims nothing).
    supports_delete: bool = True

    @pytest.fixture
    def store(self) -> Iterator[MediaStore]:
        """Override: yield an empty, freshly created medium."""
        raise NotImplementedError("subclasses of MediaStoreContract provide a `store` fixture")

    # Config.

    def test_config_round_trip(self, store: MediaStore) -> None:
        assert store.get_config("contract-config") is None
        store.put_config("contract-config", b"first")
        assert store.get_config("contract-config") == b"first"
        store.put_config("contract-config", b"second, longer than the first")
        assert store.get_config("contract-config") == b"second, longer than the first"
        store.put_config("contract-other", b"")
        assert store.get_config("contract-other") == b""
        assert store.get_config("contract-config") == b"second, longer than the first"

    # Sessions.

    def test_committed_chunks_are_readable(self, store: MediaStore) -> None:
        chunks = [make_chunk(i, 100 + 37 * i) for i in range(20)]
        _write(store, chunks).commit()
        for cid, blob in chunks:
            assert store.has_chunk(cid)
            assert store.get_chunk(cid) == blob
        assert {cid for cid, _ in chunks} <= set(store.chunk_ids())

    def test_chunks_are_invisible_before_commit(self, store: MediaStore) -> None:
        chunks = [make_chunk(f"pending-{i}") for i in range(5)]
        session = _write(store, chunks)
        for cid, _ in chunks:
            assert not store.has_chunk(cid)
            with pytest.raises(ChunkMissing):
                store.get_chunk(cid)
        assert not {cid for cid, _ in chunks} & set(store.chunk_ids())
        session.commit()
        assert all(store.has_chunk(cid) for cid, _ in chunks)

    def test_abort_drops_the_session(self, store: MediaStore) -> None:
        kept = [make_chunk(f"kept-{i}") for i in range(3)]
        _write(store, kept).commit()
        dropped = [make_chunk(f"dropped-{i}") for i in range(3)]
        _write(store, dropped).abort()
        for cid, _ in dropped:
            assert not store.has_chunk(cid)
            with pytest.raises(ChunkMissing):
                store.get_chunk(cid)
        for cid, blob in kept:
            assert store.get_chunk(cid) == blob
        again = _write(store, dropped)
        again.commit()
        assert all(store.get_chunk(cid) == blob for cid, blob in dropped)

    def test_abort_after_commit_keeps_the_chunks(self, store: MediaStore) -> None:
        chunks = [make_chunk(f"abort-late-{i}") for i in range(3)]
        session = _write(store, chunks)
        session.commit()
        session.abort()
        assert all(store.get_chunk(cid) == blob for cid, blob in chunks)

    def test_session_cannot_be_used_after_it_ended(self, store: MediaStore) -> None:
        cid, blob = make_chunk("ended")
        session = _write(store, [make_chunk("ended-first")])
        session.commit()
        with pytest.raises(TapirError):
            session.put_chunk(cid, blob)
        assert not store.has_chunk(cid)

    def test_empty_session_commits(self, store: MediaStore) -> None:
        store.begin().commit()
        cid, blob = make_chunk("after-empty")
        _write(store, [(cid, blob)]).commit()
        assert store.get_chunk(cid) == blob

    def test_interleaved_sessions_are_independent(self, store: MediaStore) -> None:
        first = [make_chunk(f"first-{i}") for i in range(4)]
        second = [make_chunk(f"second-{i}") for i in range(4)]
        s1, s2 = store.begin(), store.begin()
        for (c1, b1), (c2, b2) in zip(first, second, strict=True):
            s1.put_chunk(c1, b1)
            s2.put_chunk(c2, b2)
        s2.commit()
        assert all(store.get_chunk(c) == b for c, b in second)
        assert not any(store.has_chunk(c) for c, _ in first)
        s1.abort()
        assert not any(store.has_chunk(c) for c, _ in first)
        assert all(store.get_chunk(c) == b for c, b in second)

    def test_same_chunk_twice_is_stored_once_per_session(self, store: MediaStore) -> None:
        cid, blob = make_chunk("twice")
        session = store.begin()
        session.put_chunk(cid, blob)
        session.put_chunk(cid, blob)
        session.commit()
        assert store.get_chunk(cid) == blob
        assert list(store.chunk_ids()).count(cid) == 1

    def test_put_chunk_from_many_threads(self, store: MediaStore) -> None:
        session = store.begin()
        chunks = [make_chunk(f"thread-{i}", 500 + i) for i in range(160)]
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)

        def worker(part: list[tuple[bytes, bytes]]) -> None:
            try:
                barrier.wait()
                for cid, blob in part:
                    session.put_chunk(cid, blob)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(chunks[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        session.commit()
        for cid, blob in chunks:
            assert store.get_chunk(cid) == blob

    def test_missing_chunk_raises_chunk_missing(self, store: MediaStore) -> None:
        cid, _ = make_chunk("never-stored")
        assert not store.has_chunk(cid)
        with pytest.raises(ChunkMissing) as info:
            store.get_chunk(cid)
        assert info.value.chunk_id == cid

    def test_large_and_empty_blobs(self, store: MediaStore) -> None:
        big_id, big = make_chunk("big", 3 * 1024 * 1024)
        empty = (hashlib.blake2b(b"", digest_size=32).digest(), b"")
        _write(store, [(big_id, big), empty]).commit()
        assert store.get_chunk(big_id) == big
        assert store.get_chunk(empty[0]) == b""

    # Manifests.

    def test_manifests(self, store: MediaStore) -> None:
        assert store.manifests() == []
        with pytest.raises(FileNotFoundError):
            store.get_manifest("0" * 32)
        store.put_manifest("a" * 32, b"manifest a")
        store.put_manifest("b" * 32, b"manifest b")
        assert sorted(store.manifests()) == ["a" * 32, "b" * 32]
        assert store.get_manifest("a" * 32) == b"manifest a"
        store.delete_manifest("a" * 32)
        assert store.manifests() == ["b" * 32]
        with pytest.raises(FileNotFoundError):
            store.get_manifest("a" * 32)
        assert store.get_manifest("b" * 32) == b"manifest b"

    # Deletion.

    def test_delete_chunks(self, store: MediaStore) -> None:
        if not self.supports_delete:
            pytest.xfail("this medium cannot delete chunks")  # declared by the subclass
        chunks = [make_chunk(f"gc-{i}", 2000) for i in range(12)]
        _write(store, chunks[:6]).commit()
        _write(store, chunks[6:]).commit()
        dead = chunks[::3]
        freed = store.delete_chunks([cid for cid, _ in dead])
        assert freed >= sum(len(blob) for _, blob in dead)
        remaining = set(store.chunk_ids())
        for cid, _ in dead:
            assert not store.has_chunk(cid)
            assert cid not in remaining
            with pytest.raises(ChunkMissing):
                store.get_chunk(cid)
        for cid, blob in chunks:
            if (cid, blob) not in dead:
                assert store.get_chunk(cid) == blob
        # Unknown ids are no error and free nothing.
        assert store.delete_chunks([make_chunk("unknown")[0]]) == 0
        assert store.delete_chunks([]) == 0

    def test_deleted_chunk_can_be_stored_again(self, store: MediaStore) -> None:
        if not self.supports_delete:
            pytest.xfail("this medium cannot delete chunks")
        cid, blob = make_chunk("reborn")
        _write(store, [(cid, blob)]).commit()
        store.delete_chunks([cid])
        assert not store.has_chunk(cid)
        _write(store, [(cid, blob)]).commit()
        assert store.get_chunk(cid) == blob

    # Capacity.

    def test_capacity_counts_stored_chunks(self, store: MediaStore) -> None:
        before = store.capacity()
        chunks = [make_chunk(f"cap-{i}", 50_000) for i in range(4)]
        _write(store, chunks).commit()
        after = store.capacity()
        assert after.used >= before.used + sum(len(b) for _, b in chunks)
        if after.total is not None and after.free is not None:
            assert 0 <= after.free <= after.total
