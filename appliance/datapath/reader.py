"""The engine's RestoreSource: read access to one recovery point.

Every chunk is verified as it is loaded (authentication and content hash, see
blobs.py), and its length is checked against the item's record, so a reader either
returns the data that was backed up or raises.
"""

from __future__ import annotations

import io
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from ..plugin_api.errors import ChunkCorrupt, TapirError
from ..plugin_api.items import ChunkRef, Item, ItemKind
from .chunker import zeros
from .manifest import Manifest
from .repository import Repository

_ZERO_BLOCK = 1024 * 1024
_READ_BUFFER = 1024 * 1024


def _normalize_filter(paths: Iterable[bytes]) -> list[bytes]:
    out = []
    for path in paths:
        if not isinstance(path, bytes):
            raise TypeError(f"restore paths are bytes, got {type(path).__name__}")
        out.append(path.strip(b"/"))
    return out


def path_selected(path: bytes, selected: list[bytes]) -> bool:
    """True when ``path`` is one of ``selected`` or lies below one of them."""
    return any(not sel or path == sel or path.startswith(sel + b"/") for sel in selected)


class _ChunkMap:
    """An item's chunk list with start offsets, for bisecting by offset."""

    def __init__(self, item: Item) -> None:
        self.chunks: list[ChunkRef] = list(item.chunks)
        self.starts: list[int] = [offset for offset, _ in item.chunk_offsets()]
        self.size = item.stored_size

    def locate(self, offset: int) -> int:
        """Index of the chunk holding ``offset`` (which must be below ``size``)."""
        return bisect_right(self.starts, offset) - 1


class RecoveryPointReader:
    """The engine's :class:`RestoreSource` over one manifest."""

    def __init__(self, repo: Repository, manifest: Manifest | str, *, cache_chunks: int = 8):
        self.repo = repo
        self.manifest = manifest if isinstance(manifest, Manifest) else repo.read_manifest(manifest)
        self.recovery_point_id = self.manifest.id
        self.metadata = self.manifest.metadata
        self.cache_chunks = cache_chunks

    def items(self, paths: Iterable[bytes] | None = None) -> Iterator[Item]:
        """Items in stored order; with ``paths``, only those paths and what lies below them."""
        selected = None if paths is None else _normalize_filter(paths)
        for item in self.repo.iter_items(self.manifest):
            if selected is None or path_selected(item.path, selected):
                yield item

    def open(self, item: Item) -> BinaryIO:
        """A sequential reader over a file's or disk's data; holes read as zeros."""
        raw = ItemDataReader(self, item)
        return io.BufferedReader(raw, buffer_size=_READ_BUFFER)  # type: ignore[return-value]

    def read_chunk(self, chunk_id: bytes) -> bytes:
        """One chunk's plain data, verified against its content address."""
        return self.repo.load_chunk(chunk_id)

    def load_ref(self, ref: ChunkRef) -> bytes:
        """A chunk's data, verified and checked against the reference's length."""
        if ref.id is None:
            return zeros(ref.length) if ref.length <= _ZERO_BLOCK else bytes(ref.length)
        data = self.repo.load_chunk(ref.id)
        if len(data) != ref.length:
            raise ChunkCorrupt(
                ref.id, f"holds {len(data)} bytes where the item expects {ref.length}"
            )
        return data

    def open_disk(self, item: Item) -> DiskImageReader:
        """A random-access, read-only view of a disk item (fetches only touched chunks)."""
        if item.kind != ItemKind.DISK:
            raise TapirError(f"{item.path!r} is a {item.kind}, not a disk")
        return DiskImageReader(self, item, cache_chunks=self.cache_chunks)


class ItemDataReader(io.RawIOBase):
    """Raw reader of one item's data: seekable, verified, holes as zeros."""

    def __init__(self, source: RecoveryPointReader, item: Item) -> None:
        super().__init__()
        self._source = source
        self._map = _ChunkMap(item)
        self._pos = 0
        self._cached_index = -1
        self._cached: bytes = b""
        self.name = item.path.decode("utf-8", "backslashreplace")

    def readable(self) -> bool:
        """Always True."""
        return True

    def seekable(self) -> bool:
        """Always True: any offset can be reached by bisecting the chunk list."""
        return True

    def tell(self) -> int:
        """The current offset in the item's data."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` (relative to ``whence``); returns the new offset."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._map.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` from the current offset (at most to the end of one chunk)."""
        if self.closed:
            raise ValueError("read from a closed reader")
        if self._pos >= self._map.size or not len(buffer):
            return 0
        index = self._map.locate(self._pos)
        ref = self._map.chunks[index]
        within = self._pos - self._map.starts[index]
        out = memoryview(buffer).cast("B")
        if ref.id is None:
            count = min(len(out), ref.length - within, _ZERO_BLOCK)
            out[:count] = zeros(count)
        else:
            if index != self._cached_index:
                self._cached = self._source.load_ref(ref)
                self._cached_index = index
            count = min(len(out), ref.length - within)
            out[:count] = self._cached[within : within + count]
        self._pos += count
        return count


class DiskImageReader:
    """The :class:`DiskImage` of a disk item: ``pread`` at any offset, small LRU cache.

    Safe to call from several threads.
    """

    def __init__(self, source: RecoveryPointReader, item: Item, *, cache_chunks: int = 8):
        if item.stored_size != item.size:
            raise TapirError(
                f"disk {item.path!r}: size {item.size} but its chunks hold {item.stored_size}"
            )
        self._source = source
        self._map = _ChunkMap(item)
        self.size = item.size
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_chunks = max(1, cache_chunks)
        self._lock = threading.Lock()
        self.chunks_loaded = 0  # for callers measuring what a read fetched

    def pread(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` (short only at the end of the disk)."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        parts: list[bytes] = []
        pos = offset
        index = self._map.locate(pos)
        while pos < end:
            start = self._map.starts[index]
            ref = self._map.chunks[index]
            stop = min(end, start + ref.length)
            if ref.id is None:
                parts.append(bytes(stop - pos))
            else:
                data = self._chunk(index, ref)
                parts.append(data[pos - start : stop - start])
            pos = stop
            index += 1
        return b"".join(parts)

    def _chunk(self, index: int, ref: ChunkRef) -> bytes:
        with self._lock:
            data = self._cache.get(index)
            if data is not None:
                self._cache.move_to_end(index)
                return data
        data = self._source.load_ref(ref)
        with self._lock:
            self._cache[index] = data
            self._cache.move_to_end(index)
            while len(self._cache) > self._cache_chunks:
                self._cache.popitem(last=False)
            self.chunks_loaded += 1
        return data
