"""Cutting data into chunks: content-defined for files and item streams, fixed for disks.

:class:`StreamChunker` takes a file as it arrives in pieces (``FileWriter.write``) and
yields FastCDC chunks. A cut point depends only on the bytes since the previous cut, so
the chunks are the same whatever the sizes of the pieces, and an insertion early in a
file only changes the chunks around it.

The disk helpers split a disk into fixed chunks aligned to disk offsets, so chunk ``i``
of a disk always covers ``[i * size, (i + 1) * size)`` and an incremental can reuse
the parent's chunk ``i`` unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from pyfastcdc import FastCDC

from ..plugin_api.items import Extent

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class ChunkerParams:
    """FastCDC sizes in bytes. pyfastcdc's bounds apply (min <= 1 MiB, avg <= 4 MiB,
    max <= 16 MiB)."""

    min_size: int = 512 * KiB
    avg_size: int = 1 * MiB
    max_size: int = 8 * MiB

    def __post_init__(self) -> None:
        if not (64 <= self.min_size <= self.avg_size <= self.max_size):
            raise ValueError(f"bad chunker sizes {self}")

    def as_dict(self) -> dict[str, int]:
        """The sizes as stored in the repository config."""
        return {"min": self.min_size, "avg": self.avg_size, "max": self.max_size}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> ChunkerParams:
        """Reverse :meth:`as_dict`."""
        return cls(min_size=int(data["min"]), avg_size=int(data["avg"]), max_size=int(data["max"]))


#: File data: big chunks keep the chunk count (and per-chunk overhead) low.
FILE_CHUNKER = ChunkerParams(512 * KiB, 1 * MiB, 8 * MiB)
#: Item streams: smaller chunks so an unchanged part of a tree dedups.
ITEM_STREAM_CHUNKER = ChunkerParams(64 * KiB, 256 * KiB, 1 * MiB)
#: Disk images: fixed chunks aligned to disk offsets.
DISK_CHUNK_SIZE = 4 * MiB


class StreamChunker:
    """Content-defined chunking of a stream delivered in pieces of any size.

    ``feed`` yields the chunks that are final so far; ``finish`` returns the rest.
    Chunks are ``bytes`` or read-only ``memoryview`` slices of an immutable ``bytes``
    (the caller's, or one the chunker joined pieces into), never views of a buffer
    that changes later.

    Immutable pieces are kept as they arrive and joined only when a batch is cut, so
    each byte is copied about once (mutable input is copied first, a batch at a time);
    a write of a whole batch or more arriving with nothing pending is cut in place.
    """

    def __init__(self, params: ChunkerParams, *, batch: int | None = None) -> None:
        self.params = params
        self._cdc = FastCDC(
            avg_size=params.avg_size, min_size=params.min_size, max_size=params.max_size
        )
        self._parts: list[bytes | memoryview] = []
        self._size = 0
        # Cutting only once this much is buffered keeps rescans of the open tail rare.
        self._batch = batch if batch is not None else 2 * params.max_size

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[bytes | memoryview]:
        """Add ``data``; yield the chunks that no later data can change.

        Consume the iterator fully before the next call: chunks are cut as it advances,
        so a huge write is taken in one batch at a time, not all at once.
        """
        if isinstance(data, bytes) and len(data) >= self.params.max_size:
            yield from self._feed_large(memoryview(data).toreadonly())
            return
        immutable = isinstance(data, bytes)
        view = memoryview(data).cast("B")
        try:
            for start in range(0, len(view), self._batch):
                piece = view[start : start + self._batch]
                # A view of immutable bytes may be kept; anything else is copied now,
                # since the caller may reuse its buffer.
                self._parts.append(piece.toreadonly() if immutable else bytes(piece))
                self._size += len(piece)
                if self._size >= self._batch:
                    yield from self._cut(final=False)
        finally:
            view.release()

    def _feed_large(self, view: memoryview) -> Iterator[bytes | memoryview]:
        """A write of at least ``max_size`` immutable bytes: cut in place.

        Only the chunk that spans the pending tail and the new data is copied; the
        rest are views of the caller's bytes.
        """
        if self._parts:
            # Cut points inside the pending bytes first: what is left holds none.
            yield from self._cut(final=False)
        while self._parts:
            chunk = self._boundary_chunk(view)
            yield chunk
            if len(chunk) >= self._size:
                view = view[len(chunk) - self._size :]
                self._parts, self._size = [], 0
            else:  # only if the pending bytes were never cut; kept for safety
                rest = memoryview(b"".join(self._parts)).toreadonly()[len(chunk) :]
                self._parts, self._size = [rest], len(rest)
        self._parts, self._size = [view], len(view)
        yield from self._cut(final=False)

    def _boundary_chunk(self, view: memoryview) -> memoryview:
        """The first chunk of the pending tail followed by ``view`` (which holds at least
        ``max_size`` bytes), joined into a new buffer."""
        pending = self._size
        # Most cuts come well before max_size: try a short join first.
        for span in (min(2 * self.params.avg_size, self.params.max_size), self.params.max_size):
            take = max(0, span - pending)
            head = memoryview(b"".join([*self._parts, view[:take]])).toreadonly()
            pieces = list(self._cdc.cut_buf(head))
            # The first cut is final when a later one exists or max_size forced it.
            if len(pieces) > 1 or len(head) >= self.params.max_size:
                return head[: pieces[0].length]
        raise AssertionError("chunker: no cut within max_size")

    def finish(self) -> list[bytes | memoryview]:
        """The remaining chunks, at the end of the stream (or before a hole)."""
        if not self._parts:
            return []
        return self._cut(final=True)

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet returned as chunks."""
        return self._size

    def _cut(self, *, final: bool) -> list[bytes | memoryview]:
        parts = self._parts
        whole = parts[0] if len(parts) == 1 else b"".join(parts)
        view = memoryview(whole).toreadonly()
        out: list[bytes | memoryview] = []
        consumed = 0
        last: memoryview | None = None
        for chunk in self._cdc.cut_buf(view):
            if last is not None:
                out.append(last)
                consumed += len(last)
            last = view[chunk.offset : chunk.offset + chunk.length]
        # A cut point depends on the bytes after it up to max_size, so the last piece
        # may still grow: keep it pending unless the stream ended.
        if last is not None and final:
            out.append(last)
            consumed += len(last)
        tail = view[consumed:]
        self._parts = [tail] if len(tail) else []
        self._size = len(tail)
        return out


@lru_cache(maxsize=8)
def zeros(length: int) -> bytes:
    """A cached run of zero bytes (compare a chunk with it to detect a hole)."""
    return bytes(length)


def is_zero(data: bytes | memoryview) -> bool:
    """True when ``data`` holds only zero bytes."""
    return data == zeros(len(data))


def disk_chunk_count(size: int, chunk_size: int) -> int:
    """How many fixed chunks cover a disk of ``size`` bytes."""
    return (size + chunk_size - 1) // chunk_size


def disk_chunk_span(index: int, size: int, chunk_size: int) -> tuple[int, int]:
    """Offset and length of chunk ``index`` (the last one may be short)."""
    start = index * chunk_size
    return start, min(chunk_size, size - start)


def normalize_extents(extents: Iterable[Extent], size: int) -> list[Extent]:
    """Sort and merge ``extents``; raise ValueError for one outside ``[0, size)``."""
    spans: list[tuple[int, int]] = []
    for ext in extents:
        if ext.offset < 0 or ext.length < 0 or ext.end > size:
            raise ValueError(
                f"extent {ext.offset}+{ext.length} lies outside the disk (size {size})"
            )
        if ext.length:
            spans.append((ext.offset, ext.end))
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [Extent(start, end - start) for start, end in merged]


def chunks_touched(extents: list[Extent], chunk_size: int) -> Iterator[tuple[int, list[Extent]]]:
    """For sorted, merged ``extents``: each chunk index they touch with the parts inside it,
    in increasing chunk order."""
    current: int | None = None
    parts: list[Extent] = []
    for ext in extents:
        pos = ext.offset
        while pos < ext.end:
            index = pos // chunk_size
            chunk_end = (index + 1) * chunk_size
            end = min(ext.end, chunk_end)
            if index != current:
                if current is not None:
                    yield current, parts
                current, parts = index, []
            parts.append(Extent(pos, end - pos))
            pos = end
    if current is not None:
        yield current, parts
