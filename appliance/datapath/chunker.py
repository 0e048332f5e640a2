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
    given to ``feed`` (never views of a buffer that changes later).
    """

    def __init__(self, params: ChunkerParams, *, batch: int | None = None) -> None:
        self.params = params
        self._cdc = FastCDC(
            avg_size=params.avg_size, min_size=params.min_size, max_size=params.max_size
        )
        self._pending = bytearray()
        # Cutting only once this much is buffered keeps rescans of the open tail rare.
        self._batch = batch if batch is not None else 2 * params.max_size

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[bytes | memoryview]:
        """Add ``data``; yield the chunks that no later data can change.

        Consume the iterator fully before the next call: chunks are cut as it advances,
        so a huge write is copied one batch at a time, not all at once.
        """
        if not self._pending and isinstance(data, bytes) and len(data) >= self._batch:
            # Large immutable write: cut it in place, no copy.
            yield from self._cut(memoryview(data), final=False, owned=True)
            return
        view = memoryview(data).cast("B")
        try:
            for start in range(0, len(view), self._batch):
                self._pending += view[start : start + self._batch]
                if len(self._pending) >= self._batch:
                    yield from self._cut(memoryview(self._pending), final=False, owned=False)
        finally:
            view.release()

    def finish(self) -> list[bytes | memoryview]:
        """The remaining chunks, at the end of the stream (or before a hole)."""
        if not self._pending:
            return []
        return self._cut(memoryview(self._pending), final=True, owned=False)

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet returned as chunks."""
        return len(self._pending)

    def _cut(self, view: memoryview, *, final: bool, owned: bool) -> list[bytes | memoryview]:
        pieces = [(c.offset, c.length) for c in self._cdc.cut_buf(view)]
        # A cut point depends on the bytes after it up to max_size, so the last piece
        # may still grow: keep it pending unless the stream ended.
        keep = len(pieces) if final else len(pieces) - 1
        if owned:
            out = [view[o : o + n].toreadonly() for o, n in pieces[:keep]]
        else:
            out = [bytes(view[o : o + n]) for o, n in pieces[:keep]]
        consumed = pieces[keep - 1][0] + pieces[keep - 1][1] if keep else 0
        if owned:
            self._pending = bytearray(view[consumed:])
            view.release()
        else:
            view.release()
            # Deleting from the front of a bytearray only moves its start pointer.
            del self._pending[:consumed]
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
