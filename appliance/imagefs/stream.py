"""A read-only, seekable file object over a recovery point's disk (a ``DiskImage``)."""

from __future__ import annotations

from dissect.util.stream import AlignedStream

from ..plugin_api.data import DiskImage
from ..plugin_api.errors import TapirError

#: Reads are aligned to this; the disk reader below keeps whole chunks in its cache.
BLOCK = 64 * 1024


class DiskStream(AlignedStream):
    """What the partition and file system parsers read: ``read``/``seek`` over ``pread``.

    The data path's :class:`DiskImage` loads only the chunks a read touches and keeps
    the last few in a small LRU cache, so walking a file system's metadata costs a
    handful of chunk loads, never a pass over the image.
    """

    def __init__(self, disk: DiskImage, name: str = "") -> None:
        super().__init__(disk.size, align=BLOCK)
        self.disk = disk
        self.name = name
        self.bytes_read = 0  # what the parsers asked for, for callers measuring a request
        #: The first data path error (missing or corrupt chunk) a read raised. Parsers
        #: probing for a file system swallow errors; this one must not be mistaken for
        #: "no file system here".
        self.failure: TapirError | None = None

    def _read(self, offset: int, length: int) -> bytes:
        try:
            data = self.disk.pread(offset, length)
        except TapirError as exc:
            self.failure = self.failure or exc
            raise
        self.bytes_read += len(data)
        return data

    def raise_failure(self) -> None:
        """Raise the data path error a read met, if any (after probing swallowed it)."""
        if self.failure is not None:
            raise self.failure

    def __repr__(self) -> str:
        return f"<DiskStream {self.name} size={self.size}>"
