"""An in-memory :class:`BackupSink` and :class:`RestoreSource` for testing source plugins.

:class:`MemorySink` records what a source plugin hands over, exactly as the engine
would keep it: items in order, file data cut into chunks (fixed size here; the
engine's are content-defined) named by their SHA-256, holes kept as holes. It is
strict: it raises ``ValueError`` on what the engine would reject or mis-store
(a duplicate or unsafe path, a file whose data length differs from its size, a
writer used after close, a hard link to a path not stored before...), so a plugin
bug shows up in the plugin's own tests.

:class:`MemoryRestoreSource` replays what a sink captured, verifying every chunk
like the engine does, and can inject damage (``corrupt_chunk``, ``drop_chunk``).

A typical test::

    sink = MemorySink()
    plugin.backup(request, sink, ctx)
    sink.check_complete()
    plugin.restore(restore_request, MemoryRestoreSource(sink), ctx)

    incremental = MemorySink(parent=sink.as_parent())
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import uuid
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from ..data import DiskReadFn
from ..errors import ChunkCorrupt, ChunkMissing
from ..items import ChunkRef, Extent, Item, ItemKind

DEFAULT_CHUNK_SIZE = 64 * 1024
DISK_CHUNK_SIZE = 4 * 1024 * 1024


def chunk_id_of(data: bytes) -> bytes:
    """The content address the memory kit gives a chunk."""
    return hashlib.sha256(data).digest()


def _copy(item: Item) -> Item:
    return dataclasses.replace(
        item,
        xattrs=dict(item.xattrs),
        chunks=list(item.chunks),
        flags=list(item.flags),
        extra=dict(item.extra),
    )


def _check_path(path: object) -> None:
    if not isinstance(path, bytes):
        raise ValueError(f"item path must be bytes, not {type(path).__name__}")
    if not path or path.startswith(b"/") or b"\0" in path:
        raise ValueError(f"item path {path!r} must be relative, non-empty and without NUL")
    if b".." in path.split(b"/"):
        raise ValueError(f"item path {path!r} contains '..'")


class MemoryParentIndex:
    """A finished :class:`MemorySink` seen as the parent of an incremental backup."""

    def __init__(self, sink: MemorySink, recovery_point_id: str) -> None:
        self.recovery_point_id = recovery_point_id
        self._items = {i.path: i for i in sink.items}
        self.chunks = sink.chunks
        #: Paths looked up, in order (tests check what a plugin asked for).
        self.lookups: list[bytes] = []

    def lookup(self, path: bytes) -> Item | None:
        """A copy of the item stored at ``path``, or None."""
        self.lookups.append(path)
        item = self._items.get(path)
        return None if item is None else _copy(item)


class MemoryFileWriter:
    """The :class:`FileWriter` of a :class:`MemorySink`."""

    def __init__(self, sink: MemorySink, item: Item) -> None:
        self._sink = sink
        self.item = item
        self._buffer = bytearray()
        self.closed = False

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"{self.item.path!r}: writer used after close()")

    def write(self, data: bytes) -> None:
        """Append data; full chunks are cut as they fill."""
        self._check_open()
        self._buffer += data
        size = self._sink.chunk_size
        while len(self._buffer) >= size:
            self._emit(bytes(self._buffer[:size]))
            del self._buffer[:size]

    def hole(self, length: int) -> None:
        """Append a hole of ``length`` zero bytes (stored as nothing)."""
        self._check_open()
        if length < 0:
            raise ValueError(f"{self.item.path!r}: negative hole length {length}")
        if length == 0:
            return
        self._flush()
        chunks = self.item.chunks
        if chunks and chunks[-1].id is None:
            chunks[-1] = ChunkRef(None, chunks[-1].length + length)
        else:
            chunks.append(ChunkRef(None, length))

    def flag(self, flag: str) -> None:
        """Mark the item (once per flag)."""
        self._check_open()
        if flag not in self.item.flags:
            self.item.flags.append(flag)

    def close(self) -> None:
        """Finish the file; raises ValueError when its data length differs from its size."""
        self._check_open()
        self._flush()
        self.closed = True
        if self.item.stored_size != self.item.size:
            raise ValueError(
                f"{self.item.path!r}: {self.item.stored_size} bytes written "
                f"for an item of size {self.item.size}"
            )
        self._sink._finish(self)

    def _flush(self) -> None:
        if self._buffer:
            self._emit(bytes(self._buffer))
            self._buffer.clear()

    def _emit(self, data: bytes) -> None:
        self.item.chunks.append(self._sink._put(data))


class MemorySink:
    """A correct in-memory :class:`BackupSink` (see the module docstring).

    ``items`` holds the recorded items in the order they were added (a file takes
    its place when it is opened); ``chunks`` maps chunk ids to data; ``warnings``
    lists ``(path, message)``; ``opened`` lists the paths passed to ``open_file``.
    """

    def __init__(
        self,
        parent: MemoryParentIndex | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        recovery_point_id: str | None = None,
    ) -> None:
        self.parent = parent
        self.chunk_size = chunk_size
        self.recovery_point_id = recovery_point_id or uuid.uuid4().hex
        self.items: list[Item] = []
        self.chunks: dict[bytes, bytes] = {}
        self.warnings: list[tuple[bytes | str, str]] = []
        self.opened: list[bytes] = []
        self._paths: set[bytes] = set()
        self._open_writers: dict[bytes, MemoryFileWriter] = {}

    # BackupSink.

    def add(self, item: Item) -> None:
        """Record an item without new data; reused chunks must exist here or in the parent."""
        self._claim(item)
        if item.kind is ItemKind.FILE:
            if item.stored_size != item.size:
                raise ValueError(
                    f"{item.path!r}: chunks hold {item.stored_size} bytes, size is {item.size}"
                )
            for ref in item.chunks:
                if ref.id is not None:
                    self._adopt(ref.id, item.path)
        elif item.chunks:
            raise ValueError(f"{item.path!r}: a {item.kind.value} item carries no data")
        if item.kind is ItemKind.SYMLINK and item.target is None:
            raise ValueError(f"{item.path!r}: symbolic link without a target")
        if item.kind is ItemKind.HARDLINK and item.target not in self._paths:
            raise ValueError(f"{item.path!r}: hard link to {item.target!r}, not stored before it")
        self.items.append(_copy(item))

    def open_file(self, item: Item) -> MemoryFileWriter:
        """Start a regular file; its item is recorded when the writer is closed."""
        if item.kind is not ItemKind.FILE:
            raise ValueError(f"{item.path!r}: open_file needs a file item, not {item.kind.value}")
        self._claim(item)
        self.opened.append(item.path)
        stored = _copy(item)
        stored.chunks = []
        writer = MemoryFileWriter(self, stored)
        self._open_writers[item.path] = writer
        self.items.append(stored)
        return writer

    def add_disk(
        self,
        item: Item,
        read: DiskReadFn,
        extents: Iterable[Extent] | None = None,
        parent: Item | None = None,
    ) -> None:
        """Store a disk image in fixed chunks aligned to disk offsets (a synthetic full)."""
        self._claim(item)
        size = int(item.extra.get("chunk_size", DISK_CHUNK_SIZE))  # type: ignore[call-overload]
        spans = None if extents is None else sorted((e.offset, e.end) for e in extents)
        old = {off: ref for off, ref in parent.chunk_offsets()} if parent is not None else {}
        stored = _copy(item)
        stored.chunks = []
        for offset in range(0, item.size, size):
            length = min(size, item.size - offset)
            touched = spans is None or any(s < offset + length and e > offset for s, e in spans)
            if touched:
                data = read(offset, length)
                if len(data) != length:
                    raise ValueError(f"{item.path!r}: short disk read at {offset}")
                ref = self._put(data)
            elif offset in old and old[offset].length == length:
                ref = old[offset]
                if ref.id is not None:
                    self._adopt(ref.id, item.path)
            else:
                ref = ChunkRef(None, length)
            stored.chunks.append(ref)
        self.items.append(stored)

    def warn(self, path: bytes | str, message: str) -> None:
        """Record a warning about one item."""
        self.warnings.append((path, message))

    # Helpers for tests.

    def check_complete(self) -> None:
        """Raise ValueError if a file writer was left open (the backup did not finish it)."""
        if self._open_writers:
            raise ValueError(f"files never closed: {sorted(self._open_writers)!r}")

    def as_parent(self, recovery_point_id: str | None = None) -> MemoryParentIndex:
        """This finished recovery point as the parent of an incremental."""
        self.check_complete()
        return MemoryParentIndex(self, recovery_point_id or self.recovery_point_id)

    def item(self, path: bytes) -> Item:
        """The recorded item at ``path``; KeyError when absent."""
        for item in self.items:
            if item.path == path:
                return item
        raise KeyError(path)

    def file_bytes(self, path: bytes) -> bytes:
        """A recorded file's whole data, holes as zeros."""
        item = self.item(path)
        return b"".join(
            b"\0" * ref.length if ref.id is None else self.chunks[ref.id] for ref in item.chunks
        )

    def warned(self, path: bytes) -> list[str]:
        """Messages warned about ``path``."""
        return [m for p, m in self.warnings if p == path]

    # Internals.

    def _claim(self, item: Item) -> None:
        _check_path(item.path)
        if not isinstance(item.kind, ItemKind):
            raise ValueError(f"{item.path!r}: kind {item.kind!r} is not an ItemKind")
        if item.path in self._paths:
            raise ValueError(f"{item.path!r} added twice")
        self._paths.add(item.path)

    def _put(self, data: bytes) -> ChunkRef:
        chunk_id = chunk_id_of(data)
        self.chunks.setdefault(chunk_id, data)
        return ChunkRef(chunk_id, len(data))

    def _adopt(self, chunk_id: bytes, path: bytes) -> None:
        if chunk_id in self.chunks:
            return
        if self.parent is not None and chunk_id in self.parent.chunks:
            self.chunks[chunk_id] = self.parent.chunks[chunk_id]
            return
        raise ValueError(f"{path!r}: chunk {chunk_id.hex()} exists neither here nor in the parent")

    def _finish(self, writer: MemoryFileWriter) -> None:
        self._open_writers.pop(writer.item.path, None)


class MemoryDiskImage:
    """Random access to a disk item of a :class:`MemoryRestoreSource`."""

    def __init__(self, source: MemoryRestoreSource, item: Item) -> None:
        self._source = source
        self._item = item
        self.size = item.size

    def pread(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` (short only at the end)."""
        end = min(offset + length, self.size)
        out = bytearray()
        for start, ref in self._item.chunk_offsets():
            stop = start + ref.length
            if stop <= offset or start >= end:
                continue
            data = b"\0" * ref.length if ref.id is None else self._source.read_chunk(ref.id)
            out += data[max(offset, start) - start : min(end, stop) - start]
        return bytes(out)


class MemoryRestoreSource:
    """A :class:`RestoreSource` over what a :class:`MemorySink` captured."""

    def __init__(self, sink: MemorySink, metadata: dict[str, object] | None = None) -> None:
        sink.check_complete()
        self.recovery_point_id = sink.recovery_point_id
        #: The point's BackupResult.metadata: pass the plugin's result's metadata.
        self.metadata: dict[str, object] = dict(metadata or {})
        self._items = [_copy(i) for i in sink.items]
        # A copy, so that damage injected here leaves the sink (and its parent) intact.
        self.chunks: dict[bytes, bytes] = dict(sink.chunks)
        #: Chunk ids read, in order.
        self.reads: list[bytes] = []

    @classmethod
    def from_items(
        cls, items: Iterable[Item], chunks: dict[bytes, bytes] | None = None
    ) -> MemoryRestoreSource:
        """A source over hand-made items, unchecked: for testing how a restore copes with
        a hostile or damaged recovery point (paths with "..", absolute paths...)."""
        source = cls.__new__(cls)
        source.recovery_point_id = uuid.uuid4().hex
        source._items = [_copy(i) for i in items]
        source.chunks = dict(chunks or {})
        source.reads = []
        source.metadata = {}
        return source

    def items(self, paths: Iterable[bytes] | None = None) -> Iterator[Item]:
        """Items in stored order; with ``paths``, those paths and everything below them."""
        wanted = None if paths is None else [p.rstrip(b"/") for p in paths]
        for item in self._items:
            if wanted is None or any(
                item.path == p or item.path.startswith(p + b"/") or not p for p in wanted
            ):
                yield _copy(item)

    def read_chunk(self, chunk_id: bytes) -> bytes:
        """A chunk's data, verified against its id."""
        self.reads.append(chunk_id)
        try:
            data = self.chunks[chunk_id]
        except KeyError:
            raise ChunkMissing(chunk_id, "not in the memory source") from None
        if chunk_id_of(data) != chunk_id:
            raise ChunkCorrupt(chunk_id, "content does not match its address")
        return data

    def open(self, item: Item) -> BinaryIO:
        """The item's whole data (holes as zeros), every chunk verified first."""
        parts = [b"\0" * r.length if r.id is None else self.read_chunk(r.id) for r in item.chunks]
        return io.BytesIO(b"".join(parts))

    def open_disk(self, item: Item) -> MemoryDiskImage:
        """Random access to a disk item."""
        return MemoryDiskImage(self, item)

    # Fault injection.

    def corrupt_chunk(self, chunk_id: bytes) -> None:
        """Flip a byte of a chunk, so that reading it raises ChunkCorrupt."""
        data = bytearray(self.chunks[chunk_id])
        data[len(data) // 2] ^= 0xFF
        self.chunks[chunk_id] = bytes(data)

    def drop_chunk(self, chunk_id: bytes) -> None:
        """Remove a chunk, so that reading it raises ChunkMissing."""
        del self.chunks[chunk_id]
