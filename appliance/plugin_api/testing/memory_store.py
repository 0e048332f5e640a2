"""An in-memory :class:`MediaStore`: a correct medium for tests and plugin authors.

It behaves like a real pool medium: chunks written in a session are invisible until
:meth:`WriteSession.commit`, :meth:`WriteSession.abort` drops them, and every method is
thread-safe. A few extra methods (``tamper_chunk``, ``remove_chunk``) inject faults.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from ..errors import ChunkMissing, MediaFull, TapirError
from ..roles import Capacity, MediaStore, WriteSession


class MemorySession(WriteSession):
    """One write session of a :class:`MemoryStore`."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._chunks: dict[bytes, bytes] = {}
        self._lock = threading.Lock()
        self.state = "open"

    def put_chunk(self, chunk_id: bytes, blob: bytes) -> None:
        """Keep the blob in the session (counted against the store's capacity)."""
        blob = bytes(blob)
        with self._lock:
            if self.state != "open":
                raise TapirError(f"write session is {self.state}")
            if chunk_id in self._chunks:
                return
            self._store._reserve(len(blob))
            self._chunks[chunk_id] = blob

    def commit(self) -> None:
        """Publish every chunk put so far."""
        with self._lock:
            if self.state != "open":
                raise TapirError(f"write session is {self.state}")
            self._store._publish(self._chunks)
            self.state = "committed"

    def abort(self) -> None:
        """Drop the session's chunks (a no-op after commit: gc reclaims those)."""
        with self._lock:
            if self.state == "open":
                self._store._release(sum(len(b) for b in self._chunks.values()))
                self._chunks.clear()
                self.state = "aborted"

    @property
    def pending(self) -> int:
        """Number of chunks put and not yet committed."""
        with self._lock:
            return len(self._chunks)


class MemoryStore(MediaStore):
    """A whole medium in a few dicts; ``capacity_bytes`` makes it run full."""

    def __init__(self, capacity_bytes: int | None = None) -> None:
        self._lock = threading.RLock()
        self._configs: dict[str, bytes] = {}
        self._chunks: dict[bytes, bytes] = {}
        self._manifests: dict[str, bytes] = {}
        self._capacity = capacity_bytes
        self._reserved = 0  # bytes of chunks put in open sessions
        self._stored = 0  # bytes of committed chunks and manifests
        self.sessions: list[MemorySession] = []
        self.closed = False

    # Accounting used by sessions.

    def _reserve(self, size: int) -> None:
        with self._lock:
            if self._capacity is not None and self._used() + self._reserved + size > self._capacity:
                raise MediaFull(f"memory medium full ({self._capacity} bytes)")
            self._reserved += size

    def _release(self, size: int) -> None:
        with self._lock:
            self._reserved -= size

    def _publish(self, chunks: dict[bytes, bytes]) -> None:
        with self._lock:
            for cid, blob in chunks.items():
                self._reserved -= len(blob)
                if cid not in self._chunks:
                    self._chunks[cid] = blob
                    self._stored += len(blob)

    def _used(self) -> int:
        return self._stored

    # MediaStore.

    def get_config(self, name: str) -> bytes | None:
        """A named config blob, or None."""
        with self._lock:
            return self._configs.get(name)

    def put_config(self, name: str, data: bytes) -> None:
        """Replace a named config blob."""
        with self._lock:
            self._configs[name] = bytes(data)

    def begin(self) -> MemorySession:
        """A new write session."""
        session = MemorySession(self)
        with self._lock:
            self.sessions.append(session)
        return session

    def has_chunk(self, chunk_id: bytes) -> bool:
        """True for a committed chunk."""
        with self._lock:
            return chunk_id in self._chunks

    def get_chunk(self, chunk_id: bytes) -> bytes:
        """A committed chunk's blob; ChunkMissing otherwise."""
        with self._lock:
            try:
                return self._chunks[chunk_id]
            except KeyError:
                raise ChunkMissing(chunk_id, "not on the memory medium") from None

    def chunk_ids(self) -> Iterator[bytes]:
        """A snapshot of the committed chunk ids."""
        with self._lock:
            return iter(list(self._chunks))

    def put_manifest(self, name: str, blob: bytes) -> None:
        """Store a manifest (replacing one of the same name)."""
        with self._lock:
            old = self._manifests.get(name)
            self._stored += len(blob) - (len(old) if old is not None else 0)
            self._manifests[name] = bytes(blob)

    def get_manifest(self, name: str) -> bytes:
        """A manifest blob; FileNotFoundError when absent."""
        with self._lock:
            try:
                return self._manifests[name]
            except KeyError:
                raise FileNotFoundError(f"no manifest {name!r} on the memory medium") from None

    def manifests(self) -> list[str]:
        """Every manifest name."""
        with self._lock:
            return sorted(self._manifests)

    def delete_manifest(self, name: str) -> None:
        """Remove a manifest; FileNotFoundError when absent."""
        with self._lock:
            old = self._manifests.pop(name, None)
            if old is None:
                raise FileNotFoundError(f"no manifest {name!r} on the memory medium")
            self._stored -= len(old)

    def delete_chunks(self, chunk_ids: Iterable[bytes]) -> int:
        """Remove committed chunks; returns the bytes freed (absent ids are skipped)."""
        freed = 0
        with self._lock:
            for cid in chunk_ids:
                blob = self._chunks.pop(cid, None)
                if blob is not None:
                    freed += len(blob)
            self._stored -= freed
        return freed

    def capacity(self) -> Capacity:
        """Bytes used by committed chunks and manifests."""
        with self._lock:
            used = self._used()
            free = None if self._capacity is None else max(0, self._capacity - used)
            return Capacity(total=self._capacity, used=used, free=free)

    def close(self) -> None:
        """Mark the store closed (data stays, for inspection)."""
        self.closed = True

    # Fault injection for tests.

    def tamper_chunk(self, chunk_id: bytes, blob: bytes) -> None:
        """Replace a committed chunk's blob as if the medium had damaged it."""
        with self._lock:
            if chunk_id not in self._chunks:
                raise ChunkMissing(chunk_id, "cannot tamper with an absent chunk")
            self._stored += len(blob) - len(self._chunks[chunk_id])
            self._chunks[chunk_id] = bytes(blob)

    def remove_chunk(self, chunk_id: bytes) -> None:
        """Lose a committed chunk as if the medium had."""
        with self._lock:
            self._stored -= len(self._chunks.pop(chunk_id))
